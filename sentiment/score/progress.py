"""A line every so often while `sentiment score` runs: rows scored of the rows counted up front,
the rate, and the time left.

    scored 13,407 of 28,094 rows (48%) in 55 s, 239 rows/s; about 1 min 2 s left

Ray Data's own progress cannot say this: it does not know how many rows CSV and JSON shards
hold, so its total reads "0/?", and in a log (not a terminal) it prints a dozen lines per
operator every 10 s; there these lines replace it. The driver counted every input file's rows
before the run started (shards.find_shards), so the total is exact. The rows counted are those
the model stage has handed to the writer, read from Ray Data's own operator metrics in the
driver: nothing is sent or timed on the workers.
"""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger(__name__)

DEFAULT_PROGRESS_EVERY_S = 30.0


def duration(seconds: float) -> str:
    """"12 s", "1 min 32 s", "2 h 5 min"."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, whole = divmod(whole, 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min {whole} s"


class ScoringProgress:
    """What one run has scored, and the line to log when one is due.

    The rate is measured from the first rows that reached the writer, so the start-up (the cluster,
    the model actors loading the model) does not make the time left look longer than it is.
    """

    def __init__(self, total_rows: int, every_s: float, clock=time.monotonic):
        self.total_rows = total_rows
        self.every_s = every_s
        self._clock = clock
        self._started = clock()
        self._last_line = self._started
        self._first: tuple[float, int] | None = None  # (time, rows) when rows first reached the writer

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
            rate = (rows_done - rows_then) / (now - since)
            left = max(self.total_rows - rows_done, 0) / rate
            text += f", {rate:,.0f} rows/s; about {duration(left)} left"
        return text


def rows_handed_to_writer(executor) -> int:
    """Rows the last operator (the write) has received so far, from the driver's executor."""
    write = list(executor._topology)[-1]  # topological order: the write is the sink
    return write.metrics.num_row_inputs_received


def report_progress(ds, total_rows: int, every_s: float) -> None:
    """Log a ScoringProgress line every every_s seconds while `ds` is written; 0 turns it off.

    The line comes from a Ray Data execution callback that runs in the driver's executor loop;
    it never fails the run (a progress line describes a night, it must not fail one: the metric
    it reads is a private Ray one, so a Ray upgrade may take it away).
    """
    from ray.data._internal.execution.execution_callback import ExecutionCallback

    if not every_s or total_rows <= 0:
        return
    progress = ScoringProgress(total_rows, every_s)

    class LogScoringProgress(ExecutionCallback):
        failed = False

        def on_execution_step(self, executor) -> None:
            if LogScoringProgress.failed:
                return
            try:
                line = progress.update(rows_handed_to_writer(executor))
            except Exception as error:
                LogScoringProgress.failed = True
                log.warning("no progress lines for this run: Ray Data's operator metrics could not be read (%s)",
                            error)
                return
            if line:
                log.info(line)

    # A new list, this dataset's own: the DataContext it was made with may be shared.
    others = [c for c in ds.context.custom_execution_callback_classes if c.__name__ != LogScoringProgress.__name__]
    ds.context.custom_execution_callback_classes = [*others, LogScoringProgress]
    if not sys.stdout.isatty():
        # In a log (a job, cron, a pipe), Ray Data's own display is a dozen lines per operator every
        # 10 s, with no total for CSV and JSON shards; this line takes its place there. A terminal
        # keeps Ray's bars: they redraw in place.
        ds.context.enable_progress_bars = False
        # Ray then warns, once per process, that its bars are off and names a Python setting to turn
        # them on: noise in a CLI's log. Taking its "once" first keeps it out (a renamed key in a
        # later Ray only lets the warning through).
        from ray.util.debug import log_once

        log_once("ray_data_progress_manager_disabled")
