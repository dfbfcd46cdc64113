"""A training run killed after a checkpoint continues from it when re-run with the same name."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import labeled_sample

EPOCHS = 6


@pytest.mark.slow
def test_killed_run_resumes_from_its_last_checkpoint_when_rerun(shared_data, tiny_backbone, tmp_path, s3_server):
    data = labeled_sample(shared_data, tmp_path, 600, seed=2)
    output = tmp_path / "model"
    command = [sys.executable, "-m", "sentiment", "train", "--data", str(data), "--output", str(output),
               "--model", tiny_backbone, "--epochs", str(EPOCHS), "--num-workers", "2", "--lr", "1e-3",
               "--run-name", "resume-me"]
    # A cluster of its own, so killing the whole process group takes the run down with it.
    env = {**os.environ, "RAY_ADDRESS": "local"}
    snapshot = output / "checkpoints" / "resume-me" / "checkpoint_manager_snapshot.json"
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.time() + 600
            while not snapshot.exists() and first.poll() is None and time.time() < deadline:
                time.sleep(0.2)
            assert snapshot.exists(), (tmp_path / "first.log").read_text()[-3000:]
            assert first.poll() is None, "the first run finished before it could be interrupted"
        finally:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
    assert not (output / "metrics.json").exists()

    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    log = second.stdout + second.stderr
    assert second.returncode == 0, log[-3000:]
    resumed = [line for line in log.splitlines() if "resuming from the checkpoint of epoch" in line]
    assert resumed, log[-3000:]
    resumed_epoch = int(resumed[0].rsplit(" ", 1)[-1])
    assert 1 <= resumed_epoch < EPOCHS
    history = json.loads((output / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == list(range(1, EPOCHS + 1))
