"""What Ray's libraries print to a command's console: warnings and errors, not their INFO chatter.

`sentiment demo` printed 185 lines, over 90 of them Ray's: for every small dataset the driver or
a worker runs, Ray Data logs "Starting execution", the plan, a dozen lines of its logged progress
display (stdout is not a terminal in a job or a pipe), and "execution finished"; Ray Train logs
each step of starting its worker group and every checkpoint's path. Our own lines (the epoch line,
scoring's progress and summary) say what a user needs, and were lost among them. Everything Ray
logs still goes to the session's files (logs/ray-data/ray-data.log, logs/train/), as before.

A user's own RAY_DATA_LOGGING_CONFIG wins over ours.
"""

from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path

# Ray Data's own default configuration (ray/data/_internal/logging.py in Ray 2.60) with the console
# handler at WARNING and the filter below; every process that imports ray.data with this variable
# set reads it.
RAY_DATA_LOGGING_CONFIG = str(Path(__file__).with_name("ray_data_logging.yaml"))

# Ray Train's LoggingConfig level for its controller's and workers' ray.train loggers (console and
# the "app" log file; its "sys" log file keeps DEBUG).
RAY_TRAIN_LOG_LEVEL = "WARNING"


class HideProgressBarsOff(logging.Filter):
    """Drops Ray Data's warning that its progress bars are off. We turn them off on purpose (our
    own progress lines replace them), and the warning then names a Python setting to turn them
    back on: once per process, so once per Ray Train worker and split coordinator."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Progress bars disabled")


# Ray Train's dataset manager warns, in every training run, that an ExecutionOptions field Ray Train
# itself sets is deprecated (Ray 2.60): two lines about Ray's own code, nothing a user can change.
# The start of the message, as Python's warning filters match it.
RAY_TRAIN_DEPRECATION = "`ExecutionOptions.exclude_resources` is deprecated"


def ray_console_env() -> dict[str, str]:
    """Environment for the worker processes of a cluster we start, so that the Ray Data runs inside
    them (Ray Train's split coordinator, validation in the train workers) log as quietly as the
    driver. The user's own settings are kept: their RAY_DATA_LOGGING_CONFIG wins, and our
    warning filter is added to their PYTHONWARNINGS."""
    env = {}
    if not os.environ.get("RAY_DATA_LOGGING_CONFIG"):
        env["RAY_DATA_LOGGING_CONFIG"] = RAY_DATA_LOGGING_CONFIG
    ours = f"ignore:{RAY_TRAIN_DEPRECATION}:DeprecationWarning"
    theirs = os.environ.get("PYTHONWARNINGS", "")
    if ours not in theirs.split(","):
        env["PYTHONWARNINGS"] = ",".join(filter(None, [theirs, ours]))
    return env


def quiet_ray_data_console() -> None:
    """Ray Data's console handler in this process at WARNING, without the progress-bars-off warning,
    as ray_console_env() sets it for workers. Its log file keeps everything."""
    if os.environ.get("RAY_DATA_LOGGING_CONFIG"):
        return  # the user's own configuration
    importlib.import_module("ray.data")  # which configures the "ray.data" logger

    for handler in logging.getLogger("ray.data").handlers:
        # Ray Data names its handlers after its configuration's keys. Others may be attached too
        # (pytest's capture handlers are), and are not ours to change.
        if handler.name == "console":
            handler.setLevel(logging.WARNING)
            if not any(isinstance(f, HideProgressBarsOff) for f in handler.filters):
                handler.addFilter(HideProgressBarsOff())


def quiet_ray_train_report_lines() -> None:
    """Ray Train logs each rank's every ray.train.report as one INFO line holding the whole metrics
    dict again (about 800 characters, 2 per epoch in the demo, 16 per epoch on 8 GPUs), streamed to
    the user's console; the epoch line rank 0 logs says the same once. Its logger is named by the
    module's file path (logging.getLogger(__file__) in Ray 2.60); warnings still show."""
    try:
        from ray.train.v2._internal.execution import context
    except ImportError:  # another Ray layout: its lines stay
        return
    logging.getLogger(context.__file__).setLevel(logging.WARNING)
