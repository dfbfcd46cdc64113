"""Weight averaging ("model soup"): several fine-tuned copies of one backbone, averaged parameter
by parameter into one model, and each of them and the average scored on the held-out splits.

Fine-tuned runs that start from the same pretrained weights (other seeds or recipes, or two
checkpoints of one run) usually stay in one basin, so their average is itself a good model, often
better than each. Unlike a logit ensemble it costs one model's inference and stays a plain
BertForSequenceClassification that `transformers.pipeline` loads (issue 13's lever list).
"""

from __future__ import annotations

import os

from sentiment.labels import LABELS
from sentiment.train_stats import per_class_f1

HELD_OUT = ("validation", "test")


def average_weights(model_dirs: list[str]):
    """The uniform average of the classifiers in model_dirs, and the first one's tokenizer.

    Raises:
        ValueError: fewer than two models, or models whose parameters differ in name or shape
            (not copies of one architecture).
    """
    import torch

    from sentiment.model import load_classifier

    if len(model_dirs) < 2:
        raise ValueError("averaging needs at least two models")
    soup, tokenizer = load_classifier(model_dirs[0])
    total = {name: value.double() for name, value in soup.state_dict().items() if value.is_floating_point()}
    for directory in model_dirs[1:]:
        weights = load_classifier(directory)[0].state_dict()
        if {name: tuple(w.shape) for name, w in weights.items()} != {name: tuple(w.shape) for name, w in soup.state_dict().items()}:
            raise ValueError(f"{directory} is not the same architecture as {model_dirs[0]}: its parameters differ")
        for name in total:
            total[name] += weights[name].double()
    with torch.no_grad():
        state = soup.state_dict()
        for name, summed in total.items():
            state[name].copy_((summed / len(model_dirs)).to(state[name].dtype))
    return soup, tokenizer


def score_held_out(model, tokenizer, splits_dir: str) -> dict:
    """Accuracy, macro-F1, per-class F1 and the confusion matrix of model on the validation and
    test splits in splits_dir (as written by recipe_sweep.write_splits), on CPU in fp32."""
    import pandas as pd
    import torch

    from sentiment.bench.recipe_sweep import EVAL_BATCH_SIZE, split_batches
    from sentiment.train_steps import run_epoch

    scores = {}
    for split in HELD_OUT:
        frame = pd.read_parquet(os.path.join(splits_dir, f"{split}.parquet"))
        batches = split_batches(tokenizer, frame, EVAL_BATCH_SIZE, 0, None, False)
        metrics = run_epoch(model.float(), batches, torch.device("cpu"))
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
