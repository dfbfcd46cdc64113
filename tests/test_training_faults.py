"""Training survives a lost DDP worker: Ray Train restarts the group from the last checkpoint."""

import os
import signal

import psutil
import pytest

from tests.helpers import (assert_resumed_from_checkpoint, labeled_sample, start_and_wait_for_first_checkpoint,
                           tiny_train_command)

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
    command = tiny_train_command(data, output, tiny_backbone, EPOCHS, "--max-failures", "2")
    snapshot = output / "checkpoints" / "sentiment-train" / "checkpoint_manager_snapshot.json"
    log_path = tmp_path / "train.log"
    run = start_and_wait_for_first_checkpoint(command, snapshot, log_path)
    try:
        victims = _train_workers(psutil.Process(run.pid))
        assert len(victims) == 2, victims
        victims[1].send_signal(signal.SIGKILL)  # mid-epoch: the next epoch started right after the report
        assert run.wait(timeout=900) == 0, log_path.read_text()[-3000:]
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    assert_resumed_from_checkpoint(output, EPOCHS)

    from transformers import pipeline

    predictions = pipeline("text-classification", model=str(output))(["works great", "crashes constantly"])
    assert all(p["label"] in ("negative", "neutral", "positive") for p in predictions)
