"""In-process inference: texts in, class probabilities out, as fast as the hardware allows.

Used by `predict`, `evaluate` and each scoring actor, so all three give the same numbers.
Speed comes from what the reference loop does not do:
- tokenize whole batches with the fast (Rust) tokenizer into Arrow list arrays (flat ids plus
  offsets) that travel between Ray stages and are never turned back into Python lists;
- sort rows by length and cut batches by a token budget (rows x padded length), so short
  reviews fill big batches, long ones do not blow memory, and each batch pads only to its own
  longest row;
- pad with numpy straight from the Arrow offsets, into pinned memory, copied to the GPU
  without blocking; probabilities stay on the device until the whole call is done, so the host
  pads batch i+1 while the GPU runs batch i (CUDA kernels launch asynchronously);
- bf16 weights (not autocast over fp32 weights) where the hardware multiplies bf16 natively:
  on an H200 with SDPA, bf16 weights ran bert-base's forward pass 1.4x faster than autocast at
  batch 1024 and 2.6x at batch 64 (issue 14; 5.3x was the prediction).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pyarrow as pa
import torch

from sentiment.model.classifier import DEFAULT_MAX_LENGTH, PRECISIONS, load_classifier
from sentiment.model.token_batches import (DEFAULT_TOKENS_PER_BATCH, length_sorted_batches, pad_rows,
                                           tokenize_to_arrow)


def pick_device(use_gpu: bool | None = None) -> torch.device:
    """cuda when asked for (or, with None, when present), else cpu."""
    if use_gpu is None:
        use_gpu = torch.cuda.is_available()
    return torch.device("cuda" if use_gpu else "cpu")


def native_bf16_cpu() -> bool:
    """Whether this CPU multiplies bf16 in hardware: AMX tiles (Intel Sapphire Rapids and later)
    or AVX512-BF16 (AMD Zen 4 and later, Intel Cooper Lake). Elsewhere bf16 is emulated and slower
    than fp32."""
    return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())


def resolve_precision(precision: str, device: torch.device) -> str:
    """"fp32" or "bf16": auto picks bf16 on GPUs and on CPUs that multiply bf16 natively
    (native_bf16_cpu), fp32 elsewhere, where bf16 would be emulated and slower.

    Raises:
        ValueError: precision is not one of model.PRECISIONS.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16"
    return "bf16" if native_bf16_cpu() else "fp32"


class Predictor:
    """A loaded model that turns texts, or token ids, into an (n, 3) float32 probability array.

    Args:
        model_uri: trained model folder or s3:// prefix.
        device: where the model runs; default: a GPU if present.
        batch_size: fixed rows per forward batch; None batches by tokens_per_batch instead.
        tokens_per_batch: rows x padded length per batch; default DEFAULT_TOKENS_PER_BATCH.
        max_length: truncate texts to this many tokens.
        precision: "auto", "fp32" or "bf16" (bf16 casts the weights).
    """

    def __init__(self, model_uri: str, *, device: torch.device | None = None, batch_size: int | None = None,
                 tokens_per_batch: int | None = None, max_length: int = DEFAULT_MAX_LENGTH, precision: str = "auto"):
        self.device = device or pick_device()
        self.batch_size = batch_size
        self.tokens_per_batch = tokens_per_batch or DEFAULT_TOKENS_PER_BATCH[self.device.type]
        self.max_length = max_length
        self.precision = resolve_precision(precision, self.device)
        model, self.tokenizer = load_classifier(model_uri)
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float32
        self.model = model.to(self.device, dtype=dtype).eval()
        self.pad_id = self.tokenizer.pad_token_id or 0
        self.model_name = model_uri

    @property
    def num_labels(self) -> int:
        return self.model.config.num_labels

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities in label order (negative, neutral, positive), rows summing to 1."""
        return self.predict_proba_tokens(self.tokenize(texts))

    def tokenize(self, texts: Sequence[str]) -> pa.ListArray:
        """Token ids per text, truncated to max_length and unpadded (padding happens per batch)."""
        return tokenize_to_arrow(self.tokenizer, list(texts), self.max_length)

    @torch.inference_mode()
    def predict_proba_tokens(self, tokens: pa.Array | pa.ChunkedArray | Sequence[Sequence[int]]) -> np.ndarray:
        """Class probabilities for rows of token ids (no nulls), as tokenize_to_arrow makes them.

        Rows are sorted by length and cut into batches (see length_sorted_batches); each is padded from
        the Arrow offsets with numpy. Results stay on the device until every batch has run.
        """
        if not isinstance(tokens, (pa.Array, pa.ChunkedArray)):
            tokens = pa.array(tokens, pa.list_(pa.int32()))
        if isinstance(tokens, pa.ChunkedArray):
            tokens = tokens.combine_chunks()
        if not len(tokens):
            return np.zeros((0, self.num_labels), dtype=np.float32)
        batches = length_sorted_batches(tokens, self.tokens_per_batch, self.batch_size)
        order = batches.order
        sorted_probs = torch.empty((len(order), self.num_labels), dtype=torch.float32, device=self.device)
        for start, end in batches.bounds:
            rows = order[start:end]
            ids, mask = pad_rows(batches.values, batches.starts[rows], batches.lengths[rows], self.pad_id)
            logits = self.model(input_ids=self.to_device(ids), attention_mask=self.to_device(mask)).logits
            sorted_probs[start:end] = torch.softmax(logits.float(), dim=-1)
        probs = np.empty((len(order), self.num_labels), dtype=np.float32)
        probs[order] = sorted_probs.cpu().numpy()
        return probs

    def to_device(self, array: np.ndarray) -> torch.Tensor:
        """A padded batch as a tensor on this predictor's device (on a GPU, copied without blocking)."""
        tensor = torch.from_numpy(array)
        if self.device.type == "cuda":
            # Pinned pages let the copy run asynchronously; torch caches pinned blocks.
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor
