"""Do spelled emoji change accuracy? (issue 23)

WordPiece tokenizers read every emoji as [UNK]; `sentiment train` now spells them out by their
Unicode names (sentiment.model.readable_text). This trains the backbone's recipe twice per seed,
with spelling (as `sentiment train` does now) and without (as before), on the same splits, the
same batches and the same step, and scores each on validation and test.

    python -m benchmarks.recipes --write-splits /tmp/splits --data ../shared/data/labeled
    python -m benchmarks.spelling --splits /tmp/splits --backbone minilm --seeds 42 43 --results spelling.jsonl

Only the reviews holding a symbol the tokenizer cannot read can change (about 5% of the labeled
ones); the summary line counts them per split. Trials run in --processes processes of --threads
torch threads, one seed's pair at a time, each result appended as it finishes.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import asdict

import pandas as pd

from benchmarks.lib.recipe_sweep import SPLITS, Trial, run_sweep, summarize_sweep, sweep_table, trial_table
from sentiment.model.recipes import recipe_for


def trials(backbone: str, seeds: list[int]) -> list[Trial]:
    """The backbone's own recipe with spelling and without, seed by seed."""
    _, recipe = recipe_for(backbone)
    return [Trial(**asdict(recipe), spelling=spelling, seed=seed) for seed in seeds for spelling in (True, False)]


def spelled_rows(splits_dir: str, backbone: str) -> dict[str, int]:
    """Per split, the reviews whose text spelling changes: the only ones whose scores can differ."""
    from sentiment.model.classifier import build_classifier
    from sentiment.model.readable_text import readable_texts

    _, tokenizer = build_classifier(backbone)
    counts = {}
    for name in SPLITS:
        texts = pd.read_parquet(os.path.join(splits_dir, f"{name}.parquet"))["text"].tolist()
        counts[name] = sum(before != after for before, after in zip(texts, readable_texts(tokenizer, texts)))
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--splits", required=True, help="the folder `benchmarks.recipes --write-splits` wrote")
    parser.add_argument("--backbone", default="minilm", help="backbone name or folder; its recipe is used "
                                                             "(default: %(default)s)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 43], help="seeds (default: %(default)s)")
    parser.add_argument("--processes", type=int, default=2, help="trials run at once (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (default: %(default)s)")
    parser.add_argument("--results", default="spelling.jsonl", help="JSON lines, appended per trial "
                                                                   "(default: %(default)s)")
    args = parser.parse_args()
    print("reviews whose text spelling changes:", spelled_rows(args.splits, args.backbone), flush=True)
    results = run_sweep(trials(args.backbone, args.seeds), args.splits, args.backbone, args.processes,
                        args.results, args.threads)
    print(trial_table(results, "spelling"))
    print(sweep_table(summarize_sweep(results)))  # with and without spelling: mean ± sd over the seeds


if __name__ == "__main__":
    main()
