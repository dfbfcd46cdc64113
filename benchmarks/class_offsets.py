"""Per-class offsets on a trained model's logits, chosen on `sentiment train`'s validation split
and reported on its test split: does shifting the classes' priors (the weak neutral class, say)
lift accuracy? An offset per class is a bias the head could hold, so a model folder would stay a
plain Hugging Face folder if it paid.

    python -m benchmarks.recipes --write-splits /tmp/splits --data ../shared/data/labeled
    python -m benchmarks.class_offsets --splits /tmp/splits --model RUN

The offsets are chosen on the 622 validation rows, so the validation figure after them is biased
upward; the test figure is the honest one.
"""

from __future__ import annotations

import argparse
import itertools
import os

import numpy as np

from benchmarks.ensemble import HELD_OUT, held_out_probabilities, table
from sentiment.train.metrics import classification_metrics


def best_offsets(log_probabilities: np.ndarray, labels: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Offsets (the first class's fixed at 0) from grid that maximise the accuracy of
    (log_probabilities + offsets).argmax(); among ties, the smallest total shift."""
    classes = log_probabilities.shape[1]

    def key(others):
        offsets = np.array([0.0, *others])
        accuracy = ((log_probabilities + offsets).argmax(axis=1) == labels).mean()
        return accuracy, -np.abs(offsets).sum()

    return np.array([0.0, *max(itertools.product(grid, repeat=classes - 1), key=key)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--splits", required=True, metavar="DIR", help="validation/test splits (benchmarks.recipes --write-splits)")
    parser.add_argument("--model", required=True, metavar="DIR", help="a trained model folder")
    parser.add_argument("--step", type=float, default=0.05, help="grid step of the offsets (default: %(default)s)")
    parser.add_argument("--span", type=float, default=1.0, help="offsets from -SPAN to SPAN (default: %(default)s)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="scoring precision, as `sentiment score`'s (default: %(default)s)")
    args = parser.parse_args()

    import pandas as pd

    frames = {split: pd.read_parquet(os.path.join(args.splits, f"{split}.parquet")) for split in HELD_OUT}
    labels = {split: frame["label"].to_numpy() for split, frame in frames.items()}
    probabilities = held_out_probabilities(args.model, {s: f["text"].tolist() for s, f in frames.items()},
                                           args.precision)
    logs = {split: np.log(np.clip(p, 1e-9, 1.0)) for split, p in probabilities.items()}
    grid = np.round(np.arange(-args.span, args.span + args.step / 2, args.step), 6)
    offsets = best_offsets(logs["validation"], labels["validation"], grid)
    rows = []
    for name, shift in (("as trained", np.zeros_like(offsets)), (f"offsets {np.round(offsets, 3).tolist()}", offsets)):
        rows.append({"name": name, **{split: classification_metrics(labels[split], (logs[split] + shift).argmax(axis=1))
                                      for split in HELD_OUT}})
    print(table(rows))


if __name__ == "__main__":
    main()
