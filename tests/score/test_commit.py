"""Issue 22: the scoring output commit. A run SIGKILLed at each step of the commit leaves one
complete night behind `_SUCCESS` and the next run finishes the job; two runs into one output
never both commit; a folder that is not ours is refused and left byte-identical.

Real parts: `sentiment score` in a subprocess on the session's Ray cluster, local folders and the
moto S3 server, real reviews with a row_id, the tiny classifier. The kill at every commit step
runs on a committer without Ray (tests/hand_commit.py, the same commit code, a second per run);
one kill of the real scoring driver, on S3, proves the pipeline commits through it. Faults are
placed with pause points (sentiment.pause_points), not timed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sentiment.errors import InputError
from sentiment.io.storage import arrow_filesystem, fsspec_filesystem
from sentiment.pause_points import PAUSE_AT_ENV, PAUSE_DIR_ENV, release, wait_until_reached
from sentiment.score.lock import OutputLock
from tests.helpers import UNLABELED_TEXT, session_cluster_env, unlabeled_reviews

TEXT = "Review Text"
ROOT = Path(__file__).resolve().parents[2]
ROWS = 240  # per night: with --batch-size 2 (blocks of 128 rows) and --rows-per-file 100, three part files
RUN_ARGS = ("--concurrency", "1", "--batch-size", "2", "--rows-per-file", "100")
# The steps of the commit where a kill leaves both nights' files in the output.
COMMIT_STEPS = ("commit.moving", "commit.before_marker", "commit.before_delete", "commit.deleting")
MARKER_WRITTEN = ("commit.before_delete", "commit.deleting")


def _night(shared_data, night: int) -> pa.Table:
    """ROWS real reviews whose row_ids (night * 1000 + i) say which night they belong to."""
    texts = unlabeled_reviews(shared_data, "lego.csv", night * 7 + ROWS)[UNLABELED_TEXT].slice(night * 7, ROWS).to_pylist()
    return pa.table({"row_id": pa.array(range(night * 1000, night * 1000 + ROWS), pa.int64()),
                     TEXT: pa.array(texts, pa.string())})


def _ids(night: int) -> list[int]:
    return list(range(night * 1000, night * 1000 + ROWS))


def _input(shared_data, tmp_path, night: int) -> str:
    folder = tmp_path / f"in-{night}"
    folder.mkdir()
    pq.write_table(_night(shared_data, night), folder / "reviews.parquet")
    return str(folder)


@dataclass
class _Run:
    """A subprocess whose stderr goes to a file, not a pipe: a run held at a pause point on a
    loaded machine must not block writing to a pipe nobody reads (Ray Data logs its progress
    every 10 s), and a failed wait can show what the run printed."""
    proc: subprocess.Popen
    log: Path

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")


def _start(command: list[str], log: Path, env: dict[str, str], **popen) -> _Run:
    with open(log, "w") as stderr:
        return _Run(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, text=True, env=env, **popen),
                    log)


def _score_process(model: str, inputs: str, output: str, *extra: str, log: Path, pause_at: str | None = None,
                   pause_dir=None) -> _Run:
    """`sentiment score` as its own driver process on the session's Ray cluster."""
    env = session_cluster_env()
    if pause_at:
        env.update({PAUSE_AT_ENV: pause_at, PAUSE_DIR_ENV: str(pause_dir)})
    return _start([sys.executable, "-m", "sentiment", "score", "--model", model, "--input", inputs,
                   "--output", output, "--text-column", TEXT, *RUN_ARGS, *extra], log, env)


def _finished(run: _Run, timeout_s: float = 400) -> str:
    """Wait for a run that must succeed; its stderr."""
    try:
        run.proc.wait(timeout=timeout_s)
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait()
    assert run.proc.returncode == 0, run.stderr()[-3000:]
    return run.stderr()


def _kill_at(run: _Run, pause_dir, step: str) -> None:
    """SIGKILL the driver once it waits at `step` (no clean-up code of ours runs)."""
    try:
        try:
            pid = wait_until_reached(str(pause_dir), step, timeout_s=300, process=run.proc)[0]
        except (TimeoutError, RuntimeError) as error:
            raise AssertionError(f"{error}; the run's stderr ends:\n{run.stderr()[-5000:]}") from error
        assert pid == run.proc.pid
        os.kill(pid, signal.SIGKILL)
    finally:
        run.proc.kill()
        run.proc.wait()
    for reached in pause_dir.glob(f"{step}.*.reached"):
        reached.unlink()


def _listing(output: str) -> set[str]:
    fs, path = fsspec_filesystem(output)
    fs.invalidate_cache()
    return {p[len(path) + 1:] for p in fs.find(path)} if fs.isdir(path) else set()


def _read_json(uri: str) -> dict:
    fs, path = fsspec_filesystem(uri)
    fs.invalidate_cache()
    with fs.open(path, "rb") as f:
        return json.loads(f.read())


def _night_behind_marker(output: str) -> list[int]:
    """What a reader who trusts _SUCCESS reads: the row_ids of exactly the files it lists, which
    must hold the rows it says."""
    marker = _read_json(f"{output}/_SUCCESS")
    arrow_fs, path = arrow_filesystem(output)
    tables = [pq.read_table(f"{path}/{f['file']}", filesystem=arrow_fs, columns=["row_id"]) for f in marker["files"]]
    assert [t.num_rows for t in tables] == [f["rows"] for f in marker["files"]]
    return sorted(pa.concat_tables(tables)["row_id"].to_pylist())


def _staging_root(output: str) -> str:
    parent, _, name = output.rstrip("/").rpartition("/")
    return f"{parent}/_{name}.staging"


def _assert_exactly_the_night(output: str, night: int) -> None:
    """The output holds the night behind _SUCCESS and nothing else of ours: no other part files,
    no lock, no staging."""
    assert _night_behind_marker(output) == _ids(night)
    listed = {f["file"] for f in _read_json(f"{output}/_SUCCESS")["files"]}
    assert _listing(output) == listed | {"_SUCCESS", "_summary.json"}
    assert not _listing(_staging_root(output))


def _hand_commit_process(output: str, night: int, log: Path, pause_at: str | None = None, pause_dir=None) -> _Run:
    """A committer without Ray or a model (tests/hand_commit.py): night's ROWS row_ids staged by
    hand in three files, committed through the same code as `sentiment score`'s."""
    env = dict(os.environ)
    if pause_at:
        env.update({PAUSE_AT_ENV: pause_at, PAUSE_DIR_ENV: str(pause_dir)})
    return _start([sys.executable, "-m", "tests.hand_commit", "night", output, str(night), str(ROWS), "3"], log, env,
                  cwd=ROOT)


def _kill_at_each_step_then_rerun(tmp_path, start_night, output: str, steps) -> None:
    """start_night(night, log, pause_at=None, pause_dir=None) starts a run committing that night into
    output, its stderr going to log.

    Night 0, the complete night the kills must not lose, is committed in this process through the
    library's commit code (tests/hand_commit.py), as every later night is by its run."""
    from tests.hand_commit import commit_night

    pauses = tmp_path / "pauses"
    pauses.mkdir()
    commit_night(output, 0, ROWS, 3)
    assert len(_read_json(f"{output}/_SUCCESS")["files"]) >= 2, "one part file cannot show a half-done move"
    committed = 0
    for night, step in enumerate(steps, start=1):
        _kill_at(start_night(night, tmp_path / f"night-{night}.stderr", pause_at=step, pause_dir=pauses), pauses, step)
        committed = night if step in MARKER_WRITTEN else committed
        # Old or new, whole and once: never a mix, never a gap.
        assert _night_behind_marker(output) == _ids(committed), step
        assert any(name.startswith("part-") and name not in {f["file"] for f in _read_json(
            f"{output}/_SUCCESS")["files"]} for name in _listing(output)), f"{step}: nothing left to clean up"
    last = len(steps) + 1
    stderr = _finished(start_night(last, tmp_path / f"night-{last}.stderr"))
    assert "taking over the lock" in stderr and "is no longer running on this host" in stderr
    assert "left by an earlier attempt that failed or was killed" in stderr
    _assert_exactly_the_night(output, last)


def test_a_committer_killed_at_each_commit_step_leaves_one_whole_night_and_the_next_run_cleans_up(tmp_path):
    output = str(tmp_path / "out")
    _kill_at_each_step_then_rerun(
        tmp_path, lambda night, log, **pause: _hand_commit_process(output, night, log, **pause), output, COMMIT_STEPS)


@pytest.mark.slow  # two scoring drivers in turn, ~30 s each on a loaded 2-core machine
def test_a_scoring_driver_killed_mid_move_on_s3_leaves_one_whole_night_and_the_next_run_cleans_up(
        shared_data, ray_cluster, s3_bucket, tmp_path, tiny_classifier):
    # The real driver end to end; on S3 a move is a copy and a delete: the step where the old
    # committer lost both nights.
    output = f"{s3_bucket}/scored/2026-12-01"
    _kill_at_each_step_then_rerun(
        tmp_path, lambda night, log, **pause: _score_process(tiny_classifier, _input(shared_data, tmp_path, night),
                                                             output, log=log, **pause), output, ("commit.moving",))


def test_two_runs_into_one_output_one_commits_and_the_other_refuses_naming_the_holder(
        shared_data, ray_cluster, tmp_path, tiny_classifier):
    pauses, output = tmp_path / "pauses", str(tmp_path / "out")
    pauses.mkdir()
    # The first run holds the lock with its night staged; the second is a real scoring driver.
    first = _hand_commit_process(output, 1, tmp_path / "first.stderr", pause_at="commit.staged", pause_dir=pauses)
    try:
        wait_until_reached(str(pauses), "commit.staged", timeout_s=120, process=first.proc)
        second = _score_process(tiny_classifier, _input(shared_data, tmp_path, 2), output,
                                log=tmp_path / "second.stderr")
        assert second.proc.wait(timeout=300) == 2, second.stderr()[-3000:]
        last = second.stderr().strip().splitlines()[-1]
        assert last.startswith(f"sentiment score: error: --output {output} is being written by attempt "), last
        assert f"host {socket.gethostname()} (pid {first.proc.pid}), last heartbeat " in last
        assert first.proc.poll() is None
    finally:
        release(str(pauses), "commit.staged")
    _finished(first)
    _assert_exactly_the_night(output, 1)


def test_a_folder_that_is_not_ours_is_refused_untouched_and_replaced_with_overwrite(
        shared_data, ray_cluster, tmp_path, tiny_classifier, capsys):
    from sentiment.cli import main

    output = tmp_path / "out"
    output.mkdir()
    pq.write_table(pa.table({"x": [1, 2, 3]}), output / "part-0.parquet")
    (output / "accounts.csv").write_text("id,name\n1,a\n")
    (output / "README").write_text("someone else's dataset\n")
    before = {p.name: p.read_bytes() for p in output.iterdir()}
    args = ["score", "--model", tiny_classifier, "--input", _input(shared_data, tmp_path, 1), "--output",
            str(output), "--text-column", TEXT, *RUN_ARGS]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"sentiment score: error: --output {output} holds files that `sentiment score` did not "
                          "write (README, accounts.csv, part-0.parquet)") and "--overwrite" in err, err
    assert {p.name: p.read_bytes() for p in output.iterdir()} == before
    assert main([*args, "--overwrite"]) == 0
    _assert_exactly_the_night(str(output), 1)
    # Beside a night of ours, a file of someone else's is left alone: only what _SUCCESS listed goes.
    (output / "NOTES.md").write_text("kept\n")
    assert main([*args[:4], _input(shared_data, tmp_path, 2), *args[5:]]) == 0
    assert (output / "NOTES.md").read_text() == "kept\n"
    assert _night_behind_marker(str(output)) == _ids(2)
    assert _listing(str(output)) == {f["file"] for f in _read_json(f"{output}/_SUCCESS")["files"]} | {
        "_SUCCESS", "_summary.json", "NOTES.md"}


def test_a_lock_whose_heartbeat_stopped_is_taken_over_and_a_live_one_is_not(tmp_path, monkeypatch, caplog):
    output = str(tmp_path / "out")
    os.makedirs(output)
    holder = {"attempt": "20261201T000000Z-0badc0de", "host": "other-host", "pid": 1}
    with open(f"{output}/_LOCK", "w") as f:
        json.dump({**holder, "heartbeat": "just now", "heartbeat_epoch": time.time()}, f)
    with pytest.raises(InputError, match="is being written by attempt 20261201T000000Z-0badc0de on host other-host"):
        OutputLock(output, "20261201T000001Z-00000001").acquire()
    monkeypatch.setenv("SENTIMENT_LOCK_STALE_S", "60")
    with open(f"{output}/_LOCK", "w") as f:
        json.dump({**holder, "heartbeat": "long ago", "heartbeat_epoch": time.time() - 61}, f)
    lock = OutputLock(output, "20261201T000002Z-00000002")
    lock.acquire()
    assert "taking over the lock" in caplog.text and "stopped beating 61 s ago" in caplog.text
    assert json.load(open(f"{output}/_LOCK"))["attempt"] == lock.attempt
    lock.release()
    assert not os.path.exists(f"{output}/_LOCK")


def test_the_s3_lock_is_a_conditional_create(s3_bucket):
    first = OutputLock(f"{s3_bucket}/out", "20261201T000000Z-00000001")
    first.acquire()
    try:
        with pytest.raises(InputError, match="is being written by attempt 20261201T000000Z-00000001"):
            OutputLock(f"{s3_bucket}/out", "20261201T000000Z-00000002").acquire()
    finally:
        first.release()
    second = OutputLock(f"{s3_bucket}/out", "20261201T000000Z-00000002")
    second.acquire()
    second.release()
