"""Named points where a test can hold a process and kill it there: faults placed by name, not by
timing, so a kill test needs a few hundred rows instead of a run long enough to aim at.

    SENTIMENT_PAUSE_AT=commit.before_marker,score.actor_batch  SENTIMENT_PAUSE_DIR=/tmp/points

A process that reaches a listed point writes `DIR/NAME.PID.reached` (so a test knows which process
to kill) and waits until `DIR/NAME.go` exists (so a test can also let it go on). `NAME@N` holds a
process the Nth time it reaches the point, so a run can be caught mid-way. Outside tests the
variables are unset and a point costs one environment lookup. Ray workers inherit the variables
from the process that started the cluster; `runtime_env_vars()` carries them to the workers of a
cluster that was already running.
"""

from __future__ import annotations

import glob
import os
import subprocess
import time

PAUSE_AT_ENV = "SENTIMENT_PAUSE_AT"
PAUSE_DIR_ENV = "SENTIMENT_PAUSE_DIR"
_POLL_S = 0.05
_times_reached: dict[str, int] = {}


def pause_point(name: str) -> None:
    """Hold this process at `name` while SENTIMENT_PAUSE_AT lists it (as NAME or NAME@N: the
    Nth time here), until NAME.go appears."""
    names = os.environ.get(PAUSE_AT_ENV)
    if not names:
        return
    wanted = dict(entry.partition("@")[::2] for entry in names.split(","))
    if name not in wanted:
        return
    _times_reached[name] = _times_reached.get(name, 0) + 1
    if _times_reached[name] != int(wanted[name] or 1):
        return
    folder = os.environ[PAUSE_DIR_ENV]
    reached = os.path.join(folder, f"{name}.{os.getpid()}.reached")
    with open(reached + ".tmp", "w") as file:
        file.write(str(os.getpid()))
    os.replace(reached + ".tmp", reached)  # whole or absent: a test never reads half a pid
    go = os.path.join(folder, f"{name}.go")
    while not os.path.exists(go):
        time.sleep(_POLL_S)


def runtime_env_vars() -> dict[str, str]:
    """The pause variables of this process, for a Ray runtime_env; empty when none are set."""
    return {key: os.environ[key] for key in (PAUSE_AT_ENV, PAUSE_DIR_ENV) if os.environ.get(key)}


def wait_until_reached(folder: str, name: str, timeout_s: float = 120.0, count: int = 1,
                       process: subprocess.Popen | None = None) -> list[int]:
    """For tests: block until `count` processes wait at `name`; returns their pids.

    `process`, when given, is the subprocess that should get there (itself or through its Ray
    workers): once it has exited, waiting longer cannot help, so the wait ends then.

    Raises:
        TimeoutError: if fewer reached it within timeout_s.
        RuntimeError: if `process` exited before they did.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        pids = sorted(int(open(path).read()) for path in glob.glob(os.path.join(folder, f"{name}.*.reached")))
        if len(pids) >= count:
            return pids
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process {process.pid} exited with {process.returncode} before {count} process(es) "
                               f"reached pause point {name!r}; {len(pids)} did")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{count} process(es) should have reached pause point {name!r} within "
                               f"{timeout_s:g} s; {len(pids)} did")
        time.sleep(_POLL_S)


def release(folder: str, name: str) -> None:
    """For tests: let every process waiting at `name`, and any that reaches it later, go on."""
    open(os.path.join(folder, f"{name}.go"), "w").close()
