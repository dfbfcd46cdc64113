"""Pause points: a process listed in SENTIMENT_PAUSE_AT waits at the named point, says which pid it
is, and goes on only when released; an unlisted point does not wait."""

import os
import subprocess
import sys

from sentiment.pause_points import PAUSE_AT_ENV, PAUSE_DIR_ENV, release, wait_until_reached

SCRIPT = ("from sentiment.pause_points import pause_point; "
          "pause_point('not.listed'); print('before', flush=True); pause_point('demo.point'); print('after')")


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
