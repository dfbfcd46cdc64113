"""A training run killed after a checkpoint continues from it when re-run with the same name."""

import json
import os
import signal
import subprocess

import pytest

from tests.helpers import labeled_sample, start_and_wait_for_first_checkpoint, tiny_train_command

EPOCHS = 6


@pytest.mark.slow
def test_killed_run_resumes_from_its_last_checkpoint_when_rerun(shared_data, tiny_backbone, tmp_path, s3_server):
    data = labeled_sample(shared_data, tmp_path, 600, seed=2)
    output = tmp_path / "model"
    command = tiny_train_command(data, output, tiny_backbone, EPOCHS, "--run-name", "resume-me")
    snapshot = output / "checkpoints" / "resume-me" / "checkpoint_manager_snapshot.json"
    first = start_and_wait_for_first_checkpoint(command, snapshot, tmp_path / "first.log")
    os.killpg(first.pid, signal.SIGKILL)  # the driver and its whole local cluster
    first.wait()
    assert not (output / "metrics.json").exists()

    second = subprocess.run(command, env={**os.environ, "RAY_ADDRESS": "local"}, capture_output=True,
                            text=True, timeout=900)
    log = second.stdout + second.stderr
    assert second.returncode == 0, log[-3000:]
    resumed = [line for line in log.splitlines() if "resuming from the checkpoint of epoch" in line]
    assert resumed, log[-3000:]
    resumed_epoch = int(resumed[0].rsplit(" ", 1)[-1])
    assert 1 <= resumed_epoch < EPOCHS
    history = json.loads((output / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == list(range(1, EPOCHS + 1))
