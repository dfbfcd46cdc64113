"""Every flag takes effect or is refused in one line, and every input is read or refused in one
line (issue 24): each test is one case a new user hit, on small samples of the real reviews."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from sentiment.cli import build_parser, main


def _reviews(shared_data, n: int = 20, *, long: bool = False) -> list[str]:
    frame = pd.read_csv(shared_data / "labeled" / "gplay-2024.csv", usecols=["content", "score"]).dropna()
    frame = frame[frame["content"].str.len() > 300] if long else frame
    return frame["content"].head(n).tolist()


def _no_work(monkeypatch, *modules: str) -> None:
    """Make starting Ray fail the test: a check 'before any work' must fire before it."""
    def started(*args, **kwargs):
        raise AssertionError("Ray was started before the flag was checked")

    for module in modules:
        monkeypatch.setattr(f"{module}.ensure_connected", started)


def _error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    return lines[-1] if lines else ""


# Case 1: --max-length 1 was silently ignored by the tokenizer.
def test_max_length_below_cls_and_sep_is_refused_and_the_smallest_allowed_takes_effect(shared_data, tiny_classifier,
                                                                                     capsys):
    from sentiment.model.predictor import Predictor

    for too_small in ("1", "2"):
        with pytest.raises(SystemExit) as exit_info:
            main(["predict", "--model", tiny_classifier, "--max-length", too_small, "terrible"])
        assert exit_info.value.code == 2
        assert "--max-length: must be at least 3" in _error_line(capsys)
    texts = _reviews(shared_data, 4, long=True)
    shortest = Predictor(tiny_classifier, max_length=3, precision="fp32")
    assert [len(ids) for ids in shortest.tokenize(texts).to_pylist()] == [3] * 4
    default = Predictor(tiny_classifier, precision="fp32")
    assert abs(shortest.predict_proba(texts) - default.predict_proba(texts)).max() > 1e-5  # untrained: small, but far above fp32 noise


# Case 2: --max-length above the model's positions crashed on the first long review.
def test_max_length_above_the_model_positions_is_refused_before_any_work(shared_data, tiny_classifier, tiny_backbone,
                                                                        s3_bucket, tmp_path, monkeypatch, capsys):
    import boto3

    from sentiment.io.storage import s3_endpoint

    _no_work(monkeypatch, "sentiment.evaluate", "sentiment.train.driver", "sentiment.io.file_checks")
    bucket = s3_bucket.removeprefix("s3://")
    client = boto3.client("s3", endpoint_url=s3_endpoint())
    for path in sorted(p for p in __import__("pathlib").Path(tiny_classifier).iterdir() if p.is_file()):
        client.upload_file(str(path), bucket, f"model/{path.name}")
    data = tmp_path / "reviews.csv"
    pd.DataFrame({"content": _reviews(shared_data, 5), "score": [1, 2, 3, 4, 5]}).to_csv(data, index=False)
    commands = {
        "score": ["score", "--model", f"{s3_bucket}/model", "--input", str(data), "--output", str(tmp_path / "out"),
                  "--max-length", "100000"],
        "predict": ["predict", "--model", tiny_classifier, "--max-length", "1000", "good"],
        "evaluate": ["evaluate", "--model", tiny_classifier, "--data", str(data), "--max-length", "513"],
        "train": ["train", "--model", tiny_backbone, "--data", str(data), "--output", str(tmp_path / "m"),
                  "--max-length", "1000"],
    }
    for name, argv in commands.items():
        assert main(argv) == 2, name
        line = _error_line(capsys)
        assert line.startswith(f"sentiment {name}: error: --max-length ") and "max_position_embeddings 512" in line, line
        assert "use --max-length 512 or less" in line
    assert not (tmp_path / "m").exists()


# Case 6: -v turned a user error into exit 1 and dropped the error line.
def test_verbose_keeps_exit_2_and_prints_the_traceback_then_the_same_line(tmp_path, capsys):
    not_a_model = tmp_path / "not-a-model"
    not_a_model.mkdir()
    argv = ["predict", "--model", str(not_a_model), "good"]
    assert main(argv) == 2
    plain = capsys.readouterr().err.strip()
    assert main(["-v", *argv]) == 2
    verbose = capsys.readouterr().err.strip().splitlines()
    assert plain == f"sentiment predict: error: {not_a_model} is not a model folder: config.json is missing"
    assert verbose[0] == "Traceback (most recent call last):" and verbose[-1] == plain


def test_verbose_job_keeps_exit_2_and_the_error_line(tmp_path, monkeypatch, capsys):
    from sentiment.cluster import jobs
    from sentiment.errors import SentimentError

    def unreachable():
        raise SentimentError("cannot reach the Ray cluster at 10.0.0.1:6379")

    monkeypatch.setattr(jobs, "connect", unreachable)
    args = build_parser().parse_args(["-v", "predict", "--model", str(tmp_path), "good"])
    assert jobs.run_job("predict", args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == "Traceback (most recent call last):"
    assert err[-1] == "jobs/predict.py: error: cannot reach the Ray cluster at 10.0.0.1:6379"


# Case 12: flags checked late or described wrongly.
def test_evaluate_report_that_cannot_be_written_fails_before_the_evaluation(shared_data, tiny_classifier, tmp_path,
                                                                          monkeypatch, capsys):
    _no_work(monkeypatch, "sentiment.evaluate")
    data = tmp_path / "reviews.csv"
    pd.DataFrame({"content": _reviews(shared_data, 5), "score": [1, 2, 3, 4, 5]}).to_csv(data, index=False)
    assert main(["evaluate", "--model", tiny_classifier, "--data", str(data), "--report", "/proc/nope/r.json"]) == 2
    assert _error_line(capsys).startswith("sentiment evaluate: error: cannot write under /proc/nope: /proc is not "
                                          "a writable folder")


def test_format_json_reads_only_json_lines_and_help_says_it_filters_by_extension(shared_data, tmp_path, capsys):
    from sentiment.io.shards import list_shard_files

    frame = pd.DataFrame({"content": _reviews(shared_data, 6), "score": [1, 2, 3, 4, 5, 5]})
    frame.to_json(tmp_path / "a.jsonl", orient="records", lines=True)
    frame.to_csv(tmp_path / "b.csv", index=False)
    for command in (["score", "--model", "m", "--input", str(tmp_path), "--output", "o"],
                    ["evaluate", "--model", "m", "--data", str(tmp_path)],
                    ["train", "--data", str(tmp_path), "--output", "o"]):
        assert build_parser().parse_args([*command, "--format", "json"]).format == "json"
    files = list_shard_files([str(tmp_path)], "json")
    assert [p.rsplit("/", 1)[-1] for p in files.paths] == ["a.jsonl"]
    assert [p.rsplit("/", 1)[-1] for p in files.skipped] == ["b.csv"]
    with pytest.raises(SystemExit):
        main(["score", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "CSV/Parquet" not in help_text
    assert "JSON lines" in help_text and "read only files of this format, chosen by extension" in help_text


@pytest.mark.parametrize("flags, message", [
    (["--val-fraction", "0.6", "--test-fraction", "0.6"],
     "error: --val-fraction 0.6 plus --test-fraction 0.6 is 1.2, which leaves no rows to train on"),
    (["--val-fraction", "0.5", "--test-fraction", "0.5"], "which leaves no rows to train on"),
    (["--val-fraction", "0"], "argument --val-fraction: must be a number above 0 and below 1"),
    (["--warmup-fraction", "1"], "argument --warmup-fraction: must be a number from 0 up to but not including 1"),
    (["--label-smoothing", "1"], "argument --label-smoothing: must be a number from 0 up to but not including 1"),
])
def test_fraction_flags_are_checked_before_ray_starts(flags, message, tmp_path, monkeypatch, capsys):
    _no_work(monkeypatch, "sentiment.train.driver")
    try:
        status = main(["train", "--data", str(tmp_path), "--output", str(tmp_path / "m"), *flags])
    except SystemExit as exit_info:  # argparse's own refusal of one flag
        status = exit_info.code
    assert status == 2
    line = _error_line(capsys)
    assert line.startswith("sentiment train: error: ") and message in line, line
