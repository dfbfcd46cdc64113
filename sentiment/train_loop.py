"""What each Ray Train worker runs: the reference recipe as a plain loop.

AdamW, linear decay to zero with no warmup, gradient clipping at 1.0, bf16 autocast on GPU (fp16
with a grad scaler where bf16 is missing), validation every epoch, and a checkpoint per epoch
that holds everything needed to resume: the model as an HF folder, optimizer and scheduler state,
and the metric history so far.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time

import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from ray.data.collate_fn import NumpyBatchCollateFn

from sentiment.model import build_classifier, save_classifier

MODEL_SUBDIR = "model"
STATE_FILE = "train_state.pt"
HISTORY_FILE = "history.json"
LOG_EVERY_STEPS = 50
# A logger, not print: Ray Train patches print on workers to both tee and log, doubling each line.
log = logging.getLogger("sentiment.train")


class _TokenizeCollate(NumpyBatchCollateFn):
    """Tokenizes in Ray's prefetch threads, so the training step never waits on the tokenizer."""

    def __init__(self, tokenizer, max_length: int):
        super().__init__()
        self.tokenizer, self.max_length = tokenizer, max_length

    def __call__(self, batch: dict) -> dict:
        # Dynamic padding: each batch pads only to its own longest text (capped at max_length).
        encoded = self.tokenizer(list(batch["text"]), truncation=True, max_length=self.max_length,
                                 padding=True, return_tensors="pt")
        encoded["labels"] = torch.tensor(batch["label"], dtype=torch.long)  # copies: Ray's arrays are read-only
        return dict(encoded)


def _autocast_dtype(device: torch.device) -> torch.dtype | None:
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _all_reduce_sums(values: list[float], device: torch.device) -> list[float]:
    if not (dist.is_available() and dist.is_initialized()):
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def _run_epoch(model, batches, device, *, optimizer=None, scheduler=None, scaler=None,
               amp_dtype=None, epoch_label="", steps_total=None):
    """One pass; trains when an optimizer is given. Returns summed (loss*n, correct, n) over ranks."""
    training = optimizer is not None
    model.train(training)
    loss_sum = correct = seen = 0.0
    started = time.time()
    with torch.set_grad_enabled(training):
        for step, batch in enumerate(batches, start=1):
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                out = model(**batch)
            if training:
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(out.loss).backward()
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
            n = batch["labels"].numel()
            loss_sum += out.loss.item() * n
            correct += (out.logits.argmax(-1) == batch["labels"]).sum().item()
            seen += n
            if training and step % LOG_EVERY_STEPS == 0 and ray.train.get_context().get_world_rank() == 0:
                rate = seen / (time.time() - started)
                log.info(f"[train] {epoch_label} step {step}/{steps_total} loss {loss_sum / seen:.4f} "
                         f"acc {correct / seen:.3f} ({rate:.1f} reviews/s per worker)")
    return _all_reduce_sums([loss_sum, correct, seen], device)


def _save_checkpoint(directory: str, model, tokenizer, optimizer, scheduler, scaler, epoch: int, history: list) -> None:
    save_classifier(model, tokenizer, os.path.join(directory, MODEL_SUBDIR))
    # Only tensors, numbers and strings: loadable with torch.load(weights_only=True), no pickle.
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(), "epoch": epoch}, os.path.join(directory, STATE_FILE))
    with open(os.path.join(directory, HISTORY_FILE), "w") as f:
        json.dump(history, f)


def train_loop_per_worker(config: dict) -> None:
    """Ray Train entrypoint; `config` is TrainConfig.worker_config()."""
    torch.manual_seed(config["seed"])
    # Ray pins OMP_NUM_THREADS to the worker's CPU count; say it explicitly for torch too.
    torch.set_num_threads(config["cpus_per_worker"])
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    start_epoch, history, state = 0, [], None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        model, tokenizer = build_classifier(config["backbone"])
    else:
        with checkpoint.as_directory() as directory:
            # The checkpoint's model folder is a complete HF model: rebuild from it directly.
            model, tokenizer = build_classifier(os.path.join(directory, MODEL_SUBDIR))
            state = torch.load(os.path.join(directory, STATE_FILE), weights_only=True, map_location="cpu")
            with open(os.path.join(directory, HISTORY_FILE)) as f:
                history = json.load(f)
        start_epoch = state["epoch"] + 1
        if rank == 0:
            log.info(f"[train] resuming from the checkpoint of epoch {start_epoch}")

    model = ray.train.torch.prepare_model(model)
    amp_dtype = _autocast_dtype(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config["lr"])
    # streaming_split(equal=True) gives every worker the same row count, hence the same steps.
    steps_per_epoch = max(1, math.ceil((config["train_rows"] // world_size) / config["batch_size"]))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: max(0.0, 1.0 - step / (steps_per_epoch * config["epochs"])))
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    if state:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])

    collate = _TokenizeCollate(tokenizer, config["max_length"])
    train_shard = ray.train.get_dataset_shard("train")
    val_shard = ray.train.get_dataset_shard("validation")
    for epoch in range(start_epoch, config["epochs"]):
        started = time.time()
        label = f"epoch {epoch + 1}/{config['epochs']}"
        train_batches = train_shard.iter_torch_batches(
            batch_size=config["batch_size"], collate_fn=collate,
            local_shuffle_buffer_size=config["batch_size"] * 50, local_shuffle_seed=config["seed"] + epoch)
        t_loss, t_correct, t_n = _run_epoch(model, train_batches, device, optimizer=optimizer, scheduler=scheduler,
                                            scaler=scaler, amp_dtype=amp_dtype, epoch_label=label,
                                            steps_total=steps_per_epoch)
        train_seconds = time.time() - started
        val_batches = val_shard.iter_torch_batches(batch_size=config["batch_size"] * 2, collate_fn=collate)
        v_loss, v_correct, v_n = _run_epoch(model, val_batches, device, amp_dtype=amp_dtype)
        metrics = {"epoch": epoch + 1, "train_loss": t_loss / t_n, "train_accuracy": t_correct / t_n,
                   "val_loss": v_loss / max(v_n, 1), "val_accuracy": v_correct / max(v_n, 1),
                   "train_seconds": train_seconds, "epoch_seconds": time.time() - started,
                   "train_reviews_per_second": t_n / train_seconds}
        history.append(metrics)
        if rank == 0:
            log.info(f"[train] {label}: train loss {metrics['train_loss']:.4f} acc {metrics['train_accuracy']:.3f} | "
                     f"val loss {metrics['val_loss']:.4f} acc {metrics['val_accuracy']:.3f} | "
                     f"{metrics['epoch_seconds']:.0f}s")
            with tempfile.TemporaryDirectory() as directory:
                _save_checkpoint(directory, model, tokenizer, optimizer, scheduler, scaler, epoch, history)
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory))
        else:
            ray.train.report(metrics)
