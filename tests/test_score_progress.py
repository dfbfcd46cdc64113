"""The progress line of `sentiment score` (sentiment/score/progress.py): its arithmetic with a
clock the test moves, and a real run held mid-way by a pause point."""

from __future__ import annotations

import logging
import threading
import time

import pyarrow as pa
import pyarrow.parquet as pq

from sentiment.pause_points import PAUSE_AT_ENV, PAUSE_DIR_ENV, release, wait_until_reached
from sentiment.score.progress import ScoringProgress
from tests.helpers import UNLABELED_TEXT, unlabeled_reviews


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_line_is_due_every_interval_with_the_rate_measured_from_the_first_rows_scored():
    clock = Clock()
    progress = ScoringProgress(total_rows=10_000, every_s=30, clock=clock)
    clock.now += 29
    assert progress.update(0) is None  # not due yet
    clock.now += 1
    assert progress.update(0) == ("scored 0 of 10,000 rows (0%) in 30 s; no rows scored yet "
                                  "(the model actors start, then score a first window)")
    clock.now += 10
    assert progress.update(1_000) is None  # first rows: the rate starts here, 40 s in
    clock.now += 20
    # 3,000 more rows in the 20 s since the first: 150 rows/s, 6,000 rows left
    assert progress.update(4_000) == "scored 4,000 of 10,000 rows (40%) in 1 min 0 s, 150 rows/s; about 40 s left"
    clock.now += 10
    assert progress.update(9_000) is None
    clock.now += 20
    line = progress.update(10_000)
    assert line == "scored 10,000 of 10,000 rows (100%) in 1 min 30 s, 180 rows/s; about 0 s left"


def test_hours_and_minutes_read_as_such():
    clock = Clock()
    progress = ScoringProgress(total_rows=2_000_000, every_s=1, clock=clock)
    progress.update(1)
    clock.now += 3_725
    assert progress.update(1_000_001) == ("scored 1,000,001 of 2,000,000 rows (50%) in 1 h 2 min, "
                                          "268 rows/s; about 1 h 2 min left")


def test_a_run_held_mid_way_logs_the_rows_scored_so_far_of_the_rows_counted_up_front(
        ray_cluster, tiny_classifier, shared_data, tmp_path, monkeypatch, caplog):
    from sentiment.cli import main

    rows = 600
    inputs = tmp_path / "in"
    inputs.mkdir()
    source = unlabeled_reviews(shared_data, "lego.csv", rows)
    for i in range(2):
        pq.write_table(pa.table({UNLABELED_TEXT: source.slice(i * 300, 300)[UNLABELED_TEXT]}), inputs / f"{i}.parquet")
    points = tmp_path / "points"
    points.mkdir()
    # One actor, windows of 128 rows (--batch-size 2): it is held at the start of its second
    # call, so the first call's 128 rows reach the writer and no more until it is let go.
    monkeypatch.setenv(PAUSE_AT_ENV, "score.actor_batch@2")
    monkeypatch.setenv(PAUSE_DIR_ENV, str(points))
    caplog.set_level(logging.INFO, logger="sentiment.score.progress")
    result = {}
    run = threading.Thread(target=lambda: result.setdefault("code", main([
        "score", "--model", tiny_classifier, "--input", str(inputs), "--output", str(tmp_path / "out"),
        "--text-column", UNLABELED_TEXT, "--batch-size", "2", "--progress-every", "0.2"])))
    run.start()
    try:
        wait_until_reached(str(points), "score.actor_batch", timeout_s=180)
        deadline = time.monotonic() + 60
        while not any(f"scored 128 of {rows} rows (21%)" in m for m in _progress(caplog)):
            assert time.monotonic() < deadline, _progress(caplog)[-5:]
            time.sleep(0.2)
    finally:
        release(str(points), "score.actor_batch")
        run.join(timeout=300)
    assert result == {"code": 0}
    lines = _progress(caplog)
    scored = [int(line.split()[1].replace(",", "")) for line in lines]
    assert all(line.split()[2:5] == ["of", f"{rows}", "rows"] for line in lines), lines[:3]
    assert scored == sorted(scored) and max(scored) <= rows  # never backwards, never beyond the input


def test_zero_turns_the_lines_off():
    from sentiment.score import progress

    class Dataset:
        context = None  # report_progress must not touch it

    progress.report_progress(Dataset(), total_rows=100, every_s=0)


def _progress(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "sentiment.score.progress"]
