"""The training step itself, free of Ray: batches formed by length, the optimizer with its
per-layer rates, the loss, and one pass over the batches with device-side totals.

Ray Train's worker loop (train_loop) and the single-process recipe sweep
(benchmarks/lib/recipe_sweep) both train through these, so a recipe measured by the sweep is the
recipe `sentiment train` runs.
"""

from __future__ import annotations

import logging
import re
import time

import numpy as np
import torch

from sentiment.model.predictor import resolve_precision
from sentiment.model.token_batches import length_sorted_batches, pad_rows, tokenize_to_arrow
from sentiment.train.stats import add_batch, new_totals, summarize, time_left

LOG_EVERY_STEPS = 50
# On GPU, padded lengths are a multiple of this, so kernels see few distinct shapes.
GPU_PAD_MULTIPLE = 8
# Training batches are formed by length within windows of this many batches (length_bucketed_batches).
BUCKET_WINDOW_BATCHES = 32
# Static shapes (issue 26): a compiled step runs one graph per input shape, so batches pad to one
# of these lengths (capped at --max-length), and a partial batch is filled with masked rows.
# Real reviews average 50 tokens: 32 and 64 hold most batches.
STATIC_LENGTHS = (32, 64, 96, 128, 160)
# The label of a row that fills a partial batch: cross-entropy ignores it (its default
# ignore_index), and the epoch's counts skip it (stats.add_batch).
MASKED_LABEL = -100
log = logging.getLogger("sentiment.train")


def static_lengths(max_length: int) -> tuple[int, ...]:
    """The padded lengths of static-shape batches: STATIC_LENGTHS below max_length, and max_length."""
    return tuple(sorted({min(length, max_length) for length in STATIC_LENGTHS} | {max_length}))


def length_bucketed_batches(tokenizer, texts: list[str], labels, *, max_length: int, batch_size: int,
                            pad_to_multiple_of: int | None, seed: int, pin: bool,
                            pad_lengths: tuple[int, ...] | None = None) -> list[dict]:
    """The rows of one window as batches of similar length, in random order.

    Random batches of 16 real reviews pad to 2.5x their tokens (one long review sets the
    length of all 16); sorting a window by length first cuts that to about 1.03x, and a CPU step
    costs what its padded tokens cost. The rows and the number of batches are unchanged; only
    which rows share a batch is.

    With `pad_lengths` (static_lengths()), every batch has exactly batch_size rows and pads to the
    shortest of `pad_lengths` that holds its longest row, so a compiled step sees a few shapes only.
    A partial batch (the window's last) is filled with copies of its first row labelled
    MASKED_LABEL: the loss and the epoch's counts ignore them, and copies of a real row keep
    every attention row finite.
    """
    # Tokenized and padded as scoring does it (token_batches): the tokenizers backend, then numpy
    # from the flat ids. transformers' tokenizer.pad cost 1.2-1.3 ms per batch of 32 on 2 cores,
    # this 0.08, in the data threads that share the GIL with a GPU step's kernel launches.
    rows_by_length = length_sorted_batches(tokenize_to_arrow(tokenizer, list(texts), max_length),
                                           tokens_per_batch=0, rows=batch_size)
    values, starts, lengths = rows_by_length.values, rows_by_length.starts, rows_by_length.lengths
    pad_id = tokenizer.pad_token_id or 0
    groups = [rows_by_length.order[start:end] for start, end in rows_by_length.bounds]
    # Seeded by the window's content: the same rows give the same batches, whichever thread runs it.
    np.random.default_rng([seed, len(lengths), int(lengths.sum())]).shuffle(groups)
    labels = np.asarray(labels, dtype=np.int64)
    batches = []
    for rows in groups:
        longest = int(lengths[rows].max())
        if pad_lengths is not None:
            width = next(n for n in pad_lengths if n >= longest)
        elif pad_to_multiple_of:
            width = -(-longest // pad_to_multiple_of) * pad_to_multiple_of
        else:
            width = longest
        batch_labels = labels[rows]
        if pad_lengths is not None and len(rows) < batch_size:
            filler = np.full(batch_size - len(rows), rows[0])
            rows = np.concatenate([rows, filler])
            batch_labels = np.concatenate([batch_labels, np.full(len(filler), MASKED_LABEL)])
        input_ids, attention_mask = pad_rows(values, starts[rows], lengths[rows], pad_id, width)
        batch = {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(attention_mask),
                 "labels": torch.from_numpy(batch_labels)}
        batches.append({k: v.pin_memory() for k, v in batch.items()} if pin else batch)
    return batches


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype of a training step; None is plain fp32.

    The choice is scoring's (predictor.resolve_precision): auto is bf16 on GPU and on CPUs with
    native bf16, fp32 elsewhere; bf16 is bf16 wherever asked (emulated on older CPUs). A GPU
    without bf16 trains in fp16 instead. The weights, gradients and optimizer state stay fp32
    either way: autocast only runs the matmuls in the lower precision.
    """
    if resolve_precision(precision, device) == "fp32":
        return None
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def precision_name(amp_dtype: torch.dtype | None) -> str:
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[amp_dtype]


# Encoder layer k is "...encoder.layer.k." in BERT, RoBERTa, MPNet and DeBERTa,
# "...transformer.layer.k." in DistilBERT and "...layers.k." in ModernBERT.
_LAYER = re.compile(r"(?:^|\.)layers?\.(\d+)\.")


def layer_rate_groups(model, lr: float, layer_decay: float) -> list[dict]:
    """Parameter groups for layer-wise learning-rate decay.

    The head and pooler learn at `lr`, encoder layer k of L at lr * layer_decay**(L - k), and the
    embeddings at lr * layer_decay**(L + 1): the lower a layer, the more general what it learned
    in pre-training, and the less it should move. layer_decay 1.0 is one group at `lr`.
    """
    if layer_decay == 1.0:
        return [{"params": [p for p in model.parameters() if p.requires_grad], "lr": lr}]
    n_layers = model.config.num_hidden_layers
    rates: dict[float, list] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        layer = _LAYER.search(name)
        if layer:
            depth = n_layers - int(layer.group(1))
        elif ".embeddings." in f".{name}":
            depth = n_layers + 1
        else:
            depth = 0
        rates.setdefault(lr * layer_decay ** depth, []).append(parameter)
    return [{"params": params, "lr": rate} for rate, params in rates.items()]


def training_loss(out, labels: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """The loss to step on: the model's own cross-entropy, or with label smoothing when asked
    (computed in float32, as autocast does for the model's own loss)."""
    if not label_smoothing:
        return out.loss
    return torch.nn.functional.cross_entropy(out.logits.float(), labels, label_smoothing=label_smoothing)


def run_epoch(model, batches, device, *, optimizer=None, scheduler=None, scaler=None, amp_dtype=None,
              label_smoothing=0.0, reduce=None, log_progress=False, epoch_label="", steps_total=None,
              compiled_shapes: set | None = None) -> dict:
    """One pass; trains when an optimizer is given. Returns summarize() of the totals, plus
    compile_seconds and compile_rows.

    label_smoothing applies to the training loss only, so validation loss (the tie-breaker of
    model selection) stays comparable across recipes. `reduce` sums the totals over workers
    (DDP) before they are read.

    With a compiled model (compiled.CompiledModel), `compiled_shapes` holds the (mode, shape)
    pairs compiled so far, across epochs: the first step of a new pair compiles, so it is timed
    apart (compile_seconds; compile_rows its real rows) and, should it raise, the model falls back
    to eager and the step runs again. Steps of known shapes are not timed: no host sync.
    """
    training = optimizer is not None
    model.train(training)
    totals = new_totals(device)
    started = time.time()
    compile_seconds, compile_rows = 0.0, 0
    with torch.set_grad_enabled(training):
        for step, batch in enumerate(batches, start=1):
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}  # no-op when prefetched
            shape = (training, tuple(batch["input_ids"].shape))
            compiles = compiled_shapes is not None and not model.failed and shape not in compiled_shapes
            if not compiles:
                out, loss = forward_backward(model, batch, amp_dtype, label_smoothing, optimizer, scaler)
            else:
                _synchronize(device)
                step_started = time.time()
                try:
                    out, loss = forward_backward(model, batch, amp_dtype, label_smoothing, optimizer, scaler)
                except Exception as error:  # anything compiling raises; the eager retry re-raises real faults
                    model.fall_back(error)
                    out, loss = forward_backward(model, batch, amp_dtype, label_smoothing, optimizer, scaler)
                _synchronize(device)
                compiled_shapes.add(shape)
                compile_seconds += time.time() - step_started
                compile_rows += int((batch["labels"] >= 0).sum())
            if training:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
            add_batch(totals, loss, out.logits, batch["labels"], batch["attention_mask"])
            if log_progress and step % LOG_EVERY_STEPS == 0:
                so_far = summarize(totals.tolist())  # the one host sync per LOG_EVERY_STEPS steps
                seconds = time.time() - started
                left = time_left(step, steps_total, seconds)
                log.info(f"[train] {epoch_label} step {step}/{steps_total} loss {so_far['loss']:.4f} "
                         f"acc {so_far['accuracy']:.3f} ({so_far['n'] / seconds:.1f} reviews/s per worker"
                         f"{', ' + left if left else ''})")
    return {**summarize((reduce(totals) if reduce else totals).tolist()), "compile_seconds": compile_seconds,
            "compile_rows": compile_rows}


def forward_backward(model, batch, amp_dtype, label_smoothing, optimizer, scaler):
    """The forward, and for training the backward: the part of a step that a compiled model compiles."""
    with torch.autocast(batch["input_ids"].device.type, dtype=amp_dtype or torch.float32,
                        enabled=amp_dtype is not None):
        out = model(**batch)
    if optimizer is None:
        return out, out.loss
    loss = training_loss(out, batch["labels"], label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    return out, loss


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def optimizer_and_schedule(model, *, lr: float, layer_decay: float, warmup_fraction: float, total_steps: int,
                           device: torch.device, capturable: bool = False):
    """AdamW (fused on CUDA) over layer_rate_groups, and linear decay to zero after a linear
    warmup over warmup_fraction of total_steps."""
    from transformers import get_linear_schedule_with_warmup

    on_gpu = device.type == "cuda"
    # capturable (compiled runs on GPU): the optimizer's step counts and updates stay on the
    # device, with no host read, as a captured CUDA graph needs.
    optimizer = torch.optim.AdamW(layer_rate_groups(model, lr, layer_decay), lr=lr, fused=on_gpu,
                                  capturable=on_gpu and capturable)
    scheduler = get_linear_schedule_with_warmup(
        optimizer, num_warmup_steps=round(warmup_fraction * total_steps), num_training_steps=total_steps)
    return optimizer, scheduler
