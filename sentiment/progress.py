"""A line every so often while a model scores many rows: rows scored of the rows counted up
front, the rate, and the time left.

    scored 13,407 of 28,094 rows (48%) in 55 s, 239 rows/s; about 1 min 2 s left

And how long a worker process took to be ready (process_age), for the lines that say so.
"""

from __future__ import annotations

import os
import time

# How often a line is logged, unless a command is told otherwise (`score --progress-every`).
DEFAULT_PROGRESS_EVERY_S = 30.0


def duration(seconds: float) -> str:
    """"12 s", "1 min 32 s", "2 h 5 min"."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, whole = divmod(whole, 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min {whole} s"


def process_age() -> str:
    """Seconds since this process started, from /proc (Linux), as text; "?" elsewhere."""
    try:
        return f"{time.time() - os.stat(f'/proc/{os.getpid()}').st_ctime:.1f} s"
    except OSError:
        return "?"


class RowProgress:
    """What one run has scored of rows counted up front, and the line to log when one is due.

    The rate is measured from the first rows scored, so the start-up (the cluster, the model
    actors loading the model) does not make the time left look longer than it is. Where the first
    rows are all there is yet (rows that come back in large blocks, as evaluate's do), the rate
    is measured from the start and says so: a time left that errs long, rather than none.
    """

    def __init__(self, total_rows: int, every_s: float, clock=time.monotonic):
        self.total_rows = total_rows
        self.every_s = every_s
        self._clock = clock
        self._started = clock()
        self._last_line = self._started
        self._first: tuple[float, int] | None = None  # (time, rows) when the first rows were scored

    def update(self, rows_done: int) -> str | None:
        """Record the rows scored so far; returns the progress line when every_s has passed since
        the last one (or the start), else None."""
        now = self._clock()
        if self._first is None and rows_done > 0:
            self._first = (now, rows_done)
        if now - self._last_line < self.every_s:
            return None
        self._last_line = now
        return self.line(rows_done, now)

    def line(self, rows_done: int, now: float) -> str:
        share = rows_done / self.total_rows if self.total_rows else 1.0
        text = f"scored {rows_done:,} of {self.total_rows:,} rows ({share:.0%}) in {duration(now - self._started)}"
        if self._first is None:
            return text + "; no rows scored yet (the model actors start, then score a first window)"
        since, rows_then = self._first
        if now > since and rows_done > rows_then:
            rate, so_far = (rows_done - rows_then) / (now - since), ""
        elif now > self._started:
            rate, so_far = rows_done / (now - self._started), " so far, start-up included"
        else:
            return text
        left = max(self.total_rows - rows_done, 0) / rate
        return text + f", {rate:,.0f} rows/s{so_far}; about {duration(left)} left"
