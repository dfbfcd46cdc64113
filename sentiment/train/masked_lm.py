"""What each Ray Train worker runs for `sentiment adapt`: the encoder's own pre-training task,
masked-language modelling, continued on unlabeled reviews (domain-adaptive pre-training).

15% of each text's tokens are chosen (80% of them replaced by the mask token, 10% by a random
token, 10% kept: BERT's rule, transformers' DataCollatorForLanguageModeling) and the model learns
to predict them. AdamW, linear warmup and decay, clipping at 1.0, bf16 autocast where the
hardware has it, as in fine-tuning (sentiment.train.step).

Sentence-embedding checkpoints (the offline MiniLM and mpnet among them) ship the encoder
without its language-model head. A new head's first gradients are noise, and they would reach
the encoder, so the encoder's rate stays at 0 for the first --head-only-fraction of the steps
while the head learns alone; with the head in the checkpoint, everything learns from the start.

Every epoch ends with the masked-language loss on the held-out texts (the same masks every
time) and a checkpoint that holds everything a resumed run needs.
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
from ray.data.collate_fn import NumpyBatchCollateFn

from sentiment.model.classifier import load_encoder_with_head
from sentiment.model.readable_text import readable_texts
from sentiment.pause_points import pause_point
from sentiment.train.stats import optimizer_step, sum_over_workers, time_left, weights_fingerprint
from sentiment.train.step import GPU_PAD_MULTIPLE, autocast_dtype, precision_name

MODEL_SUBDIR = "model"  # the whole masked-language model: encoder and head
STATE_FILE = "adapt_state.pt"
HISTORY_FILE = "history.json"
PREFETCH_BATCHES = 4
LOG_EVERY_STEPS = 50
HELD_OUT_MASK_SEED = 0  # the held-out texts' masks: the same in every epoch and every run
log = logging.getLogger("sentiment.adapt")


class MaskedCollate(NumpyBatchCollateFn):
    """Tokenizes and masks in Ray's prefetch threads, so the step never waits on either."""

    def __init__(self, tokenizer, max_length: int, mask_fraction: float, pad_to_multiple_of: int | None, seed: int):
        from transformers import DataCollatorForLanguageModeling

        super().__init__()
        self.tokenizer, self.max_length = tokenizer, max_length
        self.masker = DataCollatorForLanguageModeling(tokenizer, mlm_probability=mask_fraction,
                                                      pad_to_multiple_of=pad_to_multiple_of, seed=seed)

    def __call__(self, batch: dict) -> dict:
        encoded = self.tokenizer(list(readable_texts(self.tokenizer, batch["text"])), truncation=True,
                                 max_length=self.max_length, return_special_tokens_mask=True)
        features = [dict(zip(encoded, row)) for row in zip(*encoded.values())]
        return dict(self.masker(features))


class MaskedPositionsLoss(torch.nn.Module):
    """The masked-language loss with the prediction head run at the masked positions only.

    Transformers' masked-language models project every position onto the vocabulary (30,522
    logits per token for BERT's) and then score the 15% that were masked. For a small encoder
    that projection is as big as the encoder itself: MiniLM's hidden 384 x 30,522 per token
    against about 22M weights for the encoder. Where the model's head is one module beside its
    encoder (BERT, RoBERTa, MPNet, DeBERTa), it is run on the masked positions alone, the same
    loss for about a sixth of the head's cost; other architectures run their own forward.
    DDP wraps this module, so the gradients of both parts are synchronised.
    """

    def __init__(self, model):
        super().__init__()
        self.model = model
        others = [module for name, module in model.named_children() if name != model.base_model_prefix]
        self.head = others[0] if len(others) == 1 else None

    def forward(self, labels: torch.Tensor, **inputs) -> torch.Tensor:
        if self.head is None:
            return self.model(labels=labels, **inputs).loss
        hidden = self.model.base_model(**inputs).last_hidden_state
        chosen = labels >= 0
        logits = self.head(hidden[chosen])
        # A sum over the count, not a mean: a batch of one-word reviews may have no token masked,
        # and it must give 0 (every weight still in the graph, as DDP wants), not NaN.
        loss = torch.nn.functional.cross_entropy(logits.float(), labels[chosen], reduction="sum")
        return loss / chosen.sum().clamp(min=1)


def rate_schedule(total_steps: int, warmup_steps: int, start_step: int = 0):
    """The rate multiplier at each step: 0 before start_step, then a linear warmup over
    warmup_steps and a linear decay to 0 at total_steps."""
    def multiplier(step: int) -> float:
        if step < start_step:
            return 0.0
        step -= start_step
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        return max(0.0, (total_steps - start_step - step) / max(1, total_steps - start_step - warmup_steps))
    return multiplier


def optimizer_and_schedule(model, *, lr: float, total_steps: int, warmup_fraction: float, head_only_steps: int,
                           device: torch.device):
    """AdamW (fused on CUDA) with the encoder and the head in two groups: the encoder's rate
    starts after head_only_steps."""
    prefix = f"{model.base_model_prefix}."
    encoder = [p for name, p in model.named_parameters() if name.startswith(prefix)]
    head = [p for name, p in model.named_parameters() if not name.startswith(prefix)]
    optimizer = torch.optim.AdamW([{"params": encoder}, {"params": head}], lr=lr, fused=device.type == "cuda")
    encoder_warmup = round(warmup_fraction * (total_steps - head_only_steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, [
        rate_schedule(total_steps, encoder_warmup, start_step=head_only_steps),
        rate_schedule(total_steps, round(warmup_fraction * total_steps))])
    return optimizer, scheduler


@torch.no_grad()
def held_out_loss(model, tokenizer, texts: list[str], *, max_length: int, mask_fraction: float, batch_size: int,
                  device: torch.device, amp_dtype) -> float:
    """The mean masked-token loss of a MaskedPositionsLoss on texts, with masks drawn from
    HELD_OUT_MASK_SEED."""
    model.eval()
    collate = MaskedCollate(tokenizer, max_length, mask_fraction, None, HELD_OUT_MASK_SEED)
    loss_sum, tokens = 0.0, 0
    for start in range(0, len(texts), batch_size):
        batch = {k: v.to(device) for k, v in collate({"text": texts[start:start + batch_size]}).items()}
        masked = int((batch["labels"] >= 0).sum())
        if not masked:
            continue
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss = model(**batch)
        loss_sum, tokens = loss_sum + float(loss) * masked, tokens + masked
    return loss_sum / tokens if tokens else float("nan")


def _save_checkpoint(directory: str, model, tokenizer, optimizer, scheduler, epoch: int, history: list) -> None:
    model.save_pretrained(os.path.join(directory, MODEL_SUBDIR), safe_serialization=True)
    tokenizer.save_pretrained(os.path.join(directory, MODEL_SUBDIR))
    # Only tensors, numbers and strings: loadable with torch.load(weights_only=True), no pickle.
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "epoch": epoch},
               os.path.join(directory, STATE_FILE))
    with open(os.path.join(directory, HISTORY_FILE), "w") as f:
        json.dump(history, f)


def adapt_loop_per_worker(config: dict) -> None:
    """Ray Train entrypoint; `config` is the worker_config dict that sentiment.adapt builds."""
    from transformers import AutoModelForMaskedLM

    from sentiment.cluster.ray_console import quiet_ray_train_report_lines

    quiet_ray_train_report_lines()
    torch.manual_seed(config["seed"])
    torch.set_num_threads(config["cpus_per_worker"])
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    checkpoint = ray.train.get_checkpoint()
    start_epoch, history, state, resumed_from = 0, [], None, None
    if checkpoint is None:
        model, tokenizer, new_head = load_encoder_with_head(AutoModelForMaskedLM, config["backbone"])
    else:
        with checkpoint.as_directory() as directory:
            model, tokenizer, new_head = load_encoder_with_head(AutoModelForMaskedLM, os.path.join(directory, MODEL_SUBDIR))
            state = torch.load(os.path.join(directory, STATE_FILE), weights_only=True, map_location="cpu")
            with open(os.path.join(directory, HISTORY_FILE)) as f:
                history = json.load(f)
        start_epoch = state["epoch"] + 1
        resumed_from = {"epoch": start_epoch, "weights_fingerprint": weights_fingerprint(model.state_dict())}
    base_model = model  # what gets saved
    model = ray.train.torch.prepare_model(MaskedPositionsLoss(model))
    amp_dtype = autocast_dtype(device, config["precision"])
    on_gpu = device.type == "cuda"
    steps_per_epoch = max(1, math.ceil((config["train_rows"] // world_size) / config["batch_size"]))
    total_steps = steps_per_epoch * config["epochs"]
    # Decided once, from the backbone: a resumed run loads a head it trained itself.
    head_only_steps = round(config["head_only_fraction"] * total_steps) if config["head_is_new"] else 0
    optimizer, scheduler = optimizer_and_schedule(base_model, lr=config["lr"], total_steps=total_steps,
                                                  warmup_fraction=config["warmup_fraction"],
                                                  head_only_steps=head_only_steps, device=device)
    if state:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        resumed_from["optimizer_step"] = optimizer_step(optimizer)
        if rank == 0:
            log.info(f"[adapt] resuming from the checkpoint of epoch {start_epoch} "
                     f"(optimizer step {resumed_from['optimizer_step']})")
    elif rank == 0:
        head = (f"new language-model head ({len(new_head)} weights): the encoder waits {head_only_steps} of "
                f"{total_steps} steps while it learns" if head_only_steps else "language-model head from the checkpoint")
        log.info(f"[adapt] {type(base_model).__name__}, {precision_name(amp_dtype)}, {head}")
    collate = MaskedCollate(tokenizer, config["max_length"], config["mask_fraction"],
                            GPU_PAD_MULTIPLE if on_gpu else None, config["seed"] + 1000 * rank)
    shard = ray.train.get_dataset_shard("train")
    for epoch in range(start_epoch, config["epochs"]):
        started = time.time()
        label = f"epoch {epoch + 1}/{config['epochs']}"
        model.train()
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        step = texts = 0
        logged_sum = 0.0
        recent_losses = []  # [optimizer step of the run, mean loss of the last LOG_EVERY_STEPS], for the plot
        steps_before = history[-1].get("optimizer_step", epoch * steps_per_epoch) if history else 0
        batches = shard.iter_torch_batches(batch_size=config["batch_size"], collate_fn=collate, device=device,
                                           local_shuffle_buffer_size=config["batch_size"] * 32,
                                           local_shuffle_seed=config["seed"] + epoch,
                                           prefetch_batches=PREFETCH_BATCHES if on_gpu else 1)
        for step, batch in enumerate(batches, start=1):
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                loss = model(**batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
            optimizer.step()
            scheduler.step()
            loss_sum += loss.detach().double()
            texts += len(batch["input_ids"])
            if rank == 0 and step % LOG_EVERY_STEPS == 0:
                seconds = time.time() - started
                # The last steps' mean: the epoch's mean so far hides where the loss is now.
                recent, logged_sum = (float(loss_sum) - logged_sum) / LOG_EVERY_STEPS, float(loss_sum)
                recent_losses.append([steps_before + step, recent])
                log.info(f"[adapt] {label} step {step}/{steps_per_epoch} loss {recent:.4f} (the last "
                         f"{LOG_EVERY_STEPS} steps; {texts / seconds:.1f} texts/s per worker, "
                         f"{time_left(step, steps_per_epoch, seconds)})")
        train_seconds = time.time() - started
        loss_total, steps_total, texts_total = sum_over_workers(
            torch.tensor([float(loss_sum), step, texts], dtype=torch.float64, device=device)).tolist()
        metrics = {"epoch": epoch + 1, "train_loss": loss_total / max(steps_total, 1), "train_texts": int(texts_total),
                   "train_seconds": train_seconds, "texts_per_second": texts_total / train_seconds,
                   "precision": precision_name(amp_dtype), "head_only_steps": head_only_steps,
                   "global_batch_size": config["batch_size"] * world_size, "optimizer_step": optimizer_step(optimizer)}
        if resumed_from and epoch == start_epoch:  # what was restored, to be checked against what was saved
            metrics["resumed_from"] = resumed_from
        if rank == 0:
            metrics["recent_train_losses"] = recent_losses
            # Rank 0 alone scores the held-out texts (a few thousand at most); the others wait in report.
            metrics["held_out_loss"] = held_out_loss(
                MaskedPositionsLoss(base_model), tokenizer, config["held_out"], max_length=config["max_length"],
                mask_fraction=config["mask_fraction"], batch_size=config["batch_size"] * 2, device=device,
                amp_dtype=amp_dtype)
            metrics["epoch_seconds"] = time.time() - started
            metrics["weights_fingerprint"] = weights_fingerprint(base_model.state_dict())
            log.info(f"[adapt] {label}: train loss {metrics['train_loss']:.4f} | held-out loss "
                     f"{metrics['held_out_loss']:.4f} | {train_seconds:.0f}s, {metrics['texts_per_second']:.1f} texts/s")
            history.append(metrics)
            with tempfile.TemporaryDirectory() as directory:
                _save_checkpoint(directory, base_model, tokenizer, optimizer, scheduler, epoch, history)
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory))
        else:
            history.append(metrics)
            ray.train.report(metrics)
        pause_point("adapt.epoch_reported")
