"""Weight averaging ("model soup") for the default backbone: score several trained models and
their parameter average on `sentiment train`'s own validation and test splits, and optionally
save the average as a plain model folder. Choose on the validation columns only.

    # the splits `sentiment train` makes of all labeled data (once; needs Ray)
    python -m benchmarks.recipes --write-splits /tmp/splits --data ../shared/data/labeled
    # three full runs of other recipes, and their average
    python -m benchmarks.soup --splits /tmp/splits --models runA runB runC --output /tmp/soup
    # the two checkpoints a run keeps (its best two epochs), averaged
    python -m benchmarks.soup --splits /tmp/splits --models runA/checkpoints/*/checkpoint_2*/model

Every model must be a fine-tune of the same backbone, trained on the same split's train rows
(same --seed and fractions), or the held-out rows are not held out.
"""

from __future__ import annotations

import argparse
import json

from benchmarks.lib.weight_average import score_held_out, soup_table
from sentiment.model.average import average_weights
from sentiment.model.classifier import load_classifier, save_classifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--splits", required=True, metavar="DIR", help="validation/test splits (benchmark_recipes.py --write-splits)")
    parser.add_argument("--models", required=True, nargs="+", metavar="DIR", help="trained model folders (two or more)")
    parser.add_argument("--output", metavar="DIR", help="also save the average here as a model folder")
    parser.add_argument("--json", metavar="FILE", help="also write every row's numbers here")
    args = parser.parse_args()
    if len(args.models) < 2:
        parser.error("--models needs at least two folders to average")
    loaded = [(directory, *load_classifier(directory)) for directory in args.models]  # each read once
    rows = [(directory, score_held_out(model, tokenizer, args.splits)) for directory, model, tokenizer in loaded]
    soup = average_weights([(directory, model) for directory, model, _ in loaded])
    tokenizer = loaded[0][2]  # members share the backbone's tokenizer
    rows.append((f"average of all {len(args.models)}", score_held_out(soup, tokenizer, args.splits)))
    if args.output:
        save_classifier(soup, tokenizer, args.output)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(rows), f, indent=2)
    print(soup_table(rows))


if __name__ == "__main__":
    main()
