"""The night's `_summary.json`: totals over the per-file stats the Parquet sink returned."""

from __future__ import annotations

import datetime

from sentiment.data.labels import LABELS
from sentiment.progress import duration


def build_summary(written: list[dict], *, wall_s: float, model: str, output: str, inputs: list[str],
                  precision: str = "auto", input_rows: dict[str, int] | None = None,
                  skipped: list[str] = (), actor_processes: list[str] = ()) -> dict:
    """Totals over the per-file stats the writer returned.

    Args:
        written: one dict per Parquet file: file, rows, errored, labels (label -> count) and
            errors (error text -> count).
        wall_s: seconds from the start of the run to the last file written.
        model: the model identifier stored in every row.
        precision: the --precision asked for ("auto" resolves per actor: bf16 on GPUs and CPUs with native bf16).
        output, inputs: URIs, recorded for whoever reads the summary tomorrow.
        input_rows: rows of every input file read, by URI.
        skipped: files under the inputs that were not read (markers, notes, other formats).
        actor_processes: the scoring actors' processes that wrote rows, as ACTOR_PROCESS_COLUMN
            gives them (sentiment.score.columns).

    Returns:
        A JSON-serialisable summary (see the README's scoring section for the fields).
    """
    rows = sum(w["rows"] for w in written)
    errored = sum(w["errored"] for w in written)
    labels = {name: sum(w["labels"].get(name, 0) for w in written) for name in LABELS}
    errors: dict[str, int] = {}
    for w in written:
        for text, count in w.get("errors", {}).items():
            errors[text] = errors.get(text, 0) + count
    return {
        "model": model,
        "precision": precision,
        "inputs": inputs,
        "input_files": input_files(input_rows or {}),
        "skipped_files": list(skipped),
        "output": output,
        "rows_read": rows,
        "rows_scored": rows - errored,
        "rows_errored": errored,
        "errors": dict(sorted(errors.items(), key=lambda kv: -kv[1])),
        "wall_s": round(wall_s, 2),
        "rows_per_s": round(rows / wall_s, 1) if wall_s > 0 else None,
        "labels": labels,
        "label_fractions": {k: round(v / (rows - errored), 4) if rows > errored else 0.0 for k, v in labels.items()},
        "files": len(written),
        "scoring_actors": scoring_actors(actor_processes),
        "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def scoring_actors(processes: list[str]) -> dict:
    """How many scoring actors wrote rows, in how many processes, and how many times Ray restarted
    one after its process was lost (killed, out of memory, its node gone): the night's rows are
    complete either way (their windows are scored again), but a restart is worth knowing about.

    A restart shows as a second process of one actor, or as a process Ray marked as restarted
    (whose lost predecessor may have written nothing)."""
    by_actor: dict[str, list[bool]] = {}
    for process in processes:
        actor, _pid, restarted = process.split(" ")
        by_actor.setdefault(actor, []).append(restarted == "1")
    restarts = sum(max(len(flags) - 1, sum(flags)) for flags in by_actor.values())
    return {"actors": len(by_actor), "processes": len(processes), "restarts": restarts}


def input_files(rows_by_uri: dict[str, int]) -> list[dict]:
    """Every input file with its rows, in URI order: `input_files` of the summary and of --check."""
    return [{"file": uri, "rows": n} for uri, n in sorted(rows_by_uri.items())]


def describe_night(summary: dict) -> str:
    """The night in one line, for the console: the JSON on stdout is for machines.

    "committed 16 rows of 2 files to OUT in 7 s (2 rows/s): 15 labeled (negative 80.0%, neutral
    6.7%, positive 13.3%), 1 errored (commonest: 'text is empty or whitespace', 1)" (the demo's)
    """
    shares = ", ".join(f"{label} {summary['label_fractions'][label]:.1%}" for label in LABELS)
    errored = f"{summary['rows_errored']:,} errored"
    if summary["errors"]:
        text, count = next(iter(summary["errors"].items()))
        errored += f" (commonest: '{text}', {count:,})"
    files = len(summary["input_files"])
    restarts = summary.get("scoring_actors", {}).get("restarts", 0)
    restarted = (f"; {restarts} scoring actor restart{'s' if restarts != 1 else ''} (a process lost, its "
                 f"windows scored again)") if restarts else ""
    return (f"committed {summary['rows_read']:,} rows of {files:,} file{'s' if files != 1 else ''} to "
            f"{summary['output']} in {duration(summary['wall_s'])} ({summary['rows_per_s'] or 0:,.0f} rows/s): "
            f"{summary['rows_scored']:,} labeled ({shares}), {errored}{restarted}")


# A label's share moving this much (as a fraction) from one night to the next is logged as a
# warning: day-to-day shares of one product's reviews move by a point or two; ten is an event.
LABEL_SHIFT_WARNING = 0.10


def compare_with_previous(summary: dict, previous: dict | None) -> str | None:
    """Add `previous_night` (its output, attempt, finish time, model, rows scored and label shares) and
    `label_shift` (tonight's share of each label minus the previous night's) to summary, and
    return one line saying so; None, and nothing added, without a previous night.

    A nightly job's first question after "did it finish" is whether tonight looks like the nights
    before: a share that jumps points at new inputs, a broken upstream export or a new model.
    """
    if not previous or not isinstance(previous.get("label_fractions"), dict):
        return None
    before = previous["label_fractions"]
    summary["previous_night"] = {key: previous.get(key) for key in
                                 ("output", "attempt", "finished_at", "model", "rows_scored", "label_fractions")}
    summary["label_shift"] = {label: round(summary["label_fractions"][label] - float(before.get(label, 0.0)), 4)
                              for label in LABELS}
    shares = ", ".join(f"{label} {summary['label_fractions'][label]:.1%} "
                       f"({summary['label_shift'][label] * 100:+.1f} points)" for label in LABELS)
    model = "" if previous.get("model") == summary["model"] else f", scored by {previous.get('model')}"
    where = "" if previous.get("output") == summary.get("output") else f"{previous.get('output')}, "
    return (f"label shares against the previous night ({where}{previous.get('attempt')}, "
            f"{previous.get('rows_scored')} rows{model}): {shares}")
