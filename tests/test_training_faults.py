"""Training survives a lost DDP worker: Ray Train restarts the group from the last checkpoint."""

import os
import signal

import pytest

from tests.helpers import assert_resumed_from_checkpoint, labeled_sample, start_held_after_first_epoch, tiny_train_command

EPOCHS = 2  # a checkpoint after epoch 1, the kill, and one epoch after the restart


@pytest.mark.slow
def test_killed_ddp_worker_restarts_from_checkpoint_and_the_model_is_intact(shared_data, tiny_backbone, tmp_path,
                                                                           ray_cluster):
    from sentiment.pause_points import release

    data = labeled_sample(shared_data, tmp_path, 300, seed=4)
    output = tmp_path / "model"
    command = tiny_train_command(data, output, tiny_backbone, EPOCHS, "--max-failures", "2")
    snapshot = output / "checkpoints" / "sentiment-train" / "checkpoint_manager_snapshot.json"
    points = tmp_path / "points"
    run, held = start_held_after_first_epoch(command, snapshot, tmp_path / "train.log", points, workers=2)
    try:
        os.kill(held[1], signal.SIGKILL)  # one DDP worker, held right after its epoch-1 report
        release(str(points), "train.epoch_reported")
        assert run.wait(timeout=900) == 0, (tmp_path / "train.log").read_text()[-3000:]
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    assert_resumed_from_checkpoint(output, EPOCHS)

    from transformers import pipeline

    predictions = pipeline("text-classification", model=str(output))(["works great", "crashes constantly"])
    assert all(p["label"] in ("negative", "neutral", "positive") for p in predictions)
