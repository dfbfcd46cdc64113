"""`sentiment demo`, the README's headline command: it trains a model that visibly learned, that
model labels real reviews well beyond chance, and bf16 weights keep its labels.

The demo's MiniLM fine-tune is the suite's only one: all three read it, which is why they live in
one module (under pytest-xdist's --dist loadfile a module runs on one worker, so the module-scoped
demo runs once). Until 2026-12-06 a second fine-tune, one epoch on 2,000 real reviews (102 s of a
fresh-clone run on 2 cores), served the last two; the demo's model passes them with the same
bounds."""

from pathlib import Path

import numpy as np
import pytest

from sentiment.demo import EXPECTED, DemoConfig, run_demo
from tests.helpers import UNLABELED_TEXT, labeled_sample, unlabeled_reviews

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(ray_cluster, tmp_path_factory):
    import contextlib
    import io

    workdir = tmp_path_factory.mktemp("demo") / "demo"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        result = run_demo(DemoConfig(workdir=str(workdir)))
    return result, printed.getvalue(), str(workdir / "model")


@pytest.fixture(scope="module")
def demo_model(demo) -> str:
    return demo[2]  # the folder the demo says it wrote its model to


def test_demo_learns_picks_a_real_best_epoch_and_gets_clear_texts_right(demo):
    result, printed, _ = demo
    metrics = result["metrics"]
    history = metrics["history"]
    # The validation split is big enough that epochs differ, and the pick is not epoch 1 by a tie.
    assert metrics["rows"]["validation"] >= 20
    assert len({round(h["val_accuracy"], 6) for h in history}) > 1
    best = history[metrics["best_epoch"] - 1]
    assert best["val_accuracy"] == max(h["val_accuracy"] for h in history)
    tied = [h for h in history if round(h["val_accuracy"], 6) == round(best["val_accuracy"], 6)]
    assert best["val_loss"] == min(h["val_loss"] for h in tied)
    # Learned, visibly: measured on 2 AVX2 cores, validation accuracy 0.615, 0.731, 0.885, 0.923
    # over the 4 epochs and training loss 1.086 -> 0.555 (6 epochs, before: 0.577 -> 0.962).
    assert best["val_accuracy"] >= 0.6 and best["val_accuracy"] >= history[0]["val_accuracy"] + 0.15
    assert history[-1]["train_loss"] < 0.7 * history[0]["train_loss"]
    assert metrics["test"]["accuracy"] >= 0.5  # chance is 0.33 on three classes
    predicted = {r["text"]: r["sentiment"] for r in result["predictions"]}
    assert {text: predicted[text] for text in EXPECTED} == EXPECTED
    summary = result["summary"]
    assert summary["rows_scored"] == 15 and summary["rows_errored"] == 1  # the empty review, kept with its reason
    assert "(expected" not in printed
    # Ray's INFO lines are off (sentiment/cluster/ray_console.py): Ray Train's line per report and
    # rank (the metrics dict again, ~800 characters), its checkpoint paths, and Ray Data's lines
    # for each dataset the split coordinator and the workers run. The logs of this process's
    # workers (the demo's; Ray streams them to the console) do not hold them. Other tests' driver
    # processes join this cluster with environments of their own, as a job does.
    import ray

    logs = Path(ray._private.worker._global_node.get_logs_dir_path())
    ours = list(logs.glob(f"worker-*-{ray.get_runtime_context().get_job_id()}-*"))
    assert len(ours) >= 3, sorted(p.name for p in logs.glob("worker-*"))  # two train workers and their controller
    for chatter in ("Reporting training result", "Checkpoint successfully created", "Starting execution of Dataset",
                    "Progress bars disabled", "exclude_resources"):
        printed_by = [p.name for p in ours if chatter in p.read_text(errors="replace")]
        assert not printed_by, (chatter, printed_by)


def test_the_demo_model_labels_real_reviews_well_beyond_chance(shared_data, demo_model, tmp_path):
    from sklearn.metrics import accuracy_score, f1_score

    import pandas as pd

    from sentiment.data.labels import scores_to_label_ids
    from sentiment.model.predictor import Predictor

    # 600 real app reviews, none of them among the demo's 132 hand-written ones. Chance is 0.33
    # macro-F1 and 0.36 accuracy (the commonest class). Measured here with the demo's model at
    # --max-length 64, on 400 and 800 reviews of three samples: macro-F1 0.460-0.491, accuracy
    # 0.557-0.598 (one standard error is about 0.02); a model that did not learn stays near chance.
    reviews = pd.read_csv(labeled_sample(shared_data, tmp_path, 600, seed=0)).dropna()
    truth = scores_to_label_ids(reviews["score"])
    predicted = Predictor(demo_model, precision="fp32", max_length=64).predict_proba(
        reviews["content"].tolist()).argmax(axis=1)
    assert f1_score(truth, predicted, average="macro") > 0.40
    assert accuracy_score(truth, predicted) > 0.48
    assert len(set(predicted)) == 3


def test_bf16_weights_keep_trained_labels_and_probabilities_close_to_fp32(shared_data, demo_model):
    import torch

    from sentiment.model.predictor import Predictor

    # 400 reviews: 99.5% allows 2 changed labels. max_length 32 keeps CPU bf16 (emulated: 5.7x
    # slower than fp32 on an AVX2-only CPU, 52 s for 400 reviews at 64) affordable.
    texts = [t for t in unlabeled_reviews(shared_data, "todoist.csv", 500)[UNLABELED_TEXT].to_pylist()
             if t and t.strip()][:400]
    fp32 = Predictor(demo_model, precision="fp32", max_length=32)
    bf16 = Predictor(demo_model, precision="bf16", max_length=32)
    assert bf16.model.dtype == torch.bfloat16 and fp32.model.dtype == torch.float32
    want, got = fp32.predict_proba(texts), bf16.predict_proba(texts)
    # A trained model gives varied answers well above the 1/3 of an untrained head, so
    # agreement is a real test (measured with the demo's model: mean top probability 0.59).
    assert want.max(axis=1).mean() > 0.5 and len(set(want.argmax(axis=1))) == 3
    flipped = got.argmax(axis=1) != want.argmax(axis=1)
    # Issue 14: >= 99.5% of real reviews keep their label. Measured with the demo's model: none of
    # 400 changed, the largest probability difference 0.005. (Before: a one-epoch fine-tune on
    # 2,000 real reviews measured 0.004; a linear probe before that flipped 3: its C=10 head
    # amplified bf16 rounding in the pooled output.)
    assert flipped.mean() <= 0.005, f"{flipped.sum()} of {len(texts)} labels changed"
    assert 0 < np.abs(got - want).max() < 0.05  # the tolerance BENCHMARKS.md states
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
