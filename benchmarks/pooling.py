"""Does a mean-pooled head beat the architecture's own head? (issue 23)

all-MiniLM-L6-v2 and all-mpnet-base-v2 are sentence-transformers checkpoints: trained so that the
mean of a text's token outputs carries its meaning. transformers' classifier heads read the first
token instead (MPNet, RoBERTa: a dense layer and a projection over it; BERT: the pooler over it),
a feature those checkpoints never trained. This trains the backbone's recipe twice per seed, once
with its own head (the baseline, as `sentiment train` ships it) and once with dropout and a linear
layer over the masked mean (benchmarks.lib.mean_pooling), on the same splits, the same batches and
the same step, and scores each on validation and test.

    python -m benchmarks.recipes --write-splits /tmp/splits --data ../shared/data/labeled
    python -m benchmarks.pooling --splits /tmp/splits --backbone mpnet --seeds 42 43 --results pooling.jsonl

Trials run in --processes processes of --threads torch threads each, one seed's pair at a time,
so that a run cut short still holds complete pairs; each result is appended as it finishes.
"""

from __future__ import annotations

import argparse

from benchmarks.lib.recipe_sweep import (add_comparison_arguments, recipe_trials, run_sweep, summarize_sweep,
                                         sweep_table, trial_table)

POOLINGS = ("head", "mean")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_comparison_arguments(parser, backbone="mpnet", results="pooling.jsonl")
    parser.add_argument("--poolings", nargs="+", choices=POOLINGS, default=list(POOLINGS),
                        help="heads to train, each seed (default: %(default)s)")
    args = parser.parse_args()
    trials = recipe_trials(args.backbone, args.seeds, "pooling", args.poolings)
    results = run_sweep(trials, args.splits, args.backbone, args.processes, args.results, args.threads)
    print(trial_table(results, "pooling"))
    print(sweep_table(summarize_sweep(results)))  # each pooling's mean ± sd over the seeds


if __name__ == "__main__":
    main()
