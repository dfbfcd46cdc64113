"""The picture of many scoring nights (`sentiment nights --plot`): label shares by night above,
rows by night below, with the nights a share jumped, the nights the model changed and the nights
Ray restarted a scoring actor marked."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # headless: nightly jobs and their reports run on servers
import matplotlib.pyplot as plt

from sentiment.data.labels import LABELS
from sentiment.io.storage import write_bytes
from sentiment.score.summary import LABEL_SHIFT_WARNING

LABEL_COLORS = {"negative": "tab:red", "neutral": "tab:gray", "positive": "tab:green"}
# Beyond this many nights every n-th night is named on the axis, so the names stay readable.
_NAMED_NIGHTS = 31


def nights_figure(rows: list[dict]):
    """Label shares (%) and rows scored per night, oldest first; rows as nights.night_rows makes them."""
    x = list(range(len(rows)))
    fig, (ax_shares, ax_rows) = plt.subplots(2, 1, sharex=True, figsize=(max(8.0, min(20.0, 0.35 * len(rows) + 4)), 7),
                                             gridspec_kw={"height_ratios": [2.2, 1]})
    for label in LABELS:
        ax_shares.plot(x, [100 * row["shares"][label] for row in rows], "o-", markersize=3, color=LABEL_COLORS.get(label),
                       label=label)
    for i, row in enumerate(rows):
        for label in row["moved"]:
            ax_shares.plot(i, 100 * row["shares"][label], "o", markersize=11, markerfacecolor="none",
                           markeredgecolor="black", markeredgewidth=1.5)
            ax_shares.annotate(f"{row['shift'][label] * 100:+.1f}", (i, 100 * row["shares"][label]),
                               textcoords="offset points", xytext=(7, 5), fontsize=8)
        if row["model_changed"]:
            for ax in (ax_shares, ax_rows):
                ax.axvline(i - 0.5, color="tab:purple", linestyle="--", linewidth=1)
            ax_shares.annotate(f"model: {_short(row['model'])}", (i - 0.5, 100), xycoords=("data", "data"),
                               rotation=90, va="top", ha="right", fontsize=7, color="tab:purple")
    ax_shares.set_ylim(0, 100)
    ax_shares.set_ylabel("share of scored rows (%)")
    ax_shares.grid(alpha=0.3)
    ax_shares.legend(loc="upper left", fontsize=8, ncol=len(LABELS))
    moved = sum(1 for row in rows if row["moved"])
    ax_shares.set_title(f"Label shares by night ({len(rows)} nights)\ncircled: a share moved "
                        f"{LABEL_SHIFT_WARNING * 100:.0f} points or more from the night before ({moved} night(s)); "
                        f"dashed: the model changed", fontsize=10)
    scored = [row["rows_scored"] or 0 for row in rows]
    errored = [row["rows_errored"] or 0 for row in rows]
    ax_rows.bar(x, scored, color="tab:blue", label="scored")
    ax_rows.bar(x, errored, bottom=scored, color="tab:red", label="not scored (empty or bad text)")
    ax_rows.set_ylabel("rows")
    top = max(max(s + e for s, e in zip(scored, errored)), 1)
    ax_rows.set_ylim(0, 1.35 * top)  # room for the legend
    # A restart costs no rows (its windows are scored again), so it is marked above the bar, with
    # its count: nights that keep losing actors (out of memory) show as a run of marks.
    restarted = [i for i, row in enumerate(rows) if row.get("actor_restarts")]
    if restarted:
        heights = [scored[i] + errored[i] + 0.08 * top for i in restarted]
        ax_rows.plot(restarted, heights, "v", color="tab:orange", markersize=6,
                     label="Ray restarted a scoring actor (times)")
        for i, height in zip(restarted, heights):
            ax_rows.annotate(str(rows[i]["actor_restarts"]), (i, height), textcoords="offset points",
                             xytext=(6, -3), fontsize=7, color="tab:orange")
    ax_rows.grid(axis="y", alpha=0.3)
    ax_rows.legend(loc="upper left", fontsize=8, ncol=3)  # one row, in the room above the bars
    step = max(1, -(-len(rows) // _NAMED_NIGHTS))
    ax_rows.set_xticks(x[::step], [row["night"] for row in rows][::step], rotation=45, ha="right", fontsize=8)
    fig.tight_layout()
    return fig


def plot_nights(rows: list[dict], uri: str) -> None:
    """nights_figure() as a PNG at a local path or s3:// URI."""
    fig = nights_figure(rows)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    write_bytes(uri, buffer.getvalue())


def _short(model) -> str:
    """A model's last path part: the folder names of a model bucket are what people recognise."""
    return str(model).rstrip("/").rsplit("/", 1)[-1]
