"""This checkout's training step against another checkout's, on the same batches, in one process.

Loads the other tree's sentiment/train/step.py beside this one's and trains the same model on the
same real-length (CPU, eager) batches with each run_epoch in turn, counting process CPU seconds:
the check that a change to the loop leaves CPU training no slower.

    python -m benchmarks.step_against_tree --other ../main --data sample-300.csv --model tiny-backbone/ --rounds 6
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time

import numpy as np
import pandas as pd
import torch


def main(argv: list[str] | None = None) -> int:
    from sentiment.data.labels import scores_to_label_ids
    from sentiment.model.classifier import build_classifier
    from sentiment.train import step as this_step

    parser = argparse.ArgumentParser(prog="python -m benchmarks.step_against_tree", description=__doc__.splitlines()[0])
    parser.add_argument("--other", required=True, help="the other checkout's root (e.g. ../main)")
    parser.add_argument("--data", required=True, help="a labeled CSV (content, score)")
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args(argv)
    spec = importlib.util.spec_from_file_location("other_step", os.path.join(args.other, "sentiment/train/step.py"))
    other_step = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(other_step)
    torch.set_num_threads(1)
    frame = pd.read_csv(args.data, usecols=["content", "score"]).dropna()
    model, tokenizer = build_classifier(args.model)
    batches = this_step.length_bucketed_batches(tokenizer, frame["content"].tolist(),
                                                np.asarray(scores_to_label_ids(frame["score"])), max_length=160,
                                                batch_size=args.batch_size, pad_to_multiple_of=None, seed=0, pin=False)
    cpu = torch.device("cpu")
    totals = {"other": 0.0, "this": 0.0}
    for round_index in range(args.rounds):
        order = [("other", other_step), ("this", this_step)]
        for name, module in order if round_index % 2 == 0 else order[::-1]:
            optimizer, scheduler = module.optimizer_and_schedule(model, lr=1e-4, layer_decay=1.0, warmup_fraction=0.0,
                                                                 total_steps=len(batches), device=cpu)
            started = time.process_time()
            result = module.run_epoch(model, batches, cpu, optimizer=optimizer, scheduler=scheduler,
                                      scaler=torch.amp.GradScaler("cpu", enabled=False))
            seconds = time.process_time() - started
            totals[name] += seconds
            print(f"round {round_index + 1} {name}: {seconds:.2f} CPU s, {result['n']} reviews", flush=True)
    print(f"total: other {totals['other']:.2f} CPU s, this {totals['this']:.2f} CPU s: "
          f"this/other {totals['this'] / totals['other']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
