"""What runs on Ray's workers when scoring: the tokenize step and the model actor (one replica of
the model, loaded once, scoring tokenized batches), with its torch threads planned on its node."""

from __future__ import annotations

import functools
import logging
import os
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sentiment.data.labels import LABELS
from sentiment.io import shards
from sentiment.io.model_cache import fetch_dir_files
from sentiment.io.storage import absolute_uri
from sentiment.pause_points import pause_point
from sentiment.progress import process_age
from sentiment.score.columns import (ACTOR_PROCESS_COLUMN, ERROR_COLUMN, INPUT_IDS_COLUMN, LABEL_COLUMN, MODEL_COLUMN,
                                     PRECISION_COLUMN, PROB_COLUMNS)

log = logging.getLogger(__name__)


def model_id(model_uri: str) -> str:
    """What the `model` column holds: the URI as given for s3://, the absolute path for local."""
    return absolute_uri(model_uri)


def tokenize_batch(batch: pa.Table, *, tokenizer, text_column: str, max_length: int, drop_text: bool) -> pa.Table:
    """Add token ids and an `error` column; rows without usable text get null ids and a reason.

    A row is never dropped here: its error travels with it to the output.
    """
    batch = shards.plain_text(batch, text_column)  # dictionary / large_string / string_view text is text
    not_text = None  # the rows of files whose text column held no text, read as strings beside others
    if shards.TEXT_TYPE_COLUMN in batch.column_names:
        not_text = batch[shards.TEXT_TYPE_COLUMN]
        batch = batch.drop_columns([shards.TEXT_TYPE_COLUMN])
    text = batch[text_column]
    n = batch.num_rows
    if not (pa.types.is_string(text.type) or pa.types.is_large_string(text.type)):
        errors = pa.array([f"text is not a string ({text.type})"] * n, pa.string())
        errors = pc.if_else(pc.is_null(text), pa.scalar("text is null"), errors)
        valid = np.zeros(n, dtype=bool)
    else:
        is_null = pc.is_null(text).to_numpy(zero_copy_only=False)
        blank = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(text), ""), False).to_numpy(zero_copy_only=False)
        errors = pa.array(np.where(is_null, "text is null", np.where(blank, "text is empty or whitespace", None)),
                          pa.string())
        valid = ~(is_null | blank)
        if not_text is not None and not_text.null_count < n:
            # The same error as such a file's rows alone get (above), not its numbers scored as text.
            marked = pc.is_valid(not_text).to_numpy(zero_copy_only=False) & ~is_null
            reason = pc.binary_join_element_wise("text is not a string (", not_text, ")", "")
            errors = pc.if_else(pa.array(marked), reason, errors)
            valid &= ~marked
    from sentiment.model.token_batches import tokenize_to_arrow

    rows = np.flatnonzero(valid)
    ids = tokenize_to_arrow(tokenizer, text.take(pa.array(rows)).to_pylist(), max_length)
    if len(rows) < n:  # spread the valid rows' lists over all rows, nulls in between
        ids = pc.take(ids, pa.array(np.where(valid, np.cumsum(valid) - 1, 0), mask=~valid))
    if drop_text:
        batch = batch.drop_columns([text_column])
    return batch.append_column(INPUT_IDS_COLUMN, ids).append_column(ERROR_COLUMN, errors)


@functools.lru_cache(maxsize=4)
def _tokenizer(model_dir: str):
    # Once per worker process: the first batch pays for importing transformers, later ones don't.
    # The driver has already checked the folder; tokenize tasks (CPU workers, when the model
    # actors hold GPUs) fetch the tokenizer's files only, not the weights.
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(fetch_dir_files(model_dir, skip_suffixes=(".safetensors",)))


def tokenize_for_model(batch: pa.Table, *, model_dir: str, **kwargs) -> pa.Table:
    return tokenize_batch(batch, tokenizer=_tokenizer(model_dir), **kwargs)


class ScoringActor:
    """One model replica: loads the model once, then scores tokenized batches.

    Its torch threads are planned here, on the node it landed on, from what Ray gave it (see
    actor_threads), so a pool that grows onto new nodes sizes each actor for its own node.
    """

    def __init__(self, model_uri: str, *, gpu: bool, batch_size: int | None, tokens_per_batch: int | None,
                 max_length: int, threads: int | None, whole_node: bool, precision: str):
        started = time.perf_counter()
        _log_info_to_stderr()
        import torch

        from sentiment.model.predictor import Predictor, pick_device

        imported = time.perf_counter()
        torch.set_num_threads(threads or actor_threads(whole_node))
        self.predictor = Predictor(model_uri, device=pick_device(gpu), batch_size=batch_size,
                                   tokens_per_batch=tokens_per_batch, max_length=max_length, precision=precision)
        self.model = model_id(model_uri)
        self.process = actor_process()
        # Where an actor's start goes: on an H200 the model stage began 17 s after the first read
        # (issue 25), most of a 2,000,000-row run's fixed cost.
        log.info("scoring actor on %s, %s, %d torch threads; ready %s after its process started "
                 "(importing torch and the predictor %.1f s, loading the model onto the device %.1f s)",
                 self.predictor.device, self.predictor.precision, torch.get_num_threads(), process_age(),
                 imported - started, time.perf_counter() - imported)

    def __call__(self, batch: pa.Table) -> pa.Table:
        pause_point("score.actor_batch")  # where the fault tests kill an actor mid-run
        ids = batch[INPUT_IDS_COLUMN]
        valid = pc.is_valid(ids).to_numpy(zero_copy_only=False)
        probs = np.full((batch.num_rows, len(LABELS)), np.nan, dtype=np.float32)
        if valid.any():
            probs[valid] = self.predictor.predict_proba_tokens(ids.filter(pa.array(valid)))
        labels = pc.take(pa.array(LABELS, pa.string()), pa.array(probs.argmax(axis=1), mask=~valid))
        error = batch[ERROR_COLUMN]
        out = batch.drop_columns([INPUT_IDS_COLUMN, ERROR_COLUMN]).append_column(LABEL_COLUMN, labels)
        for k, name in enumerate(PROB_COLUMNS):
            out = out.append_column(name, pa.array(probs[:, k], pa.float32(), mask=~valid))
        out = out.append_column(ERROR_COLUMN, error)
        out = out.append_column(MODEL_COLUMN, pa.repeat(pa.scalar(self.model, pa.string()), batch.num_rows))
        # Read by the sink for _summary.json and dropped before writing.
        out = out.append_column(PRECISION_COLUMN, _constant(self.predictor.precision, batch.num_rows))
        return out.append_column(ACTOR_PROCESS_COLUMN, _constant(self.process, batch.num_rows))


def _constant(value: str, rows: int) -> pa.DictionaryArray:
    # One byte a row on its way to the writer, not the string's length (about 45 for an actor's
    # process): the object store carries every row's columns from the actor to the write task.
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, np.int8)), pa.array([value], pa.string()))


def actor_process() -> str:
    """"ACTOR_ID PID RESTARTED" for the process this actor runs in (ACTOR_PROCESS_COLUMN): Ray
    restarts a lost actor under its old id in a new process, and says so to the new one."""
    import ray

    context = ray.get_runtime_context()
    actor_id = context.get_actor_id()
    restarted = actor_id is not None and context.was_current_actor_reconstructed
    return f"{actor_id or '-'} {os.getpid()} {int(restarted)}"


def _log_info_to_stderr() -> None:
    """INFO lines of this module to stderr, which Ray forwards to the driver's console: Ray Data's
    actor processes leave logging unconfigured, where only warnings would be shown."""
    if not log.handlers and not logging.getLogger().handlers:
        log.addHandler(logging.StreamHandler())
        log.setLevel(logging.INFO)
        log.propagate = False


def actor_threads(whole_node: bool) -> int:
    """Torch threads for a scoring actor, from inside it: its node's CPUs for a pool of one
    actor (see actor_pool_plan), else the CPUs Ray assigned to it (at least one)."""
    import ray

    context = ray.get_runtime_context()
    if whole_node:
        node = next(n for n in ray.nodes() if n["NodeID"] == context.get_node_id())
        return max(1, int(node["Resources"].get("CPU", 1)))
    return max(1, int(context.get_assigned_resources().get("CPU", 1)))
