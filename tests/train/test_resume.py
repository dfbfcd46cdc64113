"""Training survives faults: a lost DDP worker (Ray Train restarts the group from the last
checkpoint), and a driver stopped with Ctrl-C (it says `interrupted` and exits 130; a re-run with
the same name continues from the last checkpoint). A driver killed outright resumes the same way:
tests/test_adapt.py kills `sentiment adapt`'s with SIGKILL."""

import json
import os
import signal

import pytest

from tests.helpers import (assert_resumed_from_checkpoint, labeled_sample,
                           start_held_after_first_epoch, tiny_train_command, wait_for_checkpoint_of_epoch)

# Epoch 1, then a DDP worker killed and the group restarted from its checkpoint; epoch 2, then
# Ctrl-C to the driver; the re-run resumes from epoch 2's checkpoint and trains epoch 3.
EPOCHS = 3


@pytest.mark.slow
def test_a_lost_worker_restarts_and_a_run_stopped_with_ctrl_c_resumes_from_its_last_checkpoint(
        shared_data, tiny_backbone, tmp_path, ray_cluster, capsys):
    from sentiment.pause_points import wait_until_reached

    data = labeled_sample(shared_data, tmp_path, 300, seed=2)
    output = tmp_path / "model"
    command = tiny_train_command(data, output, tiny_backbone, EPOCHS, "--run-name", "resume-me", "--max-failures", "2")
    snapshot = output / "checkpoints" / "resume-me" / "checkpoint_manager_snapshot.json"
    points = tmp_path / "points"
    first, held = start_held_after_first_epoch(command, snapshot, tmp_path / "first.log", points, workers=2)
    try:
        os.kill(held[1], signal.SIGKILL)  # one DDP worker, held right after its epoch-1 report
        # The restarted group's workers are new processes: each holds at its first report, epoch 2's.
        restarted = set(wait_until_reached(str(points), "train.epoch_reported", timeout_s=600, count=4,
                                           process=first)) - set(held)
        assert len(restarted) == 2, restarted
        wait_for_checkpoint_of_epoch(snapshot, 2)
        # Ctrl-C reaches the driver while its workers train (held after epoch 2's report).
        os.kill(first.pid, signal.SIGINT)
        status = first.wait(timeout=120)
    except (TimeoutError, RuntimeError, AssertionError) as error:
        raise AssertionError(f"{error}; training log:\n" + (tmp_path / "first.log").read_text()[-3000:]) from None
    finally:
        try:
            os.killpg(first.pid, signal.SIGKILL)  # what is left of its group (Ray then kills its workers)
        except ProcessLookupError:
            pass
        first.wait()
    printed = (tmp_path / "first.log").read_text()
    assert status == 130, printed[-3000:]
    # Lines of the driver itself: Ray streams its actors' logs in too, prefixed "(Actor pid=...)",
    # and keeps streaming them for a moment after our last line.
    driver = [line for line in printed.splitlines() if not line.lstrip("\x1b[0123456789m").startswith("(")]
    assert driver[-1] == "sentiment train: interrupted", printed[-3000:]
    assert not any(line.startswith("Traceback") for line in driver), printed[-3000:]
    # The lost worker is said in one line from Ray Train's controller, with what happens next, and
    # the controller prints no traceback for it (Ray's own shutdown warning printed 25 lines).
    controller = [line for line in printed.splitlines() if "(TrainController pid=" in line]
    failed = [line for line in controller if "[train] rank 1 failed (" in line]
    assert len(failed) == 1 and failed[0].endswith(
        "failure 1 of --max-failures 2, so Ray Train restarts the workers, from the last checkpoint if there is one"), controller
    assert not any("Traceback" in line for line in controller), controller
    # Before the workers' first lines, the driver says they are starting; rank 0 then says what
    # an epoch will be (265 training rows, 132 per worker, in steps of 16) and when it was ready.
    starting = "starting 2 Ray Train worker(s), 2 CPU(s) each; each loads the model before its first line"
    assert any(line.endswith(starting) for line in driver), printed[-3000:]
    ready = [line for line in printed.splitlines() if "[train] 2 worker(s) on cpu, " in line]
    assert len(ready) == 2, printed[-3000:]  # the first group's and the restarted group's
    assert all(": 9 steps of 16 reviews per worker each epoch; ready " in line for line in ready), ready
    assert not (output / "metrics.json").exists()

    # The same command again, in this process (a driver process of its own would only add its
    # start-up: the killed run was one).
    from sentiment.cli import main

    capsys.readouterr()
    status = main(command[3:])
    printed = capsys.readouterr()
    assert status == 0, (printed.out + printed.err)[-3000:]
    _, after_rerun = assert_resumed_from_checkpoint(output, EPOCHS, restored_epochs=[1, 2])
    # metrics.json keeps what the run survived, over both drivers: the one worker lost.
    [failure] = json.loads((output / "metrics.json").read_text())["worker_failures"]
    assert list(failure["ranks"]) == ["1"] and failure["ranks"]["1"].startswith("ActorDiedError: "), failure
    assert failure["outcome"] == "restarted" and failure["at"].startswith("20"), failure
    # The driver says so first, before anything else it prints.
    assert printed.out.splitlines()[0] == (f"resuming run 'resume-me' from its checkpoint of epoch "
                                           f"{after_rerun['epoch']} (in {output}/checkpoints/resume-me)")
    from transformers import pipeline

    predictions = pipeline("text-classification", model=str(output))(["works great", "crashes constantly"])
    assert all(p["label"] in ("negative", "neutral", "positive") for p in predictions)

    # The same run folder with another learning rate is another run: refused, saying how to go on.
    capsys.readouterr()
    assert main([*command[3:], "--lr", "2e-3"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
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


def test_an_adapt_run_recorded_with_one_text_column_name_resumes_with_that_name_as_a_list(tmp_path):
    import json

    from sentiment.adapt import ADAPT_RUN_KEYS
    from sentiment.errors import InputError
    from sentiment.train.resume import SETTINGS_FILE, SNAPSHOT_FILE, prepare_run

    settings = {key: None for key in ADAPT_RUN_KEYS} | {"text_column": ["Review Text"], "leave_out_text_column": ["content"]}
    older = settings | {"text_column": "Review Text", "leave_out_text_column": "content"}  # before 2026-12-05
    (tmp_path / SETTINGS_FILE).write_text(json.dumps(older))
    (tmp_path / SNAPSHOT_FILE).write_text(json.dumps({"latest_checkpoint_result": {"metrics": {"epoch": 1}}}))

    assert prepare_run(str(tmp_path), settings, ADAPT_RUN_KEYS) == 1
    with pytest.raises(InputError, match=r"text_column 'Review Text' -> \['Review Text', 'Text'\]"):
        prepare_run(str(tmp_path), settings | {"text_column": ["Review Text", "Text"]}, ADAPT_RUN_KEYS)


def test_a_train_run_recorded_with_one_text_column_name_resumes_with_that_name_as_a_list(tmp_path):
    import json

    from sentiment.train.driver import TrainConfig
    from sentiment.train.resume import RUN_KEYS, SETTINGS_FILE, SNAPSHOT_FILE, prepare_run, run_settings

    settings = run_settings(vars(TrainConfig(data=["x.csv"], output="out", text_column="content").resolved()))
    assert settings["text_column"] == ["content"]
    (tmp_path / SETTINGS_FILE).write_text(json.dumps(settings | {"text_column": "content"}))  # before 2026-12-05
    (tmp_path / SNAPSHOT_FILE).write_text(json.dumps({"latest_checkpoint_result": {"metrics": {"epoch": 1}}}))
    assert prepare_run(str(tmp_path), settings, RUN_KEYS) == 1


def test_a_failed_worker_is_said_in_one_line_with_what_happens_next(monkeypatch, capsys, tmp_path):
    """The controller's line for each failure of the worker group (the end-to-end test above sees
    it on the console): the rank, its error in one line, and whether Ray Train restarts or stops.
    The errors are built as Ray Train hands them to the callback."""
    import io
    import logging

    from ray.exceptions import ActorDiedError, RayActorError
    from ray.train.v2._internal.exceptions import UserExceptionWithTraceback, WorkerHealthCheckFailedError

    from sentiment.train import faults

    monkeypatch.setattr(faults.log, "handlers", [])  # a handler on the stderr capsys holds now
    report = faults.WorkerFailureReport(max_failures=1, run_dir=str(tmp_path))
    preempted = WorkerHealthCheckFailedError("health check failed", RayActorError(preempted=True))
    report.after_exception(None, {3: preempted})
    lost = WorkerHealthCheckFailedError("health check failed", ActorDiedError())
    report.after_exception(None, {1: lost})
    raised = UserExceptionWithTraceback(ValueError("no rows"), "Traceback (most recent call last):\n"
                                        '  File "loop.py", line 1, in run\nValueError: no rows\n')
    report.after_exception(None, {0: raised, 1: lost})
    assert capsys.readouterr().err.splitlines() == [
        "[train] rank 3 failed (RayActorError: The actor experienced an error before finishing this task.): "
        "a node was preempted, which --max-failures does not count, so Ray Train restarts the workers, "
        "from the last checkpoint if there is one",
        "[train] rank 1 failed (ActorDiedError: The actor died unexpectedly before finishing this task.): "
        "failure 1 of --max-failures 1, so Ray Train restarts the workers, from the last checkpoint if there is one",
        "[train] rank 0 failed (ValueError: no rows), rank 1 failed (ActorDiedError: The actor died unexpectedly "
        "before finishing this task.): failure 2, more than --max-failures 1, so the run stops"]
    faults.WorkerFailureReport(max_failures=2, tag="[adapt]").after_exception(None, {1: lost})  # adapt's lines
    assert capsys.readouterr().err.startswith("[adapt] rank 1 failed (ActorDiedError: ")
    # Each failure is recorded beside the run's checkpoints, for its metrics.json.
    recorded = faults.read_worker_failures(str(tmp_path))
    assert [(f["ranks"], f["outcome"]) for f in recorded] == [
        ({"3": "RayActorError: The actor experienced an error before finishing this task."}, "restarted (a node preempted)"),
        ({"1": "ActorDiedError: The actor died unexpectedly before finishing this task."}, "restarted"),
        ({"0": "ValueError: no rows", "1": "ActorDiedError: The actor died unexpectedly before finishing this task."},
         "stopped")]
    assert faults.read_worker_failures(str(tmp_path / "another-run")) == []

    # Ray Train's own warning about the same event keeps its line and loses its traceback.
    printed = io.StringIO()
    ray_logger = logging.getLogger(faults.RAY_BACKEND_SHUTDOWN_LOGGER)
    monkeypatch.setattr(ray_logger, "handlers", [logging.StreamHandler(printed)])
    try:
        raise lost
    except WorkerHealthCheckFailedError:
        ray_logger.warning("Graceful shutdown of backend failed.", exc_info=True)
    assert printed.getvalue() == "Graceful shutdown of backend failed.\n"
