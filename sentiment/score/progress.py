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

from sentiment.progress import RowProgress

log = logging.getLogger(__name__)



def rows_handed_to_writer(executor) -> int:
    """Rows the last operator (the write) has received so far, from the driver's executor."""
    write = list(executor._topology)[-1]  # topological order: the write is the sink
    return write.metrics.num_row_inputs_received


def report_progress(ds, total_rows: int, every_s: float) -> None:
    """Log a RowProgress line every every_s seconds while `ds` is written; 0 turns it off.

    The line comes from a Ray Data execution callback that runs in the driver's executor loop;
    it never fails the run (a progress line describes a night, it must not fail one: the metric
    it reads is a private Ray one, so a Ray upgrade may take it away).
    """
    from ray.data._internal.execution.execution_callback import ExecutionCallback

    if not every_s or total_rows <= 0:
        return
    progress = RowProgress(total_rows, every_s)

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
