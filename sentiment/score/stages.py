"""Where a scoring run's time went, per stage, from Ray Data's own per-operator statistics.

`stage_table(ds)` turns the stats Ray Data kept while it wrote `ds` into one row per stage of
the pipeline (read, repartition, tokenize, model, write): rows, blocks, wall time, summed task
time and CPU time; the model row also says how long no model call was running between its first
and last call (`wait_s`: the actor waiting for input). `_summary.json` holds it as `stages`, and
the benchmarks print it first.

Nothing here times anything itself. Ray Data fuses adjacent operators into one (on CPU the
tokenizer runs inside the model actor's task); with `DataContext.per_stage_map_timing` on, it
splits each fused operator's transform time per fused function, and a fused operator's task and
CPU time are shared out in those proportions (such rows carry `fused_with`).
"""

from __future__ import annotations

import collections
import logging

log = logging.getLogger(__name__)

STAGES = ("read", "repartition", "tokenize", "model", "write")
# Ray names the operators after the functions the pipeline passes it (pipeline.py, actor.py).
_TOKENIZE, _MODEL = "tokenize_for_model", "ScoringActor"
# Operators whose output rows are file names, not reviews: their time is the read's, their rows not.
_FILE_LISTING = ("ListFiles",)


def enable_stage_timing(ds) -> None:
    """Ask Ray Data to split fused operators' time per function for this dataset (one float per
    function per block: nothing measurable beside the work itself)."""
    ds.context.per_stage_map_timing = True


def stage_of(part: str) -> str:
    """The pipeline stage one (unfused) operator name belongs to; listing files, reading,
    column selection, type casts and unions are all reading."""
    if _TOKENIZE in part:
        return "tokenize"
    if _MODEL in part:
        return "model"
    if part == "Write" or part.startswith("Write"):
        return "write"
    if "Repartition" in part:
        return "repartition"
    return "read"


def stage_table(ds) -> list[dict]:
    """One dict per stage present, in pipeline order, for a dataset that has been written.

    Each row: stage; operators (Ray's names for the operators it ran in); rows and blocks it
    produced (the write: rows it received and files it wrote); start_s (after the first stage
    started) and wall_s (first start to last end of its operators); task_s (summed wall time of its tasks, or of its function within fused
    tasks); cpu_s (summed CPU time of those tasks' processes, all threads: two calls running at
    once in one actor each count the process's CPU, so the model's can be up to twice its own).
    The model row adds wait_s and busy_fraction. Returns [] when Ray kept no stats (logged, never fatal: the table
    describes a run, it must not fail one).
    """
    try:
        raw = _raw_stats(ds)
        operators = _operators(raw.to_summary())
        metadata = _metadata(raw)
    except Exception as error:  # private Ray API: a Ray upgrade must not fail a night's scoring
        log.warning("no per-stage table: Ray Data's stats could not be read (%s)", error)
        return []
    rows: dict[str, dict] = {}
    for op in operators:
        for stage, share in _split(op).items():
            _add(rows.setdefault(stage, _empty(stage)), op, share)
    model = rows.get("model")
    if model is not None:
        busy, span = _busy_and_span(metadata, model["operators"])
        model["wait_s"] = round(max(0.0, span - busy), 3) if span else None
        model["busy_fraction"] = round(busy / span, 3) if span else None
    starts = [row["_start"] for row in rows.values() if row["_start"] is not None]
    for row in rows.values():  # on one node's clock; across nodes only roughly
        row["start_s"] = row["_start"] - min(starts) if row["_start"] is not None and starts else 0.0
    return [_rounded(rows[s]) for s in STAGES if s in rows]


def pipeline_seconds(stages: list[dict]) -> float:
    """From the first stage's start to the last one's end: the pipeline's own time, without
    Ray's start-up or the up-front checks."""
    return max((row["start_s"] + row["wall_s"] for row in stages), default=0.0)


def format_stages(stages: list[dict]) -> str:
    """The table as text, one line per stage: what the benchmarks print first."""
    lines = [f"{'stage':12}{'rows':>10}{'blocks':>8}{'start s':>9}{'wall s':>9}{'task s':>9}{'CPU s':>9}"
             f"{'rows/task-s':>13}  notes"]
    for row in stages:
        notes = []
        if row.get("fused_with"):
            others = sorted({stage_of(p) for p in row["fused_with"].split("->")} - {row["stage"]})
            notes.append(f"in one task with {', '.join(others)}")
        if "wait_s" in row:
            notes.append(f"waited {row['wait_s']} s for input (busy {row['busy_fraction']:.0%})"
                         if row["wait_s"] is not None else "wait not measured")
        rate = row["rows"] / row["task_s"] if row["task_s"] else 0
        lines.append(f"{row['stage']:12}{row['rows']:>10,}{row['blocks']:>8}{row['start_s']:>9.2f}{row['wall_s']:>9.2f}"
                     f"{row['task_s']:>9.2f}{row['cpu_s']:>9.2f}{rate:>13,.0f}  {'; '.join(notes)}")
    seconds = pipeline_seconds(stages)
    rows = max((row["rows"] for row in stages), default=0)
    lines.append(f"pipeline: {seconds:.2f} s from the first read to the last write"
                 + (f", {rows / seconds:,.0f} rows/s" if seconds else ""))
    return "\n".join(lines)


def _raw_stats(ds):
    # Dataset.get_stats_summary() (a DeveloperAPI) goes the same way; the per-block start and end
    # times that the model's wait needs are only on the stats object itself.
    written = ds._write_ds if getattr(ds, "_write_ds", None) is not None else ds
    executor = written._current_executor
    return executor.get_stats() if executor else written._raw_stats()


def _operators(summary) -> list:
    # The written dataset's stats hold the write; what ran before it hangs off its parents. A
    # logical operator that ran no task of its own (ReadFiles, a union) has no blocks.
    ran = [op for op in summary.operators_stats if op.output_num_rows and op.output_num_rows.count]
    return [op for parent in summary.parents for op in _operators(parent)] + ran


def _metadata(stats) -> dict:
    merged = {}
    for parent in stats.parents or []:
        merged.update(_metadata(parent))
    merged.update(stats.metadata)
    return merged


def _split(op) -> dict[str, float]:
    """Stage -> share of this operator's time. One stage for an unfused operator; for a fused
    one, each function's share of the transform time Ray measured per function."""
    parts = op.operator_name.split("->")
    stages = [stage_of(p) for p in parts]
    if len(set(stages)) == 1:
        return {stages[0]: 1.0}
    times = [s.sum for s in op.stage_time] if op.stage_time and len(op.stage_time) == len(parts) else None
    if not times or not sum(times):
        # Not split by Ray: all of it goes to the costliest kind of work the operator holds.
        return {max(stages, key=STAGES.index): 1.0}
    shares: dict[str, float] = collections.defaultdict(float)
    for stage, seconds in zip(stages, times):
        shares[stage] += seconds / sum(times)
    return dict(shares)


def _empty(stage: str) -> dict:
    return {"stage": stage, "operators": [], "rows": 0, "blocks": 0, "wall_s": 0.0, "task_s": 0.0, "cpu_s": 0.0,
            "_start": None, "_end": None}


def _add(row: dict, op, share: float) -> None:
    name = op.operator_name
    row["operators"].append(name)
    if share < 1.0:
        row["fused_with"] = name
    if row["stage"] == "write":
        row["rows"] += op.total_input_num_rows or 0
        row["blocks"] += op.output_num_rows.count if op.output_num_rows else 0
    elif not any(name.startswith(f) for f in _FILE_LISTING):
        row["rows"] += int(op.output_num_rows.sum) if op.output_num_rows else 0
        row["blocks"] += op.output_num_rows.count if op.output_num_rows else 0
    row["task_s"] += share * (op.wall_time.sum if op.wall_time else 0.0)
    row["cpu_s"] += share * (op.cpu_time.sum if op.cpu_time else 0.0)
    if op.earliest_start_time is not None:
        row["_start"] = min(op.earliest_start_time, row["_start"] if row["_start"] is not None else float("inf"))
        row["_end"] = max(op.latest_end_time, row["_end"] if row["_end"] is not None else float("-inf"))
        row["wall_s"] = row["_end"] - row["_start"]


def _rounded(row: dict) -> dict:
    out = {k: v for k, v in row.items() if not k.startswith("_")}
    for key in ("start_s", "wall_s", "task_s", "cpu_s"):
        out[key] = round(out[key], 3)
    return out


def _busy_and_span(metadata: dict, operators: list[str]) -> tuple[float, float]:
    """Seconds in which at least one model call ran, and from the first call's start to the last
    one's end, per node (each node's clock is its own), summed over nodes."""
    intervals: dict[str, list[tuple[float, float]]] = collections.defaultdict(list)
    for name in operators:
        for block in metadata.get(name, []):
            stats = block.exec_stats
            if stats is not None and stats.start_time_s is not None and stats.end_time_s is not None:
                intervals[stats.node_id].append((stats.start_time_s, stats.end_time_s))
    busy = span = 0.0
    for spans in intervals.values():
        spans.sort()
        span += max(e for _, e in spans) - spans[0][0]
        end = float("-inf")
        for s, e in spans:
            busy += max(0.0, e - max(s, end))
            end = max(end, e)
    return busy, span
