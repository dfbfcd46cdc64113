"""Issue 11: the up-front input checks run as Ray tasks on the workers, not on the driver, and a
bad file still fails with its own error type and message. Real files, a real local Ray cluster."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pytest
import ray

from sentiment.errors import InputError, StorageError
from sentiment.io.file_checks import CSV_PARSE, check_files, file_columns, file_groups
from sentiment.io.shards import find_shards
from sentiment.io.storage import InputFiles
from tests.helpers import session_cluster_env

_QUOTE_NEVER_CLOSED = b'row_id,content\n1,good app\n2,"this quote\n3,is never closed\n'


def _checks_in_timeline() -> dict[str, dict]:
    """Check tasks Ray has run, by task id, from its timeline (the GCS's task events: the test
    cluster runs no dashboard for the state API)."""
    return {event["args"]["task_id"]: event for event in ray.timeline()
            if event["cat"].startswith("task::check input files")}


def test_the_driver_reads_none_of_the_bytes_of_the_files_it_checks(ray_cluster, shared_data):
    folder = shared_data / "labeled"
    total = sum(path.stat().st_size for path in folder.glob("*.csv"))
    driver = psutil.Process()
    before = driver.io_counters().read_chars  # every read() of every thread of this process

    found = find_shards([str(folder)], text_column="content")

    read = driver.io_counters().read_chars - before
    assert found.input_rows == 7572 + 5901  # every row counted by the strict reader, elsewhere
    # A check on the driver reads each CSV in full (and its first block again for the schema).
    assert read < total / 4, f"the driver read {read} bytes of {total}"


def test_every_file_is_checked_by_a_worker_task_in_groups(ray_cluster, shared_data, tmp_path, monkeypatch):
    reviews = pacsv.read_csv(shared_data / "labeled" / "gplay-2024.csv", parse_options=CSV_PARSE)
    for i in range(5):
        pacsv.write_csv(reviews.select(["content", "score"]).slice(100 * i, 100), tmp_path / f"part-{i}.csv")
    # Two groups of at most three files, as 20,000 files make 313 groups of 64.
    monkeypatch.setattr("sentiment.io.file_checks._TASKS", 2)
    earlier = set(_checks_in_timeline())

    found = find_shards([str(tmp_path)], text_column="content")

    assert sorted(found.rows_by_uri.values()) == [100] * 5
    deadline, ours = time.monotonic() + 60, {}
    while len(ours) < 2 and time.monotonic() < deadline:  # task events reach the GCS each second
        ours = {task: event for task, event in _checks_in_timeline().items() if task not in earlier}
    assert sorted(event["cat"] for event in ours.values()) == ["task::check input files 1-3 of 5",
                                                               "task::check input files 4-5 of 5"]
    assert all(event["tid"].startswith("worker:") for event in ours.values()), ours  # not "driver:"


def test_a_bad_file_fails_with_the_same_error_type_and_message_as_on_the_driver(ray_cluster, tmp_path):
    (tmp_path / "a.csv").write_bytes(b"row_id,content\n1,good app\n")
    (tmp_path / "b.csv").write_bytes(_QUOTE_NEVER_CLOSED)
    (tmp_path / "c.csv").write_bytes(b"row_id,content\n1,caf\xe9\n")  # not UTF-8, and later in order
    with pytest.raises(InputError) as raised:
        find_shards([str(tmp_path)], text_column="content")
    with pytest.raises(InputError) as here:
        file_columns(pafs.LocalFileSystem(), str(tmp_path / "b.csv"), str(tmp_path / "b.csv"), "csv")
    assert type(raised.value) is InputError  # not Ray's RayTaskError(InputError), whose text is a traceback
    assert str(raised.value) == str(here.value)
    assert "b.csv is malformed CSV in the row starting at line 3" in str(here.value) and "never closed" in str(here.value)


def test_several_bad_files_fail_the_run_with_one_line_naming_the_first(ray_cluster, tmp_path, tiny_classifier):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.csv").write_bytes(b"row_id,content\n1,good app\n")
    (folder / "b.csv").write_bytes(_QUOTE_NEVER_CLOSED)
    (folder / "c.csv").write_bytes(b"row_id,content\n1,caf\xe9\n")
    (folder / "d.csv").write_bytes(b"row_id,content\n1,good app,extra\n")
    # A process of its own, on the session's cluster: Ray reports the failed tasks whose results
    # nobody fetched as the driver exits, after our line, so only the whole stderr shows them.
    env = session_cluster_env()
    done = subprocess.run([sys.executable, "-m", "sentiment", "score", "--model", tiny_classifier,
                           "--input", str(folder), "--output", str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 2, done.stderr[-3000:]
    assert f"sentiment score: error: {folder}/b.csv is malformed CSV in the row starting at line 3" in done.stderr
    assert "Unhandled error" not in done.stderr and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "c.csv" not in done.stderr and "d.csv" not in done.stderr, done.stderr[-3000:]
    assert not (tmp_path / "out" / "_SUCCESS").exists()


def test_a_file_gone_since_listing_is_a_storage_error_naming_it(ray_cluster, tmp_path):
    gone = str(tmp_path / "gone.parquet")
    with pytest.raises(StorageError) as raised:
        check_files(InputFiles(pafs.LocalFileSystem(), [gone], [gone]), ["parquet"])
    assert type(raised.value) is StorageError
    assert str(raised.value).startswith(f"cannot access {gone}: FileNotFoundError")


def test_tasks_reach_s3_with_the_nodes_own_environment(ray_cluster, s3_bucket, shared_data):
    from sentiment.io import storage

    storage.write_bytes(f"{s3_bucket}/in/good.csv", (shared_data / "labeled" / "gplay-2024.csv").read_bytes())
    assert find_shards([f"{s3_bucket}/in/"], text_column="content").input_rows == 5901
    storage.write_bytes(f"{s3_bucket}/in/quote.csv", _QUOTE_NEVER_CLOSED)
    with pytest.raises(InputError, match=rf"^{s3_bucket}/in/quote\.csv is malformed CSV in the row starting at line 3"):
        find_shards([f"{s3_bucket}/in/"], text_column="content")


@pytest.mark.parametrize("files,tasks,largest", [(1, 1, 1), (256, 256, 1), (257, 129, 2), (20_000, 313, 64),
                                                 (100_000, 1563, 64)])
def test_files_are_grouped_into_a_bounded_number_of_tasks(files, tasks, largest):
    groups = file_groups(files)
    assert len(groups) == tasks and max(stop - start for start, stop in groups) == largest
    assert [i for start, stop in groups for i in range(start, stop)] == list(range(files))


def test_files_naming_the_text_column_differently_read_as_one_column(ray_cluster, tmp_path):
    """other_text_columns: each file's text under the first name it has, read under the first
    name, in every format, whether every column is kept or none."""
    import pandas as pd

    pd.DataFrame({"Review Text": ["good", "bad"], "app": ["a", "a"]}).to_parquet(tmp_path / "one.parquet")
    pd.DataFrame({"Text": ["fine", "12345"], "app": ["b", "b"]}).to_csv(tmp_path / "two.csv", index=False)
    pd.DataFrame({"body": ["meh"], "Text": ["not this one"], "app": ["c"]}).to_json(
        tmp_path / "three.jsonl", orient="records", lines=True)
    from sentiment.io.shards import read_shards

    for keep in (None, [], ["Review Text", "app"]):
        found = find_shards([str(tmp_path)], text_column="Review Text", other_text_columns=("body", "Text"),
                            keep_columns=keep)
        assert sorted(found.renamed.values()) == ["Text", "body"]
        rows = read_shards(found).to_pandas()
        assert sorted(rows["Review Text"]) == ["12345", "bad", "fine", "good", "meh"]  # digits stay text
        assert "body" not in rows.columns
        assert ("app" in rows.columns) == (keep != [])
        if keep is None:  # three.jsonl's own Text column, not its text, is kept as it is
            assert rows["Text"].dropna().tolist() == ["not this one"]
        else:
            assert "Text" not in rows.columns

    with pytest.raises(InputError, match="two.csv has no text column 'Review Text' or 'body'"):
        find_shards([str(tmp_path)], text_column="Review Text", other_text_columns=("body",))
