"""What a training run says when it loses a worker: one line, in the run's own words, naming the
rank, the error and what happens next.

Before, a DDP worker lost mid-run (a node preempted, a process killed or out of memory) showed on
the console as Ray's raylet line, then 25 lines of traceback from Ray Train's controller ("Graceful
shutdown of backend failed. This is expected if one of the workers has crashed."), then the new
group's "resuming" line. Nothing said whether the run would go on, or how many more losses it
would take: Ray Train's own decision ("[FailurePolicy] RETRY ... Error count: 1 (max allowed: 2)")
is an INFO line, which the console leaves to the session's log files
(sentiment/cluster/ray_console.py).
"""

from __future__ import annotations

import datetime
import json
import logging
import sys

from ray.exceptions import RayActorError
from ray.train import UserCallback

log = logging.getLogger(__name__)

# Ray Train's controller logs this warning with the whole traceback of the failed collective
# shutdown (Ray 2.60: ray/train/v2/_internal/callbacks/backend_setup.py) every time a worker is
# lost, an event the line below already reports. Its message stays; the traceback is cut.
RAY_BACKEND_SHUTDOWN_LOGGER = "ray.train.v2._internal.callbacks.backend_setup"
# A failure before the first epoch's checkpoint starts the run over.
FROM_CHECKPOINT = "from the last checkpoint if there is one"
# Beside the run's checkpoints (storage path / run name): every failure of the run's worker groups,
# over all its attempts (a re-run with the same name adds to it). metrics.json copies it.
FAILURES_FILE = "sentiment_worker_failures.json"


class WorkerFailureReport(UserCallback):
    """Runs in Ray Train's controller process (a RunConfig callback). After each failure of the
    worker group it logs, e.g.:

        [train] rank 1 failed (ActorDiedError: The actor is dead because its worker process has
        died. ...): failure 1 of --max-failures 2, so Ray Train restarts the workers, from the
        last checkpoint if there is one

    and, once failures exceed --max-failures, says the run stops. A preempted node does not count
    against --max-failures (Ray Train's rule: FailureConfig.max_preemption_failures, unlimited by
    default)."""

    def __init__(self, max_failures: int, tag: str = "[train]", run_dir: str | None = None):
        self.max_failures = max_failures
        self.tag = tag  # the tag of the command's worker lines: "[train]", "[adapt]"
        self.run_dir = run_dir  # where FAILURES_FILE is kept; None: nowhere
        self.failures = 0

    def after_exception(self, run_context, worker_exceptions: dict) -> None:
        _say_warnings_on_stderr()
        _cut_traceback_of(RAY_BACKEND_SHUTDOWN_LOGGER)
        ranks = ", ".join(f"rank {rank} failed ({describe_error(error)})"
                          for rank, error in sorted(worker_exceptions.items()))
        if any(getattr(_unwrapped(error), "preempted", False) for error in worker_exceptions.values()):
            log.warning(f"{self.tag} {ranks}: a node was preempted, which --max-failures does not "
                        f"count, so Ray Train restarts the workers, {FROM_CHECKPOINT}")
            outcome = "restarted (a node preempted)"
        else:
            self.failures += 1
            if self.failures <= self.max_failures:
                log.warning(f"{self.tag} {ranks}: failure {self.failures} of --max-failures "
                            f"{self.max_failures}, so Ray Train restarts the workers, {FROM_CHECKPOINT}")
                outcome = "restarted"
            else:
                log.warning(f"{self.tag} {ranks}: failure {self.failures}, more than --max-failures "
                            f"{self.max_failures}, so the run stops")
                outcome = "stopped"
        if self.run_dir:
            self._record({"at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                          "ranks": {str(rank): describe_error(error) for rank, error in sorted(worker_exceptions.items())},
                          "outcome": outcome})

    def _record(self, failure: dict) -> None:
        from sentiment.io.storage import write_bytes

        try:
            failures = read_worker_failures(self.run_dir) + [failure]
            write_bytes(f"{self.run_dir}/{FAILURES_FILE}", json.dumps(failures, indent=1).encode())
        except Exception as error:  # the record must never be what stops a run that would go on
            log.warning(f"{self.tag} the failure could not be recorded in {self.run_dir}/{FAILURES_FILE}: {error}")


def read_worker_failures(run_dir: str) -> list[dict]:
    """The failures WorkerFailureReport recorded for the run in run_dir (storage path / run
    name), oldest first: [] where there were none."""
    from sentiment.io.storage import exists, read_bytes

    uri = f"{run_dir}/{FAILURES_FILE}"
    return json.loads(read_bytes(uri)) if exists(uri) else []


def describe_error(error: BaseException, limit: int = 240) -> str:
    """One line for a worker's error: its type and what happened. A lost worker reaches the
    callback as Ray Train's WorkerHealthCheckFailedError around Ray's RayActorError, whose last line
    says how the process ended (before Ray's list of common causes); an error raised by the
    worker's code reaches it as Ray Train's wrapper, whose text is the worker's traceback, ending in
    the line "ValueError: ..." that names it."""
    error = _unwrapped(error)
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    if isinstance(error, RayActorError):
        text = f"{type(error).__name__}: " + lines[-1].split(" Some common causes")[0]
    else:
        text = lines[-1]
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _unwrapped(error: BaseException) -> BaseException:
    # Ray Train's WorkerHealthCheckFailedError (a private class) keeps the lost worker's own error
    # here, as its own preemption check reads it (ray/train/v2/_internal/execution/worker_group/poll.py).
    return getattr(error, "health_check_failure", None) or error


class _WithoutTraceback(logging.Filter):
    """Keeps a record's message, drops its traceback (for every handler: the filter sits on the
    logger the record comes from)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info, record.exc_text = None, None
        return True


def _cut_traceback_of(logger_name: str) -> None:
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, _WithoutTraceback) for f in logger.filters):
        logger.addFilter(_WithoutTraceback())


def _say_warnings_on_stderr() -> None:
    """This module's warnings to stderr, which Ray forwards to the driver's console, prefixed
    "(TrainController pid=N)": Ray Train configures only its own loggers in the controller."""
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.WARNING)
        log.propagate = False
