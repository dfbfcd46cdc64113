"""The progress line of `sentiment score` (sentiment/progress.py, sentiment/score/progress.py): its arithmetic with a
clock the test moves. A real run's lines, while its actor is killed and restarted, are checked in
tests/score/test_faults.py."""

from __future__ import annotations

from sentiment.progress import RowProgress


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_line_is_due_every_interval_with_the_rate_measured_from_the_first_rows_scored():
    clock = Clock()
    progress = RowProgress(total_rows=10_000, every_s=30, clock=clock)
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


def test_rows_that_arrive_in_one_block_get_a_rate_from_the_start_and_say_so():
    # evaluate's rows come back in blocks of thousands: the first line may see only the first rows.
    clock = Clock()
    progress = RowProgress(total_rows=13_473, every_s=30, clock=clock)
    clock.now += 78
    assert progress.update(5_679) == ("scored 5,679 of 13,473 rows (42%) in 1 min 18 s, 73 rows/s so far, "
                                      "start-up included; about 1 min 47 s left")
    clock.now += 30
    assert progress.update(9_775) == "scored 9,775 of 13,473 rows (73%) in 1 min 48 s, 137 rows/s; about 27 s left"


def test_durations_round_to_whole_seconds_then_read_in_minutes_and_hours():
    from sentiment.progress import duration

    assert [duration(s) for s in (0.4, 59.4, 59.6, 92.4, 3599.6, 3725)] == [
        "0 s", "59 s", "1 min 0 s", "1 min 32 s", "1 h 0 min", "1 h 2 min"]


def test_hours_and_minutes_read_as_such():
    clock = Clock()
    progress = RowProgress(total_rows=2_000_000, every_s=1, clock=clock)
    progress.update(1)
    clock.now += 3_725
    assert progress.update(1_000_001) == ("scored 1,000,001 of 2,000,000 rows (50%) in 1 h 2 min, "
                                          "268 rows/s; about 1 h 2 min left")


def test_zero_turns_the_lines_off():
    from sentiment.score import progress

    class Dataset:
        context = None  # report_progress must not touch it

    progress.report_progress(Dataset(), total_rows=100, every_s=0)
