"""Training survives a lost DDP worker: Ray Train restarts the group from the last checkpoint."""

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from tests.helpers import labeled_sample

EPOCHS = 6


def _train_workers(root: psutil.Process) -> list[psutil.Process]:
    workers = []
    for child in root.children(recursive=True):
        try:
            if child.cmdline()[:1] and child.cmdline()[0].startswith("ray::RayTrainWorker"):
                workers.append(child)
        except psutil.NoSuchProcess:
            pass
    return workers


@pytest.mark.slow
def test_killed_ddp_worker_restarts_from_checkpoint_and_the_model_is_intact(shared_data, tiny_backbone, tmp_path, s3_server):
    data = labeled_sample(shared_data, tmp_path, 600, seed=4)
    output = tmp_path / "model"
    command = [sys.executable, "-m", "sentiment", "train", "--data", str(data), "--output", str(output),
               "--model", tiny_backbone, "--epochs", str(EPOCHS), "--num-workers", "2", "--lr", "1e-3",
               "--max-failures", "2"]
    snapshot = output / "checkpoints" / "sentiment-train" / "checkpoint_manager_snapshot.json"
    env = {**os.environ, "RAY_ADDRESS": "local"}  # a cluster of its own, so we know whose workers we kill
    log_path = tmp_path / "train.log"
    with open(log_path, "w") as log:
        run = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.time() + 600
            while not snapshot.exists() and run.poll() is None and time.time() < deadline:
                time.sleep(0.2)
            assert run.poll() is None, "training ended before a worker could be killed:\n" + log_path.read_text()[-3000:]
            victims = _train_workers(psutil.Process(run.pid))
            assert len(victims) == 2, victims
            victims[1].send_signal(signal.SIGKILL)  # mid-epoch: the next epoch started right after the report
            assert run.wait(timeout=900) == 0, log_path.read_text()[-3000:]
        finally:
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGKILL)
    text = log_path.read_text()
    assert "resuming from the checkpoint of epoch" in text, text[-3000:]
    history = json.loads((output / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == list(range(1, EPOCHS + 1))

    from transformers import pipeline

    predictions = pipeline("text-classification", model=str(output))(["works great", "crashes constantly"])
    assert all(p["label"] in ("negative", "neutral", "positive") for p in predictions)
