"""Weight averaging ("model soup"): several fine-tuned copies of one backbone, averaged parameter
by parameter into one model.

Fine-tuned runs that start from the same pretrained weights (other seeds or recipes, or two
checkpoints of one run) usually stay in one basin, so their average is itself a good model, often
better than each. Unlike a logit ensemble it costs one model's inference and stays a plain
HF sequence classifier of the same architecture that `transformers.pipeline` loads.
"""

from __future__ import annotations


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
