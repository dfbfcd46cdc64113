"""benchmarks/training.py on CPU: a tiny model, a subset, one batch size (no timing asserted).

One batch size: each is a whole Ray Train run (a minute or more on 2 cores), and the loop over
them is the same code for one as for two. Its main() runs in this process, on the session's Ray
cluster: a subprocess would import torch, transformers and Ray Train again for nothing this test
checks (`python -m benchmarks.training` is one line that calls main)."""

import json

import pytest


@pytest.mark.slow
def test_benchmark_training_reports_an_epoch_of_the_batch_size(shared_data, tmp_path, ray_cluster, capsys):
    from benchmarks.training import main

    out = tmp_path / "training.json"
    assert main(["--data", str(shared_data / "labeled"), "--size", "tiny", "--limit", "300", "--batch-sizes", "16",
                 "--json", str(out)]) == 0
    stdout = capsys.readouterr().out
    rows = json.loads(out.read_text())
    assert [r["batch_size"] for r in rows] == [16]
    for row in rows:
        assert 200 < row["train_rows"] < 300
        assert row["train_reviews_per_second"] * row["train_seconds"] == pytest.approx(row["train_rows"])
        assert row["epoch_seconds"] >= row["train_seconds"] > 0 and row["mfu"] is None
    assert "| 16 | 1 |" in stdout and "n/a (CPU)" in stdout
