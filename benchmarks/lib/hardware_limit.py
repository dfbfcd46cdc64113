"""The fastest scoring the hardware allows: the machine's matmul peak, and the forward-pass
FLOPs of a BERT classifier for real, unpadded token counts. Their ratio is the reviews/s
ceiling every measured method is compared with."""

from __future__ import annotations

import time

import numpy as np
import torch

from sentiment.model.classifier import DEFAULT_MAX_LENGTH


def matmul_peak_gflops(size: int = 4096, repeats: int = 5, dtype: torch.dtype = torch.float32,
                       device: str = "cpu", threads: int | None = None) -> tuple[float, float]:
    """Best matmul speed over `repeats` square matmuls (2*size**3 FLOPs each).

    Returns:
        (GFLOP per wall second, GFLOP per CPU-second). The first is the machine's peak when
        nobody else uses it; the second, with threads=1, is one fully busy core's peak and
        holds on a shared machine too (other load takes whole time slices, not FLOPs/cycle).
    """
    saved = torch.get_num_threads()
    torch.set_num_threads(threads or saved)
    try:
        a = torch.randn(size, size, dtype=dtype, device=device)
        b = torch.randn(size, size, dtype=dtype, device=device)
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        a @ b  # warm-up: thread pool and kernel selection
        sync()
        best_wall = best_cpu = float("inf")
        for _ in range(repeats):
            start, cpu = time.perf_counter(), time.process_time()
            a @ b
            sync()
            best_wall = min(best_wall, time.perf_counter() - start)
            best_cpu = min(best_cpu, time.process_time() - cpu)
    finally:
        torch.set_num_threads(saved)
    flop = 2 * size ** 3
    return flop / best_wall / 1e9, flop / best_cpu / 1e9


def token_counts(tokenizer, texts: list[str], max_length: int = DEFAULT_MAX_LENGTH) -> np.ndarray:
    """Tokens per text as the model sees them, [CLS]/[SEP] included, truncated, unpadded."""
    ids = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    return np.array([len(x) for x in ids], dtype=np.int64)


def forward_flops(config, tokens: np.ndarray) -> np.ndarray:
    """Forward-pass FLOPs of a BERT sequence classifier for sequences of `tokens` each.

    Per layer and token: 2 FLOPs per weight of Q, K, V, output (4*h*h) and FFN (2*h*i)
    matmuls; attention scores and the weighted sum add 2*2*T*h per token (4*T*T*h per
    sequence). Pooler (h*h) and head (h*labels) run once per sequence. Embedding lookups,
    layer norms, softmax and GELU are not matmuls and are left out, as is usual.
    """
    h, i, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    t = tokens.astype(np.float64)
    per_layer = 2 * (4 * h * h + 2 * h * i) * t + 4 * t * t * h
    return layers * per_layer + 2 * (h * h + h * config.num_labels)
