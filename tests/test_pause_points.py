"""Pause points: a process listed in SENTIMENT_PAUSE_AT waits at the named point, says which pid it
is, and goes on only when released; an unlisted point does not wait."""

import os
import subprocess
import sys
import time

import pytest

from sentiment.pause_points import PAUSE_AT_ENV, PAUSE_DIR_ENV, release, wait_until_reached

SCRIPT = ("from sentiment.pause_points import pause_point; "
          "pause_point('not.listed'); print('before', flush=True); pause_point('demo.point'); print('after')")
# Reaches the point three times and prints how often it passed before being held.
LOOP = ("from sentiment.pause_points import pause_point\n"
        "for i in range(3):\n    print(i, flush=True)\n    pause_point('loop.point')\nprint('done')")


def test_a_listed_point_holds_the_process_until_released(tmp_path):
    env = {**os.environ, PAUSE_AT_ENV: "other.point,demo.point", PAUSE_DIR_ENV: str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert wait_until_reached(str(tmp_path), "demo.point", timeout_s=60) == [proc.pid]
        assert proc.poll() is None, "the process went past the point without being released"
        release(str(tmp_path), "demo.point")
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0 and out.split() == ["before", "after"]


def test_without_the_variables_nothing_waits(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in (PAUSE_AT_ENV, PAUSE_DIR_ENV)}
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.split() == ["before", "after"]
    assert os.listdir(tmp_path) == []


def test_name_at_n_holds_the_process_the_nth_time_only(tmp_path):
    env = {**os.environ, PAUSE_AT_ENV: "loop.point@2", PAUSE_DIR_ENV: str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-c", LOOP], env=env, stdout=subprocess.PIPE, text=True)
    try:
        wait_until_reached(str(tmp_path), "loop.point", timeout_s=60)
        assert proc.stdout.readline().strip() == "0" and proc.stdout.readline().strip() == "1"
        assert proc.poll() is None
        release(str(tmp_path), "loop.point")
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert out.split() == ["2", "done"]


def test_a_wait_on_a_process_that_exits_first_ends_then_not_at_the_timeout(tmp_path):
    # A run that dies before its point (a crash, a refusal) fails the test at once, not minutes later.
    env = {**os.environ, PAUSE_AT_ENV: "never.reached", PAUSE_DIR_ENV: str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"], env=env)
    started = time.monotonic()
    with pytest.raises(RuntimeError, match=f"process {proc.pid} exited with 3 before 1 process"):
        wait_until_reached(str(tmp_path), "never.reached", timeout_s=600, process=proc)
    assert time.monotonic() - started < 60
