"""Weight averaging ("model soup"): several fine-tuned copies of one backbone, averaged parameter
by parameter into one model, and each of them and the average scored on the held-out splits.

Fine-tuned runs that start from the same pretrained weights (other seeds or recipes, or two
checkpoints of one run) usually stay in one basin, so their average is itself a good model, often
better than each. Unlike a logit ensemble it costs one model's inference and stays a plain
HF sequence classifier of the same architecture that `transformers.pipeline` loads (issue 13's lever list).
"""

from __future__ import annotations

import os

from sentiment.data.labels import LABELS
from sentiment.train.metrics import per_class_f1

HELD_OUT = ("validation", "test")


def average_weights(models: list[tuple[str, object]]):
    """A new model whose every floating-point parameter and buffer is the uniform mean of the
    given (name, classifier) pairs' (the names are for errors). The members stay as they were.

    Raises:
        ValueError: fewer than two models, or models whose parameters differ in name or shape
            (not copies of one architecture).
    """
    import copy

    import torch

    if len(models) < 2:
        raise ValueError("averaging needs at least two models")
    (first_name, first), others = models[0], models[1:]
    shapes = {name: tuple(w.shape) for name, w in first.state_dict().items()}
    total = {name: w.double() for name, w in first.state_dict().items() if w.is_floating_point()}
    for name, model in others:
        weights = model.state_dict()
        if {key: tuple(w.shape) for key, w in weights.items()} != shapes:
            raise ValueError(f"{name} is not the same architecture as {first_name}: its parameters differ")
        for key in total:
            total[key] += weights[key].double()
    soup = copy.deepcopy(first)
    with torch.no_grad():
        state = soup.state_dict()
        for key, summed in total.items():
            state[key].copy_((summed / len(models)).to(state[key].dtype))
    return soup


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
