"""Does an auxiliary 5-star loss lift the 3-class classifier? (issue 23)

The labels are 1-5 star scores collapsed to three classes, so training on the classes throws away
which negative review was a 1 and which a 2. This trains the usual classifier with a second linear
head beside the 3-class one, on the same input (the head's own pooled features), predicting the
star itself: loss = cross-entropy over the 3 classes + WEIGHT x cross-entropy over the 5 stars.
The star head is for training only; validation and test are scored through the 3-class head, as
`sentiment train` would ship it. WEIGHT 0 is the baseline, trained by the same loop in the same run.

    python -m benchmarks.recipes --write-splits /tmp/splits --data ../shared/data/labeled
    python -m benchmarks.star_loss --splits /tmp/splits --data ../shared/data/labeled \\
        --backbone minilm --weights 0 1 --seed 42 --results star.jsonl

The splits keep texts and classes only; each row's star is found again in --data by its text and
class (the most common star where a text recurs). The loop is the recipe sweep's
(benchmarks.lib.recipe_sweep.run_trial) with the star head added: `sentiment train`'s batches,
AdamW, schedule, clipping and autocast, without Ray. One process per weight, side by side.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import numpy as np
import pandas as pd

from benchmarks.lib.recipe_sweep import EVAL_BATCH_SIZE, SPLITS, split_batches
from sentiment.train.metrics import classification_metrics
from sentiment.train.stats import selection_score

STAR_TO_CLASS = (0, 0, 1, 2, 2)  # star 1..5 (as 0..4) to negative / neutral / positive


def add_stars(splits_dir: str, data: list[str], text_column: str = "content", score_column: str = "score") -> dict:
    """Write <split>-stars.parquet beside each split (columns text, label, star 1-5); returns the
    number of rows per split whose star was not found (given the middle star of their class)."""
    import glob

    files = [f for path in data for f in (sorted(glob.glob(os.path.join(path, "*"))) if os.path.isdir(path) else [path])]
    raw = pd.concat([(pd.read_parquet(f) if f.endswith(".parquet") else pd.read_csv(f))[[text_column, score_column]]
                     for f in files])
    raw = raw.rename(columns={text_column: "text", score_column: "star"}).dropna()
    raw = raw[raw["star"].isin([1, 2, 3, 4, 5])].astype({"text": str, "star": int})
    raw["label"] = raw["star"].map(lambda star: STAR_TO_CLASS[star - 1])
    stars = raw.groupby(["text", "label"])["star"].agg(lambda s: s.mode().iloc[0]).reset_index()
    missing = {}
    for name in SPLITS:
        frame = pd.read_parquet(os.path.join(splits_dir, f"{name}.parquet"))
        joined = frame.merge(stars, on=["text", "label"], how="left")
        missing[name] = int(joined["star"].isna().sum())
        joined["star"] = joined["star"].fillna(joined["label"].map({0: 1, 1: 3, 2: 5})).astype(int)
        joined[["text", "label", "star"]].to_parquet(os.path.join(splits_dir, f"{name}-stars.parquet"))
    return missing


def run_trial(splits_dir: str, backbone: str, weight: float, seed: int, threads: int) -> dict:
    """Train backbone with its recipe and the star head at `weight`; per-epoch validation and test."""
    import torch

    from sentiment.model.classifier import build_classifier
    from sentiment.model.recipes import recipe_for
    from sentiment.train.step import autocast_dtype, optimizer_and_schedule

    torch.set_num_threads(threads)
    started = time.time()
    _, recipe = recipe_for(backbone)
    frames = {name: pd.read_parquet(os.path.join(splits_dir, f"{name}-stars.parquet")) for name in SPLITS}
    for frame in frames.values():  # split_batches carries "label": here the star, 0-4
        frame["label"] = frame["star"] - 1
    torch.manual_seed(seed)
    model, tokenizer = build_classifier(backbone)
    model = model.float()
    # The 3-class head's last linear layer (BERT: classifier; RoBERTa, MPNet: classifier.out_proj)
    # sees the features the star head is given too.
    head = getattr(model.classifier, "out_proj", model.classifier)
    features = {}
    head.register_forward_pre_hook(lambda module, args: features.__setitem__("x", args[0]))
    model.star_head = torch.nn.Linear(head.in_features, 5)  # a submodule, so the optimizer trains it
    to_class = torch.tensor(STAR_TO_CLASS)
    device = torch.device("cpu")
    amp_dtype = autocast_dtype(device)
    steps = math.ceil(len(frames["train"]) / recipe.batch_size) * recipe.epochs
    optimizer, scheduler = optimizer_and_schedule(model, lr=recipe.lr, layer_decay=1.0,
                                                  warmup_fraction=recipe.warmup_fraction, total_steps=steps,
                                                  device=device)
    held_out = {name: split_batches(tokenizer, frames[name], EVAL_BATCH_SIZE, 0, None, False)
                for name in ("validation", "test")}

    def autocast():
        return torch.autocast("cpu", dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None)

    def scored(batches) -> dict:
        model.eval()
        predicted, labels, loss_sum = [], [], 0.0
        with torch.no_grad(), autocast():
            for batch in batches:
                batch = dict(batch)
                labels.append(to_class[batch.pop("labels")])
                logits = model(**batch).logits.float()
                loss_sum += torch.nn.functional.cross_entropy(logits, labels[-1], reduction="sum").item()
                predicted.append(logits.argmax(-1))
        labels = torch.cat(labels).numpy()
        return {**classification_metrics(labels, torch.cat(predicted).numpy()), "loss": loss_sum / len(labels)}

    history = []
    for epoch in range(recipe.epochs):
        model.train()
        order = np.random.default_rng([seed, epoch]).permutation(len(frames["train"]))
        loss_sum, rows = 0.0, 0
        for batch in split_batches(tokenizer, frames["train"].iloc[order], recipe.batch_size, seed + epoch, None,
                                   False):
            stars = batch.pop("labels")
            with autocast():
                logits = model(**batch).logits
                star_logits = model.star_head(features["x"])
            loss = torch.nn.functional.cross_entropy(logits.float(), to_class[stars])
            if weight:
                loss = loss + weight * torch.nn.functional.cross_entropy(star_logits.float(), stars)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
            optimizer.step()
            scheduler.step()
            loss_sum, rows = loss_sum + loss.item() * len(stars), rows + len(stars)
        record = {"epoch": epoch + 1, "train_loss": loss_sum / rows, "seconds": time.time() - started,
                  **{f"{prefix}_{key}": value for name, prefix in (("validation", "val"), ("test", "test"))
                     for key, value in scored(held_out[name]).items()}}
        print(f"weight {weight} seed {seed} epoch {epoch + 1}: val acc {record['val_accuracy']:.3f}, "
              f"test acc {record['test_accuracy']:.3f} ({record['seconds']:.0f} s)", flush=True)
        history.append(record)
    return {"backbone": backbone, "weight": weight, "seed": seed, "recipe": recipe.__dict__, "history": history}


def best_epoch(result: dict) -> dict:
    """The epoch validation chooses, by `sentiment train`'s rule."""
    return max(result["history"], key=lambda m: selection_score(m, "accuracy"))


def table(results: list[dict]) -> str:
    rows = ["| backbone | star weight | seed | chosen epoch | val acc | val macro-F1 | test acc | test macro-F1 | "
            "test F1 neg / neu / pos |", "|---|---|---|---|---|---|---|---|---|"]
    for result in sorted(results, key=lambda r: (r["backbone"], r["seed"], r["weight"])):
        best = best_epoch(result)
        per_class = " / ".join(f"{c['f1']:.3f}" for c in best["test_per_class"].values())
        rows.append(f"| {result['backbone']} | {result['weight']:g} | {result['seed']} | {best['epoch']} | "
                    f"{best['val_accuracy']:.3f} | {best['val_macro_f1']:.3f} | {best['test_accuracy']:.3f} | "
                    f"{best['test_macro_f1']:.3f} | {per_class} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--splits", required=True, help="the folder `benchmarks.recipes --write-splits` wrote")
    parser.add_argument("--data", nargs="+", required=True, help="the labeled files the splits were made of")
    parser.add_argument("--backbone", default="minilm", help="backbone (default: %(default)s); its recipe is used")
    parser.add_argument("--weights", nargs="+", type=float, default=[0.0, 1.0],
                        help="star-loss weights, one process each; 0 is the baseline (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=42, help="initialisation and data order (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (default: %(default)s)")
    parser.add_argument("--results", default="star_loss.jsonl", help="JSON lines, appended (default: %(default)s)")
    args = parser.parse_args()
    missing = add_stars(args.splits, args.data)
    print(f"rows whose star was not found again, per split: {missing}", flush=True)
    with ProcessPoolExecutor(len(args.weights), mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(run_trial, args.splits, args.backbone, weight, args.seed, args.threads)
                   for weight in args.weights]
        results = [future.result() for future in futures]
    with open(args.results, "a") as file:
        for result in results:
            file.write(json.dumps(result) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
