"""Output ensembles: the mean of several trained models' class probabilities, scored on
`sentiment train`'s own validation and test splits, beside each member. Unlike weight averaging
(benchmarks/soup.py, `sentiment average`) the members may be of different backbones; the price is
one forward pass per member at scoring time.

    python -m benchmarks.recipes --write-splits /tmp/splits --data ../shared/data/labeled
    python -m benchmarks.ensemble --splits /tmp/splits --models runA runB runC
    # also every subset of two or more, best on validation first
    python -m benchmarks.ensemble --splits /tmp/splits --models runA runB runC --subsets

Choose on the validation columns only. With --subsets, the best of many subsets on validation is
itself a choice made on 622 rows: its validation figure is biased upward, and its test figure is
the honest one. Every model must have been trained on the same split's train rows.
"""

from __future__ import annotations

import argparse
import itertools
import os

import numpy as np

from sentiment.data.labels import LABELS
from sentiment.train.metrics import classification_metrics, standard_error

HELD_OUT = ("validation", "test")


def held_out_probabilities(model_dir: str, texts: dict[str, list[str]], precision: str) -> dict[str, np.ndarray]:
    """model_dir's class probabilities on each held-out split's texts, in their order."""
    from sentiment.model.predictor import Predictor

    predictor = Predictor(model_dir, precision=precision)
    return {split: predictor.predict_proba(texts[split]) for split in HELD_OUT}


def ensemble_row(name: str, members: list[dict[str, np.ndarray]], labels: dict[str, np.ndarray]) -> dict:
    """Metrics of the mean of members' probabilities on each held-out split."""
    row = {"name": name}
    for split in HELD_OUT:
        predicted = np.mean([member[split] for member in members], axis=0).argmax(axis=1)
        row[split] = classification_metrics(labels[split], predicted)
    return row


def table(rows: list[dict]) -> str:
    lines = ["| models | val acc | val macro-F1 | test acc | test macro-F1 | test F1 neg / neu / pos | test confusion |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        val, test = row["validation"], row["test"]
        f1 = " / ".join(f"{test['per_class'][label]['f1']:.3f}" for label in LABELS)
        lines.append(f"| {row['name']} | {val['accuracy']:.3f} | {val['macro_f1']:.3f} | {test['accuracy']:.3f} | "
                     f"{test['macro_f1']:.3f} | {f1} | {test['confusion_matrix']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--splits", required=True, metavar="DIR", help="validation/test splits (benchmarks.recipes --write-splits)")
    parser.add_argument("--models", required=True, nargs="+", metavar="DIR", help="trained model folders (two or more)")
    parser.add_argument("--names", nargs="+", metavar="NAME", help="short names for the models, in order (default: the folders)")
    parser.add_argument("--subsets", action="store_true", help="also score every subset of two or more models")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="scoring precision, as `sentiment score`'s (default: %(default)s)")
    args = parser.parse_args()
    if len(args.models) < 2:
        parser.error("--models needs at least two folders")
    names = args.names or args.models
    if len(names) != len(args.models):
        parser.error("--names needs one name per --models folder")

    import pandas as pd

    frames = {split: pd.read_parquet(os.path.join(args.splits, f"{split}.parquet")) for split in HELD_OUT}
    labels = {split: frame["label"].to_numpy() for split, frame in frames.items()}
    texts = {split: frame["text"].tolist() for split, frame in frames.items()}
    probabilities = {}
    for name, model_dir in zip(names, args.models):
        probabilities[name] = held_out_probabilities(model_dir, texts, args.precision)
        print(f"scored {name}", flush=True)
    rows = [ensemble_row(name, [probabilities[name]], labels) for name in names]
    rows.append(ensemble_row(f"mean of all {len(names)}", list(probabilities.values()), labels))
    print(table(rows))
    n_test = len(labels["test"])
    print(f"one standard error of a test accuracy near {rows[-1]['test']['accuracy']:.2f} on {n_test} rows: "
          f"{standard_error(rows[-1]['test']['accuracy'], n_test):.3f}")
    if args.subsets and len(names) > 2:
        subsets = [combo for size in range(2, len(names)) for combo in itertools.combinations(names, size)]
        subsets.append(tuple(names))
        scored = sorted((ensemble_row(" + ".join(combo), [probabilities[n] for n in combo], labels) for combo in subsets),
                        key=lambda row: -row["validation"]["accuracy"])
        print(f"\nevery subset ({len(subsets)}), best on validation first; the best of {len(subsets)} on validation "
              "is biased upward there, its test column is the honest figure:")
        print(table(scored))


if __name__ == "__main__":
    main()
