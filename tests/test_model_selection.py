"""Model selection you can trust: a split that --seed does not move, recorded by its hash;
validation and test scored at one precision; the saved epoch is the --select-metric argmax, and
the history plot marks that epoch. The end-to-end run trains a tiny DistilBERT, so it also shows
`sentiment train` on an encoder other than BERT."""

from __future__ import annotations

import json

import pytest

from sentiment.data.labels import LABELS
from tests.helpers import labeled_sample, save_tiny_encoder


def _texts(dataset) -> list[str]:
    return sorted(dataset.to_pandas()["text"])


def test_the_split_and_its_hash_do_not_move_with_the_training_seed(ray_cluster, shared_data, tmp_path):
    from sentiment.data.labeled import held_out_hash, prepare_splits

    data = [str(labeled_sample(shared_data, tmp_path, 300))]
    common = dict(val_fraction=0.1, test_fraction=0.1, limit=250)
    one = prepare_splits(data, "content", "score", seed=42, shuffle_seed=1, **common)
    two = prepare_splits(data, "content", "score", seed=42, shuffle_seed=2, **common)

    assert _texts(one.validation) == _texts(two.validation) and _texts(one.test) == _texts(two.test)
    assert one.split_hash == two.split_hash and len(one.split_hash) == 64
    assert one.train.to_pandas()["text"].tolist() != two.train.to_pandas()["text"].tolist()  # order follows --seed
    # The hash is of the held-out texts (split_of's seed sensitivity: tests/test_data.py).
    assert held_out_hash(_texts(one.test), _texts(one.validation)) != one.split_hash


def _history(val_accuracy, val_macro_f1):
    return [{"epoch": i + 1, "train_loss": 1.0 - 0.1 * i, "val_loss": 0.9, "train_accuracy": 0.5,
             "val_accuracy": acc, "val_macro_f1": f1} for i, (acc, f1) in enumerate(zip(val_accuracy, val_macro_f1))]


def test_the_history_plot_marks_the_epoch_select_metric_chose():
    import matplotlib.pyplot as plt

    from sentiment.train.plots import history_figure
    from sentiment.train.stats import selection_score

    # Accuracy peaks at epoch 1, macro-F1 at epoch 2.
    history = _history([0.70, 0.66, 0.65], [0.50, 0.62, 0.60])
    chosen = max(history, key=lambda h: selection_score(h, "macro_f1"))["epoch"]
    assert chosen == 2
    fig = history_figure(history, chosen, "macro_f1")
    try:
        for ax in fig.axes:
            markers = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
            assert [list(line.get_xdata()) for line in markers] == [[2, 2]]
        curves = {line.get_label(): list(line.get_ydata()) for line in fig.axes[1].get_lines()}
        assert curves["validation macro-F1"] == [0.50, 0.62, 0.60]
        assert "saved epoch 2" in fig.texts[0].get_text()
    finally:
        plt.close(fig)


@pytest.fixture(scope="module")
def selected_by_macro_f1(ray_cluster, shared_data, tmp_path_factory):
    """Two epochs of a tiny DistilBERT on 300 real reviews, selected by validation macro-F1, with
    a --seed other than the default (the split must not follow it)."""
    from sentiment.cli import main

    backbone = save_tiny_encoder("distilbert", tmp_path_factory.mktemp("distilbert"))
    work = tmp_path_factory.mktemp("macro-f1")
    data = labeled_sample(shared_data, work, 300)
    output = work / "model"
    status = main(["train", "--data", str(data), "--output", str(output), "--model", backbone,
                   "--num-workers", "1", "--epochs", "2", "--batch-size", "16", "--lr", "2e-3",
                   "--val-fraction", "0.2", "--test-fraction", "0.2", "--select-metric", "macro_f1", "--seed", "5"])
    assert status == 0
    return data, output, json.loads((output / "metrics.json").read_text())


def test_select_metric_macro_f1_saves_the_epoch_of_best_validation_macro_f1(selected_by_macro_f1):
    from safetensors.torch import load_file

    from sentiment.train.stats import selection_score, weights_fingerprint

    _, output, metrics = selected_by_macro_f1
    history = metrics["history"]
    assert [h["epoch"] for h in history] == [1, 2] and metrics["config"]["select_metric"] == "macro_f1"
    best_f1 = max(round(h["val_macro_f1"], 6) for h in history)
    candidates = [h for h in history if round(h["val_macro_f1"], 6) == best_f1]
    chosen = min(candidates, key=lambda h: h["val_loss"])  # a tie goes to the lower validation loss
    assert metrics["best_epoch"] == chosen["epoch"] == max(history, key=lambda h: selection_score(h, "macro_f1"))["epoch"]
    saved = load_file(f"{output}/model.safetensors")
    assert weights_fingerprint(saved) == chosen["weights_fingerprint"]


def test_validation_and_test_are_scored_at_one_recorded_precision(selected_by_macro_f1):
    from sentiment.model.predictor import native_bf16_cpu

    _, _, metrics = selected_by_macro_f1
    validation, chosen = metrics["validation"], metrics["history"][metrics["best_epoch"] - 1]
    # --precision auto: the CPU workers validated in bf16 where this CPU multiplies bf16 natively.
    assert chosen["precision"] == ("bf16" if native_bf16_cpu() else "fp32")
    assert metrics["eval_precision"] == chosen["precision"]
    assert validation["n"] == metrics["rows"]["validation"] and metrics["test"]["n"] == metrics["rows"]["test"]
    # The driver's re-scoring of the saved model agrees with the worker's validation at that epoch
    # (same weights, same precision; batching may flip at most a row on a near tie).
    assert abs(validation["accuracy"] - chosen["val_accuracy"]) <= 1 / validation["n"] + 1e-9


def test_metrics_record_the_split_hash_of_split_seed_not_seed(selected_by_macro_f1, ray_cluster):
    from sentiment.data.labeled import prepare_splits

    data, _, metrics = selected_by_macro_f1
    assert metrics["config"]["seed"] == 5 and metrics["config"]["split_seed"] == 42
    again = prepare_splits([str(data)], "content", "score", seed=42, val_fraction=0.2, test_fraction=0.2)
    assert metrics["split_hash"] == again.split_hash


def test_sentiment_train_on_a_distilbert_folder_saves_a_distilbert_classifier(selected_by_macro_f1):
    from safetensors.torch import load_file
    from transformers import pipeline

    from sentiment.model.classifier import HEAD_DROPOUT

    _, output, _ = selected_by_macro_f1
    config = json.loads((output / "config.json").read_text())
    assert config["architectures"] == ["DistilBertForSequenceClassification"]
    assert config["seq_classif_dropout"] == HEAD_DROPOUT
    assert {"pre_classifier.weight", "classifier.weight",
            "distilbert.transformer.layer.1.ffn.lin1.weight"} <= set(load_file(f"{output}/model.safetensors"))
    out = pipeline("text-classification", model=str(output))(["I love this app", "it crashes constantly"])
    assert all(o["label"] in LABELS for o in out)
