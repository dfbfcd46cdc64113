"""Weight averaging ("model soup"): several fine-tuned copies of one backbone, averaged parameter
by parameter into one model.

Fine-tuned runs that start from the same pretrained weights (other seeds or recipes, or two
checkpoints of one run) usually stay in one basin, so their average is itself a good model, often
better than each. Unlike a logit ensemble it costs one model's inference and stays a plain
HF sequence classifier of the same architecture that `transformers.pipeline` loads.
"""

from __future__ import annotations


class WeightSum:
    """A running float64 sum of the floating-point parameters and buffers of classifiers of one
    architecture, added one at a time: averaging N models holds one of them and the sum (twice
    one model's fp32 size), not all N at once."""

    def __init__(self) -> None:
        self.total: dict | None = None
        self.shapes: dict | None = None
        self.first_name = ""
        self.count = 0

    def add(self, name: str, model) -> None:
        """Add model's weights (name is for errors). The model is left as it was.

        Raises:
            ValueError: its parameters differ in name or shape from the first model's.
        """
        weights = model.state_dict()
        shapes = {key: tuple(w.shape) for key, w in weights.items()}
        if self.total is None:
            self.shapes, self.first_name = shapes, name
            self.total = {key: w.double() for key, w in weights.items() if w.is_floating_point()}
        elif shapes != self.shapes:
            raise ValueError(f"{name} is not the same architecture as {self.first_name}: its parameters differ")
        else:
            for key in self.total:
                self.total[key] += weights[key].double()
        self.count += 1

    def mean_into(self, model):
        """model, one of the same architecture, with every floating-point weight set to the mean
        of those added (in place; its other buffers are kept); returns it.

        Raises:
            ValueError: fewer than two models were added.
        """
        import torch

        if self.count < 2:
            raise ValueError("averaging needs at least two models")
        with torch.no_grad():
            state = model.state_dict()
            for key, summed in self.total.items():
                state[key].copy_((summed / self.count).to(state[key].dtype))
        return model


def average_weights(models: list[tuple[str, object]]):
    """A new model whose every floating-point parameter and buffer is the uniform mean of the
    given (name, classifier) pairs' (the names are for errors). The members stay as they were.

    Raises:
        ValueError: fewer than two models, or models whose parameters differ in name or shape
            (not copies of one architecture).
    """
    import copy

    if len(models) < 2:
        raise ValueError("averaging needs at least two models")
    weights = WeightSum()
    for name, model in models:
        weights.add(name, model)
    return weights.mean_into(copy.deepcopy(models[0][1]))
