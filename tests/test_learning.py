"""The packaged MiniLM really learns: one epoch on ~2,000 real reviews beats chance clearly."""

import json

import pytest

from sentiment.cli import main
from tests.helpers import labeled_sample


@pytest.mark.slow
def test_minilm_one_epoch_on_2000_real_reviews_beats_chance(ray_cluster, shared_data, tmp_path):
    data = labeled_sample(shared_data, tmp_path, 2000, seed=0)
    output = tmp_path / "minilm"
    # MiniLM's own recipe (lr 1e-4, 10% warmup, batch 32): a broken recipe stays near the prior.
    assert main(["train", "--data", str(data), "--output", str(output), "--epochs", "1",
                 "--num-workers", "1", "--seed", "1"]) == 0
    test = json.loads((output / "metrics.json").read_text())["test"]
    # Chance is 0.33 macro-F1; measured here: 0.46 (accuracy 0.58) on the 98-review test split
    # (batch 16 before: 0.45 and 0.57).
    assert test["macro_f1"] > 0.40, test
    assert test["accuracy"] > 0.45, test
