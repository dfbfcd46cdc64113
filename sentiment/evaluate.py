"""`sentiment evaluate`: score labeled data with a trained model and report how good it is."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field

import numpy as np
import ray
from ray.data.expressions import col

from sentiment.data.labeled import EMPTY_TEXT, INVALID_SCORE, count_problems, read_labeled, text_column_names
from sentiment.errors import InputError, StorageError
from sentiment.provenance import provenance
from sentiment.train.metrics import (classification_metrics, format_comparison, format_groups, format_metrics,
                                     metrics_by_group, paired_comparison)
from sentiment.model.classifier import DEFAULT_MAX_LENGTH
from sentiment.cluster.connect import ensure_connected
from sentiment.cluster.resources import largest_node_cpus, require
from sentiment.io.storage import (STORAGE_ERRORS, absolute_uri, check_reachable, describe_failure,
                                  fsspec_filesystem, is_s3, write_bytes)

log = logging.getLogger(__name__)

REPORT_HEAD_BYTES = 256  # enough of an existing --report file to tell whether it is a report


def _pred_column(index: int) -> str:
    """The column of the index-th model's predicted class ids: `pred`, then `pred_1`, ..."""
    return "pred" if index == 0 else f"pred_{index}"


class _LabelPredictor:
    """Ray Data actor: loads the models once, maps {text, label, ...} batches to {label, pred, ...}
    (pred_1, ... for the second model on: `evaluate --baseline` compares two on the very same rows):
    every column but the text comes back, so a tag column says which split a row is from."""

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
            out[_pred_column(index)] = predictor.predict_proba(texts).argmax(axis=1)
        return out


# Datasets of at most this many rows are scored in the driver's own process when no GPU is asked
# for: an actor of their own starts a process, loads the model and runs a Ray Data pipeline, 9 s
# on 2 cores for the 30 held-out rows of a 300-review training run, to do what the driver does in
# under a second. 2,000 rows of MiniLM take the driver a few seconds on one core.
IN_DRIVER_MAX_ROWS = 2_000


def predict_labels(dataset: ray.data.Dataset, model_uri: str, *, rows: int | None = None,
                   batch_size: int | None = None, max_length: int = DEFAULT_MAX_LENGTH, use_gpu: bool = False,
                   precision: str = "auto", tokens_per_batch: int | None = None,
                   with_group: bool = False, baseline_uri: str | None = None) -> tuple[np.ndarray, ...]:
    """True and predicted class ids for a dataset with columns text and label, in one order: with
    baseline_uri, the baseline model's predictions of the same rows next, and with with_group
    the `group` column (read_labeled's --by values) last.

    In the driver when it is small and on CPU (IN_DRIVER_MAX_ROWS; `rows`, when the caller knows
    the dataset's row count, spares counting it). Else one actor, with torch threads for every core
    of the largest node; it reserves one CPU fewer so Ray Data's read and filter tasks can still run
    beside it. Only the small integer columns come back to the driver.
    """
    options = {"batch_size": batch_size, "max_length": max_length, "use_gpu": use_gpu, "precision": precision,
               "tokens_per_batch": tokens_per_batch}
    models = [model_uri, *([baseline_uri] if baseline_uri else [])]
    if not use_gpu and (dataset.count() if rows is None else rows) <= IN_DRIVER_MAX_ROWS:
        return _predict_in_driver({"all": dataset}, models, with_group=with_group, **options)["all"]
    frame = _predictions(dataset, models, **options)  # every column but the text comes back
    return (frame["label"].to_numpy(), *(frame[_pred_column(i)].to_numpy() for i in range(len(models))),
            *([frame["group"].to_numpy()] if with_group else []))


def predict_labels_of_splits(splits: dict[str, ray.data.Dataset], model_uri: str, **options) -> dict[str, tuple]:
    """predict_labels for several datasets in one pass: the model is loaded once for all, in the
    driver when they are small and on CPU (IN_DRIVER_MAX_ROWS), else in one Ray Data actor.

    Returns:
        split name -> (true class ids, predicted class ids), each in the order rows came back.
    """
    import pandas as pd

    if not options.get("use_gpu") and sum(dataset.count() for dataset in splits.values()) <= IN_DRIVER_MAX_ROWS:
        return _predict_in_driver(splits, [model_uri], **options)

    def tagged(dataset: ray.data.Dataset, name: str) -> ray.data.Dataset:
        return dataset.add_column("split", lambda batch: pd.Series(name, index=batch.index), batch_format="pandas")

    names = list(splits)
    datasets = [tagged(splits[name], name) for name in names]
    frame = _predictions(datasets[0].union(*datasets[1:]) if len(datasets) > 1 else datasets[0], [model_uri],
                         **options)
    return {name: (frame.loc[frame["split"] == name, "label"].to_numpy(),
                   frame.loc[frame["split"] == name, "pred"].to_numpy()) for name in names}


def _predict_in_driver(splits: dict[str, ray.data.Dataset], model_uris: list[str], *, batch_size: int | None = None,
                       max_length: int = DEFAULT_MAX_LENGTH, use_gpu: bool = False, precision: str = "auto",
                       tokens_per_batch: int | None = None, with_group: bool = False) -> dict[str, tuple]:
    from sentiment.model.predictor import Predictor, pick_device

    frames = {name: dataset.select_columns(["text", "label", *(["group"] if with_group else [])]).to_pandas()
              for name, dataset in splits.items()}
    predicted: dict[str, list] = {name: [] for name in splits}
    for uri in model_uris:  # one model in memory at a time
        predictor = Predictor(uri, device=pick_device(use_gpu), batch_size=batch_size, max_length=max_length,
                              precision=precision, tokens_per_batch=tokens_per_batch)
        for name, frame in frames.items():
            predicted[name].append(predictor.predict_proba(frame["text"].tolist()).argmax(axis=1))
        del predictor
    return {name: (frame["label"].to_numpy(), *predicted[name], *([frame["group"].to_numpy()] if with_group else []))
            for name, frame in frames.items()}


def _predictions(dataset: ray.data.Dataset, model_uris: list[str], *, batch_size: int | None = None,
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
    return predicted.to_pandas()


# --plot's formats, by suffix: the ones matplotlib writes without extra packages that a person opens.
PLOT_SUFFIXES = (".png", ".svg", ".pdf")


@dataclass
class EvaluateConfig:
    model: str
    data: list[str]
    # One or more names: each file's text is in the first it has (data.labeled.read_labeled).
    text_column: list[str] = field(default_factory=lambda: ["content"])
    score_column: str = "score"
    format: str | None = None
    report: str | None = None
    plot: str | None = None  # the confusion matrix as an image: .png, .svg or .pdf (PLOT_SUFFIXES)
    by: str | None = None  # a column whose values get their own accuracy and macro-F1 (an app, a source)
    batch_size: int | None = None
    max_length: int = DEFAULT_MAX_LENGTH
    limit: int | None = None
    use_gpu: bool = False
    precision: str = "auto"
    tokens_per_batch: int | None = None
    baseline: str | None = None  # a model to compare with on the same rows (McNemar's test): today's, say

    def __post_init__(self) -> None:
        self.text_column = text_column_names(self.text_column)  # one name (a str) is accepted too

    @classmethod
    def from_namespace(cls, args) -> "EvaluateConfig":
        return cls(model=args.model, data=args.data, text_column=list(args.text_column), score_column=args.score_column,
                   format=args.format, report=args.report, plot=args.plot, by=args.by, batch_size=args.batch_size,
                   max_length=args.max_length, limit=args.limit, use_gpu=args.gpu,
                   precision=args.precision, tokens_per_batch=args.tokens_per_batch, baseline=args.baseline)


def _refuse_replacing_what_is_not_a_report(path: str) -> None:
    """An existing --report file is replaced only when it is an earlier report: `--report
    reviews.json` given by mistake must not overwrite the labeled data (JSON is an input format)."""
    fs, local = fsspec_filesystem(path)
    try:
        with fs.open(local, "rb") as file:
            head = file.read(REPORT_HEAD_BYTES)
    except FileNotFoundError:  # a new file: nothing to replace
        return
    except STORAGE_ERRORS as error:
        raise StorageError(describe_failure(path, error)) from None
    # A report is json.dumps of classification_metrics, indented: "accuracy" is its first key.
    if not (head.lstrip().startswith(b"{") and b'"accuracy"' in head):
        raise InputError(f"--report {path} exists and is not a report of `sentiment evaluate`; nothing was "
                         "written: name a new file, or remove that one first")


def evaluate(config: EvaluateConfig) -> dict:
    """Print accuracy, macro-F1, sklearn's report and the confusion matrix; optionally write JSON.

    Rows with empty text or a score outside 1-5 cannot be judged: they are counted and reported
    under "skipped", never silently ignored.
    """
    from sentiment.model.classifier import check_classifier_folder

    # Fail fast, before Ray starts, if it is not a model: config and weights header only, as score.
    check_classifier_folder(config.model, max_length=config.max_length)
    if config.baseline:
        check_classifier_folder(config.baseline, max_length=config.max_length)
    if config.plot and not config.plot.lower().endswith(PLOT_SUFFIXES):
        raise InputError(f"--plot {config.plot}: name a {', '.join(PLOT_SUFFIXES)} file (the image format)")
    for path in (config.report, config.plot):  # what cannot be written must fail now, not after the evaluation
        if path:
            check_reachable(path if is_s3(path) else os.path.dirname(os.path.abspath(os.path.expanduser(path))))
    if config.report:
        _refuse_replacing_what_is_not_a_report(config.report)
    ensure_connected()
    labeled = read_labeled(config.data, config.text_column, config.score_column, config.format, config.limit,
                           group_column=config.by).materialize()
    problems = count_problems(labeled)
    usable = labeled.filter(expr=col("problem") == "").drop_columns(["problem"])
    if not problems.get("", 0):
        raise InputError(f"no rows of {', '.join(config.data)} can be judged: {problems.get(EMPTY_TEXT, 0)} with "
                         f"empty text, {problems.get(INVALID_SCORE, 0)} with a score that is not a whole number 1-5 "
                         f"(column '{config.score_column}')")
    y_true, y_pred, *rest = predict_labels(usable, config.model, rows=problems[""], batch_size=config.batch_size,
                                           max_length=config.max_length, use_gpu=config.use_gpu,
                                           precision=config.precision, tokens_per_batch=config.tokens_per_batch,
                                           with_group=config.by is not None, baseline_uri=config.baseline)
    y_baseline = rest.pop(0) if config.baseline else None
    groups = rest
    metrics = classification_metrics(y_true, y_pred)
    metrics["skipped"] = {EMPTY_TEXT: problems.get(EMPTY_TEXT, 0), INVALID_SCORE: problems.get(INVALID_SCORE, 0)}
    metrics["model"] = config.model
    metrics["precision"] = config.precision
    metrics["provenance"] = provenance()
    print(format_metrics(y_true, y_pred, metrics))
    if config.by:
        metrics["by"] = {"column": config.by, "groups": metrics_by_group(groups[0], y_true, y_pred)}
        print(format_groups(config.by, metrics["by"]["groups"]))
    if config.baseline:
        metrics["against_baseline"] = {"baseline": config.baseline, **paired_comparison(y_true, y_pred, y_baseline)}
        print(format_comparison(metrics["against_baseline"], config.baseline))
    skipped = sum(metrics["skipped"].values())
    if skipped:
        print(f"skipped {skipped} rows that cannot be judged: {metrics['skipped']}")
    if config.report:
        write_bytes(config.report, json.dumps(metrics, indent=2).encode())
        print(f"report written to {config.report}")
    if config.plot:
        names = ", ".join(path.rstrip("/").rsplit("/", 1)[-1] for path in config.data)
        _write_evaluation_plot(metrics["confusion_matrix"], config.plot, title=names, by=metrics.get("by"))
        drawn = f"confusion matrix and accuracy by {config.by}" if config.by else "confusion matrix"
        print(f"{drawn} drawn to {config.plot}")
    return metrics


def _write_evaluation_plot(matrix: list[list[int]], uri: str, title: str, by: dict | None = None) -> None:
    """The confusion matrix (and with --by each group's accuracy) drawn to uri (local or s3://),
    in the format its suffix names."""
    import tempfile

    from sentiment.train.plots import plot_evaluation

    shown = title if len(title) <= 32 else title[:29] + "..."  # the title's line holds counts and accuracy too
    with tempfile.TemporaryDirectory() as scratch:
        local = os.path.join(scratch, "confusion" + os.path.splitext(uri)[1].lower())
        plot_evaluation(matrix, local, title=shown, by=by)
        with open(local, "rb") as drawn:
            write_bytes(uri, drawn.read())
