"""The pictures a person looks at after training: learning curves, the confusion matrix, and (after
`sentiment average`) the members against their average."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: training runs on servers
import matplotlib.pyplot as plt
import numpy as np

from sentiment.data.labels import LABELS
from sentiment.train.metrics import GROUPS_SHOWN, calibration_leaning, standard_error


METRIC_NAMES = {"accuracy": "accuracy", "macro_f1": "macro-F1"}


def history_figure(history: list[dict], best_epoch: int, select_metric: str = "accuracy"):
    """Loss and accuracy per epoch, train vs validation, with the epoch --select-metric chose
    (the saved model) marked; selecting by macro-F1 adds the validation macro-F1 curve."""
    epochs = [h["epoch"] for h in history]
    chosen = next(h for h in history if h["epoch"] == best_epoch)
    metric_name = METRIC_NAMES[select_metric]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, title in ((ax_loss, "loss", "Loss (lower is better)"), (ax_acc, "accuracy", "Accuracy (higher is better)")):
        ax.plot(epochs, [h[f"train_{key}"] for h in history], "o-", label="train", color="tab:blue")
        ax.plot(epochs, [h[f"val_{key}"] for h in history], "s-", label="validation", color="tab:orange")
        ax.axvline(best_epoch, color="tab:green", linestyle="--", linewidth=1,
                   label=f"saved model (epoch {best_epoch}, best val {metric_name})")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_xticks(epochs)
        ax.grid(alpha=0.3)
    if select_metric != "accuracy":
        ax_acc.plot(epochs, [h[f"val_{select_metric}"] for h in history], "^-", label=f"validation {metric_name}",
                    color="tab:red")
        ax_acc.set_title(f"Accuracy and {metric_name} (higher is better)")
    for ax in (ax_loss, ax_acc):
        ax.legend()
    ax_acc.set_ylim(0, 1)
    ax_acc.axhline(1 / len(LABELS), color="grey", linestyle=":", linewidth=1)
    ax_acc.annotate("chance", (epochs[0], 1 / len(LABELS)), textcoords="offset points", xytext=(2, 3),
                    color="grey", fontsize=8)
    fig.suptitle(f"Training history — saved epoch {best_epoch}: best validation {metric_name} "
                 f"{chosen[f'val_{select_metric}']:.3f}")
    fig.tight_layout()
    return fig


def plot_training_history(history: list[dict], path: str, best_epoch: int, select_metric: str = "accuracy") -> None:
    """history_figure() as a PNG at path."""
    fig = history_figure(history, best_epoch, select_metric)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_confusion_matrix(matrix: list[list[int]], path: str, title: str = "Test set") -> None:
    """Counts and row percentages: each row shows where the reviews of one true class went."""
    fig, ax = plt.subplots(figsize=(6, 5.2))
    draw_confusion_matrix(fig, ax, matrix, title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_evaluation(matrix: list[list[int]], path: str, title: str, by: dict | None = None,
                    calibrated: dict | None = None) -> None:
    """evaluate --plot: the confusion matrix; with `calibrated` (metrics.calibration) a reliability
    diagram beside it; with --by a panel of each group's accuracy (± one standard error) against
    the overall accuracy, the largest groups first."""
    if not by and not calibrated:
        plot_confusion_matrix(matrix, path, title)
        return
    groups = dict(list(by["groups"].items())[:GROUPS_SHOWN]) if by else {}  # the largest; the report has all
    widths = [1] + ([0.9] if calibrated else []) + ([1.1] if by else [])
    fig, axes = plt.subplots(1, len(widths), figsize=(6.5 * len(widths), max(5.2, 0.35 * len(groups) + 1.5)),
                             gridspec_kw={"width_ratios": widths})
    draw_confusion_matrix(fig, axes[0], matrix, title)
    if calibrated:
        draw_reliability(axes[1], calibrated)
    if by:
        _draw_groups(axes[-1], by, groups, matrix)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def draw_reliability(ax, calibrated: dict) -> None:
    """The reliability diagram: each bin of confidence's accuracy against its mean confidence (on
    the diagonal, a model that is right as often as it says), dots sized by rows."""
    bins = calibrated["bins"]
    confidence = [b["mean_confidence"] for b in bins]
    accuracy = [b["accuracy"] for b in bins]
    rows = np.asarray([b["rows"] for b in bins], dtype=float)
    ax.plot([0, 1], [0, 1], color="black", linestyle="--", linewidth=1, label="as confident as right")
    ax.plot(confidence, accuracy, color="tab:blue", linewidth=1)
    ax.scatter(confidence, accuracy, s=20 + 400 * rows / max(rows.sum(), 1), color="tab:blue", alpha=0.7,
               label="bins of confidence (area: rows)")
    for b in bins:
        ax.annotate(str(b["rows"]), (b["mean_confidence"], b["accuracy"]), textcoords="offset points", xytext=(6, -10),
                    fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (probability of the predicted class)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Calibration: expected error {calibrated['expected_calibration_error']:.3f}\n"
                 f"mean confidence {calibrated['mean_confidence']:.3f}, "
                 f"{calibration_leaning(calibrated['overconfidence'])}")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)


def _draw_groups(ax, by: dict, groups: dict, matrix: list[list[int]]) -> None:
    names = list(groups)[::-1]  # barh draws bottom-up: the largest group on top
    accuracy = [groups[name]["accuracy"] for name in names]
    error = [groups[name]["standard_error"] for name in names]
    ax.barh(range(len(names)), accuracy, xerr=error, capsize=3, color="tab:blue", alpha=0.8)
    ax.set_yticks(range(len(names)), [f"{name} ({groups[name]['n']})" for name in names], fontsize=8)
    counts = np.asarray(matrix)
    overall = np.trace(counts) / max(counts.sum(), 1)
    ax.axvline(overall, color="black", linestyle="--", linewidth=1, label=f"all rows {overall:.3f}")
    ax.set_xlim(0, 1)
    ax.set_xlabel("accuracy (± one standard error)")
    more = len(by["groups"]) - len(groups)
    ax.set_title(f"By {by['column']} (rows in brackets)" + (f"; {more} smaller groups not shown" if more else ""))
    ax.legend(loc="lower right")
    ax.grid(axis="x", alpha=0.3)


def draw_confusion_matrix(fig, ax, matrix: list[list[int]], title: str) -> None:
    """The confusion matrix on ax: counts and each true class's shares, accuracy in the title."""
    counts = np.asarray(matrix)
    row_share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    image = ax.imshow(row_share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label="share of the true class")
    ax.set_xticks(range(len(LABELS)), LABELS)
    ax.set_yticks(range(len(LABELS)), LABELS)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(LABELS)):
        for j in range(len(LABELS)):
            ax.text(j, i, f"{counts[i, j]}\n{row_share[i, j]:.0%}", ha="center", va="center",
                    color="white" if row_share[i, j] > 0.5 else "black", fontsize=11)
    accuracy = np.trace(counts) / max(counts.sum(), 1)
    ax.set_title(f"{title}: {counts.sum()} reviews, accuracy {accuracy:.3f}\n(diagonal = correct)")


def plot_members_and_average(rows: list[tuple[str, dict]], path: str) -> None:
    """Validation and test accuracy of each model, as bars with one standard error: which of the
    members and their average to ship is read off the validation bars.

    Args:
        rows: (name, {"validation": metrics, "test": metrics}) per model, the average last.
    """
    names = [name for name, _ in rows]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(rows) + 2), 4.4))
    width = 0.38
    for offset, split, color in ((-width / 2, "validation", "tab:orange"), (width / 2, "test", "tab:blue")):
        accuracy = np.array([scores[split]["accuracy"] for _, scores in rows])
        error = np.array([standard_error(scores[split]["accuracy"], scores[split]["n"]) for _, scores in rows])
        positions = np.arange(len(rows)) + offset
        ax.bar(positions, accuracy, width, yerr=error, capsize=4, color=color, label=f"{split} (± one standard error)",
               edgecolor=["black" if i == len(rows) - 1 else color for i in range(len(rows))])
        for x, value, above in zip(positions, accuracy, error):
            ax.text(x, value + above + 0.004, f"{value:.3f}", ha="center", fontsize=8)
    # Zoomed to the bars' range: the differences that matter are a few points.
    values = [scores[split]["accuracy"] for _, scores in rows for split in ("validation", "test")]
    ax.set_ylim(max(0.0, min(values) - 0.1), min(1.0, max(values) + 0.06))
    ax.set_xticks(range(len(rows)), names)
    ax.set_ylabel("accuracy")
    ax.legend(loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    ax.set_title("Members and their weight average (choose on validation)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_adaptation_history(history: list[dict], path: str) -> None:
    """adaptation_figure() as a PNG at path."""
    fig = adaptation_figure(history)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def adaptation_figure(history: list[dict]):
    """`sentiment adapt`'s masked-language loss against optimizer steps: the training loss as it
    was logged (the mean of the last steps), each epoch's mean training loss and its held-out loss,
    and where the encoder joined a new language-model head's training. Flattening held-out
    points say more epochs would not pay; rising ones that the encoder is drifting."""
    fig, ax = plt.subplots(figsize=(9, 4.4))
    recent = [point for h in history for point in h.get("recent_train_losses", [])]
    if recent:
        ax.plot([s for s, _ in recent], [loss for _, loss in recent], "-", color="tab:blue", alpha=0.6,
                label="train, as logged (mean of the last steps)")
    ends = [h.get("optimizer_step") for h in history]
    if all(step is not None for step in ends):
        ax.plot(ends, [h["train_loss"] for h in history], "o", color="tab:blue", label="train, epoch mean")
        ax.plot(ends, [h["held_out_loss"] for h in history], "s-", color="tab:orange", label="held-out texts")
        ax.set_xlabel("optimizer step")
    else:  # a run recorded before optimizer steps were: by epoch
        ends = [h["epoch"] for h in history]
        ax.plot(ends, [h["train_loss"] for h in history], "o-", color="tab:blue", label="train, epoch mean")
        ax.plot(ends, [h["held_out_loss"] for h in history], "s-", color="tab:orange", label="held-out texts")
        ax.set_xlabel("epoch")
    head_only = history[0].get("head_only_steps", 0) if history else 0
    if head_only and ax.get_xlabel() == "optimizer step":
        ax.axvline(head_only, color="grey", linestyle=":", linewidth=1, label=f"encoder trains from step {head_only}")
    ax.set_ylabel("masked-language loss (lower is better)")
    ax.grid(alpha=0.3)
    ax.legend()
    last = history[-1] if history else {"held_out_loss": float("nan"), "epoch": 0}
    ax.set_title(f"Adaptation — held-out loss {last['held_out_loss']:.3f} after {last['epoch']} epoch(s)")
    fig.tight_layout()
    return fig
