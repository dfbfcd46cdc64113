"""The packaged MiniLM really learns: one epoch on ~2,000 real reviews beats chance clearly."""

import json
from pathlib import Path

import pytest


@pytest.mark.slow
@pytest.mark.xdist_group("minilm")
def test_minilm_one_epoch_on_2000_real_reviews_beats_chance(minilm_fine_tuned):
    # The session's fine-tune (conftest): MiniLM's own recipe (lr 1e-4, 10% warmup, batch 32),
    # one epoch; a broken recipe stays near the prior.
    test = json.loads((Path(minilm_fine_tuned) / "metrics.json").read_text())["test"]
    # Chance is 0.33 macro-F1; measured here: 0.46 (accuracy 0.58) on the 98-review test split
    # (batch 16 before: 0.45 and 0.57).
    assert test["macro_f1"] > 0.40, test
    assert test["accuracy"] > 0.45, test
