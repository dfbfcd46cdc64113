"""Token ids as Arrow lists and their batches: what the scoring pipeline's driver and tokenize
tasks need from the predictor, without importing torch (2.7 s of a scoring run's driver on
2 cores, only to read the batch size constants).

The predictor (sentiment.model.predictor) pads and runs these batches on its device.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sentiment.model.classifier import DEFAULT_MAX_LENGTH
from sentiment.model.readable_text import readable_texts

# Tokens (rows x padded length) per forward batch. A GPU needs big batches to be busy: bert-base
# in bf16 peaked at batch 1024 of ~24-token reviews on an H200 (issue 14), ~25,000 tokens. On CPU
# ~2,000 tokens is today's batch of 64 reviews at their mean length.
DEFAULT_TOKENS_PER_BATCH = {"cuda": 32_768, "cpu": 2_048}
# For sizing windows of rows before their lengths are known: real reviews average ~23 tokens.
TYPICAL_TOKENS_PER_ROW = 32


def tokenize_to_arrow(tokenizer, texts: Sequence[str], max_length: int = DEFAULT_MAX_LENGTH) -> pa.ListArray:
    """Token ids per text, truncated to max_length, as an Arrow list<int32> array (no padding).

    A fast tokenizer is called through its Rust backend, without offsets, the same ids the
    transformers call gives (tests/score/test_pipeline.py compares them) for about 35% less CPU per review
    (`python -m benchmarks.tokenizing`): tokenizing was the largest CPU cost of GPU scoring,
    123 µs per row (issue 25, BENCHMARKS.md). The ids come back as Python lists either way, and
    Arrow's C converter takes the unpadded lists directly; asking for padded numpy arrays ran at
    0.6x (issue 14). Symbols the tokenizer cannot read are spelled first where its model was
    trained so (sentiment.model.readable_text).
    """
    if not len(texts):
        return pa.array([], pa.list_(pa.int32()))
    texts = readable_texts(tokenizer, texts)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:  # a slow (Python) tokenizer has no backend
        ids = tokenizer(list(texts), truncation=True, max_length=max_length, padding=False,
                        return_attention_mask=False)["input_ids"]
        return pa.array(ids, pa.list_(pa.int32()))
    # What transformers sets on the backend before each of its own calls: truncation and
    # padding are the backend's state (a saved tokenizer.json may pad, MiniLM's to 128).
    backend.enable_truncation(max_length, direction=getattr(tokenizer, "truncation_side", "right"))
    backend.no_padding()
    backend.encode_special_tokens = bool(getattr(tokenizer, "split_special_tokens", False))
    # encode_batch_fast (tokenizers >= 0.21) skips the character offsets, which scoring never
    # reads: the same ids for 0.8x the CPU per review (`python -m benchmarks.tokenizing`).
    encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
    return pa.array([encoding.ids for encoding in encode(list(texts))], pa.list_(pa.int32()))


def batch_bounds(sorted_lengths: np.ndarray, tokens_per_batch: int, rows: int | None = None) -> list[tuple[int, int]]:
    """Consecutive (start, end) batches over rows sorted by ascending length.

    Args:
        sorted_lengths: tokens per row, ascending.
        tokens_per_batch: a batch's rows x its longest row stays within this (a single row
            longer than the budget forms a batch of its own).
        rows: a fixed number of rows per batch instead of the token budget (--batch-size).

    Returns:
        (start, end) index pairs covering every row once, in order.
    """
    n, bounds, start = len(sorted_lengths), [], 0
    while start < n:
        if rows:
            end = min(n, start + rows)
        else:
            # Padded cost of taking k rows is k x the k-th row's length: monotonic, so a search.
            limit = min(n, start + max(1, tokens_per_batch // max(1, int(sorted_lengths[start]))))
            cost = np.arange(1, limit - start + 1) * sorted_lengths[start:limit]
            end = start + max(1, int(np.searchsorted(cost, tokens_per_batch, side="right")))
        bounds.append((start, end))
        start = end
    return bounds


class SortedBatches(NamedTuple):
    """Rows of token ids laid out for batching: the flat ids with each row's start and length,
    the rows in ascending length (`order`), and the batches over that order (batch_bounds)."""
    values: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray
    order: np.ndarray
    bounds: list[tuple[int, int]]


def length_sorted_batches(tokens: pa.Array, tokens_per_batch: int, rows: int | None = None) -> SortedBatches:
    """SortedBatches for an Arrow list array of token ids (no nulls): read straight from its
    offsets and flat values, never as Python lists."""
    lengths = pc.list_value_length(tokens).to_numpy(zero_copy_only=False).astype(np.int64)
    values = pc.list_flatten(tokens).to_numpy(zero_copy_only=False)
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    order = np.argsort(lengths, kind="stable")
    return SortedBatches(values, starts, lengths, order, batch_bounds(lengths[order], tokens_per_batch, rows))


def pad_rows(values: np.ndarray, starts: np.ndarray, lengths: np.ndarray, pad_id: int,
             width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded (ids, attention mask) int64 matrices for rows values[start:start+length], as
    wide as the longest row or `width` (at least that)."""
    columns = np.arange(width if width is not None else int(lengths.max()))
    mask = columns < lengths[:, None]
    ids = np.where(mask, values[np.where(mask, starts[:, None] + columns, 0)], pad_id)
    return ids.astype(np.int64), mask.astype(np.int64)
