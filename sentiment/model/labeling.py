"""Predicted classes, and the first model's confidence in them, for datasets of labeled reviews
(evaluate, train's held-out splits, average): in the driver's own process when they are small and
on CPU, else in one Ray Data actor that holds the model (or, for `evaluate --baseline`, both
models, so they see the very same rows)."""

from __future__ import annotations

import logging

import numpy as np
import ray

from sentiment.cluster.resources import largest_node_cpus, require
from sentiment.io.storage import absolute_uri
from sentiment.model.classifier import DEFAULT_MAX_LENGTH
from sentiment.progress import DEFAULT_PROGRESS_EVERY_S, RowProgress

log = logging.getLogger(__name__)
# A "scored N of M rows" line this often while the actor scores: a million held-out reviews keep
# one CPU actor busy for the better part of an hour, and nothing else is printed meanwhile.
PROGRESS_EVERY_S = DEFAULT_PROGRESS_EVERY_S


def _pred_column(index: int) -> str:
    """The column of the index-th model's predicted class ids: `pred`, then `pred_1`, ..."""
    return "pred" if index == 0 else f"pred_{index}"


# The first model's probability of the class it predicted, per row: what calibration is measured on.
CONFIDENCE_COLUMN = "confidence"


class _LabelPredictor:
    """Ray Data actor: loads the models once, maps {text, label, ...} batches to {label, pred, ...}
    (pred_1, ... for the second model on: `evaluate --baseline` compares two on the very same rows)
    and the first model's confidence: every column but the text comes back, so a tag column says
    which split a row is from."""

    def __init__(self, model_uris: list[str], batch_size: int | None, max_length: int, use_gpu: bool, threads: int,
                 precision: str, tokens_per_batch: int | None = None):
        import torch

        from sentiment.model.predictor import Predictor, pick_device

        torch.set_num_threads(threads)
        self.predictors = [Predictor(uri, device=pick_device(use_gpu), batch_size=batch_size, max_length=max_length,
                                     precision=precision, tokens_per_batch=tokens_per_batch) for uri in model_uris]

    def __call__(self, batch: dict) -> dict:
        out = {name: values for name, values in batch.items() if name != "text"}
        texts = batch["text"].tolist()
        for index, predictor in enumerate(self.predictors):
            probabilities = predictor.predict_proba(texts)
            out[_pred_column(index)] = probabilities.argmax(axis=1)
            if index == 0:
                out[CONFIDENCE_COLUMN] = probabilities.max(axis=1).astype(np.float32)
        return out


# Datasets of at most this many rows are scored in the driver's own process when no GPU is asked
# for: an actor of their own starts a process, loads the model and runs a Ray Data pipeline, 9 s
# on 2 cores for the 30 held-out rows of a 300-review training run, to do what the driver does in
# under a second. 2,000 rows of MiniLM take the driver a few seconds on one core.
IN_DRIVER_MAX_ROWS = 2_000


def predict_labels(dataset: ray.data.Dataset, model_uri: str, *, rows: int | None = None,
                   batch_size: int | None = None, max_length: int = DEFAULT_MAX_LENGTH, use_gpu: bool = False,
                   precision: str = "auto", tokens_per_batch: int | None = None,
                   with_group: bool = False, baseline_uri: str | None = None,
                   with_confidence: bool = False) -> tuple[np.ndarray, ...]:
    """True and predicted class ids for a dataset with columns text and label, in one order: with
    baseline_uri, the baseline model's predictions of the same rows next, with with_group the
    `group` column (read_labeled's --by values), and with with_confidence the model's probability
    of the class it predicted, last.

    In the driver when it is small and on CPU (IN_DRIVER_MAX_ROWS; `rows`, when the caller knows
    the dataset's row count, spares counting it). Else one actor, with torch threads for every core
    of the largest node; it reserves one CPU fewer so Ray Data's read and filter tasks can still run
    beside it. Only the small integer columns, and one float32 confidence, come back to the driver.
    """
    options = {"batch_size": batch_size, "max_length": max_length, "use_gpu": use_gpu, "precision": precision,
               "tokens_per_batch": tokens_per_batch}
    models = [model_uri, *([baseline_uri] if baseline_uri else [])]
    rows = dataset.count() if rows is None else rows
    if not use_gpu and rows <= IN_DRIVER_MAX_ROWS:
        return _predict_in_driver({"all": dataset}, models, with_group=with_group, with_confidence=with_confidence,
                                  **options)["all"]
    frame = _predictions(dataset, models, rows=rows, **options)  # every column but the text comes back
    return (frame["label"].to_numpy(), *(frame[_pred_column(i)].to_numpy() for i in range(len(models))),
            *([frame["group"].to_numpy()] if with_group else []),
            *([frame[CONFIDENCE_COLUMN].to_numpy()] if with_confidence else []))


def predict_labels_of_splits(splits: dict[str, ray.data.Dataset], model_uri: str, *, with_confidence: bool = False,
                             **options) -> dict[str, tuple]:
    """predict_labels for several datasets in one pass: the model is loaded once for all, in the
    driver when they are small and on CPU (IN_DRIVER_MAX_ROWS), else in one Ray Data actor.

    Returns:
        split name -> (true class ids, predicted class ids[, the model's probability of the class it
        predicted, with with_confidence]), each in the order rows came back.
    """
    import pandas as pd

    rows = sum(dataset.count() for dataset in splits.values())
    if not options.get("use_gpu") and rows <= IN_DRIVER_MAX_ROWS:
        return _predict_in_driver(splits, [model_uri], with_confidence=with_confidence, **options)

    def tagged(dataset: ray.data.Dataset, name: str) -> ray.data.Dataset:
        return dataset.add_column("split", lambda batch: pd.Series(name, index=batch.index), batch_format="pandas")

    names = list(splits)
    datasets = [tagged(splits[name], name) for name in names]
    frame = _predictions(datasets[0].union(*datasets[1:]) if len(datasets) > 1 else datasets[0], [model_uri],
                         rows=rows, **options)
    return {name: tuple(frame.loc[frame["split"] == name, column].to_numpy()
                        for column in ("label", "pred", *([CONFIDENCE_COLUMN] if with_confidence else [])))
            for name in names}


def _predict_in_driver(splits: dict[str, ray.data.Dataset], model_uris: list[str], *, batch_size: int | None = None,
                       max_length: int = DEFAULT_MAX_LENGTH, use_gpu: bool = False, precision: str = "auto",
                       tokens_per_batch: int | None = None, with_group: bool = False,
                       with_confidence: bool = False) -> dict[str, tuple]:
    from sentiment.model.predictor import Predictor, pick_device

    frames = {name: dataset.select_columns(["text", "label", *(["group"] if with_group else [])]).to_pandas()
              for name, dataset in splits.items()}
    predicted: dict[str, list] = {name: [] for name in splits}
    confidence: dict[str, np.ndarray] = {}
    for uri in model_uris:  # one model in memory at a time
        predictor = Predictor(uri, device=pick_device(use_gpu), batch_size=batch_size, max_length=max_length,
                              precision=precision, tokens_per_batch=tokens_per_batch)
        for name, frame in frames.items():
            probabilities = predictor.predict_proba(frame["text"].tolist())
            predicted[name].append(probabilities.argmax(axis=1))
            confidence.setdefault(name, probabilities.max(axis=1).astype(np.float32))
        del predictor
    return {name: (frame["label"].to_numpy(), *predicted[name], *([frame["group"].to_numpy()] if with_group else []),
                   *([confidence[name]] if with_confidence else [])) for name, frame in frames.items()}


def _predictions(dataset: ray.data.Dataset, model_uris: list[str], *, rows: int, batch_size: int | None = None,
                 max_length: int = DEFAULT_MAX_LENGTH, use_gpu: bool = False, precision: str = "auto",
                 tokens_per_batch: int | None = None):
    require({"CPU": 1, "GPU": 1 if use_gpu else 0}, 1, "evaluate --gpu" if use_gpu else "evaluate")
    cpus = largest_node_cpus()
    predicted = dataset.map_batches(
        # The actor runs in a directory of its own: a relative model folder must travel absolute.
        _LabelPredictor, fn_constructor_kwargs={"model_uris": [absolute_uri(uri) for uri in model_uris],
                                                "batch_size": batch_size,
                                                "max_length": max_length, "use_gpu": use_gpu, "threads": cpus,
                                                "precision": precision, "tokens_per_batch": tokens_per_batch},
        # 4096 rows per call: the predictor sorts them by length, so its batches pad little.
        batch_size=4096, compute=ray.data.ActorPoolStrategy(size=1),
        num_gpus=1 if use_gpu else 0, num_cpus=max(1, cpus - 1) if not use_gpu else 1)
    return _collected(predicted, rows)


def _collected(predicted: ray.data.Dataset, rows: int):
    """predicted's rows as one frame on the driver, with a progress line every PROGRESS_EVERY_S
    (RowProgress, as `sentiment score` logs them) while they come back."""
    import pandas as pd

    progress = RowProgress(rows, PROGRESS_EVERY_S)
    frames, done = [], 0
    for frame in predicted.iter_batches(batch_format="pandas", batch_size=None):
        frames.append(frame)
        done += len(frame)
        line = progress.update(done) if PROGRESS_EVERY_S else None
        if line:
            log.info(line)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
