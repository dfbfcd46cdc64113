"""Nightly batch scoring on Ray Data: shards in, labels and probabilities out, streaming.

    read (CSV/Parquet) -> tokenize (CPU tasks) -> predict (actor pool, model loaded once per
    actor) -> write Parquet -> _summary.json -> _SUCCESS

Run it as `sentiment score --model M --input IN --output OUT` (see `sentiment score --help`).
Nothing is collected on the driver: rows stream through Ray Data's bounded window, and only
per-file counts come back to the driver for the summary and the manifest.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from dataclasses import dataclass

from ray.data import ActorPoolStrategy

from sentiment.io import shards
from sentiment.score import commit
from sentiment.score.actor import ScoringActor, model_id, tokenize_for_model
from sentiment.score.columns import OUTPUT_COLUMNS
from sentiment.score.lock import live_holder
from sentiment.score.sink import ScoredParquetSink
from sentiment.progress import DEFAULT_PROGRESS_EVERY_S
from sentiment.score.progress import report_progress
from sentiment.score.stages import enable_stage_timing, stage_table
from sentiment.score.summary import (LABEL_SHIFT_WARNING, build_summary, compare_with_previous, describe_night,
                                     input_files)
from sentiment.errors import InputError, StorageError
from sentiment.provenance import provenance
from sentiment.score.failures import pipeline_failure
from sentiment.model.classifier import DEFAULT_MAX_LENGTH, check_classifier_folder
from sentiment.cluster.placement import require_shared_paths
from sentiment.cluster.connect import ensure_connected
from sentiment.cluster.resources import require, warn_if_held
from sentiment.pause_points import runtime_env_vars
from sentiment.io.storage import absolute_uri, arrow_filesystem, check_reachable, is_s3

log = logging.getLogger(__name__)

# Each actor call gets this many forward batches at once and sorts them by length, so texts of
# similar length share a batch and padding stays small: on real reviews at batch 64, a window of
# 16 batches padded to 1.26x the real tokens, 64 batches to 1.06x, and scored 1.22x faster.
SORT_WINDOW_BATCHES = 64
_TOKENIZE_BATCH_ROWS = 4096


@dataclass(frozen=True)
class ScoreConfig:
    """Everything one scoring run needs; built from CLI flags or directly in Python."""

    model: str
    inputs: list[str]
    output: str
    text_column: str = "content"
    # Names the text column has instead in some files, tried in order after text_column; such a
    # file's text is read, and kept in the output, as text_column.
    other_text_columns: tuple[str, ...] = ()
    format: str | None = None
    keep_columns: list[str] | None = None
    concurrency: tuple[int, int] = (1, 1)
    batch_size: int | None = None  # None: batches by tokens_per_batch
    max_length: int = DEFAULT_MAX_LENGTH
    gpu: bool = False
    cpus_per_actor: float = 1.0
    rows_per_file: int = 100_000
    precision: str = "auto"
    threads_per_actor: int | None = None  # None: see actor_threads
    shared_fs: bool = False  # local paths are on a filesystem every node mounts (see placement)
    max_error_fraction: float = 0.5  # above it the run fails and the previous output stays
    tokens_per_batch: int | None = None  # None: token_batches.DEFAULT_TOKENS_PER_BATCH for the device
    overwrite: bool = False  # replace an output folder holding files that are not ours
    compare_with: str | None = None  # an earlier output (yesterday's); None: the night --output holds
    progress_every_s: float = DEFAULT_PROGRESS_EVERY_S  # a "scored N of M rows" line this often; 0: none
    check_only: bool = False  # every check before scoring, then stop: nothing scored or written

    @classmethod
    def from_namespace(cls, args: argparse.Namespace) -> "ScoreConfig":
        keep = [c.strip() for c in args.keep_columns.split(",") if c.strip()] if args.keep_columns else None
        return cls(model=args.model, inputs=list(args.input), output=args.output, text_column=args.text_column[0],
                   other_text_columns=tuple(args.text_column[1:]), format=args.format, keep_columns=keep,
                   concurrency=tuple(args.concurrency), batch_size=args.batch_size, max_length=args.max_length, gpu=args.gpu,
                   cpus_per_actor=args.cpus_per_actor, rows_per_file=args.rows_per_file, precision=args.precision,
                   threads_per_actor=args.threads_per_actor, shared_fs=args.shared_fs,
                   max_error_fraction=args.max_error_fraction, tokens_per_batch=args.tokens_per_batch,
                   overwrite=args.overwrite, compare_with=args.compare_with, progress_every_s=args.progress_every,
                   check_only=args.check)


def batch_window_rows(config: ScoreConfig) -> int:
    """Rows per actor call: SORT_WINDOW_BATCHES forward batches, at typical review lengths when
    batches are cut by tokens."""
    from sentiment.model.token_batches import DEFAULT_TOKENS_PER_BATCH, TYPICAL_TOKENS_PER_ROW

    tokens = config.tokens_per_batch or DEFAULT_TOKENS_PER_BATCH["cuda" if config.gpu else "cpu"]
    rows_per_batch = config.batch_size or max(1, tokens // TYPICAL_TOKENS_PER_ROW)
    return rows_per_batch * SORT_WINDOW_BATCHES


def tokenize_env(env: dict[str, str], gpu: bool) -> dict[str, str]:
    """The tokenize tasks' environment: the actors' (env), and, where they run apart from the
    actors (GPU runs), the tokenizers library's own thread pool off.

    Each tokenize task holds one CPU of Ray's, but the tokenizers library runs encode_batch on a
    thread per core unless TOKENIZERS_PARALLELISM is false: on the H200 node the 16 tokenize tasks
    used 1.22-1.23 CPU-s per task-second (BENCHMARKS.md, issue 25), most likely that pool's, taking
    cores the read, the write and the model actor's host work needed. On CPU runs tokenizing is
    fused into the actor, whose cores are its own, and there the pool halves tokenizing's wall time
    on 2 cores; a value set for the driver wins either way.
    """
    if not gpu:
        return env
    return {**env, "TOKENIZERS_PARALLELISM": os.environ.get("TOKENIZERS_PARALLELISM", "false")}


def build_pipeline(config: ScoreConfig, found: shards.Shards, model_dir: str):
    """The lazy Dataset: read -> tokenize -> predict. Nothing runs until it is written.

    model_dir is opened by tasks and actors in their own directories: s3:// or an absolute path
    (storage.absolute_uri), never one relative to the driver's.
    """
    # Reads coalesce small files into blocks of up to 128 MiB: 20,000 reviews are 2 MiB, so one
    # block, so one actor task, and every other actor of the pool sits idle. Blocks of one sort
    # window each spread the work over the pool and let the writer start while scoring goes on.
    window = batch_window_rows(config)
    ds = shards.read_shards(found).repartition(target_num_rows_per_block=window)
    drop_text = config.keep_columns is not None and config.text_column not in config.keep_columns
    # OpenMP's threads spin while they wait for work (OMP_WAIT_POLICY's default). A model runs
    # many small parallel regions, and on a node whose cores also read, tokenize and write, the
    # spinning takes the cores the other thread needs: on a loaded 2-core machine the tiny model
    # ran 20x slower in wall time on 2 torch threads than on 1, and as fast as on 1 with PASSIVE
    # (BENCHMARKS.md, CPU scoring). It must be set before torch loads, so it travels with the
    # actors (and the tokenize tasks: Ray fuses only stages with the same arguments, and on CPU
    # tokenizing inside the actor's task saves a worker importing transformers); a value set for
    # the driver wins. Tests hold actors at pause points on a cluster that
    # was already running: those variables travel the same way (unset in every real run).
    env = {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"), **runtime_env_vars()}
    remote_args = {"runtime_env": {"env_vars": env}}
    # Never more rows per tokenize call than per actor call: on CPU Ray fuses tokenize into the
    # actor stage, and a fused task as big as several windows would go to one actor alone.
    ds = ds.map_batches(tokenize_for_model, batch_format="pyarrow", batch_size=min(_TOKENIZE_BATCH_ROWS, window),
                        fn_kwargs={"model_dir": model_dir, "text_column": config.text_column,
                                   "max_length": config.max_length, "drop_text": drop_text},
                        runtime_env={"env_vars": tokenize_env(env, config.gpu)})
    low, high = actor_pool_plan(config)
    # Overlap, so the model never waits for the host: Ray Data sends each actor up to 4 windows
    # (the default is 2), which it fetches while the model runs; two calls per actor let one
    # batch its input and output while the other runs the model (the model itself still runs
    # one call at a time: enable_true_multi_threading stays off). Inside a call, CUDA kernels
    # launch asynchronously and the host pads batch i+1 while the GPU runs batch i.
    return ds.map_batches(
        ScoringActor, batch_format="pyarrow", batch_size=window,
        fn_constructor_kwargs={"model_uri": model_dir, "gpu": config.gpu, "batch_size": config.batch_size,
                               "tokens_per_batch": config.tokens_per_batch, "max_length": config.max_length,
                               "threads": config.threads_per_actor, "whole_node": high == 1 and not config.gpu,
                               "precision": config.precision},
        compute=ActorPoolStrategy(min_size=low, max_size=high, max_tasks_in_flight_per_actor=4,
                                   max_concurrent_calls_per_actor=2),
        num_cpus=config.cpus_per_actor, num_gpus=1 if config.gpu else 0, **remote_args)


def actor_pool_plan(config: ScoreConfig) -> tuple[int, int]:
    """The actor pool's (min, max); each actor plans its own torch threads (actor_threads).

    On a CPU cluster of fixed size the pool is capped so it leaves one CPU to read and write:
    actors hold their CPUs for the whole run, and a pool that takes every CPU starves the read
    tasks and the job waits forever (seen with --concurrency 2 on a 2-CPU machine). That CPU is
    reserved, not busy: reading, tokenizing and writing take a few percent of it. So a pool of
    one actor (the default) runs a torch thread on every CPU of its node, the kept one included;
    on a 2-CPU machine that scored MiniLM 1.5x faster than one thread.
    When the live nodes cannot hold even one actor (a head with CPU 0 and workers scaling from
    0), nothing is capped: the request stands and an autoscaler can add nodes for it. GPU pools
    are left as asked: one model per GPU, and an autoscaling cluster may add GPU nodes later.
    """
    import ray

    low, high = config.concurrency
    if config.gpu:
        return low, high
    ensure_connected()
    cpus = ray.cluster_resources().get("CPU", 0)
    fits = int((cpus - 1) // config.cpus_per_actor)
    if fits < 1:
        log.warning("the Ray cluster has %g CPUs now: the model actors (%g CPUs each) wait for nodes to be added",
                    cpus, config.cpus_per_actor)
        return low, high
    if high > fits:
        log.warning("--concurrency %s,%s capped to %s model actors: %g CPUs, %g per actor, one kept for reading "
                    "and writing", low, high, fits, cpus, config.cpus_per_actor)
    warn_if_held({"CPU": config.cpus_per_actor}, min(low, fits), "score (its model actors)")
    return min(low, fits), min(high, fits)


def score(config: ScoreConfig) -> dict:
    """Score every row of the input shards and write Parquet, a summary and a completion marker.

    One run per output at a time (its `_LOCK`). The attempt is written to its own staging folder
    beside the output and committed only when complete (see sentiment.score.commit): at every
    instant `_SUCCESS` names one complete night, the previous one or this one.

    Args:
        config: what to score, with which model, and where to write it.

    Returns:
        The summary: input files and rows, rows scored/errored, wall time, rows/s and label
        distribution. The same dict is written to OUTPUT/_summary.json. With config.check_only,
        what a run would do (planned_run), and nothing is written.

    Raises:
        InputError: bad input paths, files or columns, an output folder holding other files and
            no `_SUCCESS` of ours (without config.overwrite) or inside an input folder, another run
            writing the same output, or more errored rows than config.max_error_fraction.
        StorageError: input or output storage cannot be reached.
        ModelError: config.model is not a sentiment model.
        ResourceError: the cluster can never hold the actors asked for.
    """
    start = time.perf_counter()
    # Local inputs and models need only be readable, and their listing says so; object storage
    # is probed first so a dead endpoint fails in seconds, naming endpoint and bucket.
    for uri in (*config.inputs[:1], config.model):
        if is_s3(uri):
            check_reachable(uri)
    check_reachable(config.output)
    # Local paths are judged against the cluster's nodes before they are listed: in a job on a
    # cluster of several nodes, a path only the submitting laptop holds is named as that, not as
    # "not found" on the head. It joins a running cluster; a command's own is not started for it.
    require_shared_paths({"--input": config.inputs, "--output": [config.output], "--model": [config.model]},
                         shared_fs=config.shared_fs)
    # What needs no cluster comes next: an input path that matches nothing, an output folder that
    # is not ours and a wrong model folder are refused in a second, before the command's own Ray
    # cluster starts (5-7 s on 2 cores, and its start-up lines first).
    listed = shards.list_shard_files(config.inputs, config.format)
    commit.check_output_folder(config.output, listed.uris, tuple(config.inputs), overwrite=config.overwrite)
    # A --max-length beyond the model's positions too; the model itself is loaded only by the
    # actors (importing torch and transformers alone takes ~7 s on 2 cores).
    check_classifier_folder(config.model, max_length=config.max_length)
    found = shards.find_shards(config.inputs, text_column=config.text_column, fmt=config.format,
                               keep_columns=config.keep_columns, reserved=OUTPUT_COLUMNS,
                               other_text_columns=config.other_text_columns, listed=listed)
    if config.gpu:  # CPU pools are fitted to the cluster by actor_pool_plan
        require({"CPU": config.cpus_per_actor, "GPU": 1}, config.concurrency[0], "score --gpu")
    # --compare-with is read now, not after the night: a folder holding no night is said before the
    # hours of scoring. Without it, tonight is compared with the night --output holds, read once this
    # run holds the output's lock, so that it is the night this run replaces.
    compare_with = _compare_with_summary(config) if config.compare_with else None
    if config.check_only:
        return planned_run(config, found, compare_with)
    attempt = commit.begin_attempt(config.output, overwrite=config.overwrite)
    try:
        summary = _score_attempt(config, found, attempt, start, compare_with)
    finally:
        attempt.lock.release()
    return summary


def planned_run(config: ScoreConfig, found: shards.Shards, compare_with: dict | None) -> dict:
    """What `score --check` returns once every check has passed: what a run would read, with
    which model and actor pool, into which output, the night it would replace, and the night it
    would be compared with (`compare_with`, --compare-with's night, else the one it replaces)."""
    low, high = actor_pool_plan(config)
    previous = commit.read_night_summary(config.output)
    compared = compare_with if config.compare_with else previous
    writer = live_holder(config.output)
    if writer:  # not a failure: that run may be done by the time this one starts
        log.warning("--output %s is being written now by attempt %s on host %s (pid %s): a run started now would "
                    "be refused", config.output, writer.get("attempt"), writer.get("host"), writer.get("pid"))
    plan = {"check": "passed", "model": model_id(config.model), "inputs": list(config.inputs),
            "input_files": input_files(found.rows_by_uri),
            "skipped_files": list(found.skipped), "rows": found.input_rows, "text_column": config.text_column,
            "text_read_from": found.text_read_from,
            "model_actors": {"min": low, "max": high, "gpu": config.gpu}, "output": config.output,
            "replaces": {key: previous.get(key) for key in ("attempt", "finished_at", "rows_read", "model")}
            if previous else None,
            "compared_with": {key: compared.get(key) for key in ("output", "attempt", "rows_scored")}
            if compared else None,
            "being_written_by": {key: writer.get(key) for key in ("attempt", "host", "pid", "heartbeat")}
            if writer else None}
    replaces = (f"replacing the night of {previous.get('finished_at')} ({previous.get('rows_read', 0):,} rows)"
                if previous else "a first night there")
    log.info("check passed: %d file(s), %s rows, would be scored by %s with %s model actor(s) into %s, %s; "
             "nothing was scored or written", len(found.uris), f"{found.input_rows:,}", model_id(config.model),
             low if low == high else f"{low}-{high}", config.output, replaces)
    return plan


def _score_attempt(config: ScoreConfig, found: shards.Shards, attempt: commit.Attempt, start: float,
                   compare_with: dict | None) -> dict:
    """Write this attempt into its staging folder, check it, and commit it; compare it with
    `compare_with` (--compare-with's night, read before scoring), else with the night it replaces."""
    log.info("scoring %d file(s) (%d rows) from %s with %s into %s, staged in %s", len(found.uris), found.input_rows,
             ", ".join(config.inputs), model_id(config.model), config.output, attempt.staging)
    filesystem, staging_path = arrow_filesystem(attempt.staging)
    sink = ScoredParquetSink(staging_path, filesystem=filesystem, rows_per_file=config.rows_per_file)
    # The model as the actors and tokenize tasks open it, in their own directories.
    dataset = build_pipeline(config, found, absolute_uri(config.model))
    enable_stage_timing(dataset)
    report_progress(dataset, found.input_rows, config.progress_every_s)
    try:
        dataset.write_datasink(sink)
    except Exception as error:
        failure = pipeline_failure(error, found.uris, found.paths, config.output)
        if failure is None:
            raise
        raise failure from None
    summary = build_summary(sink.written, wall_s=time.perf_counter() - start, model=model_id(config.model),
                                     output=config.output, inputs=list(config.inputs),
                                     precision=",".join(sink.precisions) or config.precision,
                                     input_rows=found.rows_by_uri, skipped=found.skipped,
                                     actor_processes=sink.actor_processes)
    summary["max_error_fraction"] = config.max_error_fraction
    # Which files' text came from another of the --text-column names, for whoever audits the night.
    summary["text_column"] = config.text_column
    summary["text_read_from"] = found.text_read_from
    summary["stages"] = stage_table(dataset)
    summary["provenance"] = provenance()
    _check_nothing_lost(found, summary, attempt.staging)
    _check_error_fraction(summary, config.max_error_fraction, attempt.staging)
    previous = compare_with if config.compare_with else commit.read_night_summary(config.output)
    compared = compare_with_previous(summary, previous)
    commit.commit(attempt, summary, sink.written, found.rows_by_uri)
    log.info(describe_night(summary))
    if compared:
        log_comparison(compared, summary["label_shift"])
    return summary


def log_comparison(line: str, label_shift: dict[str, float]) -> None:
    """The comparison with the previous night: a warning when a share moved by LABEL_SHIFT_WARNING."""
    if max(map(abs, label_shift.values())) >= LABEL_SHIFT_WARNING:
        log.warning(f"{line}; a share moved by {LABEL_SHIFT_WARNING * 100:.0f} points or more")
    else:
        log.info(line)


def _compare_with_summary(config: ScoreConfig) -> dict | None:
    """--compare-with's night, or None (with a warning) where it holds none or cannot be read."""
    try:
        previous = commit.read_night_summary(config.compare_with)
    except StorageError as error:  # monitoring: the night's rows are what must not fail
        log.warning("--compare-with %s could not be read (%s); tonight is not compared", config.compare_with, error)
        return None
    if previous is None:
        log.warning("--compare-with %s holds no finished night (no _SUCCESS and _summary.json of one attempt); "
                    "tonight is not compared", config.compare_with)
    return previous


def _check_nothing_lost(found: shards.Shards, summary: dict, staging: str) -> None:
    # Every input file's rows were counted up front; a mismatch must stop the commit.
    if summary["rows_read"] != found.input_rows:
        raise RuntimeError(f"wrote {summary['rows_read']} rows but the input files hold {found.input_rows}; "
                           f"the output was left as it was and this attempt is in {staging}")


def _check_error_fraction(summary: dict, limit: float, staging: str) -> None:
    rows, errored = summary["rows_read"], summary["rows_errored"]
    if rows and errored / rows > limit:
        text, count = next(iter(summary["errors"].items()))
        raise InputError(f"{errored} of {rows} rows ({errored / rows:.0%}) could not be scored, more than "
                         f"--max-error-fraction {limit:g}; the commonest error: '{text}' ({count} rows). The "
                         f"output was left as it was; this attempt is in {staging}")
