"""Do spelled emoji change accuracy? (issue 23)

WordPiece tokenizers read every emoji as [UNK]; `sentiment train` now spells them out by their
Unicode names (sentiment.model.readable_text). This trains the backbone's recipe twice per seed,
with spelling (as `sentiment train` does now) and without (as before), on the same splits, the
same batches and the same step, and scores each on validation and test.

    python -m benchmarks.recipes --write-splits /tmp/splits --data ../shared/data/labeled
    python -m benchmarks.spelling --splits /tmp/splits --backbone minilm --seeds 42 43 --results spelling.jsonl

Only the reviews holding a symbol the tokenizer cannot read read differently (about 5% of the
labeled ones; the first line counts them per split), so beside validation and test each trial
is also scored on those of validation and test together (written to SPLITS/symbols.parquet),
the subset where spelling can help directly. Trials run in --processes processes of --threads
torch threads, one seed's pair at a time, each result appended as it finishes.
"""

from __future__ import annotations

import argparse
import os

import pandas as pd

from benchmarks.lib.recipe_sweep import (SPLITS, add_comparison_arguments, recipe_trials, run_sweep,
                                         summarize_sweep, sweep_table, trial_table)

SYMBOLS = "symbols"  # the held-out reviews that spelling changes


def write_spelled_rows(splits_dir: str, backbone: str) -> dict[str, int]:
    """Count, per split, the reviews whose text spelling changes, and write those of validation
    and test to SPLITS/symbols.parquet."""
    from sentiment.model.classifier import build_classifier
    from sentiment.model.readable_text import readable_texts

    _, tokenizer = build_classifier(backbone)
    counts, held_out = {}, []
    for name in SPLITS:
        frame = pd.read_parquet(os.path.join(splits_dir, f"{name}.parquet"))
        texts = frame["text"].tolist()
        changed = [before != after for before, after in zip(texts, readable_texts(tokenizer, texts))]
        counts[name] = sum(changed)
        if name != "train":
            held_out.append(frame[changed])
    pd.concat(held_out).to_parquet(os.path.join(splits_dir, f"{SYMBOLS}.parquet"), index=False)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_comparison_arguments(parser, backbone="minilm", results="spelling.jsonl")
    args = parser.parse_args()
    counts = write_spelled_rows(args.splits, args.backbone)
    print("reviews whose text spelling changes:", counts, flush=True)
    trials = recipe_trials(args.backbone, args.seeds, "spelling", (True, False))
    results = run_sweep(trials, args.splits, args.backbone, args.processes, args.results, args.threads,
                        extra_held_out=(SYMBOLS,))
    print(trial_table(results, "spelling", extra_held_out=(SYMBOLS,)))  # symbols: the held-out rows counted above
    print(sweep_table(summarize_sweep(results)))  # with and without spelling: mean ± sd over the seeds


if __name__ == "__main__":
    main()
