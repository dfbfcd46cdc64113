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
