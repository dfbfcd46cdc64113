"""Numbers a training epoch reports: per-class counts kept on the device, macro-F1 from them,
their sum over DDP workers, throughput and model FLOP utilisation, the best-epoch rule, and the
fingerprint of the weights and the optimizer's step count that resumes are checked by.

Counts live in one small device tensor that the loop adds to every step and reads only every
few steps, so a GPU step never waits for the host.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
import torch.distributed as dist

from sentiment.data.labels import LABELS
from sentiment.train.metrics import macro_f1_of

N_CLASSES = len(LABELS)
# Slots of the running-totals tensor, after the N_CLASSES**2 confusion counts.
LOSS_SUM, TOKENS, TOKENS_SQUARED = N_CLASSES ** 2, N_CLASSES ** 2 + 1, N_CLASSES ** 2 + 2
TOTALS_SIZE = N_CLASSES ** 2 + 3
SELECT_METRICS = ("accuracy", "macro_f1")


def new_totals(device: torch.device) -> torch.Tensor:
    """Zeroed running totals: confusion counts, loss sum, token count and squared token counts."""
    return torch.zeros(TOTALS_SIZE, dtype=torch.float64, device=device)


@torch.no_grad()
def add_batch(totals: torch.Tensor, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor,
              attention_mask: torch.Tensor) -> None:
    """Add one batch to `totals` on the device (no host sync).

    Rows labelled below 0 (step.MASKED_LABEL: the filler of a static-shape batch) count nowhere;
    `loss` is the mean over the other rows, as cross-entropy's ignore_index gives it. Masking by
    weights, not by indexing, keeps every shape static.
    """
    real = labels >= 0
    predicted = logits.argmax(-1)
    cells = torch.where(real, labels * N_CLASSES + predicted, 0)
    totals[:N_CLASSES ** 2] += torch.bincount(cells, weights=real.to(torch.float64), minlength=N_CLASSES ** 2)
    lengths = attention_mask.sum(-1).to(torch.float64) * real
    totals[LOSS_SUM] += loss.detach().to(torch.float64) * real.sum()
    totals[TOKENS] += lengths.sum()
    totals[TOKENS_SQUARED] += (lengths * lengths).sum()


def summarize(totals) -> dict:
    """loss, accuracy, macro_f1, n, tokens and tokens_squared from totals read to the host.

    macro-F1 is metrics.macro_f1_of: over the classes that have rows, as evaluate reports it (a
    split without a class does not average in a 0).
    """
    totals = np.asarray(totals, dtype=np.float64)
    confusion = totals[:N_CLASSES ** 2].reshape(N_CLASSES, N_CLASSES)
    n = confusion.sum()
    return {"loss": float(totals[LOSS_SUM] / max(n, 1)), "accuracy": float(np.trace(confusion) / max(n, 1)),
            "macro_f1": macro_f1_of(confusion), "n": int(n), "tokens": float(totals[TOKENS]),
            "tokens_squared": float(totals[TOKENS_SQUARED]), "confusion_matrix": confusion.astype(int).tolist()}


def training_flops(model_config, tokens: float, tokens_squared: float) -> float:
    """Matmul FLOPs of forward + backward (3x forward) over sequences with these token totals.

    Forward, per layer: 2 FLOPs per weight of the Q, K, V, output and FFN matmuls for each token,
    plus 4*h per pair of tokens for attention scores and their weighted sum (so the sum of
    squared lengths, not the padded batch shape). Pooler and head are negligible.
    """
    h = model_config.hidden_size
    # DistilBERT names its feed-forward width hidden_dim.
    i = getattr(model_config, "intermediate_size", None) or getattr(model_config, "hidden_dim", 4 * h)
    per_layer = 2 * (4 * h * h + 2 * h * i) * tokens + 4 * h * tokens_squared
    return 3.0 * model_config.num_hidden_layers * per_layer


def measured_peak_flops(device: torch.device, dtype: torch.dtype, size: int = 8192) -> float | None:
    """The device's best matmul FLOP/s at `dtype` (the denominator of MFU), or None off GPU."""
    if device.type != "cuda":
        return None
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    a @ b
    best = float("inf")
    for _ in range(5):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ b
        end.record()
        end.synchronize()
        best = min(best, start.elapsed_time(end) / 1e3)
    return 2 * size ** 3 / best


def selection_score(epoch_metrics: dict, select_metric: str) -> float:
    """One number that orders epochs: the chosen validation metric, ties broken by lower loss.

    The metric is rounded to 6 decimals and the loss term stays below 1e-7, so the loss only
    decides between epochs whose metric is equal. Ray's CheckpointConfig keeps checkpoints by
    this number and metrics.json's best_epoch is its argmax, so the two always agree.
    """
    metric = round(float(epoch_metrics[f"val_{select_metric}"]), 6)
    return metric - min(float(epoch_metrics["val_loss"]), 10.0) * 1e-8


def weights_fingerprint(state_dict: dict) -> str:
    """sha256 over the tensors of a state dict in name order: equal weights, equal fingerprint."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().to("cpu").contiguous().reshape(-1)
        digest.update(name.encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def sum_over_workers(totals: torch.Tensor) -> torch.Tensor:
    """totals summed in place over the DDP workers (unchanged in a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(totals)
    return totals


def optimizer_step(optimizer) -> int:
    """Steps the optimizer has taken (its largest per-parameter step count; 0 before the first)."""
    steps = [int(state["step"]) for state in optimizer.state.values() if "step" in state]
    return max(steps, default=0)


def time_left(steps_done: int, steps_total: int | None, seconds: float) -> str:
    """"about N min left in the epoch" at the pace so far; "" when the total is unknown."""
    if not steps_total or steps_done <= 0:
        return ""
    left = max(steps_total - steps_done, 0) * seconds / steps_done
    return f"about {left / 60:.0f} min left in the epoch" if left >= 120 else f"about {left:.0f} s left in the epoch"
