"""Classification metrics, from sklearn, in the shape metrics.json and --report use."""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score

from sentiment.data.labels import LABELS

_IDS = list(range(len(LABELS)))


def classification_metrics(y_true, y_pred) -> dict:
    """accuracy, macro_f1, macro_f1_classes, per_class (precision/recall/f1/support), confusion_matrix, n.

    macro_f1 averages the F1 of the classes that have rows (named in macro_f1_classes): on a
    file of one class, averaging in two classes with no rows would report 0.333 for a perfect
    model. confusion_matrix[i][j] counts reviews of true class i predicted as class j, in LABELS order.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    report = classification_report(y_true, y_pred, labels=_IDS, target_names=list(LABELS),
                                   output_dict=True, zero_division=0)
    present = [i for i in _IDS if (y_true == i).any()] or _IDS
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "macro_f1_classes": [LABELS[i] for i in present],
        "per_class": {name: {"precision": report[name]["precision"], "recall": report[name]["recall"],
                             "f1": report[name]["f1-score"], "support": int(report[name]["support"])}
                      for name in LABELS},
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=_IDS).tolist(),
        "labels": list(LABELS),
        "n": int(len(y_true)),
    }


CALIBRATION_BINS = 10


def calibration(confidence, correct, bins: int = CALIBRATION_BINS) -> dict:
    """How far the model's confidence (its probability of the class it predicted) is from how
    often it is right: a nightly job that keeps rows above a probability needs the two to agree.

    The rows are put in `bins` equal-width bins of confidence (as sklearn's calibration_curve
    does); each non-empty bin gives its rows, mean confidence and accuracy. The expected
    calibration error is the row-weighted mean gap between the two over the bins; `overconfidence`
    is mean confidence minus accuracy over all rows (below 0: underconfident).
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.searchsorted(edges[1:-1], confidence)  # bin i holds (edges[i], edges[i + 1]]
    table, gap = [], 0.0
    for i in range(bins):
        rows = which == i
        if not rows.any():
            continue
        mean_confidence, accuracy = float(confidence[rows].mean()), float(correct[rows].mean())
        gap += rows.sum() * abs(mean_confidence - accuracy)
        table.append({"from": round(float(edges[i]), 3), "to": round(float(edges[i + 1]), 3), "rows": int(rows.sum()),
                      "mean_confidence": round(mean_confidence, 4), "accuracy": round(accuracy, 4)})
    n = len(confidence)
    return {"expected_calibration_error": round(gap / n, 4) if n else None,
            "mean_confidence": round(float(confidence.mean()), 4) if n else None,
            "overconfidence": round(float(confidence.mean() - correct.mean()), 4) if n else None,
            "bins": table}


def calibration_leaning(overconfidence: float) -> str:
    """Whether a model is over- or underconfident, and by how much, as the printed line and the
    reliability diagram's title both say it (within half a point: neither)."""
    if overconfidence > 0.005:
        return f"overconfident by {overconfidence * 100:.1f} points"
    if overconfidence < -0.005:
        return f"underconfident by {-overconfidence * 100:.1f} points"
    return "neither over- nor underconfident"


def format_calibration(calibrated: dict) -> str:
    """One line: the calibration error, and whether the model is over- or underconfident."""
    return (f"calibration: mean confidence {calibrated['mean_confidence']:.3f}, "
            f"{calibration_leaning(calibrated['overconfidence'])}; expected calibration "
            f"error {calibrated['expected_calibration_error']:.3f} over {len(calibrated['bins'])} bins of confidence")


def standard_error(accuracy: float, n: int) -> float:
    """One binomial standard error of an accuracy measured on n rows."""
    return math.sqrt(accuracy * (1 - accuracy) / n) if n else float("nan")


def per_class_f1(confusion) -> np.ndarray:
    """F1 of each class from a confusion matrix (rows true, columns predicted), in LABELS order;
    a class never seen nor predicted scores 0. sklearn's f1_score over the matrix's cells
    weighted by their counts, so epoch statistics and reports share one F1."""
    confusion = np.asarray(confusion)
    true_ids, predicted_ids = np.indices(confusion.shape).reshape(2, -1)
    return f1_score(true_ids, predicted_ids, labels=_IDS, average=None, sample_weight=confusion.ravel(),
                    zero_division=0)


def macro_f1_of(confusion) -> float:
    """macro-F1 from a confusion matrix, over the classes that have rows (as classification_metrics
    reports it): epoch statistics and reports agree."""
    confusion = np.asarray(confusion)
    present = confusion.sum(axis=1) > 0
    f1 = per_class_f1(confusion)
    return float(f1[present].mean() if present.any() else f1.mean())


def format_metrics(y_true, y_pred, metrics: dict) -> str:
    """Human-readable block: headline numbers, sklearn's report, and the confusion matrix."""
    report = classification_report(y_true, y_pred, labels=_IDS, target_names=list(LABELS),
                                   digits=3, zero_division=0)
    width = max(len(name) for name in LABELS) + 2
    header = " " * width + "".join(f"{name:>{width}}" for name in LABELS)
    rows = [f"{name:<{width}}" + "".join(f"{count:>{width}}" for count in row)
            for name, row in zip(LABELS, metrics["confusion_matrix"])]
    return "\n".join([
        f"reviews: {metrics['n']}   accuracy: {metrics['accuracy']:.4f}   macro-F1: {metrics['macro_f1']:.4f}"
        + _classes_note(metrics.get("macro_f1_classes", LABELS)),
        "", report, "confusion matrix (rows: true class, columns: predicted)", header, *rows,
    ])


def _classes_note(classes) -> str:
    missing = [name for name in LABELS if name not in classes]
    return f" (over {', '.join(classes)}: no {' or '.join(missing)} rows)" if missing else ""


def metrics_by_group(groups, y_true, y_pred) -> dict[str, dict]:
    """Per value of a column (evaluate --by): rows, accuracy with one standard error, macro-F1
    (over the classes that group has), and its confusion matrix; the largest groups first."""
    groups, y_true, y_pred = np.asarray(groups), np.asarray(y_true), np.asarray(y_pred)
    values, counts = np.unique(groups, return_counts=True)
    result = {}
    for value in values[np.argsort(-counts, kind="stable")]:
        rows = groups == value
        scored = classification_metrics(y_true[rows], y_pred[rows])
        result[str(value)] = {"n": scored["n"], "accuracy": scored["accuracy"],
                              "standard_error": standard_error(scored["accuracy"], scored["n"]),
                              "macro_f1": scored["macro_f1"], "confusion_matrix": scored["confusion_matrix"]}
    return result


# evaluate --by prints and draws this many groups, the largest; the report keeps them all (a column
# of ids given by mistake would otherwise print a line per review).
GROUPS_SHOWN = 30


def format_groups(column: str, by_group: dict[str, dict]) -> str:
    """The per-group table evaluate --by prints, the GROUPS_SHOWN largest: a group whose accuracy
    differs from another's by less than about two standard errors may differ by chance."""
    shown = list(by_group.items())[:GROUPS_SHOWN]
    width = max(12, *(len(value) for value, _ in shown)) + 2
    lines = [f"by {column}:", f"{'':<{width}}{'reviews':>8} {'accuracy':>9} {'± 1 SE':>7} {'macro-F1':>9}"]
    for value, scored in shown:
        lines.append(f"{value:<{width}}{scored['n']:>8} {scored['accuracy']:>9.3f} {scored['standard_error']:>7.3f} "
                     f"{scored['macro_f1']:>9.3f}")
    if len(by_group) > len(shown):
        rest = list(by_group.values())[len(shown):]
        lines.append(f"... and {len(rest)} smaller groups ({sum(g['n'] for g in rest)} reviews), in the report")
    return "\n".join(lines)


# A difference in accuracy counts as beyond noise below this two-sided p-value (McNemar's exact test).
SIGNIFICANCE = 0.05


def paired_comparison(y_true, y_model, y_baseline) -> dict:
    """The model against a baseline on the same rows: each one's accuracy and macro-F1, the rows
    only one of them gets right, the accuracy difference with its 95% confidence interval, and
    McNemar's exact test.

    On one set of rows the two accuracies share most of their noise: only the rows where the models
    disagree about being right say which is better. So the test counts those (b: only the model
    right; c: only the baseline) and asks how likely so uneven a split is if either is as likely as
    the other, which is far more sensitive than comparing two standard errors of ~2 points each.
    """
    from scipy.stats import binomtest

    y_true, y_model, y_baseline = np.asarray(y_true), np.asarray(y_model), np.asarray(y_baseline)
    n = len(y_true)
    model_right, baseline_right = y_model == y_true, y_baseline == y_true
    only_model = int((model_right & ~baseline_right).sum())
    only_baseline = int((baseline_right & ~model_right).sum())
    discordant = only_model + only_baseline
    difference = (only_model - only_baseline) / n if n else 0.0
    # The paired (Wald) standard error of a difference of two proportions on the same rows.
    spread = math.sqrt(max(discordant - (only_model - only_baseline) ** 2 / n, 0.0)) / n if n else 0.0
    p_value = float(binomtest(only_model, discordant, 0.5).pvalue) if discordant else 1.0
    model, baseline = classification_metrics(y_true, y_model), classification_metrics(y_true, y_baseline)
    return {
        "n": n,
        "accuracy": model["accuracy"], "baseline_accuracy": baseline["accuracy"],
        "macro_f1": model["macro_f1"], "baseline_macro_f1": baseline["macro_f1"],
        "accuracy_difference": difference,
        "accuracy_difference_95ci": [difference - 1.96 * spread, difference + 1.96 * spread],
        "only_model_right": only_model, "only_baseline_right": only_baseline,
        "mcnemar_p": p_value,
        "verdict": ("no difference beyond noise" if p_value >= SIGNIFICANCE
                    else "better beyond noise" if difference > 0 else "worse beyond noise"),
    }


def format_comparison(comparison: dict, baseline: str) -> str:
    """Two lines: the model against the baseline, and what the rows they disagree on say."""
    low, high = (100 * bound for bound in comparison["accuracy_difference_95ci"])
    return (f"against the baseline {baseline}: accuracy {comparison['accuracy']:.4f} vs "
            f"{comparison['baseline_accuracy']:.4f} ({100 * comparison['accuracy_difference']:+.1f} points, 95% CI "
            f"{low:+.1f} to {high:+.1f}), macro-F1 {comparison['macro_f1']:.4f} vs "
            f"{comparison['baseline_macro_f1']:.4f}\n"
            f"of {comparison['n']} reviews, only the model is right on {comparison['only_model_right']}, only the "
            f"baseline on {comparison['only_baseline_right']}: McNemar's exact p = {comparison['mcnemar_p']:.3g}, "
            f"{comparison['verdict']} (p < {SIGNIFICANCE})")
