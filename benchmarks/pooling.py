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
from dataclasses import asdict

from benchmarks.lib.recipe_sweep import Trial, run_sweep, summarize_sweep, sweep_table, trial_table
from sentiment.model.recipes import recipe_for

POOLINGS = ("head", "mean")


def trials(backbone: str, seeds: list[int], poolings=POOLINGS) -> list[Trial]:
    """The backbone's own recipe with each pooling, seed by seed."""
    _, recipe = recipe_for(backbone)
    return [Trial(**asdict(recipe), pooling=pooling, seed=seed) for seed in seeds for pooling in poolings]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--splits", required=True, help="the folder `benchmarks.recipes --write-splits` wrote")
    parser.add_argument("--backbone", default="mpnet", help="backbone name or folder; its recipe is used "
                                                            "(default: %(default)s)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 43], help="seeds (default: %(default)s)")
    parser.add_argument("--poolings", nargs="+", choices=POOLINGS, default=list(POOLINGS),
                        help="heads to train, each seed (default: %(default)s)")
    parser.add_argument("--processes", type=int, default=2, help="trials run at once (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (default: %(default)s)")
    parser.add_argument("--results", default="pooling.jsonl", help="JSON lines, appended per trial "
                                                                  "(default: %(default)s)")
    args = parser.parse_args()
    results = run_sweep(trials(args.backbone, args.seeds, args.poolings), args.splits, args.backbone,
                        args.processes, args.results, args.threads)
    print(trial_table(results, "pooling"))
    print(sweep_table(summarize_sweep(results)))  # each pooling's mean ± sd over the seeds


if __name__ == "__main__":
    main()
