"""Where one scoring actor call's time goes, phase by phase, without Ray.

Issue 25: on an H200 the scoring actor spent 20 µs per row with a model that computes nothing
(40 task-s for 2,000,000 rows), so one actor tops out near 96,000 rows/s; on the 2-core CPU here
the same call's host work without the model (Arrow in and out, sorting, padding) is under 1 µs
per row. This runs the steps of Predictor.predict_proba_tokens (rows sorted by length, batches
cut by the token budget, padded from the Arrow offsets, copied to the device, forward, softmax),
written out again with clocks between them (keep the two in step), on one window of real reviews, --repeats times after a warm-up, and adds up per phase
the host's time and, on a GPU, the device's time between CUDA events.

    python -m benchmarks.actor_call --model-size tiny --tokenizer .gpukit/tokenizer --device cuda
    python -m benchmarks.actor_call --model-size tiny --device cpu --rows 8192      # a CPU smoke run
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.tokenizing import DEFAULT_DATA

PHASES = ("pad", "to_device", "forward", "softmax", "to_host")


class NullModel:
    """Zero logits at once, for the call's host work alone."""

    def __call__(self, input_ids, attention_mask):
        import torch
        from types import SimpleNamespace

        return SimpleNamespace(logits=torch.zeros(input_ids.shape[0], 3, device=input_ids.device))


def time_call(predictor, tokens, repeats: int) -> dict:
    """Predictor.predict_proba_tokens' steps, with clocks between them, on `tokens` `repeats`
    times; per-phase ms per call. The same helpers (length_sorted_batches, pad_rows, to_device) in the same
    order: a change to that method belongs here too."""
    import torch

    from sentiment.model.token_batches import length_sorted_batches, pad_rows

    on_gpu = predictor.device.type == "cuda"
    values, starts, lengths, order, bounds = length_sorted_batches(tokens, predictor.tokens_per_batch,
                                                                   predictor.batch_size)
    host_ms, device_ms, walls, all_marks = dict.fromkeys(PHASES, 0.0), dict.fromkeys(PHASES, 0.0), [], []

    def one_call(record: bool):
        sorted_probs = torch.empty((len(order), 3), dtype=torch.float32, device=predictor.device)
        for start, end in bounds:
            marks = [torch.cuda.Event(enable_timing=True) for _ in range(4)] if on_gpu and record else None
            clock = [time.perf_counter()]
            rows = order[start:end]
            ids, mask = pad_rows(values, starts[rows], lengths[rows], predictor.pad_id)
            clock.append(time.perf_counter())
            if marks:
                marks[0].record()
            ids, mask = predictor.to_device(ids), predictor.to_device(mask)
            clock.append(time.perf_counter())
            if marks:
                marks[1].record()
            with torch.inference_mode():
                logits = predictor.model(input_ids=ids, attention_mask=mask).logits
            clock.append(time.perf_counter())
            if marks:
                marks[2].record()
            sorted_probs[start:end] = torch.softmax(logits.float(), dim=-1)
            clock.append(time.perf_counter())
            if marks:
                marks[3].record()
                all_marks.append(marks)
            if record:
                for k, phase in enumerate(PHASES[:4]):
                    host_ms[phase] += (clock[k + 1] - clock[k]) * 1000
        clock = time.perf_counter()
        sorted_probs.cpu().numpy()
        if record:
            host_ms["to_host"] += (time.perf_counter() - clock) * 1000

    one_call(record=False)  # warm-up: kernels, allocator, pinned-memory cache
    for _ in range(repeats):
        started = time.perf_counter()
        one_call(record=True)
        walls.append(time.perf_counter() - started)
    if on_gpu:
        torch.cuda.synchronize()
        for marks in all_marks:
            for k, phase in enumerate(("to_device", "forward", "softmax")):
                device_ms[phase] += marks[k].elapsed_time(marks[k + 1])
    ms_per_call = 1000 * sum(walls) / repeats
    return {"rows": len(order), "batches": len(bounds), "ms_per_call": ms_per_call,
            "us_per_row": 1000 * ms_per_call / len(order),
            "host_ms_per_call": {p: v / repeats for p, v in host_ms.items()},
            "device_ms_per_call": {p: v / repeats for p, v in device_ms.items()} if on_gpu else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.actor_call", description=__doc__.splitlines()[0],
                                     epilog=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="folder of review CSVs (default: ../shared/data/unlabeled)")
    parser.add_argument("--model-size", choices=("tiny", "bert-base"), default="tiny", help="default: %(default)s")
    parser.add_argument("--tokenizer", default=None, help="tokenizer folder (default: the packaged MiniLM's)")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="default: %(default)s")
    parser.add_argument("--rows", type=int, default=65_536, help="rows in the window, the GPU default (default: %(default)s)")
    parser.add_argument("--tokens-per-batch", type=int, default=None, help="default: the device's, as in scoring")
    parser.add_argument("--repeats", type=int, default=5, help="default: %(default)s")
    parser.add_argument("--null-model", action="store_true",
                        help="a model that returns zeros at once: the call's host work alone")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    args.data = args.data or str(DEFAULT_DATA)

    import torch
    from transformers import AutoTokenizer

    from benchmarks.lib.gpu_benchmark import save_model
    from benchmarks.tokenizing import real_reviews
    from sentiment.model.predictor import Predictor
    from sentiment.model.token_batches import tokenize_to_arrow

    with tempfile.TemporaryDirectory(prefix="actor-call-") as tmp:
        model_dir = save_model(f"{tmp}/model", args.model_size, args.tokenizer)
        predictor = Predictor(model_dir, device=torch.device(args.device), tokens_per_batch=args.tokens_per_batch)
        texts = real_reviews(args.data, args.rows)["content"].to_pylist()
        tokens = tokenize_to_arrow(AutoTokenizer.from_pretrained(model_dir), texts)
    if args.null_model:
        predictor.model = NullModel()
    result = time_call(predictor, tokens, args.repeats)
    result.update(model_size="null" if args.null_model else args.model_size, device=args.device, precision=predictor.precision,
                  tokens_per_batch=predictor.tokens_per_batch)
    host = " / ".join(f"{result['host_ms_per_call'][p]:.1f}" for p in PHASES)
    print(f"{result['model_size']} on {args.device} ({predictor.precision}), {result['rows']:,} rows in "
          f"{result['batches']} batches of <= {predictor.tokens_per_batch:,} tokens: {result['ms_per_call']:.1f} ms "
          f"per call, {result['us_per_row']:.2f} µs per row")
    print(f"host ms per call, {' / '.join(PHASES)}: {host}")
    if result["device_ms_per_call"]:
        device = " / ".join(f"{result['device_ms_per_call'][p]:.1f}" for p in ("to_device", "forward", "softmax"))
        print(f"device ms per call, to_device / forward / softmax: {device}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
