"""A training run killed after a checkpoint continues from it when re-run with the same name."""

import os
import signal
import subprocess

import pytest

from tests.helpers import (assert_resumed_from_checkpoint, labeled_sample, session_cluster_env,
                           start_held_after_first_epoch, tiny_train_command)

EPOCHS = 2  # a checkpoint after epoch 1, the kill, and one epoch after the resume


@pytest.mark.slow
def test_killed_run_resumes_from_its_last_checkpoint_when_rerun(shared_data, tiny_backbone, tmp_path, ray_cluster):
    data = labeled_sample(shared_data, tmp_path, 300, seed=2)
    output = tmp_path / "model"
    command = tiny_train_command(data, output, tiny_backbone, EPOCHS, "--run-name", "resume-me")
    snapshot = output / "checkpoints" / "resume-me" / "checkpoint_manager_snapshot.json"
    first, _ = start_held_after_first_epoch(command, snapshot, tmp_path / "first.log", tmp_path / "points", workers=2)
    os.killpg(first.pid, signal.SIGKILL)  # the driver, held after epoch 1 (Ray then kills its workers)
    first.wait()
    assert not (output / "metrics.json").exists()

    second = subprocess.run(command, env=session_cluster_env(), capture_output=True,
                            text=True, timeout=900)
    log = second.stdout + second.stderr
    assert second.returncode == 0, log[-3000:]
    restored = assert_resumed_from_checkpoint(output, EPOCHS)
    # The driver says so first, before anything else it prints.
    assert second.stdout.splitlines()[0] == (f"resuming run 'resume-me' from its checkpoint of epoch "
                                             f"{restored['epoch']} (in {output}/checkpoints/resume-me)")

    # The same run folder with another learning rate is another run: refused, saying how to go on.
    changed = subprocess.run([*command, "--lr", "2e-3"], env=session_cluster_env(),
                             capture_output=True, text=True, timeout=300)
    assert changed.returncode == 2, changed.stderr[-3000:]
    error = changed.stderr.strip().splitlines()[-1]
    assert error.startswith("sentiment train: error: ") and "lr 0.001 -> 0.002" in error, error
    assert "new --run-name" in error and "repeat its settings" in error


def test_a_run_recorded_before_label_smoothing_existed_still_resumes(tmp_path):
    import json

    from sentiment.errors import InputError
    from sentiment.train.resume import RUN_KEYS, SETTINGS_FILE, SNAPSHOT_FILE, prepare_run

    settings = {key: None for key in RUN_KEYS} | {"lr": 1e-4, "epochs": 3, "label_smoothing": 0.0}
    older = {key: value for key, value in settings.items() if key != "label_smoothing"}
    (tmp_path / SETTINGS_FILE).write_text(json.dumps(older))
    (tmp_path / SNAPSHOT_FILE).write_text(json.dumps({"latest_checkpoint_result": {"metrics": {"epoch": 2}}}))

    assert prepare_run(str(tmp_path), settings) == 2
    with pytest.raises(InputError, match=r"label_smoothing 0\.0 -> 0\.1"):
        prepare_run(str(tmp_path), settings | {"label_smoothing": 0.1})


def test_a_run_recorded_before_split_seed_existed_resumes_with_its_seed_as_split_seed(tmp_path):
    import json

    from sentiment.errors import InputError
    from sentiment.train.resume import RUN_KEYS, SETTINGS_FILE, SNAPSHOT_FILE, prepare_run

    settings = {key: None for key in RUN_KEYS} | {"seed": 7, "split_seed": 7, "label_smoothing": 0.0}
    older = {key: value for key, value in settings.items() if key != "split_seed"}  # --seed also split then
    (tmp_path / SETTINGS_FILE).write_text(json.dumps(older))
    (tmp_path / SNAPSHOT_FILE).write_text(json.dumps({"latest_checkpoint_result": {"metrics": {"epoch": 1}}}))

    assert prepare_run(str(tmp_path), settings) == 1
    with pytest.raises(InputError, match=r"split_seed 7 -> 42"):
        prepare_run(str(tmp_path), settings | {"split_seed": 42})
