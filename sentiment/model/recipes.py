"""Default training recipes per backbone: what --lr, --warmup-fraction, --epochs, --batch-size
and --label-smoothing mean when they are not given.

The reference recipe (AdamW at 2e-5, no warmup, 3 epochs, batch 16 per worker) was written for
bert-base-cased and stays the default for hub models and local folders. The offline MiniLM has
its own entry, tuned on the validation split (never on test; BENCHMARKS.md, "Model quality"):
a small model fine-tunes best at a higher rate. On a seeded 5,000-row sample, one epoch, the
same validation rows: lr 1e-4 with 10% warmup reached validation accuracy 0.657 and macro-F1
0.659, the reference 0.552 and 0.492. Batch 32: in a sweep of 11 settings with 3-4 seeds each
on all labeled data it had the best mean validation accuracy (0.693 against 0.681 at batch 16),
and it steps half as often, which is 10% faster on 2 CPUs and 1.5x on a GPU.

The offline all-mpnet-base-v2 (`--model mpnet`) keeps the reference rate but trains one epoch:
with 3 epochs both seeds chose epoch 1 (validation accuracy 0.712 and 0.698) and then overfit,
and one epoch with the rate decayed to 0 within it reached 0.714 and 0.701 (mean 0.708 against
0.705) in a third of the time (all labeled data, seeds 42 and 43, the same validation rows).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

from sentiment.model.classifier import DEFAULT_BACKBONE, MPNET_BACKBONE


@dataclass(frozen=True)
class Recipe:
    lr: float
    warmup_fraction: float
    epochs: int
    batch_size: int
    label_smoothing: float = 0.0


REFERENCE = Recipe(lr=2e-5, warmup_fraction=0.0, epochs=3, batch_size=16)
RECIPES = {DEFAULT_BACKBONE: Recipe(lr=1e-4, warmup_fraction=0.1, epochs=3, batch_size=32),
           MPNET_BACKBONE: Recipe(lr=2e-5, warmup_fraction=0.0, epochs=1, batch_size=16)}
HYPERPARAMETERS = tuple(Recipe.__dataclass_fields__)


def recipe_for(backbone: str) -> tuple[str, Recipe]:
    """(name, recipe) for a --model value: its own entry; for a folder `sentiment adapt` wrote,
    the entry of the backbone it adapted; else the reference recipe."""
    if backbone in RECIPES:
        return backbone, RECIPES[backbone]
    adapted_from = _adapted_from(backbone)
    if adapted_from:
        return recipe_for(adapted_from)
    return "reference", REFERENCE


def _adapted_from(backbone: str) -> str | None:
    # Adaptation moves the weights a little, not the size of the model a recipe was tuned for.
    metrics = os.path.join(os.path.expanduser(backbone), "metrics.json")
    if not os.path.isfile(metrics):
        return None
    with open(metrics) as file:
        return json.load(file).get("adapted_from")


def describe_recipes() -> str:
    """One line per recipe, for --help."""
    entries = [(f"--model {name}", recipe) for name, recipe in RECIPES.items()] + [("other backbones", REFERENCE)]
    return "; ".join(f"{who}: " + ", ".join(f"{k.replace('_', '-')} {v}" for k, v in asdict(recipe).items())
                     for who, recipe in entries)
