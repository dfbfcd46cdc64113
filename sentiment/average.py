"""`sentiment average`: the weight average ("model soup") of several `sentiment train` runs of one
backbone on one split, scored beside each of them on that split's validation and test rows.

Runs that differ only in --seed (or in recipe, or in --pseudo-labels) start from the same
pretrained weights and stay in one basin, so the parameter-wise mean of their weights is itself a
model, often better than each (BENCHMARKS.md, Model quality), at one model's inference cost. Which
of the members and the average to ship is chosen on the validation columns; test is reported.

The members' metrics.json say which labeled data and split settings they trained on. The split is
made again from that data and must give the held-out hash they recorded: only then are their
validation and test rows held out from every member. The output folder is a model folder like
`sentiment train`'s, committed the same way (metrics.json last, see sentiment.train.output).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass

from sentiment.cluster.connect import ensure_connected
from sentiment.cluster.placement import require_shared_paths
from sentiment.data.labeled import prepare_splits, text_column_names
from sentiment.errors import InputError, ModelError
from sentiment.model.labeling import predict_labels_of_splits
from sentiment.io.storage import absolute_uri, check_reachable, exists, read_bytes, upload_dir
from sentiment.model.average import WeightSum
from sentiment.model.classifier import DEFAULT_MAX_LENGTH, check_classifier_folder, load_classifier, save_classifier
from sentiment.model.readable_text import SPELLING_KEY
from sentiment.train.metrics import classification_metrics, format_metrics, standard_error
from sentiment.train.output import METRICS_FILE, check_output_is_ours, commit_model_folder, staging_folder
from sentiment.provenance import provenance
from sentiment.train.plots import plot_confusion_matrix, plot_members_and_average

log = logging.getLogger(__name__)

# The recorded settings that decide which rows are held out; members must agree on all of them.
SPLIT_SETTINGS = ("data", "text_column", "score_column", "format", "split_seed", "val_fraction", "test_fraction",
                  "limit")
HELD_OUT = ("validation", "test")


@dataclass
class AverageConfig:
    models: list[str]
    output: str
    use_gpu: bool = False
    precision: str = "auto"
    max_length: int = DEFAULT_MAX_LENGTH
    shared_fs: bool = False

    @classmethod
    def from_namespace(cls, args) -> "AverageConfig":
        return cls(models=args.models, output=args.output, use_gpu=args.gpu, precision=args.precision,
                   max_length=args.max_length, shared_fs=args.shared_fs)


@dataclass
class _Member:
    uri: str
    metrics: dict  # its metrics.json

    @property
    def config(self) -> dict:
        return self.metrics["config"]


def read_members(models: list[str]) -> list[_Member]:
    """The metrics.json of each model folder, checked to be `sentiment train` runs of one backbone
    on one split.

    Raises:
        InputError: fewer than two distinct folders, a folder without a finished run's
            metrics.json, or members of other backbones or other splits; one line naming them.
    """
    uris = [absolute_uri(uri).rstrip("/") for uri in models]
    repeated = sorted({uri for uri in uris if uris.count(uri) > 1})
    if repeated:
        raise InputError(f"--models names {', '.join(repeated)} more than once; give each run once")
    if len(uris) < 2:
        raise InputError("--models needs at least two model folders to average")
    members = []
    for uri in uris:
        if not exists(f"{uri}/{METRICS_FILE}"):
            raise InputError(f"{uri} has no {METRICS_FILE}: --models takes the output folders of finished "
                             "`sentiment train` runs")
        metrics = json.loads(read_bytes(f"{uri}/{METRICS_FILE}"))
        if "split_hash" not in metrics or "config" not in metrics:
            raise InputError(f"{uri}/{METRICS_FILE} records no split_hash or config (not a `sentiment train` "
                             "output, or one from before the split was recorded), so its held-out rows are unknown")
        members.append(_Member(uri, metrics))
    _require_same(members, "backbone", lambda m: m.config["model"],
                  "only fine-tunes of one backbone can be averaged")
    _require_same(members, "split", lambda m: m.metrics["split_hash"][:12],
                  "rows one member held out, another trained on, so their average has no held-out rows")
    _require_same(members, "split settings", lambda m: tuple(str(_split_setting(m.config, key)) for key in SPLIT_SETTINGS),
                  f"the split is made again from them ({', '.join(SPLIT_SETTINGS)})")
    _require_same(members, "text reading", _text_reading,
                  "one learned emoji as spelled-out words and another as unknown tokens; average runs trained alike")
    return members


def _text_reading(member: _Member) -> str:
    """How the member read symbols its tokenizer lacks (sentiment.model.readable_text)."""
    path = f"{member.uri}/tokenizer_config.json"  # a folder without one fails the folder check next
    tokenizer_config = json.loads(read_bytes(path)) if exists(path) else {}
    return "emoji spelled out" if tokenizer_config.get(SPELLING_KEY) else "emoji as unknown tokens"


def _split_setting(config: dict, key: str):
    # Runs recorded --text-column as one name (a str) before it took several: the same setting.
    return text_column_names(config[key]) if key == "text_column" and key in config else config.get(key)


def _require_same(members: list[_Member], what: str, value, why: str) -> None:
    values = {member.uri: value(member) for member in members}
    if len(set(values.values())) > 1:
        listed = "; ".join(f"{uri}: {shown}" for uri, shown in values.items())
        raise InputError(f"the models were trained with different {what} ({listed}): {why}")


def average(config: AverageConfig) -> dict:
    """Average the members' weights, score every member and the average on the members' validation
    and test rows, and write the average as a model folder with metrics.json and plots.

    Returns:
        The metrics written to OUTPUT/metrics.json.
    Raises:
        InputError / ModelError / StorageError: before anything is written to --output.
    """
    started = time.time()
    members = read_members(config.models)
    for member in members:  # config and weights header only: a broken folder fails before Ray starts
        check_classifier_folder(member.uri, max_length=config.max_length)
    output = absolute_uri(config.output).rstrip("/")
    if output in {member.uri for member in members}:
        raise InputError(f"--output {output} is one of --models; write the average to a new folder")
    check_reachable(output)
    check_output_is_ours(output)
    recorded = members[0].config
    ensure_connected()
    require_shared_paths({"the members' --data": recorded["data"], "--output": [output]}, shared_fs=config.shared_fs)

    print(f"splitting {', '.join(recorded['data'])} as the members did (split seed {recorded['split_seed']})",
          flush=True)
    splits = prepare_splits(recorded["data"], recorded["text_column"], recorded["score_column"],
                            seed=recorded["split_seed"], val_fraction=recorded["val_fraction"],
                            test_fraction=recorded["test_fraction"], fmt=recorded["format"], limit=recorded["limit"])
    if splits.split_hash != members[0].metrics["split_hash"]:
        raise InputError(f"{', '.join(recorded['data'])} no longer gives the split the members trained on (held-out "
                         f"hash {splits.split_hash[:12]}, recorded {members[0].metrics['split_hash'][:12]}): the "
                         "labeled data changed since, so the members' held-out rows cannot be found again")

    print(f"averaging {len(members)} models of backbone {recorded['model']}", flush=True)
    weights = WeightSum()  # one member in memory at a time, beside the running sum
    for member in members:
        model, tokenizer = load_classifier(member.uri)  # fine-tunes of one backbone share its tokenizer
        try:
            weights.add(member.uri, model)
        except ValueError as error:  # names that differ, or shapes: not copies of one architecture
            raise ModelError(str(error)) from None
    soup = weights.mean_into(model)  # the last member's copy becomes the average: no extra copy
    del weights

    staged = staging_folder(output)
    held_out = {"validation": splits.validation, "test": splits.test}
    options = {"max_length": config.max_length, "use_gpu": config.use_gpu, "precision": config.precision}
    scores = {}
    for number, member in enumerate(members, 1):
        print(f"scoring member {number}/{len(members)} on validation and test: {member.uri}", flush=True)
        scores[member.uri] = _scored(predict_labels_of_splits(held_out, member.uri, **options))
    with tempfile.TemporaryDirectory() as scratch:
        model_dir = os.path.join(scratch, "model")
        save_classifier(soup, tokenizer, model_dir)
        upload_dir(model_dir, staged)
        print("scoring the average on validation and test", flush=True)
        labels = predict_labels_of_splits(held_out, staged, **options)
        averaged = _scored(labels)
        print(format_metrics(*labels["test"], averaged["test"]))
        metrics = {
            "validation": averaged["validation"],
            "test": averaged["test"],
            "eval_precision": _resolved_precision(config),
            "averaged_from": [_member_record(member, scores[member.uri]) for member in members],
            "rows": splits.counts,
            "split_hash": splits.split_hash,
            # What the members share: the backbone, and where its held-out rows come from.
            "config": {**{key: recorded.get(key) for key in ("model", *SPLIT_SETTINGS)}, "output": output},
            "wall_seconds": {"total": time.time() - started},
            "provenance": provenance(),
        }
        artifacts = os.path.join(scratch, "artifacts")
        os.makedirs(artifacts)
        plot_confusion_matrix(averaged["test"]["confusion_matrix"], os.path.join(artifacts, "confusion_matrix.png"),
                              title=f"Test split, average of {len(members)}")
        plot_members_and_average(_chart_rows(members, scores, averaged), os.path.join(artifacts, "average.png"))
        upload_dir(artifacts, staged)
    commit_model_folder(staged, output, metrics)
    print(comparison_table(members, scores, averaged))
    print(verdict(members, scores, averaged))
    print(f"average, metrics.json and plots written to {output}")
    return metrics


def _scored(labels: dict[str, tuple]) -> dict[str, dict]:
    return {name: classification_metrics(*labels[name]) for name in HELD_OUT}


def _resolved_precision(config: AverageConfig) -> str:
    from sentiment.model.predictor import pick_device, resolve_precision

    return resolve_precision(config.precision, pick_device(config.use_gpu))


def _member_record(member: _Member, scored: dict) -> dict:
    """What metrics.json keeps of a member: where it is, how it trained, and its scores here."""
    return {"model": member.uri, "seed": member.config.get("seed"), "best_epoch": member.metrics.get("best_epoch"),
            **{name: {key: scored[name][key] for key in ("accuracy", "macro_f1", "n")} for name in HELD_OUT}}


def _chart_rows(members: list[_Member], scores: dict, averaged: dict) -> list[tuple[str, dict]]:
    names = [f"seed {member.config.get('seed')}" for member in members]
    if len(set(names)) < len(names):  # seeds alone do not tell them apart
        names = [f"member {number}" for number in range(1, len(members) + 1)]
    return [*zip(names, (scores[member.uri] for member in members)), (f"average of {len(members)}", averaged)]


def comparison_table(members: list[_Member], scores: dict, averaged: dict) -> str:
    """Each member and the average, validation and test, with one standard error."""
    lines = ["", f"{'model':<40} {'val acc':>8} {'val F1':>7} {'test acc':>9} {'test F1':>8}"]
    rows = [(member.uri, scores[member.uri]) for member in members] + [(f"average of {len(members)}", averaged)]
    for name, scored in rows:
        shown = name if len(name) <= 40 else "..." + name[-37:]
        lines.append(f"{shown:<40} {scored['validation']['accuracy']:>8.3f} {scored['validation']['macro_f1']:>7.3f} "
                     f"{scored['test']['accuracy']:>9.3f} {scored['test']['macro_f1']:>8.3f}")
    val, test = averaged["validation"], averaged["test"]
    lines.append(f"one standard error: validation {standard_error(val['accuracy'], val['n']):.3f} "
                 f"({val['n']} rows), test {standard_error(test['accuracy'], test['n']):.3f} ({test['n']} rows)")
    return "\n".join(lines)


def verdict(members: list[_Member], scores: dict, averaged: dict) -> str:
    """One line: the average against the best member, on validation (where choices are made)."""
    best = max(members, key=lambda member: scores[member.uri]["validation"]["accuracy"])
    best_accuracy = scores[best.uri]["validation"]["accuracy"]
    gain = averaged["validation"]["accuracy"] - best_accuracy
    error = standard_error(averaged["validation"]["accuracy"], averaged["validation"]["n"])
    noise = "within" if abs(gain) < error else "beyond"
    choice = "ship the average" if gain > 0 else f"the best member ({best.uri}) does as well: ship it"
    return (f"validation accuracy: the average {averaged['validation']['accuracy']:.3f}, the best member "
            f"{best_accuracy:.3f} ({gain * 100:+.1f} points, {noise} one standard error of {error * 100:.1f}); "
            f"{choice}")
