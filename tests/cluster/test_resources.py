"""Requests the cluster can never satisfy fail in seconds with one line, on the real local cluster
(4 CPUs, no GPU), instead of waiting forever for "pending: 1 GPU"."""

from __future__ import annotations

import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sentiment.cli import main
from sentiment.errors import ResourceError
from sentiment.cluster.resources import require


def test_require_accepts_what_fits_and_names_what_does_not(ray_cluster):
    require({"CPU": 1}, 4, "train --num-workers 4")
    with pytest.raises(ResourceError) as error:
        require({"CPU": 1, "GPU": 1}, 1, "score --gpu")
    assert "score --gpu needs 1 CPU, 1 GPU" in str(error.value) and "0 GPU" in str(error.value)
    with pytest.raises(ResourceError, match="needs 8 CPU .* has 4 CPU"):
        require({"CPU": 1}, 8, "train --num-workers 8")


def test_a_command_on_a_cluster_whose_cpus_other_work_holds_says_it_waits_and_goes_on_once_freed(
        ray_cluster, tmp_path, caplog):
    import threading

    import ray

    from sentiment.io.shards import find_shards

    pq.write_table(pa.table({"content": ["fine", "bad"]}), tmp_path / "a.parquet")

    @ray.remote(num_cpus=4)
    class Holder:  # other work: every CPU of the session cluster
        def ready(self) -> bool:
            return True

    holder = Holder.remote()
    found = []
    try:
        ray.get(holder.ready.remote(), timeout=60)
        _wait_for_free_cpus(lambda free: free == 0)
        with caplog.at_level("WARNING", logger="sentiment.cluster.resources"):
            require({"CPU": 1}, 2, "train --num-workers 2")
            # The input check's Ray task cannot start until the holder is gone: it says so first.
            checking = threading.Thread(target=lambda: found.append(find_shards([str(tmp_path / "a.parquet")],
                                                                                text_column="content")))
            checking.start()
            deadline = time.time() + 30
            while len(caplog.records) < 2 and time.time() < deadline:
                time.sleep(0.2)
            lines = [r.getMessage() for r in caplog.records]
            waits = "other work on the Ray cluster holds the rest (0 free of 4 CPU): it waits until they are released"
            assert lines == [f"train --num-workers 2 needs 2 CPU; {waits}",
                             f"checking the input files needs 1 CPU; {waits}"], lines
            assert not found
    finally:
        ray.kill(holder)
    checking.join(timeout=60)
    assert found and found[0].input_rows == 2  # it went on once the CPUs were free
    caplog.clear()
    _wait_for_free_cpus(lambda free: free >= 4)
    with caplog.at_level("WARNING", logger="sentiment.cluster.resources"):
        require({"CPU": 1}, 2, "train --num-workers 2")
    assert not caplog.records


def test_cpus_held_by_work_that_ends_within_a_moment_are_not_warned_about(ray_cluster, caplog):
    # As score's input checks: their tasks have returned, but Ray's view of free CPUs still counts
    # them for a moment; warning then would tell the user of a wait that never comes.
    import ray

    from sentiment.cluster.resources import warn_if_held

    @ray.remote(num_cpus=4)
    def brief() -> None:
        time.sleep(0.5)

    done = brief.remote()
    _wait_for_free_cpus(lambda free: free == 0)
    with caplog.at_level("WARNING", logger="sentiment.cluster.resources"):
        warn_if_held({"CPU": 1}, 1, "score (its model actors)")
    ray.get(done)
    assert not caplog.records, [r.getMessage() for r in caplog.records]


def _wait_for_free_cpus(done, timeout_s: float = 30) -> None:
    # The cluster's view of free resources follows an actor's start or end within about a second.
    import ray

    deadline = time.time() + timeout_s
    while not done(ray.available_resources().get("CPU", 0)):
        assert time.time() < deadline, ray.available_resources()
        time.sleep(0.2)


def test_score_gpu_and_train_beyond_the_cpus_fail_within_seconds(ray_cluster, tmp_path, capsys, tiny_classifier,
                                                                 tiny_backbone):
    pq.write_table(pa.table({"content": ["fine"], "score": [5]}), tmp_path / "a.parquet")
    for argv in (["score", "--model", tiny_classifier, "--input", str(tmp_path / "a.parquet"),
                  "--output", str(tmp_path / "out"), "--gpu"],
                 ["train", "--data", str(tmp_path / "a.parquet"), "--output", str(tmp_path / "model"),
                  "--model", tiny_backbone, "--num-workers", "8"]):
        start = time.perf_counter()
        assert main(argv) == 2
        seconds = time.perf_counter() - start
        err = capsys.readouterr().err
        assert err.startswith(f"sentiment {argv[0]}: error: ") and "Traceback" not in err and len(err.splitlines()) == 1
        assert "no autoscaler can add more" in err
        assert seconds < 20, f"{argv[0]} took {seconds:.0f} s to refuse"
    assert not (tmp_path / "out").exists() and not (tmp_path / "model" / "metrics.json").exists()
