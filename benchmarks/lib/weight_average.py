"""Weight averaging for benchmarks/soup.py: each member and their average (sentiment.model.average)
scored on held-out splits written by benchmarks.recipes --write-splits, and a table of them."""

from __future__ import annotations

import os

from sentiment.data.labels import LABELS
from sentiment.train.metrics import per_class_f1

HELD_OUT = ("validation", "test")


def score_held_out(model, tokenizer, splits_dir: str) -> dict:
    """Accuracy, macro-F1, per-class F1 and the confusion matrix of model on the validation and
    test splits in splits_dir (as written by recipe_sweep.write_splits), on CPU in fp32."""
    import pandas as pd
    import torch

    from benchmarks.lib.recipe_sweep import EVAL_BATCH_SIZE, split_batches
    from sentiment.train.step import run_epoch

    model = model.float()
    scores = {}
    for split in HELD_OUT:
        frame = pd.read_parquet(os.path.join(splits_dir, f"{split}.parquet"))
        batches = split_batches(tokenizer, frame, EVAL_BATCH_SIZE, 0, None, False)
        metrics = run_epoch(model, batches, torch.device("cpu"))
        metrics["f1"] = dict(zip(LABELS, per_class_f1(metrics["confusion_matrix"]).tolist()))
        scores[split] = metrics
    return scores


def soup_table(rows: list[tuple[str, dict]]) -> str:
    """Markdown, one line per (name, score_held_out result)."""
    lines = ["| model | val acc | val macro-F1 | test acc | test macro-F1 | test F1 neg / neu / pos | test confusion (rows true) |",
             "|---|---|---|---|---|---|---|"]
    for name, scores in rows:
        val, test = scores["validation"], scores["test"]
        f1 = " / ".join(f"{test['f1'][label]:.3f}" for label in LABELS)
        lines.append(f"| {name} | {val['accuracy']:.3f} | {val['macro_f1']:.3f} | {test['accuracy']:.3f} | "
                     f"{test['macro_f1']:.3f} | {f1} | {test['confusion_matrix']} |")
    return "\n".join(lines)
