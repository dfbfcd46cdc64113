"""User mistakes `sentiment score` must answer with one clear line, and the per-batch rules for
rows without usable text. Only one of these runs the pipeline: the others fail in the checks
before it."""

from __future__ import annotations

import gzip
import json
import logging

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from sentiment.cli import main
from sentiment.model.classifier import resolve_backbone
from sentiment.score.actor import tokenize_batch
from sentiment.score.columns import ERROR_COLUMN


def _score_error(capsys, *args: str) -> str:
    assert main(["score", *args]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_a_shard_whose_text_column_is_named_differently_is_named_or_read_under_both_names(
        ray_cluster, shared_data, tmp_path, capsys, tiny_classifier):
    # The corpus as it is: 18 files call the column "Review Text", unicorn_calculator_reviews.csv "Text".
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("copper.csv", "unicorn_calculator_reviews.csv"):
        table = pacsv.read_csv(shared_data / "unlabeled" / name,
                               parse_options=pacsv.ParseOptions(newlines_in_values=True)).slice(0, 20)
        pacsv.write_csv(table, inputs / name)
    err = _score_error(capsys, "--model", tiny_classifier, "--input", str(inputs), "--output",
                       str(tmp_path / "out"), "--text-column", "Review Text")
    assert "unicorn_calculator_reviews.csv has no text column 'Review Text'" in err
    assert "its columns are: Text, Category" in err
    assert "give --text-column every name" in err
    assert "copper.csv" not in err
    assert not (tmp_path / "out").exists()

    # Both names: every row of both files scored once, the text kept under the first name.
    assert main(["score", "--model", tiny_classifier, "--input", str(inputs), "--output", str(tmp_path / "out"),
                 "--text-column", "Review Text", "Text"]) == 0
    scored = pq.read_table(tmp_path / "out", columns=["Review Text", "Category"]).to_pandas()
    assert len(scored) == 40 and "Text" not in pq.read_schema(next((tmp_path / "out").glob("*.parquet"))).names
    unicorn = pacsv.read_csv(inputs / "unicorn_calculator_reviews.csv",
                             parse_options=pacsv.ParseOptions(newlines_in_values=True))
    assert set(unicorn.column("Text").to_pylist()) <= set(scored["Review Text"])
    import json

    summary = json.loads((tmp_path / "out" / "_summary.json").read_text())
    assert summary["text_column"] == "Review Text" and summary["rows_read"] == 40
    assert summary["text_read_from"] == {str(inputs / "unicorn_calculator_reviews.csv"): "Text"}


def test_missing_default_text_column_lists_the_columns_the_file_has_before_ray_starts(no_cluster, tmp_path, capsys,
                                                                                     tiny_classifier):
    # The first file's head (a Parquet footer, a CSV's first block) is read in the driver: the
    # mistake is named in a second, not after a cluster's start (8.2 s here before, 1.2 s after).
    pq.write_table(pa.table({"body": ["fine"], "stars": [4]}), tmp_path / "a.parquet")
    err = _score_error(capsys, "--model", tiny_classifier, "--input", str(tmp_path / "a.parquet"),
                       "--output", str(tmp_path / "out"))
    assert "a.parquet has no text column 'content'; its columns are: body, stars." in err
    assert "give --text-column every name" in err
    (tmp_path / "b.csv.gz").write_bytes(gzip.compress("\ufeffbody,stars\n\"fine, really\",4\n".encode()))
    err = _score_error(capsys, "--model", tiny_classifier, "--input", str(tmp_path / "b.csv.gz"),
                       "--output", str(tmp_path / "out"), "--text-column", "text", "Text")
    assert "b.csv.gz has no text column 'text' or 'Text'; its columns are: body, stars." in err
    assert not (tmp_path / "out").exists()


def test_a_corrupt_parquet_file_is_named(ray_cluster, tmp_path, capsys, tiny_classifier):
    (tmp_path / "in").mkdir()
    pq.write_table(pa.table({"content": ["fine"]}), tmp_path / "in" / "good.parquet")
    (tmp_path / "in" / "bad.parquet").write_bytes(b"PAR1 this is not parquet")
    err = _score_error(capsys, "--model", tiny_classifier, "--input", str(tmp_path / "in"), "--output",
                       str(tmp_path / "out"))
    assert "bad.parquet is not a readable PARQUET file" in err


def test_check_runs_every_check_says_what_it_would_score_and_writes_nothing(ray_cluster, tmp_path, capsys, caplog,
                                                                            tiny_classifier):
    from sentiment.score.lock import OutputLock
    from tests.hand_commit import commit_night

    inputs = tmp_path / "in"
    inputs.mkdir()
    pacsv.write_csv(pa.table({"content": ["fine", "awful", "ok"]}), inputs / "a.csv")
    pq.write_table(pa.table({"content": ["great", "meh"]}), inputs / "b.parquet")
    (inputs / "README.md").write_text("notes")
    output = tmp_path / "out"
    commit_night(str(output), night=1, rows=4, files=1)  # last night's, which a run would replace
    before = sorted(p.name for p in output.iterdir())
    writing = OutputLock(str(output), "20261206T020000Z-0a1b2c3d")  # a run writing it right now
    writing.acquire()
    caplog.set_level(logging.INFO, logger="sentiment.score.pipeline")
    try:
        assert main(["score", "--model", tiny_classifier, "--input", str(inputs), "--output", str(output),
                     "--check"]) == 0
    finally:
        writing.release()
    plan = json.loads(capsys.readouterr().out)
    assert plan["check"] == "passed" and plan["rows"] == 5
    assert [(f["file"].rsplit("/", 1)[-1], f["rows"]) for f in plan["input_files"]] == [("a.csv", 3), ("b.parquet", 2)]
    assert [f.rsplit("/", 1)[-1] for f in plan["skipped_files"]] == ["README.md"]
    assert plan["replaces"]["rows_read"] == 4 and plan["model_actors"] == {"min": 1, "max": 1, "gpu": False}
    assert plan["being_written_by"]["attempt"] == "20261206T020000Z-0a1b2c3d"
    # Without --compare-with, tonight would be compared with the night it replaces.
    last_night = json.loads((output / "_summary.json").read_text())
    assert plan["compared_with"] == {"output": str(output), "attempt": last_night["attempt"], "rows_scored": 4}
    assert "check passed: 2 file(s), 5 rows, would be scored by" in caplog.text
    assert "replacing the night of" in caplog.text and "nothing was scored or written" in caplog.text
    assert "is being written now by attempt 20261206T020000Z-0a1b2c3d" in caplog.text
    assert sorted(p.name for p in output.iterdir()) == before  # nothing written, nothing staged
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]

    # What the checks on the workers refuse, --check refuses as a run would.
    pq.write_table(pa.table({"body": ["fine"]}), inputs / "c.parquet")
    err = _score_error(capsys, "--model", tiny_classifier, "--input", str(inputs), "--output", str(output), "--check")
    assert "c.parquet has no text column 'content'; its columns are: body" in err


def test_a_folder_that_is_not_a_model_says_so(no_cluster, tmp_path, capsys):
    pq.write_table(pa.table({"content": ["fine"]}), tmp_path / "a.parquet")
    (tmp_path / "model").mkdir()
    err = _score_error(capsys, "--model", str(tmp_path / "model"), "--input", str(tmp_path / "a.parquet"),
                       "--output", str(tmp_path / "out"))
    assert "is not a model folder: config.json is missing" in err


def test_unreachable_object_storage_names_endpoint_and_bucket(tmp_path, capsys, monkeypatch, tiny_classifier):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    err = _score_error(capsys, "--model", tiny_classifier, "--input", "s3://nightly-reviews/2026-11-26/",
                       "--output", str(tmp_path / "out"))
    assert f"http://127.0.0.1:{port}" in err and "bucket 'nightly-reviews'" in err


def test_an_input_path_that_matches_nothing_is_named(no_cluster, tmp_path, capsys, tiny_classifier):
    err = _score_error(capsys, "--model", tiny_classifier, "--input", str(tmp_path / "reviews-2026-12-06.parquet"),
                       "--output", str(tmp_path / "out"))
    assert err.strip().splitlines()[-1] == f"sentiment score: error: input not found: {tmp_path}/reviews-2026-12-06.parquet"
    assert not (tmp_path / "out").exists()
    err = _score_error(capsys, "--model", tiny_classifier, "--input", str(tmp_path / "2026-12-06" / "*.parquet"),
                       "--output", str(tmp_path / "out"))
    assert f"files found in {tmp_path}/2026-12-06/*.parquet" in err  # a glob: no data file matched it


def test_a_job_on_a_cluster_of_several_nodes_names_a_laptop_path_as_local_not_as_missing(tmp_path, capsys, monkeypatch,
                                                                                        tiny_classifier):
    # `ray job submit` from a laptop with the laptop's own path: on the cluster the job joins,
    # the path is judged against the nodes before it is listed (where it does not exist).
    monkeypatch.setattr("sentiment.cluster.placement.cluster_can_span_nodes", lambda: "the Ray cluster has 2 nodes")
    laptop = "/Users/someone/reviews-2026-12-06.csv"
    err = _score_error(capsys, "--model", tiny_classifier, "--input", laptop, "--output", str(tmp_path / "out"))
    assert f"--input {laptop}" in err and "local path(s), but the Ray cluster has 2 nodes" in err, err
    assert "input not found" not in err


def test_output_folder_with_files_score_did_not_write_is_refused(no_cluster, tmp_path, capsys, tiny_classifier):
    pq.write_table(pa.table({"content": ["fine"]}), tmp_path / "a.parquet")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("keep me")
    err = _score_error(capsys, "--model", tiny_classifier, "--input", str(tmp_path / "a.parquet"),
                       "--output", str(tmp_path / "out"))
    assert "notes.txt" in err and (tmp_path / "out" / "notes.txt").exists()


def test_output_inside_the_input_folder_is_refused(no_cluster, tmp_path, capsys, tiny_classifier):
    (tmp_path / "in" / "scored").mkdir(parents=True)
    pq.write_table(pa.table({"content": ["fine"]}), tmp_path / "in" / "scored" / "a.parquet")
    err = _score_error(capsys, "--model", tiny_classifier, "--input", str(tmp_path / "in"),
                       "--output", str(tmp_path / "in" / "scored"))
    assert "contains input file" in err


def test_an_input_column_named_like_an_output_column_is_refused(ray_cluster, tmp_path, capsys, tiny_classifier):
    pq.write_table(pa.table({"content": ["fine"], "sentiment": ["positive"]}), tmp_path / "a.parquet")
    err = _score_error(capsys, "--model", tiny_classifier, "--input", str(tmp_path / "a.parquet"),
                       "--output", str(tmp_path / "out"))
    assert "already has output column(s) sentiment" in err


@pytest.mark.parametrize("bad", ["0", "3,2", "a", "1,2,3"])
def test_concurrency_must_be_n_or_min_max(bad, capsys):
    with pytest.raises(SystemExit):
        main(["score", "--model", "m", "--input", "i", "--output", "o", "--concurrency", bad])
    assert "expected N or MIN,MAX" in capsys.readouterr().err


def _tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_backbone("minilm"))


def test_tokenize_gives_every_unusable_text_a_reason_and_keeps_the_row():
    batch = pa.table({"content": ["great app", None, "", " \t\n", "bad"], "id": [1, 2, 3, 4, 5]})
    out = tokenize_batch(batch, tokenizer=_tokenizer(), text_column="content", max_length=8, drop_text=False)
    assert out.num_rows == 5 and out["id"].to_pylist() == [1, 2, 3, 4, 5]
    assert out[ERROR_COLUMN].to_pylist() == [None, "text is null", "text is empty or whitespace",
                                             "text is empty or whitespace", None]
    ids = out["__sentiment_input_ids"].to_pylist()
    assert ids[1] is None and ids[2] is None and ids[3] is None
    assert ids[0][0] == 101 and ids[0][-1] == 102  # [CLS] ... [SEP]


def test_tokenize_marks_a_non_string_text_column_and_truncates_long_texts():
    numbers = pa.table({"content": pa.array([5, None], pa.int64())})
    out = tokenize_batch(numbers, tokenizer=_tokenizer(), text_column="content", max_length=8, drop_text=True)
    assert out[ERROR_COLUMN].to_pylist() == ["text is not a string (int64)", "text is null"]
    assert "content" not in out.column_names
    long = pa.table({"content": ["word " * 500]})
    ids = tokenize_batch(long, tokenizer=_tokenizer(), text_column="content", max_length=8,
                         drop_text=False)["__sentiment_input_ids"].to_pylist()[0]
    assert len(ids) == 8
    assert np.all(np.array(ids) > 0)


def test_a_parquet_read_asks_ray_for_one_footer_reader_per_batch_of_files_and_keeps_the_users_setting(monkeypatch):
    import os

    import ray.data

    from sentiment.io import shards

    asked = []
    monkeypatch.setattr(ray.data, "read_parquet", lambda paths, **kwargs: asked.append(
        os.environ.get(shards.FOOTER_ACTORS_ENV)))
    monkeypatch.delenv(shards.FOOTER_ACTORS_ENV, raising=False)
    for files in (1, 10, 11, 1000):
        shards.read_parquet([f"part-{i}.parquet" for i in range(files)])
    assert asked == ["1", "1", "2", "32"]  # Ray's own default is 32 for any number of files
    assert shards.FOOTER_ACTORS_ENV not in os.environ
    monkeypatch.setenv(shards.FOOTER_ACTORS_ENV, "4")
    shards.read_parquet(["part-0.parquet"])
    assert asked[-1] == "4" and os.environ[shards.FOOTER_ACTORS_ENV] == "4"
