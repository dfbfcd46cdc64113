"""benchmarks/training.py on CPU: a tiny model, a subset, one batch size (no timing asserted).

One batch size: each is a whole Ray Train run (a minute or more on 2 cores), and the loop over
them is the same code for one as for two."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_benchmark_training_reports_an_epoch_of_the_batch_size(shared_data, tmp_path, ray_cluster):
    from tests.helpers import session_cluster_env

    out = tmp_path / "training.json"
    run = subprocess.run([sys.executable, "-m", "benchmarks.training", "--data", str(shared_data / "labeled"),
                          "--size", "tiny", "--limit", "300", "--batch-sizes", "16", "--json", str(out)],
                         cwd=ROOT, env=session_cluster_env(), capture_output=True, text=True,
                         timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert [r["batch_size"] for r in rows] == [16]
    for row in rows:
        assert 200 < row["train_rows"] < 300
        assert row["train_reviews_per_second"] * row["train_seconds"] == pytest.approx(row["train_rows"])
        assert row["epoch_seconds"] >= row["train_seconds"] > 0 and row["mfu"] is None
    assert "| 16 | 1 |" in run.stdout and "n/a (CPU)" in run.stdout
