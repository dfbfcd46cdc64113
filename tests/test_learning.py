"""What the packaged MiniLM does once fine-tuned on real reviews: it beats chance clearly, and bf16
weights keep its labels. Both read one fine-tune, the session's only one, which is why they live
in one module: under pytest-xdist (--dist loadfile) a module runs on one worker, so the
module-scoped fine-tune runs once."""

import json
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import UNLABELED_TEXT, unlabeled_reviews


@pytest.fixture(scope="module")
def minilm_fine_tuned(ray_cluster, shared_data, tmp_path_factory) -> str:
    """`sentiment train` with MiniLM's own recipe, one epoch on 2,000 real reviews, one worker,
    texts truncated at 32 tokens (160 would keep all): the suite's longest training, and what it
    proves does not need the long tails of long reviews. (1,200 reviews were tried: they beat
    chance too, but the model stayed too unsure, mean top probability 0.41, for the bf16 test.)"""
    from sentiment.cli import main
    from tests.helpers import labeled_sample

    workdir = tmp_path_factory.mktemp("minilm")
    output = workdir / "model"
    data = labeled_sample(shared_data, workdir, 2000, seed=0)
    assert main(["train", "--data", str(data), "--output", str(output), "--epochs", "1",
                 "--num-workers", "1", "--seed", "1", "--max-length", "32"]) == 0
    return str(output)


@pytest.mark.slow
def test_minilm_one_epoch_on_2000_real_reviews_beats_chance(minilm_fine_tuned):
    # MiniLM's own recipe (lr 1e-4, 10% warmup, batch 32), one epoch; a broken recipe stays near
    # the prior.
    test = json.loads((Path(minilm_fine_tuned) / "metrics.json").read_text())["test"]
    # Chance is 0.33 macro-F1; measured here: 0.51 (accuracy 0.66) on the 96-review test split at
    # --max-length 32, 155 s with the cluster's start on 2 AVX2 cores (0.50 and 0.66 at 48, 0.48 and
    # 0.61 at 64, 0.51 and 0.67 at 160).
    assert test["macro_f1"] > 0.40, test
    assert test["accuracy"] > 0.45, test


@pytest.mark.slow
def test_bf16_weights_keep_trained_labels_and_probabilities_close_to_fp32(shared_data, minilm_fine_tuned):
    import torch

    from sentiment.model.predictor import Predictor

    # 400 reviews: 99.5% allows 2 changed labels. max_length 32 keeps CPU bf16 (emulated: 5.7x
    # slower than fp32 on an AVX2-only CPU, 52 s for 400 reviews at 64) affordable.
    texts = [t for t in unlabeled_reviews(shared_data, "todoist.csv", 500)[UNLABELED_TEXT].to_pylist()
             if t and t.strip()][:400]
    fp32 = Predictor(minilm_fine_tuned, precision="fp32", max_length=32)
    bf16 = Predictor(minilm_fine_tuned, precision="bf16", max_length=32)
    assert bf16.model.dtype == torch.bfloat16 and fp32.model.dtype == torch.float32
    want, got = fp32.predict_proba(texts), bf16.predict_proba(texts)
    # A trained model gives varied answers well above the 1/3 of an untrained head, so
    # agreement is a real test.
    assert want.max(axis=1).mean() > 0.5 and len(set(want.argmax(axis=1))) == 3
    flipped = got.argmax(axis=1) != want.argmax(axis=1)
    # Issue 14: >= 99.5% of real reviews keep their label. Measured with this module's MiniLM
    # fine-tune: see the assertion message if it ever fails. (Before: a 60-step fine-tune of its
    # own flipped 1 of 400, max probability difference 0.004; a linear probe before that flipped
    # 3: its C=10 head amplified bf16 rounding in the pooled output.)
    assert flipped.mean() <= 0.005, f"{flipped.sum()} of {len(texts)} labels changed"
    assert 0 < np.abs(got - want).max() < 0.05  # the tolerance BENCHMARKS.md states
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
