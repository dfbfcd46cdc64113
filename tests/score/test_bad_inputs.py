"""The bad-input matrix for `sentiment score`: each damaged input gives one clear line naming the
file and the problem (exit 2, no _SUCCESS), or is scored with a per-row `error`; nothing is
lost silently. Cases already covered elsewhere are not repeated here:
missing text column, corrupt Parquet header and a folder that is not a model
(tests/score/test_inputs.py), null/empty/whitespace text (tests/score/test_inputs.py and
tests/score/test_pipeline.py), invalid training scores and empty training text (tests/data/test_labeled.py).
"""

from __future__ import annotations

import shutil

import pyarrow as pa
import pyarrow.parquet as pq

from sentiment.cli import main
from sentiment.model.classifier import DEFAULT_MAX_LENGTH, resolve_backbone
from sentiment.score.actor import tokenize_batch
from sentiment.score.columns import ERROR_COLUMN


def _score(capsys, tmp_path, model: str, inputs, *extra: str) -> tuple[int, str]:
    code = main(["score", "--model", model, "--input", str(inputs), "--output", str(tmp_path / "out"), *extra])
    err = capsys.readouterr().err
    # Ray's worker processes log their own task tracebacks to the same terminal, each line tagged
    # "(TaskName pid=N)"; what must never appear is a traceback of ours.
    assert "Traceback" not in "\n".join(line for line in err.splitlines() if " pid=" not in line), err[-3000:]
    return code, err


def _out(tmp_path) -> pa.Table:
    return pq.read_table(tmp_path / "out").sort_by("row_id")


def _latin1_csv(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "latin1.csv").write_bytes(b"row_id,content\n1,good app\n2,caf\xe9 \xff bad\n3,fine\n")
    return tmp_path / "in"


def test_non_utf8_bytes_in_a_csv_name_the_file_line_and_byte_and_write_no_marker(ray_cluster, tmp_path, capsys,
                                                                                 tiny_classifier):
    code, err = _score(capsys, tmp_path, tiny_classifier, _latin1_csv(tmp_path))
    assert code == 2
    assert "latin1.csv is not valid UTF-8 text: byte 0xe9 at line 3" in err
    assert not (tmp_path / "out" / "_SUCCESS").exists()


def test_an_unbalanced_quote_is_not_silently_merged_into_one_row(ray_cluster, tmp_path, capsys, tiny_classifier):
    # Arrow alone reads this as 2 rows, the second holding "unbalanced quote here\n3,fine\n4,ok".
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "quote.csv").write_bytes(
        b'row_id,content\n1,good app\n2,"unbalanced quote here\n3,fine\n4,ok\n')
    code, err = _score(capsys, tmp_path, tiny_classifier, tmp_path / "in")
    assert code == 2
    assert "quote.csv is malformed CSV in the row starting at line 3" in err and "never closed" in err
    assert not (tmp_path / "out").exists() or not (tmp_path / "out" / "_SUCCESS").exists()


def test_a_bad_row_far_past_the_header_is_caught_before_scoring(ray_cluster, tmp_path, capsys, tiny_classifier):
    # Past Arrow's first block, where the header check cannot see it; in the pipeline it would be an
    # opaque Ray task failure after the work before it was spent.
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "late.csv").write_bytes(b"row_id,content\n" + b"1,fine review text\n" * 120_000
                                               + b"2,one,extra\n3,ok\n")
    code, err = _score(capsys, tmp_path, tiny_classifier, tmp_path / "in")
    assert code == 2
    assert "late.csv is malformed CSV: the row starting at line 120002 has 3 fields, the header has 2" in err
    assert not (tmp_path / "out" / "_SUCCESS").exists()


def test_a_stray_quote_that_breaks_the_columns_names_the_file_and_line(ray_cluster, tmp_path, capsys, tiny_classifier):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "broken.csv").write_bytes(b'row_id,content\n1,good app\n3,"bad"x,\n4,ok\n')
    code, err = _score(capsys, tmp_path, tiny_classifier, tmp_path / "in")
    assert code == 2
    # The strict reader reads every CSV in full first, so it names the row where the quote broke.
    assert "broken.csv is malformed CSV in the row starting at line 3" in err


def test_one_night_of_awkward_but_valid_files_keeps_every_row(ray_cluster, tmp_path, capsys, tiny_classifier):
    """One run over the awkward files a night can hold, each scored or kept with its error (one
    run, not one per file: each run starts a model actor, about 10 s on 2 cores):
    - a CSV whose header starts with a UTF-8 byte order mark, which must not hide the text column;
    - a 2 MB review, scored truncated to the token limit;
    - shards with different column sets, where a column one file lacks is null, not a lost row.
    (A text column of numbers is the next test's own night: beside files whose text column holds
    text, the column's types disagree, and it is read as text with a warning, disagreeing_columns.)"""
    from transformers import AutoTokenizer

    huge = ("this app keeps crashing whenever I open it " * 50_000)[: 2 * 1024 * 1024]
    assert len(huge.encode()) == 2 * 1024 * 1024
    tokenizer = AutoTokenizer.from_pretrained(resolve_backbone("minilm"))
    ids = tokenize_batch(pa.table({"content": [huge]}), tokenizer=tokenizer, text_column="content",
                         max_length=DEFAULT_MAX_LENGTH, drop_text=True)["__sentiment_input_ids"].to_pylist()[0]
    assert DEFAULT_MAX_LENGTH == 160 and len(ids) == 160
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "bom.csv").write_bytes("\ufeffcontent,row_id\ngreat app,0\nterrible,1\n".encode())
    pq.write_table(pa.table({"row_id": [2, 3], "content": [huge, "short and sweet"]}), inputs / "big.parquet")
    pq.write_table(pa.table({"row_id": [4, 5], "content": ["great", "awful"], "app": ["a", "a"]}), inputs / "a.parquet")
    pq.write_table(pa.table({"row_id": [6, 7], "content": ["fine", "meh"]}), inputs / "b.parquet")
    code, err = _score(capsys, tmp_path, tiny_classifier, inputs)
    assert code == 0, err
    out = _out(tmp_path)
    assert out["row_id"].to_pylist() == list(range(8))
    assert out[ERROR_COLUMN].to_pylist() == [None] * 8
    assert all(label is not None for label in out["sentiment"].to_pylist())
    assert out["content"].to_pylist()[:2] == ["great app", "terrible"]
    assert out["content"].to_pylist()[3] == "short and sweet" and out["content"].to_pylist()[2] == huge
    assert out["app"].to_pylist() == [None] * 4 + ["a", "a", None, None]


def test_a_numeric_text_column_keeps_its_rows_with_an_error_beside_files_of_text(ray_cluster, tmp_path, capsys,
                                                                                   tiny_classifier, caplog):
    """A Parquet file whose text column is numbers, in one night with a file of text. Until
    2026-12-06 the column's types differed, so it was read as strings and the numbers were scored
    as reviews ("5"); alone, the same file's rows were kept with an error. Now both ways give the
    error, and the file is named before scoring."""
    import logging

    inputs = tmp_path / "in"
    inputs.mkdir()
    pq.write_table(pa.table({"row_id": [0, 1, 2], "content": pa.array([5, None, 3], pa.int64())}),
                   inputs / "numbers.parquet")
    pq.write_table(pa.table({"row_id": [3, 4], "content": ["great app", "it crashes"]}), inputs / "words.parquet")
    (inputs / "more.jsonl").write_text('{"row_id": 5, "content": 7}\n')
    caplog.set_level(logging.WARNING, logger="sentiment.io.shards")
    code, err = _score(capsys, tmp_path, tiny_classifier, inputs, "--max-error-fraction", "1")
    assert code == 0, err
    out = _out(tmp_path)
    assert out["row_id"].to_pylist() == [0, 1, 2, 3, 4, 5]
    assert out[ERROR_COLUMN].to_pylist() == ["text is not a string (int64)", "text is null",
                                             "text is not a string (int64)", None, None,
                                             "text is not a string (int64)"]
    labels = out["sentiment"].to_pylist()
    assert labels[:3] == [None, None, None] and None not in labels[3:5] and labels[5] is None
    assert "__sentiment_text_type" not in out.column_names
    assert "the text column holds no text in 2 file(s) (int64 in" in caplog.text
    assert "numbers.parquet" in caplog.text and "more.jsonl" in caplog.text
    assert "has different types" not in caplog.text


def test_an_empty_input_folder_says_no_files_were_found(ray_cluster, tmp_path, capsys, tiny_classifier):
    (tmp_path / "in").mkdir()
    code, err = _score(capsys, tmp_path, tiny_classifier, tmp_path / "in")
    assert code == 2
    assert "error: no .csv/.csv.gz/.csv.zst/.csv.bz2/.parquet/.pq/.jsonl/.json/.jsonl.gz" in err
    assert f"files found in {tmp_path / 'in'}" in err
    assert not (tmp_path / "out").exists()


def test_a_truncated_parquet_file_is_named(ray_cluster, tmp_path, capsys, tiny_classifier):
    (tmp_path / "in").mkdir()
    pq.write_table(pa.table({"content": ["fine"] * 1000, "row_id": range(1000)}), tmp_path / "whole.parquet")
    data = (tmp_path / "whole.parquet").read_bytes()
    (tmp_path / "in" / "cut.parquet").write_bytes(data[: len(data) // 2])  # an upload cut short
    pq.write_table(pa.table({"content": ["good"]}), tmp_path / "in" / "good.parquet")
    code, err = _score(capsys, tmp_path, tiny_classifier, tmp_path / "in")
    assert code == 2
    assert "cut.parquet is not a readable PARQUET file" in err and "good.parquet" not in err


def test_a_model_folder_missing_its_weights_says_so(ray_cluster, tmp_path, capsys, tiny_classifier):
    shutil.copytree(tiny_classifier, tmp_path / "model")
    (tmp_path / "model" / "model.safetensors").unlink()
    pq.write_table(pa.table({"content": ["fine"]}), tmp_path / "a.parquet")
    code, err = _score(capsys, tmp_path, str(tmp_path / "model"), tmp_path / "a.parquet")
    assert code == 2
    assert f"{tmp_path / 'model'} is not a usable model: model.safetensors (the weights) is missing" in err


def test_pickled_weights_are_never_loaded(ray_cluster, tmp_path, capsys, tiny_classifier):
    import torch

    from sentiment.model.classifier import load_classifier

    shutil.copytree(tiny_classifier, tmp_path / "model")
    model, _ = load_classifier(tiny_classifier)
    (tmp_path / "model" / "model.safetensors").unlink()
    torch.save(model.state_dict(), tmp_path / "model" / "pytorch_model.bin")  # a pickle: refused
    pq.write_table(pa.table({"content": ["fine"]}), tmp_path / "a.parquet")
    code, err = _score(capsys, tmp_path, str(tmp_path / "model"), tmp_path / "a.parquet")
    assert code == 2 and "model.safetensors (the weights) is missing" in err
