"""Label agreement of a trained classifier with its own fp32 self when its weights are bf16 or fp16.

Runs on CPU or GPU, on real unlabeled reviews, and prints, per precision, the share of labels
kept, each flipped review's fp32 top-2 margin, and the max and mean probability difference.
Then times the Predictor at fp32 and at bf16 (what `--precision auto` runs on GPUs and on CPUs
with native bf16) alternately, `--rounds` times each on the same reviews, and prints the median
rates and their ratio: whether bf16 pays on this machine.

    python -m benchmarks.precision --model MODEL_DIR --reviews 2000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import pyarrow.csv as pacsv
import torch

from sentiment.model.predictor import Predictor, pick_device
from sentiment.io.shards import CSV_PARSE

APPS = ("todoist.csv", "khan.csv", "webmd.csv", "NYT.csv")


def real_reviews(data: str, count: int) -> list[str]:
    """`count` non-blank reviews, an equal share from each of APPS."""
    texts: list[str] = []
    for name in APPS:
        table = pacsv.read_csv(f"{data}/{name}", parse_options=CSV_PARSE)
        texts += [t for t in table["Review Text"].to_pylist() if t and t.strip()][: count // len(APPS)]
    return texts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.precision", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="trained model folder")
    parser.add_argument("--data", default="../shared/data/unlabeled", help="folder of the unlabeled app CSVs")
    parser.add_argument("--reviews", type=int, default=2000)
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--rounds", type=int, default=3, help="timed passes per precision, alternating (0: none)")
    args = parser.parse_args(argv)
    texts = real_reviews(args.data, args.reviews)
    device = pick_device(args.gpu)
    fp32 = Predictor(args.model, precision="fp32", device=device)
    want = fp32.predict_proba(texts)
    top2 = np.sort(want, axis=1)[:, -2:]
    print(f"{len(texts)} reviews; fp32 mean top probability {want.max(1).mean():.3f}; "
          f"labels per class {np.bincount(want.argmax(1), minlength=want.shape[1]).tolist()}")
    for name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        cast = Predictor(args.model, precision="fp32", device=device)
        cast.model = cast.model.to(dtype)
        got = cast.predict_proba(texts)
        flipped = got.argmax(1) != want.argmax(1)
        margins = np.round(top2[flipped, 1] - top2[flipped, 0], 4).tolist()
        print(f"{name}: labels kept {1 - flipped.mean():.2%} ({flipped.sum()} flipped, fp32 margins {margins}), "
              f"max prob diff {np.abs(got - want).max():.4f}, mean {np.abs(got - want).mean():.5f}")
    if args.rounds:
        time_precisions(args.model, texts, device, args.rounds)
    return 0


def time_precisions(model: str, texts: list[str], device: torch.device, rounds: int) -> dict[str, float]:
    """Median reviews/s of predict_proba at fp32 and at bf16, measured alternately (one warm-up
    batch each first), so that a busy machine slows both alike; prints them and bf16's speed-up."""
    predictors = {name: Predictor(model, precision=name, device=device) for name in ("fp32", "bf16")}
    seconds: dict[str, list[float]] = {name: [] for name in predictors}
    for predictor in predictors.values():
        predictor.predict_proba(texts[:64])
    for _ in range(rounds):
        for name, predictor in predictors.items():
            started = time.perf_counter()
            predictor.predict_proba(texts)
            seconds[name].append(time.perf_counter() - started)
    rates = {name: len(texts) / statistics.median(s) for name, s in seconds.items()}
    print(f"speed, median of {rounds} alternating passes on {device.type} ({torch.get_num_threads()} threads): "
          + ", ".join(f"{name} {rate:.0f} reviews/s" for name, rate in rates.items())
          + f"; bf16 {rates['bf16'] / rates['fp32']:.2f}x fp32")
    return rates


if __name__ == "__main__":
    sys.exit(main())
