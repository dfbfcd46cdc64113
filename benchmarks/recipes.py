"""Recipe sweep for the default backbone: many seeded trainings on `sentiment train`'s own splits,
in parallel processes on one device (on an H200, 12 at once, a 3-epoch MiniLM trial takes 1-2
minutes), and a table of mean ± sd over seeds per setting. Recipes are chosen on the validation
columns only; each trial's test numbers are read at the epoch validation chose.

    # here, once: the splits `sentiment train` makes of all labeled data
    python -m benchmarks.recipes --write-splits /tmp/splits --data ../shared/data/labeled
    # run the grid (benchmarks.lib.recipe_sweep.SETTINGS), 3 seeds each
    python -m benchmarks.recipes --splits /tmp/splits --seeds 3 --processes 8 --results sweep.jsonl
    # the table of a results file
    python -m benchmarks.recipes --summarize sweep.jsonl

For a GPU machine without the MiniLM package, carry the splits and an fp16 copy of the backbone
(`--export-backbone DIR`, half the bytes; trials train it in fp32 again) and pass `--backbone DIR`.
BENCHMARKS.md ("Recipe sweep on a GPU") has the exact device call.
"""

from __future__ import annotations

import argparse
import json

from benchmarks.lib.recipe_sweep import (SETTINGS, export_backbone_fp16, grid, run_sweep, summarize_sweep,
                                          sweep_table, write_splits)
from sentiment.model.classifier import DEFAULT_BACKBONE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write-splits", metavar="DIR", help="write the train/validation/test splits of --data to DIR")
    action.add_argument("--splits", metavar="DIR", help="run the grid on the splits in DIR")
    action.add_argument("--summarize", metavar="JSONL", help="print the table of a results file")
    action.add_argument("--export-backbone", metavar="DIR", help="write --backbone with fp16 weights to DIR (to carry)")
    parser.add_argument("--data", nargs="+", help="labeled files or folders (with --write-splits)")
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE, help="backbone name or folder (default: %(default)s)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per setting (default: %(default)s)")
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), metavar="NAME",
                        help=f"only these settings, of: {', '.join(map(repr, SETTINGS))} (default: all)")
    parser.add_argument("--processes", type=int, default=4, help="trials run at once (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (default: %(default)s)")
    parser.add_argument("--deadline", type=float, default=None, metavar="SECONDS",
                        help="start no trial after this many seconds (default: none)")
    parser.add_argument("--results", default="sweep.jsonl", help="JSON lines, appended per trial (default: %(default)s)")
    parser.add_argument("--select-metric", default="accuracy", choices=("accuracy", "macro_f1"),
                        help="how each trial's best epoch is chosen in the table (default: %(default)s)")
    args = parser.parse_args()
    if args.write_splits:
        if not args.data:
            parser.error("--write-splits needs --data")
        print(json.dumps(write_splits(args.data, args.write_splits)))
    elif args.export_backbone:
        export_backbone_fp16(args.backbone, args.export_backbone)
    elif args.splits:
        settings = {name: SETTINGS[name] for name in args.settings} if args.settings else SETTINGS
        results = run_sweep(grid(args.seeds, settings), args.splits, args.backbone, args.processes, args.results,
                            args.threads, args.deadline)
        print(sweep_table(summarize_sweep(results, args.select_metric)))
    else:
        with open(args.summarize) as f:
            results = [json.loads(line) for line in f if line.strip()]
        print(sweep_table(summarize_sweep(results, args.select_metric)))


if __name__ == "__main__":
    main()
