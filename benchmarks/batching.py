"""Training steps on random, length-bucketed and static-shape batches of the same real reviews.

Each round takes a fresh window of shuffled labeled reviews and trains MiniLM on it once as Ray
hands it over (random batches, each padded to its longest review), once as an eager CPU run forms
it (LengthBucketCollate: batches of similar length, padded to their longest), and once in the
static shapes of a GPU or compiled run (the same batches padded to step.static_lengths()), in
turn, and counts padded tokens and CPU seconds of the forward, backward and AdamW step.

    python -m benchmarks.batching --data ../shared/data/labeled --rounds 3 --window-batches 16
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import pandas as pd
import torch


def train_on(model, optimizer, batches) -> tuple[float, int, int]:
    """CPU seconds, padded tokens and real tokens of one pass of training steps."""
    started = time.process_time()
    for batch in batches:
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    padded = sum(b["attention_mask"].numel() for b in batches)
    real = sum(int(b["attention_mask"].sum()) for b in batches)
    return time.process_time() - started, padded, real


def main(argv: list[str] | None = None) -> int:
    from sentiment.data.labels import scores_to_label_ids
    from sentiment.model.classifier import build_classifier
    from sentiment.train.step import static_lengths
    from sentiment.train.worker_loop import LengthBucketCollate, TokenizeCollate

    parser = argparse.ArgumentParser(prog="python -m benchmarks.batching", description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/labeled")
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--window-batches", type=int, default=16, help="batches per window (training uses 32)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    reviews = pd.concat([pd.read_csv(f"{args.data}/gplay-{year}.csv") for year in (2020, 2024)])
    reviews = reviews[reviews["content"].fillna("").str.strip() != ""].sample(frac=1.0, random_state=0)
    model, tokenizer = build_classifier(args.model)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5)
    plain = TokenizeCollate(tokenizer, 160, None)
    bucketed = LengthBucketCollate(tokenizer, 160, None, args.batch_size, seed=0, pin=False)
    static = LengthBucketCollate(tokenizer, 160, None, args.batch_size, seed=0, pin=False,
                                 pad_lengths=static_lengths(160))
    size = args.batch_size * args.window_batches
    totals = {"random": [0.0, 0, 0], "bucketed": [0.0, 0, 0], "static": [0.0, 0, 0]}
    for round_index in range(args.rounds):
        rows = reviews.iloc[round_index * size:(round_index + 1) * size]
        window = {"text": rows["content"].to_numpy(dtype=object),
                  "label": np.asarray(scores_to_label_ids(rows["score"]))}
        random_batches = [plain({k: v[i:i + args.batch_size] for k, v in window.items()})
                          for i in range(0, size, args.batch_size)]
        order = [("random", random_batches), ("bucketed", bucketed(window)), ("static", static(window))]
        for name, batches in order if round_index % 2 == 0 else order[::-1]:
            seconds, padded, real = train_on(model, optimizer, batches)
            totals[name] = [a + b for a, b in zip(totals[name], (seconds, padded, real))]
            print(f"round {round_index + 1} {name}: {seconds:.1f} CPU s, {size / seconds:.1f} reviews/CPU-s, "
                  f"padding {padded / real:.2f}x", flush=True)
    (r_s, r_p, r_r), (b_s, b_p, b_r), (s_s, s_p, s_r) = totals["random"], totals["bucketed"], totals["static"]
    print(f"total: random {size * args.rounds / r_s:.1f} reviews/CPU-s (padding {r_p / r_r:.2f}x), "
          f"bucketed {size * args.rounds / b_s:.1f} (padding {b_p / b_r:.2f}x): {r_s / b_s:.2f}x faster; "
          f"static {size * args.rounds / s_s:.1f} (padding {s_p / s_r:.2f}x): bucketed/static {s_s / b_s:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
