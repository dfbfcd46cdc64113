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


def test_progress_lines_say_how_long_the_epoch_has_left(tiny_backbone, monkeypatch, caplog):
    import logging

    from sentiment.model.classifier import build_classifier
    from sentiment.train import step
    from sentiment.train.stats import time_left

    assert time_left(50, 100, 30.0) == "about 30 s left in the epoch"
    assert time_left(10, 100, 60.0) == "about 9 min left in the epoch"  # 540 s at 6 s a step
    assert time_left(100, 100, 60.0) == "about 0 s left in the epoch"
    assert time_left(5, None, 1.0) == "" and time_left(0, 10, 0.0) == ""

    # A real training pass logs it: every LOG_EVERY_STEPS steps (2 here, of 6).
    torch.manual_seed(0)
    model, _ = build_classifier(tiny_backbone)
    batches = [{"input_ids": torch.randint(1000, 2000, (4, 8)), "attention_mask": torch.ones(4, 8, dtype=torch.long),
                "labels": torch.tensor([0, 1, 2, 1])} for _ in range(6)]
    optimizer, scheduler = step.optimizer_and_schedule(model, lr=1e-4, layer_decay=1.0, warmup_fraction=0.0,
                                                       total_steps=6, device=torch.device("cpu"))
    monkeypatch.setattr(step, "LOG_EVERY_STEPS", 2)
    caplog.set_level(logging.INFO, logger="sentiment.train")
    step.run_epoch(model, batches, torch.device("cpu"), optimizer=optimizer, scheduler=scheduler,
                   scaler=torch.amp.GradScaler("cpu", enabled=False), log_progress=True, epoch_label="epoch 1/1",
                   steps_total=6)
    lines = [r.message for r in caplog.records if r.message.startswith("[train] epoch 1/1 step")]
    assert [line.split(" loss")[0] for line in lines] == [f"[train] epoch 1/1 step {n}/6" for n in (2, 4, 6)]
    assert all("s left in the epoch)" in line for line in lines) and "about 0 s left" in lines[-1]


def test_paired_comparison_counts_the_rows_only_one_model_gets_right_and_tests_them():
    from sentiment.train.metrics import format_comparison, paired_comparison

    y_true = [0] * 20
    model = [0] * 12 + [1] * 8  # right on rows 0-11
    baseline = [0] * 4 + [1] * 8 + [0] * 2 + [1] * 6  # right on rows 0-3 and 12-13
    compared = paired_comparison(y_true, model, baseline)
    assert (compared["only_model_right"], compared["only_baseline_right"]) == (8, 2)
    assert compared["accuracy"] == 0.6 and compared["baseline_accuracy"] == 0.3
    assert compared["accuracy_difference"] == pytest.approx(0.3)
    assert compared["mcnemar_p"] == pytest.approx(0.109375)  # 2 x P(X >= 8), X ~ Binomial(10, 1/2)
    assert compared["verdict"] == "no difference beyond noise"  # 8 against 2 happens by chance 1 time in 9
    # Paired Wald interval: sqrt(b + c - (b - c)^2 / n) / n = sqrt(10 - 1.8) / 20.
    assert compared["accuracy_difference_95ci"] == pytest.approx([0.3 - 1.96 * 0.14318, 0.3 + 1.96 * 0.14318], abs=1e-4)
    assert "only the model is right on 8, only the baseline on 2: McNemar's exact p = 0.109" in \
        format_comparison(compared, "models/today")

    better = paired_comparison([0] * 30, [0] * 30, [0] * 20 + [2] * 10)
    assert better["mcnemar_p"] == pytest.approx(2 * 0.5 ** 10) and better["verdict"] == "better beyond noise"
    assert paired_comparison([0] * 30, [0] * 20 + [2] * 10, [0] * 30)["verdict"] == "worse beyond noise"
    same = paired_comparison([0, 1, 2], [0, 1, 1], [0, 1, 1])
    assert same["mcnemar_p"] == 1.0 and same["accuracy_difference"] == 0.0 and same["accuracy_difference_95ci"] == [0, 0]


def test_calibration_bins_the_rows_by_confidence_and_weighs_each_bins_gap_by_its_rows():
    from sentiment.train.metrics import calibration, format_calibration

    # 4 rows at 0.35 (1 right), 2 at 0.95 (both right), 4 at 0.75 (3 right): bins (0.3, 0.4],
    # (0.7, 0.8] and (0.9, 1.0]; the gaps 0.1, 0.0 and 0.05 weigh 4, 4 and 2 of 10 rows.
    confidence = [0.35] * 4 + [0.95] * 2 + [0.75] * 4
    correct = [True, False, False, False, True, True, True, True, True, False]
    result = calibration(confidence, correct)
    assert [(b["from"], b["to"], b["rows"], b["accuracy"]) for b in result["bins"]] == [
        (0.3, 0.4, 4, 0.25), (0.7, 0.8, 4, 0.75), (0.9, 1.0, 2, 1.0)]
    assert result["expected_calibration_error"] == pytest.approx((4 * 0.1 + 4 * 0.0 + 2 * 0.05) / 10)
    assert result["mean_confidence"] == pytest.approx(0.63) and result["overconfidence"] == pytest.approx(0.03)
    assert format_calibration(result) == ("calibration: mean confidence 0.630, overconfident by 3.0 points; expected "
                                          "calibration error 0.050 over 3 bins of confidence")
    assert calibration([0.5, 1.0], [False, True])["bins"][0]["to"] == 0.5  # a bin holds its upper edge
    underconfident = calibration([0.4] * 5, [True] * 5)
    assert underconfident["overconfidence"] == pytest.approx(-0.6)
    assert "underconfident by 60.0 points" in format_calibration(underconfident)


def test_the_reliability_diagram_says_what_the_calibration_line_says():
    import matplotlib.pyplot as plt

    from sentiment.train.metrics import calibration, calibration_leaning, format_calibration
    from sentiment.train.plots import draw_reliability

    for confidence, correct, leaning in (([0.75] * 4, [True, True, True, False], "neither over- nor underconfident"),
                                         ([0.4] * 5, [True] * 5, "underconfident by 60.0 points"),
                                         ([0.9] * 2, [True, False], "overconfident by 40.0 points")):
        result = calibration(confidence, correct)
        figure, axes = plt.subplots()
        draw_reliability(axes, result)
        title = axes.get_title()
        plt.close(figure)
        assert calibration_leaning(result["overconfidence"]) == leaning
        assert leaning in title and leaning in format_calibration(result)
