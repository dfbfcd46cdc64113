"""Where a training step's time goes, phase by phase, eager against compiled, without Ray.

Issue 26: through `sentiment train --gpu`, a compiled bert-base step at batch 32 took 34.5 ms in
steady state (62.7 ms eager), while the bare compiled step of the issue took 6.0 ms. This runs
the training step of sentiment.train.step.run_epoch, written out again with clocks between its
phases (keep the two in step): static-shape batches from length_bucketed_batches, CompiledModel,
forward_backward, clipping, the fused AdamW of optimizer_and_schedule, the device-side totals
(no GradScaler: bf16 needs none). It runs on real labeled reviews in one process, warms every shape up first (compiling and CUDA-graph recording stay out
of the numbers), then times --steps steady steps. Per phase it gives the host's time (the Python
that issues the work) and, on a GPU, the device's time between CUDA events placed between the
phases: where the host time and the device time agree, the phase is bound by launching.

    python -m benchmarks.train_step --size bert-base --tokenizer .gpukit/tokenizer --device cuda
    python -m benchmarks.train_step --size tiny --device cpu --steps 20        # a CPU smoke run

With --profile, the compiled mode's last 20 steps also run under torch.profiler, and the 15 ops
with the most host time are printed. On a GPU, Inductor's performance hints are switched on, so
a reason for skipping CUDA graphs is printed where there is one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "labeled"
PHASES = ("to_device", "forward_backward", "clip", "optimizer", "totals")


def labeled_reviews(data_dir: str, limit: int | None) -> tuple[list[str], list[int]]:
    """Texts and label ids of the labeled CSVs in data_dir (review_sample.load_labeled), blank
    texts and missing stars left out, first `limit` rows."""
    from benchmarks.lib.review_sample import load_labeled
    from sentiment.data.labels import scores_to_label_ids

    frame = load_labeled(data_dir).dropna()
    frame = frame[frame["content"].str.strip() != ""].head(limit)
    return frame["content"].tolist(), scores_to_label_ids(frame["score"]).tolist()


def time_mode(model, batches, device, *, compile_on: bool, steps: int, amp_dtype, profile: bool) -> dict:
    """Warm every shape up, then time `steps` steady steps phase by phase."""
    import torch

    from sentiment.train.compiled import CompiledModel, allow_recompiles
    from sentiment.train.stats import add_batch, new_totals
    from sentiment.train.step import forward_backward, optimizer_and_schedule

    on_gpu = device.type == "cuda"
    step_model = model
    if compile_on:
        allow_recompiles(len({tuple(b["input_ids"].shape) for b in batches}))
        step_model = CompiledModel(model, on_gpu=on_gpu)
    optimizer, scheduler = optimizer_and_schedule(model, lr=2e-5, layer_decay=1.0, warmup_fraction=0.0,
                                                  total_steps=10 ** 6, device=device, capturable=compile_on)
    scaler = torch.amp.GradScaler(device.type, enabled=False)
    totals = new_totals(device)
    model.train()

    def sync():
        if on_gpu:
            torch.cuda.synchronize(device)

    def one_step(batch, marks=None, host=None):
        def mark(i):
            if marks is not None:
                marks[i].record()
            if host is not None:
                host[i] = time.perf_counter()
        mark(0)
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        mark(1)
        out, loss = forward_backward(step_model, batch, amp_dtype, 0.0, optimizer, scaler)
        mark(2)
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
        mark(3)
        optimizer.step()
        scheduler.step()
        mark(4)
        add_batch(totals, loss, out.logits, batch["labels"], batch["attention_mask"])
        mark(5)

    shapes: dict[tuple, list] = {}
    for batch in batches:
        shapes.setdefault(tuple(batch["input_ids"].shape), []).append(batch)
    warm_started = time.perf_counter()
    for group in shapes.values():  # 3 calls per shape: compile, CUDA-graph warm-up, recording
        for batch in (group * 3)[:3]:
            one_step(batch)
    sync()
    warm_seconds = time.perf_counter() - warm_started

    host_ms = dict.fromkeys(PHASES, 0.0)
    device_ms = dict.fromkeys(PHASES, 0.0)
    all_marks = []
    started = time.perf_counter()
    for i in range(steps):
        # Events are read after the last step: a sync per step would stop the host running ahead.
        marks = [torch.cuda.Event(enable_timing=True) for _ in range(6)] if on_gpu else None
        host = [0.0] * 6
        one_step(batches[i % len(batches)], marks, host)
        for k, phase in enumerate(PHASES):
            host_ms[phase] += (host[k + 1] - host[k]) * 1000
        all_marks.append(marks)
    sync()
    wall = time.perf_counter() - started
    for marks in all_marks if on_gpu else ():
        for k, phase in enumerate(PHASES):
            device_ms[phase] += marks[k].elapsed_time(marks[k + 1])
    rows = sum(int((batches[i % len(batches)]["labels"] >= 0).sum()) for i in range(steps))
    result = {"compile": compile_on, "shapes": len(shapes), "warmup_seconds": warm_seconds, "steps": steps,
              "ms_per_step": wall * 1000 / steps, "reviews_per_s": rows / wall,
              "host_ms_per_step": {p: v / steps for p, v in host_ms.items()},
              "device_ms_per_step": {p: v / steps for p, v in device_ms.items()} if on_gpu else None}
    if profile and compile_on:
        from torch.profiler import ProfilerActivity, profile as torch_profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
        with torch_profile(activities=activities) as prof:
            for i in range(20):
                one_step(batches[i % len(batches)])
            sync()
        result["profile"] = prof.key_averages().table(sort_by="cpu_time_total", row_limit=15, max_name_column_width=60)
    return result


def format_rows(results: list[dict], on_gpu: bool) -> str:
    lines = ["| --compile | shapes | warm-up s | ms/step | reviews/s | host ms: " + " / ".join(PHASES) +
             (" | device ms: same phases |" if on_gpu else " |"),
             "|---|---|---|---|---|---|" + ("---|" if on_gpu else "")]
    for r in results:
        host = " / ".join(f"{r['host_ms_per_step'][p]:.2f}" for p in PHASES)
        dev = (" | " + " / ".join(f"{r['device_ms_per_step'][p]:.2f}" for p in PHASES)) if on_gpu else ""
        lines.append(f"| {'on' if r['compile'] else 'off'} | {r['shapes']} | {r['warmup_seconds']:.1f} | "
                     f"{r['ms_per_step']:.1f} | {r['reviews_per_s']:.0f} | {host}{dev} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.train_step", description=__doc__.splitlines()[0],
                                     epilog=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="folder of labeled CSVs (default: %(default)s)")
    parser.add_argument("--size", choices=("tiny", "bert-base"), default="bert-base", help="default: %(default)s")
    parser.add_argument("--tokenizer", default="minilm", help="'minilm' (the package) or a tokenizer folder")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="default: %(default)s")
    parser.add_argument("--batch-size", type=int, default=32, help="default: %(default)s")
    parser.add_argument("--rows", type=int, default=4096, help="labeled reviews to batch (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=100, help="steady steps timed per mode (default: %(default)s)")
    parser.add_argument("--compile", nargs="+", choices=("off", "on"), default=["off", "on"])
    parser.add_argument("--profile", action="store_true", help="a torch.profiler table of the compiled mode")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)

    import torch

    from benchmarks.training import save_backbone
    from sentiment.model.classifier import build_classifier
    from sentiment.train.compiled import use_compile_cache
    from sentiment.train.step import autocast_dtype, length_bucketed_batches, static_lengths

    device = torch.device(args.device)
    if device.type == "cuda":
        torch._logging.set_logs(perf_hints=True)  # says why CUDA graphs were skipped, if they were
    use_compile_cache()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="train-step-") as tmp:
        model, tokenizer = build_classifier(save_backbone(os.path.join(tmp, "backbone"), args.size, args.tokenizer))
    model.to(device)
    texts, labels = labeled_reviews(args.data, args.rows)
    window = args.batch_size * 32
    batches = []
    for start in range(0, len(texts), window):
        batches += length_bucketed_batches(tokenizer, texts[start:start + window], labels[start:start + window],
                                           max_length=160, batch_size=args.batch_size, pad_to_multiple_of=None,
                                           seed=0, pin=device.type == "cuda", pad_lengths=static_lengths(160))
    amp_dtype = autocast_dtype(device)
    print(f"{args.size} on {device}, batch {args.batch_size}, {len(batches)} batches of real reviews, "
          f"{amp_dtype or 'fp32'}", flush=True)
    results = []
    for mode in args.compile:
        results.append(time_mode(model, batches, device, compile_on=mode == "on", steps=args.steps,
                                 amp_dtype=amp_dtype, profile=args.profile))
        print(format_rows(results[-1:], device.type == "cuda"), flush=True)
        if "profile" in results[-1]:
            print(results[-1]["profile"], flush=True)
    print(format_rows(results, device.type == "cuda"))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
