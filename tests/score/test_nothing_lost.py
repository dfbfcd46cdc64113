"""Issue 12: every input file read or named, every row scored or counted, a failed re-run keeps
the last good night. Real files (real reviews), a real local Ray cluster, the tiny classifier;
the S3 committer test is in tests/score/test_faults.py."""

from __future__ import annotations

import bz2
import gzip
import json

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from sentiment.cli import build_parser, main
from tests.hand_commit import commit_night
from sentiment.score.columns import ERROR_COLUMN
from tests.helpers import UNLABELED_TEXT, logged_warnings, unlabeled_reviews

TEXT = "content"


def _reviews(shared_data, n: int, start: int = 0) -> pa.Table:
    """n real reviews with row_ids start..start+n-1."""
    texts = unlabeled_reviews(shared_data, "lego.csv", start + n)[UNLABELED_TEXT].slice(start, n).to_pylist()
    return pa.table({"row_id": pa.array(range(start, start + n), pa.int64()), TEXT: pa.array(texts, pa.string())})


def _csv_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pacsv.write_csv(table, sink)
    return sink.getvalue().to_pybytes()


def _score(capsys, *args: str) -> tuple[int, str]:
    """Exit status and stderr of `sentiment score`; a failure must end in our one line, no traceback
    of ours (Ray's workers log their own task failures to the same terminal)."""
    code = main(["score", *args])
    err = capsys.readouterr().err
    if code:
        assert err.strip().splitlines()[-1].startswith("sentiment score: error: "), err[-3000:]
    # Ray's worker processes log their own task tracebacks here too, each line tagged "(Task pid=N)".
    assert "Traceback" not in "\n".join(line for line in err.splitlines() if " pid=" not in line), err[-3000:]
    return code, err


def _read_json(path) -> dict:
    return json.loads(path.read_text())


# One folder holds every kind of valid input the tests below are about, and is scored once: each
# scoring run costs a Ray Data pipeline and a model actor (about 10 s on 2 cores, 3x that beside the
# rest of the suite), and what each test checks is its own files' rows in the one output. Row ids:
KINDS = ["a.csv", "b.csv.gz", "c.CSV", "d.jsonl", "e.csv.bz2", "f.json", "g.csv.zst", "h.PQ"]  # 0-399, 50 each
TEXT_ENCODINGS_START = 400  # category.parquet 400-429, large.parquet 430-459
DIFFERING_TYPES_START = 460  # ints.parquet 460-461, strings.parquet 462-463, more.csv 464-465
ISSUE_22_START = 500  # huge.csv 500-529 (row 500 is 2.1 MB), B.CSV.GZ, c.jsonl.gz, d.json.gz: 530-619
NOT_DATA = ["README", "notes.txt", "CHANGES.md", "_SUCCESS", ".DS_Store"]


@pytest.fixture(scope="module")
def mixed_folder(shared_data, ray_cluster, tiny_classifier, tmp_path_factory):
    """The folder, scored once in-process: (output folder, exit code, WARNING log text,
    {file name: its table as written}, the 2.1 MB review)."""
    tmp = tmp_path_factory.mktemp("mixed")
    folder = tmp / "in"
    folder.mkdir()
    written = {}

    # Every data kind the reader knows, 50 rows each.
    parts = {name: _reviews(shared_data, 50, start=50 * i) for i, name in enumerate(KINDS)}
    (folder / "a.csv").write_bytes(_csv_bytes(parts["a.csv"]))
    (folder / "b.csv.gz").write_bytes(gzip.compress(_csv_bytes(parts["b.csv.gz"])))
    (folder / "c.CSV").write_bytes(_csv_bytes(parts["c.CSV"]))
    (folder / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in parts["d.jsonl"].to_pylist()))
    (folder / "e.csv.bz2").write_bytes(bz2.compress(_csv_bytes(parts["e.csv.bz2"])))
    (folder / "f.json").write_text(json.dumps(parts["f.json"].to_pylist()))
    with pa.CompressedOutputStream(str(folder / "g.csv.zst"), "zstd") as out:
        out.write(_csv_bytes(parts["g.csv.zst"]))
    pq.write_table(parts["h.PQ"], folder / "h.PQ")
    written.update(parts)
    for note in NOT_DATA:
        (folder / note).write_text("not data")

    # Two more text encodings: what pandas writes for a `category` column, and large_string.
    reviews = _reviews(shared_data, 60, start=TEXT_ENCODINGS_START)
    frame = reviews.slice(0, 30).to_pandas()
    frame[TEXT] = frame[TEXT].astype("category")
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), folder / "category.parquet")
    large = reviews.slice(30, 30)
    pq.write_table(large.set_column(1, TEXT, large[TEXT].cast(pa.large_string())), folder / "large.parquet")
    assert pa.types.is_dictionary(pq.read_schema(folder / "category.parquet").field(TEXT).type)
    written.update({"category.parquet": reviews.slice(0, 30), "large.parquet": large})

    # Another column whose type differs across files.
    reviews = _reviews(shared_data, 6, start=DIFFERING_TYPES_START)
    written["ints.parquet"] = reviews.slice(0, 2).append_column("app_id", pa.array([7, 8], pa.int64()))
    written["strings.parquet"] = reviews.slice(2, 2).append_column("app_id", pa.array(["x9", "y10"]))
    written["more.csv"] = reviews.slice(4, 2).append_column("app_id", pa.array([11, 12], pa.int64()))
    pq.write_table(written["ints.parquet"], folder / "ints.parquet")
    pq.write_table(written["strings.parquet"], folder / "strings.parquet")
    (folder / "more.csv").write_bytes(_csv_bytes(written["more.csv"]))

    # Issue 22: each of these valid files was refused (Python csv's field limit, Arrow's
    # lower-case-only codec detection, .jsonl.gz not listed as data).
    first = _reviews(shared_data, 30, start=ISSUE_22_START)
    texts = first[TEXT].to_pylist()
    huge = (" ".join(texts) + " ") * (2_100_000 // len(" ".join(texts)) + 1)
    texts[0] = huge[:2_100_000]  # one real-text review of 2.1 MB
    written["huge.csv"] = first.set_column(1, TEXT, pa.array(texts, pa.string()))
    (folder / "huge.csv").write_bytes(_csv_bytes(written["huge.csv"]))
    written["B.CSV.GZ"] = _reviews(shared_data, 30, start=ISSUE_22_START + 30)
    (folder / "B.CSV.GZ").write_bytes(gzip.compress(_csv_bytes(written["B.CSV.GZ"])))
    for name, start in (("c.jsonl.gz", ISSUE_22_START + 60), ("d.json.gz", ISSUE_22_START + 90)):
        written[name] = _reviews(shared_data, 30, start=start)
        lines = "".join(json.dumps(row) + "\n" for row in written[name].to_pylist())
        (folder / name).write_bytes(gzip.compress(lines.encode()))

    with logged_warnings() as warnings:
        code = main(["score", "--model", tiny_classifier, "--input", str(folder), "--output", str(tmp / "out")])
    return tmp / "out", code, "\n".join(warnings), written, texts[0]


def _rows_of(mixed_folder, *files: str) -> pa.Table:
    """The scored rows that came from these input files, by row id."""
    output, code, _, written, _ = mixed_folder
    assert code == 0
    ids = set(pa.concat_tables([written[f].select(["row_id"]) for f in files])["row_id"].to_pylist())
    out = pq.read_table(output)
    return out.filter(pc.is_in(out["row_id"], pa.array(sorted(ids), pa.int64()))).sort_by("row_id")


def test_every_data_file_in_a_folder_is_scored_and_listed_with_its_rows(mixed_folder):
    output, code, _, written, _ = mixed_folder
    assert code == 0
    out = pq.read_table(output)
    assert sorted(out["row_id"].to_pylist()) == sorted(i for t in written.values() for i in t["row_id"].to_pylist())
    assert out[ERROR_COLUMN].null_count == out.num_rows  # every row scored, the 2 MB one included
    assert _rows_of(mixed_folder, *KINDS)["row_id"].to_pylist() == list(range(400))
    summary, marker = _read_json(output / "_summary.json"), _read_json(output / "_SUCCESS")
    listed = {f["file"].rsplit("/", 1)[-1]: f["rows"] for f in summary["input_files"]}
    assert listed == {name: table.num_rows for name, table in written.items()}
    assert {name: listed[name] for name in KINDS} == {name: 50 for name in KINDS}
    assert marker["inputs"] == summary["input_files"]
    skipped = sorted(u.rsplit("/", 1)[-1] for u in summary["skipped_files"])
    assert skipped == sorted(NOT_DATA)
    assert marker["skipped_inputs"] == summary["skipped_files"]


def test_a_file_of_no_known_kind_in_the_input_folder_is_named(ray_cluster, tmp_path, capsys, tiny_classifier):
    (tmp_path / "in").mkdir()
    pq.write_table(pa.table({TEXT: ["fine"]}), tmp_path / "in" / "a.parquet")
    (tmp_path / "in" / "reviews.xlsx").write_bytes(b"PK\x03\x04")
    code, err = _score(capsys, "--model", tiny_classifier, "--input", str(tmp_path / "in"),
                       "--output", str(tmp_path / "out"))
    assert code == 2 and "reviews.xlsx" in err and ".csv.gz" in err
    assert not (tmp_path / "out").exists()


def test_a_compressed_csv_gets_the_strict_check_too(ray_cluster, tmp_path, capsys, tiny_classifier):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "quote.csv.gz").write_bytes(
        gzip.compress(b'row_id,content\n1,good app\n2,"unbalanced quote here\n3,fine\n4,ok\n'))
    code, err = _score(capsys, "--model", tiny_classifier, "--input", str(tmp_path / "in"),
                       "--output", str(tmp_path / "out"))
    assert code == 2
    assert "quote.csv.gz is malformed CSV in the row starting at line 3" in err and "never closed" in err


def test_dictionary_and_large_string_text_columns_are_scored(mixed_folder):
    out = _rows_of(mixed_folder, "category.parquet", "large.parquet")
    assert out["row_id"].to_pylist() == list(range(TEXT_ENCODINGS_START, TEXT_ENCODINGS_START + 60))
    assert out[ERROR_COLUMN].null_count == 60, out[ERROR_COLUMN].drop_null().to_pylist()[:3]
    assert out["sentiment"].null_count == 0
    # Text in another encoding is still text: no warning (the demo's CSV and Parquet shards, string
    # and large_string, printed one on every run).
    assert "has different types" in mixed_folder[2] and f"{TEXT!r} has different types" not in mixed_folder[2]


def test_tokenize_reads_string_view_and_dictionary_text_as_text():
    from transformers import AutoTokenizer

    from sentiment.model.classifier import resolve_backbone
    from sentiment.score.actor import tokenize_batch

    tokenizer = AutoTokenizer.from_pretrained(resolve_backbone("minilm"))
    for text in (pa.array(["great app", None]).cast(pa.string_view()),
                 pa.array(["great app", None]).dictionary_encode(),
                 pa.array(["great app", None], pa.large_string())):
        out = tokenize_batch(pa.table({TEXT: text}), tokenizer=tokenizer, text_column=TEXT, max_length=8,
                             drop_text=False)
        assert out[ERROR_COLUMN].to_pylist() == [None, "text is null"], text.type


def test_other_columns_whose_types_differ_across_files_are_read_as_strings(mixed_folder):
    out = _rows_of(mixed_folder, "ints.parquet", "strings.parquet", "more.csv")
    assert out["app_id"].to_pylist() == ["7", "8", "x9", "y10", "11", "12"]
    warnings = mixed_folder[2]
    assert "'app_id' has different types" in warnings and "ints.parquet" in warnings


def test_more_errored_rows_than_allowed_fail_naming_the_commonest_error_and_keep_the_previous_output(
        ray_cluster, tmp_path, capsys, tiny_classifier):
    commit_night(str(tmp_path / "out"), 0, rows=10, files=1)  # yesterday's night, through the commit code
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    texts = [None] * 6 + ["", "  "] + ["fine", "bad"]
    pq.write_table(pa.table({"row_id": range(10), TEXT: pa.array(texts, pa.string())}), tmp_path / "bad.parquet")
    code, err = _score(capsys, "--model", tiny_classifier, "--input", str(tmp_path / "bad.parquet"),
                       "--output", str(tmp_path / "out"), "--max-error-fraction", "0.5")
    assert code == 2
    assert "8 of 10 rows (80%) could not be scored" in err and "'text is null' (6 rows)" in err
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == before  # yesterday's night stands
    assert (tmp_path / "_out.staging").is_dir()
    # Below the limit the run succeeds, the staging folder is gone, and the summary counts the errors.
    code, err = _score(capsys, "--model", tiny_classifier, "--input", str(tmp_path / "bad.parquet"),
                       "--output", str(tmp_path / "out"), "--max-error-fraction", "0.9")
    assert code == 0, err
    summary = _read_json(tmp_path / "out" / "_summary.json")
    assert summary["rows_errored"] == 8 and summary["errors"] == {"text is null": 6, "text is empty or whitespace": 2}
    assert not (tmp_path / "_out.staging").exists()


def test_a_failed_rerun_leaves_the_previous_complete_output_untouched(shared_data, ray_cluster, tmp_path, capsys,
                                                                      tiny_classifier):
    (tmp_path / "in").mkdir()
    pq.write_table(_reviews(shared_data, 20), tmp_path / "in" / "a.parquet")
    commit_night(str(tmp_path / "out"), 0, rows=20, files=1)  # yesterday's night, through the commit code
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    # The next night's shard is damaged past its footer: only the pipeline can find out.
    pq.write_table(_reviews(shared_data, 2000), tmp_path / "whole.parquet", compression="none",
                   data_page_size=1 << 12)
    data = bytearray((tmp_path / "whole.parquet").read_bytes())
    data[len(data) // 2: len(data) // 2 + 4096] = b"\xff" * 4096
    (tmp_path / "in" / "b.parquet").write_bytes(bytes(data))
    code, err = _score(capsys, "--model", tiny_classifier, "--input", str(tmp_path / "in"),
                       "--output", str(tmp_path / "out"))
    assert code == 2, err
    assert "b.parquet could not be read" in err.strip().splitlines()[-1], err[-3000:]
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == before


def test_an_output_folder_inside_the_input_folder_is_refused_up_front(ray_cluster, tmp_path, capsys, tiny_classifier):
    (tmp_path / "in").mkdir()
    pq.write_table(pa.table({TEXT: ["fine"]}), tmp_path / "in" / "a.parquet")
    for output, given in ((tmp_path / "in" / "scored", str(tmp_path / "in")),
                          (tmp_path / "in" / "scored", str(tmp_path / "in" / "*.parquet"))):
        code, err = _score(capsys, "--model", tiny_classifier, "--input", given, "--output", str(output))
        assert code == 2 and "is inside the input folder" in err, err
        assert not output.exists()


def test_a_csv_with_a_repeated_column_name_is_named(ray_cluster, tmp_path, capsys, tiny_classifier):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "dup.csv").write_text("content,stars,stars\ngood,5,4\n")
    code, err = _score(capsys, "--model", tiny_classifier, "--input", str(tmp_path / "in"),
                       "--output", str(tmp_path / "out"))
    assert code == 2 and "dup.csv has the column name(s) stars more than once" in err


def test_an_output_that_cannot_be_written_is_one_line(tmp_path, capsys, tiny_classifier):
    pq.write_table(pa.table({TEXT: ["fine"]}), tmp_path / "a.parquet")
    code, err = _score(capsys, "--model", tiny_classifier, "--input", str(tmp_path / "a.parquet"),
                       "--output", "/proc/x")
    assert code == 2 and "cannot write under /proc/x" in err


@pytest.mark.parametrize("command, flag, value", [
    ("score", "--batch-size", "0"), ("score", "--max-length", "0"), ("score", "--rows-per-file", "-1"),
    ("score", "--max-error-fraction", "1.5"), ("score", "--cpus-per-actor", "0"), ("score", "--progress-every", "-1"),
    ("train", "--batch-size", "0"), ("train", "--num-workers", "0"), ("train", "--lr", "0"),
    ("evaluate", "--max-length", "0"), ("predict", "--batch-size", "x")])
def test_numeric_flags_are_checked_when_parsed(command, flag, value, capsys):
    required = {"score": ["--model", "m", "--input", "i", "--output", "o"], "train": ["--data", "d", "--output", "o"],
                "evaluate": ["--model", "m", "--data", "d"], "predict": ["--model", "m"]}[command]
    with pytest.raises(SystemExit) as exit_:
        main([command, *required, flag, value])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and f"argument {flag}" in err and "Traceback" not in err


def test_verbose_works_before_and_after_the_command():
    parser = build_parser()
    common = ["--model", "m", "--input", "i", "--output", "o"]
    assert parser.parse_args(["-v", "score", *common]).verbose
    assert parser.parse_args(["score", *common, "-v"]).verbose
    assert not parser.parse_args(["score", *common]).verbose


def test_evaluate_counts_scores_like_5_stars_as_invalid_and_fails_clearly_when_nothing_is_left(
        shared_data, ray_cluster, tmp_path, capsys, tiny_classifier):
    reviews = _reviews(shared_data, 6)
    table = reviews.append_column("score", pa.array(["5 stars", "1 star", "4", "2", "five", "3"]))
    pacsv.write_csv(table, tmp_path / "some.csv")
    # Beside it, a file whose text column holds numbers: its rows are counted apart, not judged as "4".
    pq.write_table(pa.table({"content": [4, 2], "score": [4, 2]}), tmp_path / "numbers.parquet")
    report = tmp_path / "report.json"
    assert main(["evaluate", "--model", tiny_classifier, "--data", str(tmp_path / "some.csv"),
                 str(tmp_path / "numbers.parquet"), "--report", str(report)]) == 0
    assert _read_json(report)["skipped"] == {"empty_text": 0, "invalid_score": 3, "text_not_string": 2}
    assert _read_json(report)["n"] == 3
    capsys.readouterr()
    pacsv.write_csv(reviews.append_column("score", pa.array(["5 stars"] * 6)), tmp_path / "none.csv")
    assert main(["evaluate", "--model", tiny_classifier, "--data", str(tmp_path / "none.csv")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "no rows of" in err and "6 with a score that is not a whole number 1-5" in err


def test_predict_on_stdin_answers_every_line_empty_ones_with_an_error(tiny_classifier):
    import os
    import subprocess
    import sys

    lines = ["The app crashes every time I open it", "", "   ", "Love it, works great"]
    done = subprocess.run([sys.executable, "-m", "sentiment", "predict", "--model", tiny_classifier, "--json"],
                          input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=300,
                          env={**os.environ, "RAY_ADDRESS": "local"})
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["text"] for r in records] == lines
    assert [r["error"] for r in records] == [None, "text is empty or whitespace", "text is empty or whitespace", None]
    assert records[1]["sentiment"] is None and records[1]["prob_positive"] is None
    assert records[0]["sentiment"] in ("negative", "neutral", "positive")
    assert abs(sum(records[3][k] for k in ("prob_negative", "prob_neutral", "prob_positive")) - 1) < 1e-5


def test_pipeline_failures_are_told_apart_by_type_not_by_text(tmp_path):
    import errno

    from ray.exceptions import RayTaskError

    from sentiment.errors import InputError, StorageError
    from sentiment.score.failures import pipeline_failure

    files = [str(tmp_path / "a.parquet")]

    def remote(cause: BaseException) -> BaseException:
        return RayTaskError("ReadFiles", "Traceback ...", cause).as_instanceof_cause()

    # An outage whose text happens to contain an input path is still an outage, not a corrupt input.
    outage = remote(OSError(errno.ECONNRESET, f"connection reset while reading {tmp_path / 'a.parquet'}"))
    assert isinstance(pipeline_failure(outage, files, files, str(tmp_path / "out")), StorageError)
    damaged = remote(pa.ArrowInvalid(f"Couldn't deserialize thrift in {tmp_path / 'a.parquet'}"))
    failure = pipeline_failure(damaged, files, files, str(tmp_path / "out"))
    assert isinstance(failure, InputError) and str(failure).startswith(f"{tmp_path / 'a.parquet'} could not be read")
    assert pipeline_failure(remote(KeyError("label")), files, files, str(tmp_path / "out")) is None  # a bug keeps its traceback


def test_a_2_mb_review_an_upper_case_csv_gz_and_compressed_json_lines_are_all_scored(mixed_folder):
    output, _, _, written, huge = mixed_folder
    out = _rows_of(mixed_folder, "huge.csv", "B.CSV.GZ", "c.jsonl.gz", "d.json.gz")
    assert out["row_id"].to_pylist() == list(range(ISSUE_22_START, ISSUE_22_START + 120))
    assert out[ERROR_COLUMN].null_count == 120  # every row scored, the 2 MB one included
    by_id = dict(zip(out["row_id"].to_pylist(), out[TEXT].to_pylist()))
    assert by_id[ISSUE_22_START] == huge and len(huge) == 2_100_000
    assert by_id[ISSUE_22_START + 30] == written["B.CSV.GZ"][TEXT][0].as_py()
    rows = {f["file"].rsplit("/", 1)[-1]: f["rows"] for f in _read_json(output / "_SUCCESS")["inputs"]}
    assert {name: rows[name] for name in ("huge.csv", "B.CSV.GZ", "c.jsonl.gz", "d.json.gz")} == {
        "huge.csv": 30, "B.CSV.GZ": 30, "c.jsonl.gz": 30, "d.json.gz": 30}


def test_an_unreadable_file_is_named_in_one_short_printable_line(ray_cluster, tmp_path, capsys, tiny_classifier):
    from sentiment.io.csv_check import printable

    # Arrow quotes the bytes it could not parse; they must never reach the terminal raw.
    assert printable("CSV parse error: Row #3: \x1f\x8b\x08\udc8b\ufffd end") == \
        "CSV parse error: Row #3: \\x1f\\x8b\\x08\\udc8b\\ufffd end"
    assert len(printable("x" * 5000)) < 400
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.json").write_bytes(b'{"content": "fine"}\n' + bytes(range(256)) * 40)
    code, err = _score(capsys, "--model", tiny_classifier, "--input", str(tmp_path / "in"),
                       "--output", str(tmp_path / "out"))
    last = err.strip().splitlines()[-1]
    assert code == 2 and "a.json is not a readable JSON file" in last, err[-3000:]
    assert last.isprintable() and len(last) < 600, last
