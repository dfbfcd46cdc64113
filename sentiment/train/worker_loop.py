"""What each Ray Train worker runs: the reference recipe as a plain loop, built not to stall a GPU.

AdamW (fused on CUDA), linear decay to zero after an optional linear warmup, gradient clipping
at 1.0, bf16 autocast on GPU (fp16 with a grad scaler where bf16 is missing) and on CPUs that
multiply bf16 natively (--precision, step.autocast_dtype), validation every
epoch, and a checkpoint per epoch that holds everything needed to resume: the model as an HF
folder, optimizer and scheduler state, and the metric history so far.

A step costs what its padded tokens cost, so training batches are formed by length within
shuffled windows (LengthBucketCollate). A GPU step never waits for the host: batches are
tokenized in Ray's prefetch threads, pinned and copied to the device ahead of time; loss and
per-class counts are summed on the device and read every few steps and at the end of the
epoch (train_steps, the Ray-free step shared with the recipe sweep).

On GPU, and wherever the step is compiled (--compile, sentiment.train.compiled), shapes are
static: every batch has --batch-size rows (the epoch's last filled with masked rows) and pads to
one of step.static_lengths(), so a compiled step runs a CUDA graph per shape instead of
recompiling. An eager CPU step keeps real-length batches: it costs what its padded tokens cost.
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

from sentiment.cluster.ray_console import quiet_ray_train_report_lines
from sentiment.model.classifier import build_classifier, save_classifier
from sentiment.model.readable_text import readable_texts
from sentiment.pause_points import pause_point
from sentiment.progress import process_age
from sentiment.train.compiled import (CompiledModel, allow_recompiles, compile_decision, compile_key,
                                       record_compile_seconds, recorded_compile_seconds, use_compile_cache)
from sentiment.train.stats import (measured_peak_flops, optimizer_step, selection_score, sum_over_workers,
                                   training_flops, weights_fingerprint)
from sentiment.train.step import (BUCKET_WINDOW_BATCHES, GPU_PAD_MULTIPLE, autocast_dtype, length_bucketed_batches,
                                   optimizer_and_schedule, precision_name, run_epoch, static_lengths)

MODEL_SUBDIR = "model"
STATE_FILE = "train_state.pt"
HISTORY_FILE = "history.json"
PREFETCH_BATCHES = 4
# A logger, not print: Ray Train patches print on workers to both tee and log, doubling each line.
log = logging.getLogger("sentiment.train")


class TokenizeCollate(NumpyBatchCollateFn):
    """Tokenizes in Ray's prefetch threads, so the training step never waits on the tokenizer."""

    def __init__(self, tokenizer, max_length: int, pad_to_multiple_of: int | None):
        super().__init__()
        self.tokenizer, self.max_length, self.pad_to_multiple_of = tokenizer, max_length, pad_to_multiple_of

    def __call__(self, batch: dict) -> dict:
        # Dynamic padding: each batch pads only to its own longest text (capped at max_length).
        encoded = self.tokenizer(list(readable_texts(self.tokenizer, batch["text"])), truncation=True,
                                 max_length=self.max_length, padding=True, pad_to_multiple_of=self.pad_to_multiple_of, return_tensors="pt")
        encoded["labels"] = torch.tensor(batch["label"], dtype=torch.long)  # copies: Ray's arrays are read-only
        return dict(encoded)


class LengthBucketCollate(TokenizeCollate):
    """A window of BUCKET_WINDOW_BATCHES shuffled batches in, the same rows out as batches of
    similar length, in random order (train_steps.length_bucketed_batches says why).

    The list of batches passes through Ray's prefetch thread as is (Ray moves tensor batches
    only), pinned here on GPU.
    """

    def __init__(self, tokenizer, max_length: int, pad_to_multiple_of: int | None, batch_size: int, seed: int,
                 pin: bool, pad_lengths: tuple[int, ...] | None = None):
        super().__init__(tokenizer, max_length, pad_to_multiple_of)
        self.batch_size, self.seed, self.pin, self.pad_lengths = batch_size, seed, pin, pad_lengths

    def __call__(self, window: dict) -> list[dict]:
        return length_bucketed_batches(self.tokenizer, window["text"], window["label"], max_length=self.max_length,
                                       batch_size=self.batch_size, pad_to_multiple_of=self.pad_to_multiple_of,
                                       seed=self.seed, pin=self.pin, pad_lengths=self.pad_lengths)


def _same_on_every_rank(decision: tuple[bool, str]) -> tuple[bool, str]:
    """Rank 0's decision on every rank: ranks on other nodes may hold other compile records."""
    if dist.is_available() and dist.is_initialized():
        shared = [decision]
        dist.broadcast_object_list(shared, src=0)
        return tuple(shared[0])
    return decision


def _save_checkpoint(directory: str, model, tokenizer, optimizer, scheduler, scaler, epoch: int, history: list) -> None:
    save_classifier(model, tokenizer, os.path.join(directory, MODEL_SUBDIR))
    # Only tensors, numbers and strings: loadable with torch.load(weights_only=True), no pickle.
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(), "epoch": epoch}, os.path.join(directory, STATE_FILE))
    with open(os.path.join(directory, HISTORY_FILE), "w") as f:
        json.dump(history, f)


def _restore(checkpoint):
    """Model, tokenizer, train state and history from a Ray checkpoint."""
    with checkpoint.as_directory() as directory:
        # The checkpoint's model folder is a complete HF model: rebuild from it directly.
        model, tokenizer = build_classifier(os.path.join(directory, MODEL_SUBDIR))
        state = torch.load(os.path.join(directory, STATE_FILE), weights_only=True, map_location="cpu")
        with open(os.path.join(directory, HISTORY_FILE)) as f:
            history = json.load(f)
    return model, tokenizer, state, history


def _throughput(train: dict, seconds: float, world_size: int, model_config, peak_flops: float | None) -> dict:
    rate = train["n"] / seconds
    # Steady state: the steps that compiled a new shape left out (all of them when eager).
    steady_rows = train["n"] - train["compile_rows"] * world_size
    steady_seconds = seconds - train["compile_seconds"]
    numbers = {"train_seconds": seconds, "train_reviews_per_second": rate,
               "train_reviews_per_second_per_worker": rate / world_size,
               "train_steady_reviews_per_second": steady_rows / steady_seconds if steady_seconds > 0 else rate,
               "train_tokens_per_review": train["tokens"] / max(train["n"], 1)}
    if peak_flops:
        flops = training_flops(model_config, train["tokens"], train["tokens_squared"])
        numbers["mfu"] = flops / seconds / (peak_flops * world_size)
        numbers["peak_tflops_per_worker"] = peak_flops / 1e12
    return numbers


def _epoch_line(label: str, m: dict) -> str:
    mfu = f", MFU {m['mfu']:.1%}" if "mfu" in m else ""
    compiling = f" ({m['precision']}, compile: {m['compile']})" if "compile" in m else ""
    compile_seconds = (f", {m['compile_seconds']:.1f}s compiling, steady {m['train_steady_reviews_per_second']:.1f} "
                       "reviews/s" if m["compile_seconds"] else "")
    return (f"[train] {label}{compiling}: train loss {m['train_loss']:.4f} acc {m['train_accuracy']:.3f} | "
            f"val loss {m['val_loss']:.4f} acc {m['val_accuracy']:.3f} macro-F1 {m['val_macro_f1']:.3f} | "
            f"{m['train_seconds']:.1f}s train, {m['train_reviews_per_second']:.1f} reviews/s "
            f"({m['train_reviews_per_second_per_worker']:.1f} per worker{mfu}){compile_seconds}, "
            f"{m['epoch_seconds']:.0f}s epoch")


def train_loop_per_worker(config: dict) -> None:
    """Ray Train entrypoint; `config` is the worker_config dict that driver.train builds."""
    quiet_ray_train_report_lines()
    # The driver logged the backbone's loading report once before the workers started; each rank
    # would print the same lines again.
    logging.getLogger("sentiment.model").setLevel(logging.WARNING)
    torch.manual_seed(config["seed"])
    # Ray pins OMP_NUM_THREADS to the worker's CPU count; say it explicitly for torch too.
    torch.set_num_threads(config["cpus_per_worker"])
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    start_epoch, history, state, resumed_from = 0, [], None, None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        model, tokenizer = build_classifier(config["backbone"])
    else:
        model, tokenizer, state, history = _restore(checkpoint)
        start_epoch = state["epoch"] + 1
        resumed_from = {"epoch": start_epoch, "weights_fingerprint": weights_fingerprint(model.state_dict())}
    base_model = model  # what gets saved: neither DDP- nor compile-wrapped

    model = ray.train.torch.prepare_model(model)
    amp_dtype = autocast_dtype(device, config["precision"])
    on_gpu = device.type == "cuda"
    # streaming_split(equal=True) gives every worker the same row count, hence the same steps.
    steps_per_epoch = max(1, math.ceil((config["train_rows"] // world_size) / config["batch_size"]))
    lengths = static_lengths(config["max_length"])
    key = compile_key(base_model.config, device, config["batch_size"], lengths)
    compiling, compile_reason = _same_on_every_rank(compile_decision(
        config["compile"], on_gpu=on_gpu, planned_steps=steps_per_epoch * (config["epochs"] - start_epoch),
        num_layers=base_model.config.num_hidden_layers, shapes=2 * len(lengths),
        recorded_seconds=recorded_compile_seconds(key) if config["compile"] == "auto" else None))
    compiled_shapes, run_compile_seconds = None, 0.0
    if compiling:
        use_compile_cache()
        allow_recompiles(2 * len(lengths))
        model, compiled_shapes = CompiledModel(model, on_gpu=on_gpu), set()
    # One learning rate for all layers: per-layer decay (0.8, 0.9) scored no better in the recipe
    # sweep (BENCHMARKS.md, "Recipe sweep on a GPU"), so it is not a training option.
    optimizer, scheduler = optimizer_and_schedule(
        base_model, lr=config["lr"], layer_decay=1.0, warmup_fraction=config["warmup_fraction"],
        total_steps=steps_per_epoch * config["epochs"], device=device, capturable=compiling)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    if state:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        resumed_from["optimizer_step"] = optimizer_step(optimizer)
        if rank == 0:
            log.info(f"[train] resuming from the checkpoint of epoch {start_epoch} "
                     f"(optimizer step {resumed_from['optimizer_step']})")
    peak_flops = measured_peak_flops(device, amp_dtype or torch.float32)
    if rank == 0:
        # After the driver's "starting ... worker(s)" (and a resumed run's line above): what the
        # start cost, and what an epoch will be (its step lines count up to steps_per_epoch).
        log.info(f"[train] {world_size} worker(s) on {device.type}, {precision_name(amp_dtype)}: {steps_per_epoch} "
                 f"steps of {config['batch_size']} reviews per worker each epoch; ready {process_age()} after "
                 "this worker's process started")
    # Tests hold a worker here to act on a run whose training is under way (e.g. SIGINT the driver).
    pause_point("train.worker_ready")

    pad_multiple = GPU_PAD_MULTIPLE if on_gpu else None
    # Static shapes where they pay: on GPU (fewer shapes, CUDA graphs) and for a compiled step.
    pad_lengths = lengths if on_gpu or compiling else None
    # On CPU, more tokenizing threads would only take cores from the step.
    prefetch = PREFETCH_BATCHES if on_gpu else 1
    window = config["batch_size"] * BUCKET_WINDOW_BATCHES
    bucketed = LengthBucketCollate(tokenizer, config["max_length"], pad_multiple, config["batch_size"],
                                    config["seed"], pin=on_gpu, pad_lengths=pad_lengths)
    val_batch_size = config["batch_size"] * 2
    if pad_lengths:
        # Validation in static shapes too, so it runs through the compiled forward without recompiling.
        val_feed = {"batch_size": val_batch_size * BUCKET_WINDOW_BATCHES, "device": device, "prefetch_batches": prefetch,
                    "collate_fn": LengthBucketCollate(tokenizer, config["max_length"], pad_multiple, val_batch_size,
                                                      config["seed"], pin=on_gpu, pad_lengths=pad_lengths)}
    else:
        val_feed = {"batch_size": val_batch_size, "device": device, "pin_memory": on_gpu, "prefetch_batches": prefetch,
                    "collate_fn": TokenizeCollate(tokenizer, config["max_length"], pad_multiple)}
    train_shard = ray.train.get_dataset_shard("train")
    val_shard = ray.train.get_dataset_shard("validation")
    for epoch in range(start_epoch, config["epochs"]):
        started = time.time()
        label = f"epoch {epoch + 1}/{config['epochs']}"
        windows = train_shard.iter_torch_batches(
            batch_size=window, local_shuffle_buffer_size=window * 2, local_shuffle_seed=config["seed"] + epoch,
            collate_fn=bucketed, device=device, prefetch_batches=prefetch)
        train_batches = (batch for batches in windows for batch in batches)
        train = run_epoch(model, train_batches, device, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                          amp_dtype=amp_dtype, label_smoothing=config["label_smoothing"], reduce=sum_over_workers,
                          log_progress=rank == 0, epoch_label=label, steps_total=steps_per_epoch,
                          compiled_shapes=compiled_shapes)
        train_seconds = time.time() - started
        # Each worker holds the whole validation split (build_trainer): nothing to sum.
        val_batches = val_shard.iter_torch_batches(**val_feed)
        if pad_lengths:
            val_batches = (batch for batches in val_batches for batch in batches)
        val = run_epoch(model, val_batches, device, amp_dtype=amp_dtype, compiled_shapes=compiled_shapes)
        compile_seconds = train["compile_seconds"] + val["compile_seconds"]
        run_compile_seconds += compile_seconds
        if compiling and rank == 0 and compile_seconds and not model.failed:
            # This run's compiling so far (a rare length may first appear in a later epoch): what
            # the next run's --compile auto weighs.
            record_compile_seconds(key, run_compile_seconds)
        metrics = {"epoch": epoch + 1, "train_loss": train["loss"], "train_accuracy": train["accuracy"],
                   "val_loss": val["loss"], "val_accuracy": val["accuracy"], "val_macro_f1": val["macro_f1"],
                   "val_confusion_matrix": val["confusion_matrix"], "global_batch_size": config["batch_size"] * world_size,
                   **_throughput(train, train_seconds, world_size, base_model.config, peak_flops),
                   "compile_seconds": compile_seconds,
                   "epoch_seconds": time.time() - started, "optimizer_step": optimizer_step(optimizer),
                   "precision": precision_name(amp_dtype)}
        if epoch == start_epoch:
            metrics["compile"] = compile_reason
        if compiling and model.failed:
            metrics["compile_failed"] = model.failed
        if resumed_from and epoch == start_epoch:
            metrics["resumed_from"] = resumed_from
        metrics["selection_score"] = selection_score(metrics, config["select_metric"])
        if rank == 0:
            log.info(_epoch_line(label, metrics))
            metrics["weights_fingerprint"] = weights_fingerprint(base_model.state_dict())
            history.append(metrics)
            with tempfile.TemporaryDirectory() as directory:
                _save_checkpoint(directory, base_model, tokenizer, optimizer, scheduler, scaler, epoch, history)
                ray.train.report(_flat(metrics), checkpoint=ray.train.Checkpoint.from_directory(directory))
        else:
            history.append(metrics)
            ray.train.report(_flat(metrics))
        pause_point("train.epoch_reported")  # where the fault tests kill a worker or the driver


def _flat(metrics: dict) -> dict:
    # Ray's result table wants scalars; the nested entries live in history.json.
    return {k: v for k, v in metrics.items() if not isinstance(v, (dict, list, str))}
