"""A masked-language training step of `sentiment adapt`, the model's own forward (every position
projected onto the vocabulary) against MaskedPositionsLoss (the head at the masked positions only),
on the same batches of real unlabeled reviews, in one process, without Ray.

    python -m benchmarks.masked_lm_step --model minilm --steps 20
    python -m benchmarks.masked_lm_step --model mpnet --steps 10 --batch-size 32

The two run in alternating rounds of --steps steps each (after one warm-up round each), so a
machine whose load changes during the run moves both alike; the printed ratio is the one to
compare across machines. Both compute the same loss (tests/test_adapt.py checks it).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "unlabeled"


class OwnForward:
    """The model's own forward and loss: what a masked-language step costs without the gather."""

    def __init__(self, model):
        self.model = model

    def __call__(self, **batch):
        return self.model(**batch).loss


def time_steps(loss_fn, parameters, batches, optimizer, amp_dtype, device) -> float:
    """Seconds for one optimizer step per batch."""
    import torch

    started = time.perf_counter()
    for batch in batches:
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss = loss_fn(**batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, max_norm=1.0)
        optimizer.step()
    float(loss)  # waits for the device
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm", help="backbone, as `sentiment adapt --model` (default: %(default)s)")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="folder of unlabeled CSV files")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=160)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per round (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds of each method (default: %(default)s)")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    import torch
    from transformers import AutoModelForMaskedLM

    from benchmarks.lib.review_sample import load_corpus
    from sentiment.model.classifier import load_encoder_with_head
    from sentiment.train.masked_lm import MaskedCollate, MaskedPositionsLoss
    from sentiment.train.step import autocast_dtype, precision_name

    device = torch.device(args.device)
    model, tokenizer, _ = load_encoder_with_head(AutoModelForMaskedLM, args.model)
    model.to(device).train()
    amp_dtype = autocast_dtype(device, args.precision)
    texts = load_corpus(args.data)[: args.batch_size * args.steps]
    collate = MaskedCollate(tokenizer, args.max_length, 0.15, 8 if device.type == "cuda" else None, seed=0)
    batches = [{k: v.to(device) for k, v in collate({"text": texts[i:i + args.batch_size]}).items()}
               for i in range(0, len(texts), args.batch_size)]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-9)  # a rate that leaves the model as it is
    methods = {"own forward (all positions)": OwnForward(model), "masked positions only": MaskedPositionsLoss(model)}
    seconds = {name: [] for name in methods}
    for timed_round in range(args.rounds + 1):
        for name, loss_fn in methods.items():
            spent = time_steps(loss_fn, list(model.parameters()), batches, optimizer, amp_dtype, device)
            if timed_round:  # round 0 warms both up
                seconds[name].append(spent)
    tokens = sum(int(b["attention_mask"].sum()) for b in batches) / len(texts)
    print(f"{args.model}, {precision_name(amp_dtype)}, {device}, batch {args.batch_size}, {len(batches)} steps x "
          f"{args.rounds} rounds, {tokens:.1f} tokens per review, {torch.get_num_threads()} threads")
    baseline = min(seconds["own forward (all positions)"])
    results = {}
    for name, spent in seconds.items():
        best = min(spent)
        results[name] = {"ms_per_step": 1000 * best / len(batches), "texts_per_second": len(texts) / best,
                         "speedup": baseline / best}
        print(f"  {name:28s} {results[name]['ms_per_step']:8.1f} ms/step {results[name]['texts_per_second']:8.1f} "
              f"texts/s  x{results[name]['speedup']:.2f}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
