"""Training throughput: one epoch of labeled data per batch size, through the real Ray Train loop.

Prints, per batch size: seconds per epoch (training part, and with validation), seconds spent
compiling (--compile), reviews/s overall, in steady state (the steps that compiled left out) and
per worker, and MFU on a GPU (3x forward matmul FLOPs of the real, unpadded tokens over the
device's measured bf16 matmul peak). Data prep runs once, not per batch size.

On a GPU, bert-base size (BertConfig() defaults, random weights: speed does not depend on them):

    # here, once: the gpu kit, and the MiniLM tokenizer as files (the package is not on the device)
    ../shared/tools/gpu-kit && python -m benchmarks.training --export-tokenizer .bench-tokenizer
    # the device call: carry [".gpukit", ".bench-tokenizer"]
    source .gpukit/setup.sh && python -m benchmarks.training --data ../shared/data/labeled \\
        --size bert-base --tokenizer .bench-tokenizer --gpu --batch-sizes 16 32 --json $OUT/training.json

Compiled against eager (issue 26; BENCHMARKS.md, "GPU training", has the exact device call):

    python -m benchmarks.training ... --gpu --batch-sizes 32 128 --compile off
    python -m benchmarks.training ... --gpu --batch-sizes 32 128 --compile on

On CPU, a smoke run (tiny model, a subset):

    python -m benchmarks.training --data ../shared/data/labeled --size tiny --limit 400 --batch-sizes 16
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

from sentiment.cluster.connect import ensure_connected

SIZES = ("tiny", "minilm", "bert-base")


def save_backbone(directory: str, size: str, tokenizer: str) -> str:
    """A backbone folder for `size` with random weights (minilm: the packaged pretrained one)."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from sentiment.model.classifier import resolve_backbone

    if size == "minilm":
        return resolve_backbone("minilm")
    config = BertConfig() if size == "bert-base" else BertConfig(hidden_size=32, num_hidden_layers=2,
                                                                 num_attention_heads=2, intermediate_size=64)
    BertModel(config).save_pretrained(directory, safe_serialization=True)
    AutoTokenizer.from_pretrained(resolve_backbone(tokenizer)).save_pretrained(directory)
    return directory


def run(args) -> list[dict]:
    """Prepare the splits once, then train one run per batch size; returns one row per run."""
    from sentiment.data.labeled import prepare_splits
    from sentiment.train.driver import TrainConfig, build_trainer

    workdir = tempfile.mkdtemp(prefix="benchmark-training-")
    backbone = save_backbone(os.path.join(workdir, "backbone"), args.size, args.tokenizer)
    ensure_connected()
    started = time.time()
    base = TrainConfig(data=args.data, output=os.path.join(workdir, "out"), model=backbone, epochs=args.epochs,
                       lr=2e-5, warmup_fraction=0.0, num_workers=args.num_workers, use_gpu=args.gpu,
                       cpus_per_worker=args.cpus_per_worker, compile=args.compile, limit=args.limit)
    splits = prepare_splits(base.data, base.text_column, base.score_column, seed=base.split_seed, shuffle_seed=base.seed,
                            val_fraction=base.val_fraction, test_fraction=base.test_fraction, limit=base.limit)
    print(f"data prep {time.time() - started:.1f}s: {splits.counts}", flush=True)
    rows = []
    for batch_size in args.batch_sizes:
        config = TrainConfig(**{**base.__dict__, "batch_size": batch_size,
                                "run_name": f"bench-b{batch_size}-{time.strftime('%H%M%S')}"}).resolved()
        config.validate()
        result = build_trainer(config, splits).fit()
        last = result.metrics
        rows.append({"batch_size": batch_size, "workers": config.num_workers, "train_rows": splits.counts["train"],
                     "compile": args.compile,
                     **{k: last.get(k) for k in ("train_seconds", "epoch_seconds", "compile_seconds",
                                                 "train_reviews_per_second", "train_steady_reviews_per_second",
                                                 "train_reviews_per_second_per_worker", "train_tokens_per_review",
                                                 "mfu", "peak_tflops_per_worker", "train_loss", "val_accuracy")}})
        # Each run's row as soon as it exists: a device call cut off by its time limit keeps the
        # batch sizes that finished.
        print(format_table(rows[-1:], args.size, "GPU" if args.gpu else "CPU"), flush=True)
        if args.json:
            write_json(args.json, rows)
    return rows


def write_json(path: str, rows: list[dict]) -> None:
    with open(path, "w") as f:
        json.dump(rows, f, indent=2)


def format_table(rows: list[dict], size: str, device: str) -> str:
    lines = [f"training, {size} size, {device}, last epoch of each run",
             "| batch/worker | workers | --compile | train rows | s/epoch (train) | s/epoch (+val) | compile s | "
             "reviews/s | steady reviews/s | per worker | MFU | train loss |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        mfu = f"{r['mfu']:.1%}" if r.get("mfu") is not None else "n/a (CPU)"
        lines.append(f"| {r['batch_size']} | {r['workers']} | {r['compile']} | {r['train_rows']} | "
                     f"{r['train_seconds']:.1f} | {r['epoch_seconds']:.1f} | {r['compile_seconds']:.1f} | "
                     f"{r['train_reviews_per_second']:.1f} | {r['train_steady_reviews_per_second']:.1f} | "
                     f"{r['train_reviews_per_second_per_worker']:.1f} | {mfu} | {r['train_loss']:.4f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.training", description=__doc__.splitlines()[0],
                                     epilog=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", default=["../shared/data/labeled"], metavar="PATH")
    parser.add_argument("--size", choices=SIZES, default="bert-base", help="default: %(default)s")
    parser.add_argument("--tokenizer", default="minilm", help="'minilm' (the package) or a tokenizer folder")
    parser.add_argument("--export-tokenizer", metavar="DIR", help="save the MiniLM tokenizer files to DIR and exit")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--epochs", type=int, default=1, help="epochs per run; the table shows the last (default: 1)")
    parser.add_argument("--num-workers", type=int, default=1)
    parser.add_argument("--cpus-per-worker", type=int, default=None)
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                        help="as `sentiment train --compile` (default: %(default)s); compile time lands in the "
                             "first epoch and is shown apart")
    parser.add_argument("--limit", type=int, default=None, help="a seeded random sample of N rows")
    parser.add_argument("--json", default=None, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    if args.export_tokenizer:
        from transformers import AutoTokenizer

        from sentiment.model.classifier import resolve_backbone

        AutoTokenizer.from_pretrained(resolve_backbone("minilm")).save_pretrained(args.export_tokenizer)
        return 0
    rows = run(args)
    print(format_table(rows, args.size, "GPU" if args.gpu else "CPU"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
