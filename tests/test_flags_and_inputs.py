"""Every flag takes effect or is refused in one line, and every input is read or refused in one
line (issue 24): each test is one case a new user hit, on small samples of the real reviews."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from sentiment.cli import build_parser, main


def _reviews(shared_data, n: int = 20, *, long: bool = False) -> list[str]:
    frame = pd.read_csv(shared_data / "labeled" / "gplay-2024.csv", usecols=["content", "score"]).dropna()
    frame = frame[frame["content"].str.len() > 300] if long else frame
    return frame["content"].head(n).tolist()


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
                                                                        s3_bucket, tmp_path, no_cluster, capsys):
    import boto3

    from sentiment.io.storage import s3_endpoint

    # score lists its inputs and checks the model before any Ray task reads the inputs.
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

    monkeypatch.setattr(jobs, "ensure_connected", unreachable)
    args = build_parser().parse_args(["-v", "predict", "--model", str(tmp_path), "good"])
    assert jobs.run_job("predict", args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == "Traceback (most recent call last):"
    assert err[-1] == "jobs/predict.py: error: cannot reach the Ray cluster at 10.0.0.1:6379"


# Case 12: flags checked late or described wrongly.
def test_evaluate_report_that_cannot_be_written_fails_before_the_evaluation(shared_data, tiny_classifier, tmp_path,
                                                                          no_cluster, capsys):
    data = tmp_path / "reviews.csv"
    pd.DataFrame({"content": _reviews(shared_data, 5), "score": [1, 2, 3, 4, 5]}).to_csv(data, index=False)
    assert main(["evaluate", "--model", tiny_classifier, "--data", str(data), "--report", "/proc/nope/r.json"]) == 2
    assert _error_line(capsys).startswith("sentiment evaluate: error: cannot write under /proc/nope: /proc is not "
                                          "a writable folder")
    assert main(["evaluate", "--model", tiny_classifier, "--data", str(data), "--plot", "/proc/nope/m.png"]) == 2
    assert _error_line(capsys).startswith("sentiment evaluate: error: cannot write under /proc/nope")
    assert main(["evaluate", "--model", tiny_classifier, "--data", str(data), "--plot", str(tmp_path / "m.jpg")]) == 2
    assert _error_line(capsys) == (f"sentiment evaluate: error: --plot {tmp_path / 'm.jpg'}: name a .png, .svg, "
                                   ".pdf file (the image format)")


def test_evaluate_data_that_matches_nothing_is_named_before_ray_starts(tiny_classifier, tmp_path, no_cluster,
                                                                       capsys):
    missing = tmp_path / "labeled-2026.csv"
    assert main(["evaluate", "--model", tiny_classifier, "--data", str(missing)]) == 2
    assert _error_line(capsys) == f"sentiment evaluate: error: input not found: {missing}"


def test_evaluate_report_replaces_an_earlier_report_only_never_the_data(shared_data, tiny_classifier, tmp_path,
                                                                       no_cluster, capsys):
    data = tmp_path / "reviews.json"  # JSON lines: an input format that a report's name can take by mistake
    pd.DataFrame({"content": _reviews(shared_data, 5), "score": [1, 2, 3, 4, 5]}).to_json(data, orient="records",
                                                                                         lines=True)
    before = data.read_bytes()
    assert main(["evaluate", "--model", tiny_classifier, "--data", str(data), "--report", str(data)]) == 2
    assert _error_line(capsys) == (f"sentiment evaluate: error: --report {data} exists and is not a report of "
                                   "`sentiment evaluate`; nothing was written: name a new file, or remove that one first")
    assert data.read_bytes() == before
    earlier = tmp_path / "report.json"
    earlier.write_text(json.dumps({"accuracy": 0.5, "macro_f1": 0.4, "confusion_matrix": []}, indent=2))
    with pytest.raises(AssertionError, match="connected to Ray"):  # past every check: the evaluation would run
        main(["evaluate", "--model", tiny_classifier, "--data", str(data), "--report", str(earlier)])


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
def test_fraction_flags_are_checked_before_ray_starts(flags, message, tmp_path, no_cluster, capsys):
    try:
        status = main(["train", "--data", str(tmp_path), "--output", str(tmp_path / "m"), *flags])
    except SystemExit as exit_info:  # argparse's own refusal of one flag
        status = exit_info.code
    assert status == 2
    line = _error_line(capsys)
    assert line.startswith("sentiment train: error: ") and message in line, line


def _labeled(shared_data, stars: tuple[int, ...] = (1, 2, 3, 4, 5)) -> pd.DataFrame:
    frame = pd.read_csv(shared_data / "labeled" / "gplay-2024.csv", usecols=["content", "score"]).dropna()
    return frame[frame["score"].isin(stars)]


# Case 4: one-class data trained with no warning; evaluate averaged in classes with no rows.
def test_a_split_without_a_class_is_warned_about_and_counted(ray_cluster, shared_data, tmp_path, caplog):
    from sentiment.data.labeled import prepare_splits

    data = tmp_path / "five-stars.csv"
    _labeled(shared_data, (5,)).sample(n=60, random_state=0).to_csv(data, index=False)
    splits = prepare_splits([str(data)], "content", "score", seed=1, val_fraction=0.2, test_fraction=0.2)
    assert splits.counts["classes"]["train"] == {"negative": 0, "neutral": 0, "positive": splits.counts["train"]}
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(w.startswith("the train split has no negative or neutral rows") for w in warnings), warnings
    assert any(w.startswith("the test split has no negative or neutral rows") for w in warnings), warnings


def test_evaluate_macro_f1_averages_over_the_classes_present_and_names_them(ray_cluster, shared_data, tiny_classifier,
                                                                           tmp_path, capsys):
    from sentiment.evaluate import EvaluateConfig, evaluate

    data = tmp_path / "three-stars.csv"
    _labeled(shared_data, (3,)).head(20).to_csv(data, index=False)
    report = evaluate(EvaluateConfig(model=tiny_classifier, data=[str(data)], precision="fp32"))
    assert report["macro_f1_classes"] == ["neutral"]
    assert report["per_class"]["neutral"]["f1"] > 0  # the untrained tiny model answers neutral
    assert report["macro_f1"] == pytest.approx(report["per_class"]["neutral"]["f1"])
    assert f"macro-F1: {report['macro_f1']:.4f} (over neutral: no negative or positive rows)" in capsys.readouterr().out


def test_evaluate_reads_files_that_name_the_text_column_differently_and_draws_its_matrix_to_s3(
        ray_cluster, shared_data, tiny_classifier, s3_bucket, tmp_path):
    from sentiment.io.storage import read_bytes

    rows = _labeled(shared_data, (1, 3, 5)).sample(n=30, random_state=1)
    data = tmp_path / "labeled"
    data.mkdir()
    rows.iloc[:20].to_csv(data / "a.csv", index=False)
    rows.iloc[20:].rename(columns={"content": "Review Text"}).to_parquet(data / "b.parquet")
    report = tmp_path / "report.json"
    assert main(["evaluate", "--model", tiny_classifier, "--data", str(data), "--text-column", "content",
                 "Review Text", "--report", str(report), "--precision", "fp32", "--plot", f"{s3_bucket}/m.png"]) == 0
    assert json.loads(report.read_text())["n"] == 30
    assert read_bytes(f"{s3_bucket}/m.png").startswith(b"\x89PNG")


def test_evaluate_by_a_column_scores_each_value_apart_in_the_driver_and_in_an_actor(
        ray_cluster, shared_data, tiny_classifier, tmp_path, monkeypatch, capsys):
    import sentiment.model.labeling
    from sentiment.errors import InputError
    from sentiment.evaluate import EvaluateConfig, evaluate

    rows = pd.read_csv(shared_data / "labeled" / "gplay-2024.csv", usecols=["content", "score", "appId"]).dropna()
    rows = rows.sample(n=60, random_state=2)
    data = tmp_path / "labeled"
    data.mkdir()
    rows.iloc[:40].to_csv(data / "a.csv", index=False)
    rows.iloc[40:].to_parquet(data / "b.parquet")
    config = EvaluateConfig(model=tiny_classifier, data=[str(data)], by="appId", precision="fp32",
                            plot=str(tmp_path / "by.png"))
    report = evaluate(config)
    groups = report["by"]["groups"]
    assert report["by"]["column"] == "appId" and set(groups) == set(rows["appId"])
    assert [g["n"] for g in groups.values()] == sorted(rows["appId"].value_counts().tolist(), reverse=True)
    # The groups partition the rows: their accuracies, weighted by rows, give the overall one.
    assert sum(g["accuracy"] * g["n"] for g in groups.values()) == pytest.approx(report["accuracy"] * report["n"])
    assert sum(map(sum, (cell for g in groups.values() for cell in g["confusion_matrix"]))) == report["n"] == 60
    printed = capsys.readouterr().out
    assert "by appId:" in printed and "confusion matrix, calibration and accuracy by appId drawn to" in printed
    assert (tmp_path / "by.png").read_bytes().startswith(b"\x89PNG")
    # Calibration over the same rows: every row in one bin of confidence, the printed line its summary.
    calibrated = report["calibration"]
    assert sum(b["rows"] for b in calibrated["bins"]) == 60
    assert sum(b["rows"] * b["accuracy"] for b in calibrated["bins"]) == pytest.approx(report["accuracy"] * 60)
    assert all(1 / 3 - 1e-6 <= b["mean_confidence"] <= 1 for b in calibrated["bins"])
    assert f"expected calibration error {calibrated['expected_calibration_error']:.3f}" in printed

    monkeypatch.setattr(sentiment.model.labeling, "IN_DRIVER_MAX_ROWS", 0)  # the same through a Ray Data actor
    through_actor = evaluate(config)
    assert through_actor["by"]["groups"] == groups
    assert [b["rows"] for b in through_actor["calibration"]["bins"]] == [b["rows"] for b in calibrated["bins"]]
    assert through_actor["calibration"]["expected_calibration_error"] == pytest.approx(
        calibrated["expected_calibration_error"], abs=1e-4)

    rows.iloc[:5].drop(columns=["appId"]).to_csv(data / "c.csv", index=False)
    with pytest.raises(InputError, match=r"c\.csv: missing column\(s\) \['appId'\].*--by"):
        evaluate(config)


# Case 5: one byte that is not UTF-8 on stdin failed every line.
def test_predict_answers_every_stdin_line_when_one_holds_a_byte_that_is_not_utf8(shared_data, tiny_classifier,
                                                                                monkeypatch, capsys, caplog):
    import io
    import sys

    good, bad = _reviews(shared_data, 2)
    raw = good.encode() + b"\n" + b"caf\xe9 " + bad.encode() + b"\n" + b"\n"
    # As Python reads stdin in a C locale: undecodable bytes become lone surrogates.
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8", errors="surrogateescape"))
    assert main(["predict", "--model", tiny_classifier, "--json"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["text"] for r in records] == [good, "caf\ufffd " + bad, ""]
    assert [r["sentiment"] is not None for r in records] == [True, True, False]
    assert any("text(s) 2 hold bytes that are not UTF-8" in r.getMessage() for r in caplog.records)


# Case 8: UTF-16 input got a column-count error followed by raw NUL bytes.
@pytest.mark.parametrize("name", ["reviews.csv", "reviews.jsonl"])
def test_utf16_input_is_named_as_utf16_without_raw_bytes(ray_cluster, shared_data, tmp_path, name):
    from sentiment.data.labeled import read_labeled
    from sentiment.errors import InputError

    frame = _labeled(shared_data).head(8)
    text = frame.to_csv(index=False) if name.endswith(".csv") else frame.to_json(orient="records", lines=True)
    (tmp_path / name).write_bytes(text.encode("utf-16"))  # with its byte-order mark, as Excel and Notepad save
    with pytest.raises(InputError) as error:
        read_labeled([str(tmp_path / name)], "content", "score")
    message = str(error.value)
    assert message == (f"{tmp_path / name} is UTF-16 text (it starts with a UTF-16 byte-order mark); re-save it as "
                       "UTF-8, e.g. iconv -f UTF-16 -t UTF-8")


def test_parser_errors_quoting_bytes_are_escaped_and_cut_short():
    from sentiment.io.csv_check import printable

    quoted = "Expected 3 columns, got 5: \x00c\x00o\x00n\x00t\x00" + "\x00x" * 500
    shown = printable(quoted, limit=200)
    assert "\x00" not in shown and "\\x00c\\x00o" in shown
    assert shown.startswith(printable(quoted[:200], limit=200)) and shown.endswith("(836 more characters cut)")


# Case 9: an empty train split advised a larger --val-fraction.
def test_an_empty_train_split_advises_smaller_held_out_fractions(ray_cluster, shared_data, tmp_path):
    from sentiment.data.labeled import prepare_splits
    from sentiment.errors import InputError

    data = tmp_path / "few.csv"
    _labeled(shared_data).sample(n=6, random_state=0).to_csv(data, index=False)
    with pytest.raises(InputError) as error:
        prepare_splits([str(data)], "content", "score", seed=1, val_fraction=0.9, test_fraction=0.05)
    assert str(error.value) == ("the train split is empty (6 unique usable rows, of which --val-fraction 0.9 and "
                                "--test-fraction 0.05 hold out 95%); use more data or a smaller "
                                "--val-fraction/--test-fraction")


# Case 11: a symlink beside its target was read twice, every row duplicated.
def test_the_same_file_reached_twice_is_read_once_and_said(ray_cluster, shared_data, tmp_path, caplog):
    from sentiment.data.labeled import read_labeled

    folder = tmp_path / "labeled"
    folder.mkdir()
    frame = _labeled(shared_data).sample(n=30, random_state=2)
    frame.to_csv(folder / "reviews.csv", index=False)
    (folder / "reviews-latest.csv").symlink_to(folder / "reviews.csv")
    read = read_labeled([str(folder), str(folder / "reviews.csv")], "content", "score").to_pandas()
    assert len(read) == 30 and sorted(read["text"]) == sorted(frame["content"].str.strip())
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert f"reading 1 file(s) once that the inputs reach more than once (a symlink, or the same file given twice): " \
           f"{folder / 'reviews-latest.csv'} (also as {folder / 'reviews.csv'})" in warnings, warnings


# Case 3: train --output into a folder of someone else's files replaced them.
def test_train_refuses_an_output_folder_holding_files_that_are_not_ours(tmp_path, no_cluster, capsys):
    output = tmp_path / "project"
    output.mkdir()
    (output / "config.json").write_text('{"mine": true}')
    (output / "notes.md").write_text("my notes")
    assert main(["train", "--data", str(tmp_path), "--output", str(output)]) == 2
    assert _error_line(capsys) == (f"sentiment train: error: --output {output} already holds files that are not a "
                                   "model of ours (config.json, notes.md; no metrics.json); choose a new or empty "
                                   "folder, or move those files away")
    assert (output / "config.json").read_text() == '{"mine": true}' and sorted(p.name for p in output.iterdir()) == [
        "config.json", "notes.md"]


def test_a_kill_during_the_model_commit_leaves_no_folder_that_looks_complete(tmp_path):
    """The model commit (sentiment.train.output) killed after its first move, then run again.

    The committer stages files by hand (tests/hand_commit.py) and commits them through the same
    code `sentiment train` ends with, so the kill costs a second instead of a training run."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from sentiment.pause_points import PAUSE_AT_ENV, PAUSE_DIR_ENV, wait_until_reached
    from sentiment.train.output import check_output_is_ours
    from tests.hand_commit import MODEL_FILES

    output, points = tmp_path / "model", tmp_path / "points"
    points.mkdir()

    def committer(tag: str, **env) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "tests.hand_commit", "model", str(output), tag],
                                cwd=Path(__file__).resolve().parents[1], env={**os.environ, **env},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    first = committer("first")
    assert first.wait(timeout=120) == 0, first.stderr.read()
    second = committer("second", **{PAUSE_AT_ENV: "train.commit_output", PAUSE_DIR_ENV: str(points)})
    try:
        assert wait_until_reached(str(points), "train.commit_output", timeout_s=120, process=second) == [second.pid]
        os.kill(second.pid, signal.SIGKILL)  # mid-commit: one file moved in, the rest staged
        second.wait(timeout=60)
    finally:
        second.kill()
        second.communicate()
    names = {p.name for p in output.iterdir()}
    assert "metrics.json" not in names  # readers see an incomplete folder
    staged = {p.name for p in (output / "_staging").iterdir()}
    moved = {name for name in names - {"_staging", "_committing.json"} if (output / name).read_text() == "second"}
    assert len(moved) == 1 and staged | moved == set(MODEL_FILES)
    recorded = json.loads((output / "_committing.json").read_text())["files"]
    assert moved | staged | {"metrics.json"} == set(recorded)
    check_output_is_ours(str(output))  # the next run may replace what the killed one left

    third = committer("third")
    _, stderr = third.communicate(timeout=120)
    assert third.returncode == 0, stderr
    assert "holds a model commit that was interrupted" in stderr
    assert sorted(p.name for p in output.iterdir()) == sorted([*MODEL_FILES, "metrics.json"])
    assert {(output / name).read_text() for name in MODEL_FILES} == {"third"}
    assert json.loads((output / "metrics.json").read_text()) == {"tag": "third"}


def test_a_kill_while_metrics_json_is_written_leaves_the_folder_incomplete_not_a_broken_metrics_json(tmp_path):
    """The model commit killed after metrics.json's bytes are written but before they take its
    name (storage.write_bytes): no metrics.json, so the folder reads as incomplete, and the next
    commit replaces what was left."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from sentiment.pause_points import PAUSE_AT_ENV, PAUSE_DIR_ENV, wait_until_reached
    from sentiment.train.output import check_output_is_ours
    from tests.hand_commit import MODEL_FILES

    output, points, point = tmp_path / "model", tmp_path / "points", "storage.before_rename:metrics.json"
    points.mkdir()
    env = {**os.environ, PAUSE_AT_ENV: point, PAUSE_DIR_ENV: str(points)}
    killed = subprocess.Popen([sys.executable, "-m", "tests.hand_commit", "model", str(output), "first"],
                              cwd=Path(__file__).resolve().parents[1], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until_reached(str(points), point, timeout_s=120, process=killed) == [killed.pid]
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait(timeout=60)
    finally:
        killed.kill()
        killed.communicate()
    names = {p.name for p in output.iterdir()}
    partial = [name for name in names if name.startswith("metrics.json.") and name.endswith(".partial")]
    assert "metrics.json" not in names and len(partial) == 1  # the bytes, under a name no reader takes
    assert json.loads((output / partial[0]).read_text()) == {"tag": "first"}
    assert set(MODEL_FILES) <= names
    check_output_is_ours(str(output))

    again = subprocess.run([sys.executable, "-m", "tests.hand_commit", "model", str(output), "second"],
                           cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in output.iterdir()) == sorted([*MODEL_FILES, "metrics.json"])
    assert json.loads((output / "metrics.json").read_text()) == {"tag": "second"}


# Case 7: SIGINT during train ended with exit 1 and a Ray traceback. tests/train/test_resume.py sends
# Ctrl-C to a training driver mid-run: `interrupted`, exit 130, and the re-run resumes.


def test_a_train_job_on_a_cluster_of_several_nodes_names_a_laptop_path_as_local_not_as_missing(tmp_path, capsys,
                                                                                              monkeypatch):
    # as under `ray job submit`, on a cluster of two nodes
    monkeypatch.setattr("sentiment.cluster.placement.cluster_can_span_nodes", lambda: "the Ray cluster has 2 nodes")
    laptop = "/Users/someone/labeled.csv"
    assert main(["train", "--data", laptop, "--output", str(tmp_path / "model")]) == 2
    line = _error_line(capsys)
    assert f"--data {laptop}" in line and "local path(s), but the Ray cluster has 2 nodes" in line, line
    assert not (tmp_path / "model").exists()


def test_a_train_job_whose_input_does_not_exist_ends_with_exit_2_and_one_line(ray_cluster, tmp_path, capsys):
    # jobs/train.py as `ray job submit` runs it, on the session's cluster: a non-zero exit is
    # what makes the job FAILED (tests/cluster/test_jobs.py shows that on a real head node).
    import runpy

    missing = tmp_path / "no-such-reviews.csv"
    job = runpy.run_path(str(Path(__file__).resolve().parents[1] / "jobs" / "train.py"), run_name="job")
    assert job["main"](["--data", str(missing), "--output", str(tmp_path / "model")]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == f"sentiment train: error: input not found: {missing}"
    assert "Traceback" not in err and not (tmp_path / "model").exists()  # no run record left behind
