"""Faults `sentiment score` must survive or fail cleanly from: a predict actor SIGKILLed mid-run,
object storage unreachable at start or gone mid-write, and the re-run after that. Real parts
only: `sentiment score` in a subprocess with its own local Ray cluster, moto S3 servers on
127.0.0.1, the tiny classifier, real reviews with a row_id so "exactly once" is about identities.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager

import boto3
import psutil
import pyarrow as pa
import pyarrow.parquet as pq

from tests.local_s3 import MotoServer, free_port
from sentiment.io.storage import arrow_filesystem, fsspec_filesystem, upload_dir
from sentiment.pause_points import PAUSE_AT_ENV, PAUSE_DIR_ENV, release, wait_until_reached
from tests.conftest import SECRET_KEY
from tests.helpers import UNLABELED_TEXT, session_cluster_env, unlabeled_reviews

TEXT = "Review Text"
# Ray fuses the tokenize tasks into the actor: "ray::MapWorker(MapBatches(tokenize_batch)->MapBatches(ScoringActor))".
ACTOR_STAGE = "MapBatches(ScoringActor)"


def _reviews(shared_data, rows: int) -> pa.Table:
    """`rows` real reviews (two apps, cycled) with a unique row_id."""
    texts = []
    for name in ("webmd.csv", "lego.csv"):
        texts += unlabeled_reviews(shared_data, name)[UNLABELED_TEXT].to_pylist()
    return pa.table({"row_id": pa.array(range(rows), pa.int64()),
                     TEXT: pa.array([texts[i % len(texts)] for i in range(rows)], pa.string())})


def _write_parquet_shards(table: pa.Table, folder, shards: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    step = -(-table.num_rows // shards)
    for i in range(shards):
        pq.write_table(table.slice(i * step, step), folder / f"part-{i}.parquet")


def _score_process(*args: str, worker_env: dict | None = None) -> subprocess.Popen:
    """`sentiment score` in a subprocess, as a job on the session's Ray cluster
    (tests/helpers.session_cluster_env, which says how `worker_env` reaches the job's workers).

    The session's cluster was started by this pytest process, so its workers are our
    descendants; a second cluster per test often misses Ray's fixed 30 s start-up window on a
    loaded CI machine.
    """
    env = session_cluster_env(worker_env)
    return subprocess.Popen([sys.executable, "-m", "sentiment", "score", "--text-column", TEXT, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


@contextmanager
def _killed_on_exit(proc: subprocess.Popen):
    """Kill `proc` if the block ends while it still runs (a failed assert, a timeout), so no
    scoring job outlives its test and holds the session's cluster."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _output_table(uri: str) -> pa.Table:
    fs, path = fsspec_filesystem(uri)
    arrow_fs, _ = arrow_filesystem(uri)
    files = sorted(p for p in fs.find(path) if p.endswith(".parquet"))
    return pa.concat_tables([pq.read_table(p, filesystem=arrow_fs, columns=["row_id", "error"]) for p in files])


def _read_json(uri: str) -> dict:
    fs, path = fsspec_filesystem(uri)
    with fs.open(path, "rb") as f:
        return json.loads(f.read())


def test_a_killed_predict_actor_is_restarted_every_row_is_written_once_and_progress_never_goes_back(
        shared_data, s3_bucket, tmp_path, ray_cluster, tiny_classifier):
    rows = 1_200
    _write_parquet_shards(_reviews(shared_data, rows), tmp_path / "in", shards=4)
    upload_dir(str(tmp_path / "in"), f"{s3_bucket}/in")
    upload_dir(tiny_classifier, f"{s3_bucket}/model")
    output = f"{s3_bucket}/scored"
    points = str(tmp_path / "points")
    os.mkdir(points)
    # One actor, windows of 128 rows (--batch-size 2): the actor is held at its third window, with
    # two scored and more in flight, and killed there; being the only actor, Ray must restart it
    # and retry its in-flight windows. A progress line every 0.2 s shows the count meanwhile.
    proc = _score_process("--model", f"{s3_bucket}/model", "--input", f"{s3_bucket}/in/", "--output", output,
                          "--concurrency", "1", "--batch-size", "2", "--rows-per-file", "300", "--progress-every", "0.2",
                          worker_env={PAUSE_AT_ENV: "score.actor_batch@3", PAUSE_DIR_ENV: points})
    with _killed_on_exit(proc):
        [pid] = wait_until_reached(points, "score.actor_batch", timeout_s=300, process=proc)
        victim = psutil.Process(pid)
        assert ACTOR_STAGE in " ".join(victim.cmdline())
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        assert proc.poll() is None, "the job finished before the actor was killed: the test proves nothing"
        release(points, "score.actor_batch")
        stdout, stderr = proc.communicate(timeout=400)
    assert proc.returncode == 0, stderr[-3000:]
    out = _output_table(output)
    assert out.num_rows == rows
    assert sorted(out["row_id"].to_pylist()) == list(range(rows))
    marker = _read_json(f"{output}/_SUCCESS")
    fs, path = fsspec_filesystem(output)
    assert marker["rows"] == rows
    assert sorted(f["file"] for f in marker["files"]) == sorted(
        p.rsplit("/", 1)[-1] for p in fs.find(path) if p.endswith(".parquet"))
    summary = _read_json(f"{output}/_summary.json")
    assert summary["rows_read"] == rows
    # The restart is counted in the summary and said at the end of the night's line.
    assert summary["scoring_actors"]["actors"] == 1 and summary["scoring_actors"]["restarts"] == 1, summary
    [night] = [line for line in stderr.splitlines() if "sentiment.score.pipeline: committed " in line]
    assert night.endswith("; 1 scoring actor restart (a process lost, its windows scored again)"), night
    # While the actor was held, killed and restarted, the lines counted the rows scored so far
    # (the windows the dead actor held are not among them) of the rows counted up front.
    progress = [line.split("sentiment.score.progress: ", 1)[1] for line in stderr.splitlines()
                if "sentiment.score.progress: scored " in line]
    scored = [int(line.split()[1].replace(",", "")) for line in progress]
    assert all(f"of {rows:,} rows" in line for line in progress), progress[:3]
    assert any(0 < n < rows for n in scored), progress
    assert scored == sorted(scored) and max(scored) <= rows, progress
    assert "Total Progress" not in stderr  # Ray Data's own display, a dozen lines every 10 s in a log
    # The same s3 -> s3 run, with a failure in its logs, still never shows the secret anywhere.
    assert SECRET_KEY not in stdout and SECRET_KEY not in stderr
    for file in fs.find(path):
        with fs.open(file, "rb") as f:
            assert SECRET_KEY.encode() not in f.read(), file


def test_unreachable_output_storage_fails_fast_naming_the_endpoint(tmp_path, tiny_classifier, monkeypatch, capsys):
    from sentiment.cli import main

    pq.write_table(pa.table({TEXT: ["fine"]}), tmp_path / "a.parquet")
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    start = time.perf_counter()
    code = main(["score", "--model", tiny_classifier, "--input", str(tmp_path), "--output",
                 "s3://nightly-scores/2026-11-26", "--text-column", TEXT])
    seconds = time.perf_counter() - start
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert endpoint in err and "nightly-scores" in err
    assert seconds < 20, f"took {seconds:.0f} s to notice a dead endpoint"


def test_storage_gone_mid_write_fails_without_marker_and_a_rerun_writes_each_row_once(
        shared_data, tmp_path, tiny_classifier, s3_server, ray_cluster, monkeypatch):
    rows = 1_200
    _write_parquet_shards(_reviews(shared_data, rows), tmp_path / "in", shards=4)
    points = tmp_path / "points"
    points.mkdir()
    server = MotoServer()  # this test's own, so it can be killed and brought back on the same port
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint)  # the subprocess inherits it
    # The job's Ray workers inherit the endpoint too; the one actor is held in its third window
    # (128 rows each with --batch-size 2), so the run is mid-write, never done, when storage dies.
    workers = {"AWS_ENDPOINT_URL": server.endpoint, PAUSE_AT_ENV: "score.actor_batch@3", PAUSE_DIR_ENV: str(points)}
    bucket, prefix = "gone-mid-write", "scored/2026-11-26"
    output = f"s3://{bucket}/{prefix}"
    boto3.client("s3", endpoint_url=server.endpoint).create_bucket(Bucket=bucket)
    partial: dict[str, bytes] = {}
    proc = _score_process("--model", tiny_classifier, "--input", str(tmp_path / "in"), "--output", output,
                          "--concurrency", "1", "--batch-size", "2", "--rows-per-file", "128", worker_env=workers)
    with server, _killed_on_exit(proc):
        wait_until_reached(str(points), "score.actor_batch", timeout_s=300, process=proc)
        client = boto3.client("s3", endpoint_url=server.endpoint)
        deadline = time.time() + 300
        while not any(k.endswith(".parquet") for k in partial) and time.time() < deadline and proc.poll() is None:
            # The attempt writes into its staging folder beside the output (scored/_2026-11-26.staging).
            listed = client.list_objects_v2(Bucket=bucket, Prefix="scored/").get("Contents", [])
            for obj in listed:  # keep what was written so far, to put back after the outage
                partial[obj["Key"]] = client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
            time.sleep(0.3)
        assert any(k.endswith(".parquet") for k in partial), f"no output file appeared (exit {proc.poll()})"
        server.kill()
        assert proc.poll() is None, "the job finished before storage went away: the test proves nothing"
        release(str(points), "score.actor_batch")
        stdout, stderr = proc.communicate(timeout=400)
    assert not any(k.endswith("_SUCCESS") for k in partial), "the job had finished before storage went away"
    assert proc.returncode != 0, (stdout[-3000:], stderr[-6000:])
    assert f"127.0.0.1:{server.port}" in stderr, stderr[-3000:]

    # Storage comes back holding what it held when it died; the re-run replaces it.
    with MotoServer(server.port) as server:
        client = boto3.client("s3", endpoint_url=server.endpoint)
        client.create_bucket(Bucket=bucket)
        for key, body in partial.items():
            client.put_object(Bucket=bucket, Key=key, Body=body)
        rerun = _score_process("--model", tiny_classifier, "--input", str(tmp_path / "in"), "--output", output,
                               worker_env={"AWS_ENDPOINT_URL": server.endpoint})
        stdout, stderr = rerun.communicate(timeout=400)
        assert rerun.returncode == 0, stderr[-3000:]
        out = _output_table(output)
        assert sorted(out["row_id"].to_pylist()) == list(range(rows))
        assert _read_json(f"{output}/_SUCCESS")["rows"] == rows


def test_a_failed_attempt_keeps_the_last_complete_night_on_s3_and_the_next_run_cleans_up(
        shared_data, s3_bucket, tmp_path, ray_cluster, tiny_classifier):
    rows = 1_200
    _write_parquet_shards(_reviews(shared_data, rows), tmp_path / "in", shards=4)
    upload_dir(str(tmp_path / "in"), f"{s3_bucket}/in")
    points = tmp_path / "points"
    points.mkdir()
    output, staging = f"{s3_bucket}/scored/2026-11-26", f"{s3_bucket}/scored/_2026-11-26.staging"
    fs, out_path = fsspec_filesystem(output)
    _, staging_path = fsspec_filesystem(staging)

    def contents(path: str) -> dict[str, bytes]:
        fs.invalidate_cache()
        return {p: fs.cat(p) for p in fs.find(path)}

    # Yesterday's complete night, committed through the library's commit code in this process
    # (tests/hand_commit.py): what is kept is the commit's business, and a scoring driver costs
    # 20 s here. score/test_commit.py shows the real driver commits through the same code.
    from tests.hand_commit import commit_night

    commit_night(output, 0, rows=300, files=2)
    night = contents(out_path)
    assert f"{out_path}/_SUCCESS" in night
    # Today's attempt dies (SIGKILL: no clean-up code runs) once its first files are staged; its
    # one actor is held in its third window, so the attempt cannot have finished.
    proc = _score_process("--model", tiny_classifier, "--input", f"{s3_bucket}/in/", "--output", output,
                          "--concurrency", "1", "--batch-size", "2", "--rows-per-file", "128",
                          worker_env={PAUSE_AT_ENV: "score.actor_batch@3", PAUSE_DIR_ENV: str(points)})
    with _killed_on_exit(proc):
        wait_until_reached(str(points), "score.actor_batch", timeout_s=300, process=proc)
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            fs.invalidate_cache()  # names only: a file listed here may be renamed before it could be read
            if any(p.endswith(".parquet") for p in fs.find(staging_path)):
                break
            time.sleep(0.3)
        assert proc.poll() is None, "the attempt ended before it was killed: the test proves nothing"
        proc.kill()
        proc.communicate()
        release(str(points), "score.actor_batch")
    staged = contents(staging_path)
    assert any(p.endswith(".parquet") for p in staged) and not any(p.endswith("_SUCCESS") for p in staged)
    after = contents(out_path)
    # The killed attempt's lock stays (no clean-up code ran); the night itself is untouched.
    assert json.loads(after.pop(f"{out_path}/_LOCK"))["pid"] == proc.pid
    assert after == night, "a failed attempt touched the last complete output"
    # The next run takes the dead run's lock over, removes its staging, then commits a complete night.
    rerun = _score_process("--model", tiny_classifier, "--input", f"{s3_bucket}/in/", "--output", output)
    _, stderr = rerun.communicate(timeout=400)
    assert rerun.returncode == 0, stderr[-3000:]
    assert "left by an earlier attempt that failed" in stderr and "taking over the lock" in stderr
    assert not contents(staging_path)
    assert f"{out_path}/_LOCK" not in contents(out_path)
    out = _output_table(output)
    assert sorted(out["row_id"].to_pylist()) == list(range(rows))
    marker = _read_json(f"{output}/_SUCCESS")
    assert marker["rows"] == rows and sum(f["rows"] for f in marker["inputs"]) == rows
