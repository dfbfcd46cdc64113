"""The CPU cost of forming training batches: length_bucketed_batches (the tokenizers backend and
numpy padding, since 2026-12-05) against transformers' tokenizer call and `tokenizer.pad` per
batch (how it formed them before), on the same windows of real labeled reviews, in turns.

On a GPU these run in Ray's data threads beside the step, which launches its kernels from Python
under the same GIL (issue 26), so their CPU time is time the step can wait.

    python -m benchmarks.batch_forming --data ../shared/data/labeled --batch-size 32 --repeats 5
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def transformers_batches(tokenizer, texts, labels, *, max_length: int, batch_size: int, pad_lengths) -> list[dict]:
    """length_bucketed_batches as it was until 2026-12-05 (static shapes; the same grouping)."""
    import torch

    from sentiment.train.step import MASKED_LABEL

    ids = tokenizer(list(texts), truncation=True, max_length=max_length, return_attention_mask=False)["input_ids"]
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    order = np.argsort(lengths, kind="stable")
    labels = np.asarray(labels, dtype=np.int64)
    batches = []
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        width = next(n for n in pad_lengths if n >= int(lengths[rows].max()))
        batch_labels = labels[rows]
        if len(rows) < batch_size:
            filler = np.full(batch_size - len(rows), rows[0])
            rows = np.concatenate([rows, filler])
            batch_labels = np.concatenate([batch_labels, np.full(len(filler), MASKED_LABEL)])
        batch = dict(tokenizer.pad({"input_ids": [ids[i] for i in rows]}, return_tensors="pt", padding="max_length",
                                   max_length=width))
        batch["labels"] = torch.from_numpy(batch_labels)
        batches.append(batch)
    return batches


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.batch_forming", description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/labeled", help="labeled CSV folder (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--window-batches", type=int, default=32, help="batches per window (training's: 32)")
    parser.add_argument("--windows", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    import glob
    import os

    import pandas as pd
    from transformers import AutoTokenizer

    from sentiment.model.classifier import DEFAULT_MAX_LENGTH, resolve_backbone
    from sentiment.train.step import length_bucketed_batches, static_lengths

    texts = pd.concat(pd.read_csv(path)["content"] for path in sorted(glob.glob(os.path.join(args.data, "*.csv"))))
    texts = texts.dropna().astype(str).tolist()
    size = args.batch_size * args.window_batches
    windows = [texts[i * size:(i + 1) * size] for i in range(args.windows)]
    labels = np.arange(size) % 3
    tokenizer = AutoTokenizer.from_pretrained(resolve_backbone("minilm"))
    lengths = static_lengths(DEFAULT_MAX_LENGTH)

    def current():
        for window in windows:
            length_bucketed_batches(tokenizer, window, labels[:len(window)], max_length=DEFAULT_MAX_LENGTH,
                                    batch_size=args.batch_size, pad_to_multiple_of=None, seed=0, pin=False,
                                    pad_lengths=lengths)

    def before():
        for window in windows:
            transformers_batches(tokenizer, window, labels[:len(window)], max_length=DEFAULT_MAX_LENGTH,
                                 batch_size=args.batch_size, pad_lengths=lengths)

    methods = (("tokenizer() + tokenizer.pad (until 2026-12-05)", before), ("length_bucketed_batches", current))
    best = dict.fromkeys(name for name, _ in methods)
    for _ in range(args.repeats):  # in turns, so that a busy spell of the machine hits both
        for name, run in methods:
            started = time.process_time()
            run()
            seconds = time.process_time() - started
            best[name] = seconds if best[name] is None else min(best[name], seconds)
    reviews = sum(map(len, windows))
    batches = sum(-(-len(w) // args.batch_size) for w in windows)
    print(f"{reviews:,} real reviews in {batches} static-shape batches of {args.batch_size}, best of {args.repeats} "
          "in turns; CPU")
    for name, seconds in best.items():
        print(f"{name:50}{seconds * 1e6 / reviews:8.1f} µs/review{seconds * 1e3 / batches:8.2f} ms/batch")
    print(f"length_bucketed_batches / before: {best[methods[1][0]] / best[methods[0][0]]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
