"""`sentiment evaluate`: score labeled data with a trained model and report how good it is."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field

from ray.data.expressions import col

from sentiment.data.labeled import (EMPTY_TEXT, INVALID_SCORE, TEXT_NOT_STRING, count_problems, read_labeled,
                                     text_column_names, unusable_rows)
from sentiment.errors import InputError, StorageError
from sentiment.provenance import provenance
from sentiment.train.metrics import (calibration, classification_metrics, format_calibration, format_comparison,
                                     format_groups, format_metrics, metrics_by_group, paired_comparison)
from sentiment.model.classifier import DEFAULT_MAX_LENGTH
from sentiment.model.labeling import predict_labels
from sentiment.cluster.connect import ensure_connected
from sentiment.io.shards import list_shard_files
from sentiment.io.storage import STORAGE_ERRORS, check_reachable, describe_failure, fsspec_filesystem, is_s3, write_bytes

log = logging.getLogger(__name__)

REPORT_HEAD_BYTES = 256  # enough of an existing --report file to tell whether it is a report


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
    # Listing needs no cluster either: a --data path that matches nothing is named in a second.
    listed = list_shard_files(config.data, config.format)
    ensure_connected()
    labeled = read_labeled(config.data, config.text_column, config.score_column, config.format, config.limit,
                           listed=listed, group_column=config.by).materialize()
    problems = count_problems(labeled)
    usable = labeled.filter(expr=col("problem") == "").drop_columns(["problem"])
    if not problems.get("", 0):
        raise InputError(f"no rows of {', '.join(config.data)} can be judged: "
                         + unusable_rows(problems, f"a score that is not a whole number 1-5 (column '{config.score_column}')"))
    y_true, y_pred, *rest = predict_labels(usable, config.model, rows=problems[""], batch_size=config.batch_size,
                                           max_length=config.max_length, use_gpu=config.use_gpu,
                                           precision=config.precision, tokens_per_batch=config.tokens_per_batch,
                                           with_group=config.by is not None, baseline_uri=config.baseline,
                                           with_confidence=True)
    confidence = rest.pop()
    y_baseline = rest.pop(0) if config.baseline else None
    groups = rest
    metrics = classification_metrics(y_true, y_pred)
    metrics["calibration"] = calibration(confidence, y_true == y_pred)
    metrics["skipped"] = {kind: problems.get(kind, 0) for kind in (EMPTY_TEXT, INVALID_SCORE, TEXT_NOT_STRING)}
    metrics["model"] = config.model
    metrics["precision"] = config.precision
    metrics["provenance"] = provenance()
    print(format_metrics(y_true, y_pred, metrics))
    print(format_calibration(metrics["calibration"]))
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
        _write_evaluation_plot(metrics["confusion_matrix"], config.plot, title=names, by=metrics.get("by"),
                               calibrated=metrics["calibration"])
        drawn = ("confusion matrix, calibration" + (f" and accuracy by {config.by}" if config.by else ""))
        print(f"{drawn} drawn to {config.plot}")
    return metrics


def _write_evaluation_plot(matrix: list[list[int]], uri: str, title: str, by: dict | None = None,
                           calibrated: dict | None = None) -> None:
    """The confusion matrix, the calibration and with --by each group's accuracy, drawn to uri
    (local or s3://), in the format its suffix names."""
    import tempfile

    from sentiment.train.plots import plot_evaluation

    shown = title if len(title) <= 32 else title[:29] + "..."  # the title's line holds counts and accuracy too
    with tempfile.TemporaryDirectory() as scratch:
        local = os.path.join(scratch, "confusion" + os.path.splitext(uri)[1].lower())
        plot_evaluation(matrix, local, title=shown, by=by, calibrated=calibrated)
        with open(local, "rb") as drawn:
            write_bytes(uri, drawn.read())
