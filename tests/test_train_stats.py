"""The numbers an epoch reports: device-side counts, macro-F1, FLOPs and the best-epoch rule."""

import pytest
import torch
from sklearn.metrics import f1_score

from sentiment.train.stats import add_batch, new_totals, selection_score, summarize, training_flops


def test_device_totals_give_sklearns_accuracy_and_macro_f1():
    generator = torch.Generator().manual_seed(0)
    totals = new_totals(torch.device("cpu"))
    labels_seen, predicted_seen = [], []
    for _ in range(5):
        logits = torch.randn(16, 3, generator=generator)
        labels = torch.randint(0, 3, (16,), generator=generator)
        mask = torch.ones(16, 12, dtype=torch.long)
        mask[:, 7:] = 0  # 7 real tokens each
        add_batch(totals, torch.tensor(0.25), logits, labels, mask)
        labels_seen += labels.tolist()
        predicted_seen += logits.argmax(-1).tolist()
    result = summarize(totals.tolist())
    assert result["n"] == 80 and result["loss"] == pytest.approx(0.25)
    assert result["accuracy"] == pytest.approx(sum(a == b for a, b in zip(labels_seen, predicted_seen)) / 80)
    assert result["macro_f1"] == pytest.approx(f1_score(labels_seen, predicted_seen, average="macro"))
    assert result["tokens"] == 80 * 7 and result["tokens_squared"] == 80 * 49


def test_selection_breaks_metric_ties_by_lower_validation_loss_only():
    tied_high_loss = {"val_accuracy": 0.5, "val_macro_f1": 0.4, "val_loss": 1.06}
    tied_low_loss = {"val_accuracy": 0.5, "val_macro_f1": 0.3, "val_loss": 0.75}
    better = {"val_accuracy": 0.5 + 1e-6, "val_macro_f1": 0.1, "val_loss": 9.0}
    history = [tied_high_loss, tied_low_loss, better]
    assert max(history[:2], key=lambda h: selection_score(h, "accuracy")) is tied_low_loss
    assert max(history, key=lambda h: selection_score(h, "accuracy")) is better
    assert max(history, key=lambda h: selection_score(h, "macro_f1")) is tied_high_loss


def test_training_flops_match_bert_base_forward_count():
    from transformers import BertConfig

    # bert-base, one 50-token review: ~8.5 GFLOP forward (issue 10 quotes 8.6 at 49.9 tokens incl. head)
    forward = training_flops(BertConfig(), 50, 50 * 50) / 3
    assert forward == pytest.approx(12 * (2 * (4 * 768 ** 2 + 2 * 768 * 3072) * 50 + 4 * 768 * 2500))
    assert 8.0e9 < forward < 9.0e9


def test_metrics_by_group_partition_the_rows_and_the_printed_table_keeps_the_largest():
    import numpy as np

    from sentiment.train.metrics import GROUPS_SHOWN, classification_metrics, format_groups, metrics_by_group

    rng = np.random.default_rng(0)
    groups = np.array([f"app-{i % (GROUPS_SHOWN + 10)}" for i in range(800)] + ["big"] * 200)
    y_true, y_pred = rng.integers(0, 3, len(groups)), rng.integers(0, 3, len(groups))
    by = metrics_by_group(groups, y_true, y_pred)
    assert list(by)[0] == "big" and sum(g["n"] for g in by.values()) == len(groups)
    overall = classification_metrics(y_true, y_pred)["accuracy"]
    assert sum(g["accuracy"] * g["n"] for g in by.values()) / len(groups) == pytest.approx(overall)
    lines = format_groups("appId", by).splitlines()
    assert len(lines) == 2 + GROUPS_SHOWN + 1 and lines[-1].startswith("... and 11 smaller groups")
