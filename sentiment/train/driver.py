"""`sentiment train`: data prep on Ray Data, DDP on Ray Train, then the artifact.

The artifact at --output is the best checkpoint's model as a plain Hugging Face folder, plus
metrics.json, training_history.png and confusion_matrix.png beside it. They are built in a
staging folder and moved in with metrics.json last, so its presence means the folder is complete
(sentiment.train.output), and a folder holding files of anyone else is refused.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field, replace

from ray.train import CheckpointConfig, DataConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from sentiment.data.labeled import prepare_splits, text_column_names
from sentiment.data.labels import DEFAULT_PSEUDO_MIN_CONFIDENCE, DEFAULT_PSEUDO_PER_CLASS
from sentiment.data.pseudo_labels import read_pseudo_labels
from sentiment.model.labeling import predict_labels_of_splits
from sentiment.train.metrics import calibration, classification_metrics, format_calibration, format_metrics
from sentiment.model.classifier import DEFAULT_BACKBONE, DEFAULT_MAX_LENGTH, PRECISIONS, backbone_config, build_classifier, check_max_length
from sentiment.cluster.placement import local_backbone_folder, require_shared_paths
from sentiment.provenance import provenance
from sentiment.train.plots import plot_confusion_matrix, plot_training_history
from sentiment.cluster.connect import ensure_connected
from sentiment.cluster.ray_console import RAY_TRAIN_LOG_LEVEL
from sentiment.cluster.resources import largest_node_cpus, require
from sentiment.model.recipes import HYPERPARAMETERS, recipe_for
from sentiment.train.compiled import COMPILE_MODES
from sentiment.train.faults import WorkerFailureReport, read_worker_failures
from sentiment.train.output import check_output_is_ours, commit_model_folder, staging_folder
from sentiment.train.resume import prepare_run, run_settings
from sentiment.io.shards import list_shard_files
from sentiment.io.storage import absolute_uri, arrow_filesystem, check_reachable, copy_dir, read_bytes, to_uri, upload_dir
from sentiment.train.worker_loop import HISTORY_FILE, MODEL_SUBDIR, train_loop_per_worker
from sentiment.train.stats import SELECT_METRICS, selection_score

log = logging.getLogger(__name__)
# A GPU worker tokenizes and feeds its batches in Ray's prefetch threads: one CPU starves it.
GPU_WORKER_CPUS = 4


@dataclass
class TrainConfig:
    data: list[str]
    output: str
    model: str = DEFAULT_BACKBONE
    # One or more names: each file's text is in the first it has (data.labeled.read_labeled).
    text_column: list[str] = field(default_factory=lambda: ["content"])
    score_column: str = "score"
    format: str | None = None
    # None: from the backbone's recipe (sentiment.model.recipes), filled in by resolved().
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    warmup_fraction: float | None = None
    label_smoothing: float | None = None
    max_length: int = DEFAULT_MAX_LENGTH
    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: int | None = None  # None: GPU_WORKER_CPUS with --gpu, else sized by cpu_worker_cpus()
    select_metric: str = "accuracy"
    compile: str = "auto"  # sentiment.train.compiled.COMPILE_MODES
    precision: str = "auto"  # sentiment.model.classifier.PRECISIONS; see train.step.autocast_dtype
    seed: int = 42  # initialisation and training-data order
    # The split (and the --limit sample) hash with their own seed, so runs that differ only in
    # --seed are selected and tested on the same rows. 42: the split of every earlier default run.
    split_seed: int = 42
    val_fraction: float = 0.05
    test_fraction: float = 0.05
    limit: int | None = None
    # `sentiment score` output whose confident rows join the training split only (data.pseudo_labels).
    pseudo_labels: list[str] | None = None
    pseudo_text_column: list[str] | None = None  # None: the first name of text_column
    pseudo_min_confidence: float | None = DEFAULT_PSEUDO_MIN_CONFIDENCE
    pseudo_per_class: str | None = DEFAULT_PSEUDO_PER_CLASS  # "balanced", "all" or a number
    run_name: str = "sentiment-train"
    storage_path: str | None = None
    max_failures: int = 2
    shared_fs: bool = False  # local paths are on a filesystem every node mounts (see placement)

    def __post_init__(self) -> None:
        self.text_column = text_column_names(self.text_column)  # one name (a str) is accepted too
        if self.pseudo_text_column is not None:
            self.pseudo_text_column = text_column_names(self.pseudo_text_column)

    @classmethod
    def from_namespace(cls, args) -> "TrainConfig":
        return cls(data=args.data, output=args.output, model=args.model, text_column=list(args.text_column),
                   score_column=args.score_column, format=args.format, epochs=args.epochs,
                   batch_size=args.batch_size, lr=args.lr, warmup_fraction=args.warmup_fraction,
                   label_smoothing=args.label_smoothing,
                   max_length=args.max_length, num_workers=args.num_workers, use_gpu=args.gpu,
                   cpus_per_worker=args.cpus_per_worker, select_metric=args.select_metric, compile=args.compile,
                   precision=args.precision,
                   seed=args.seed, split_seed=args.split_seed, val_fraction=args.val_fraction, test_fraction=args.test_fraction,
                   limit=args.limit, pseudo_labels=args.pseudo_labels, pseudo_text_column=args.pseudo_text_column,
                   pseudo_min_confidence=args.pseudo_min_confidence, pseudo_per_class=args.pseudo_per_class,
                   run_name=args.run_name, storage_path=args.storage_path,
                   max_failures=args.max_failures, shared_fs=args.shared_fs)

    def resolved(self) -> "TrainConfig":
        """This config with every unset hyperparameter taken from the backbone's recipe."""
        _, recipe = recipe_for(self.model)
        defaults = {name: getattr(recipe, name) for name in HYPERPARAMETERS}
        chosen = {name: value if getattr(self, name) is None else getattr(self, name) for name, value in defaults.items()}
        cpus = self.cpus_per_worker or (GPU_WORKER_CPUS if self.use_gpu else 1)
        # Without --pseudo-labels the pseudo settings mean nothing: recorded as None, so that
        # they never tell two runs apart.
        pseudo = ({"pseudo_text_column": self.pseudo_text_column or self.text_column[:1]} if self.pseudo_labels else
                  {"pseudo_text_column": None, "pseudo_min_confidence": None, "pseudo_per_class": None})
        return replace(self, **chosen, cpus_per_worker=cpus, **pseudo)

    @property
    def resolved_output(self) -> str:
        return absolute_uri(self.output).rstrip("/")

    @property
    def resolved_storage_path(self) -> str:
        if self.storage_path:
            return absolute_uri(self.storage_path).rstrip("/")
        return f"{self.resolved_output}/checkpoints"

    def validate(self) -> None:
        from sentiment.errors import InputError

        for name in ("epochs", "batch_size", "num_workers", "max_length", "cpus_per_worker"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} must be at least 1")
        if self.lr <= 0:
            raise InputError("--lr must be positive")
        if not 0 <= self.warmup_fraction < 1:
            raise InputError("--warmup-fraction must be at least 0 and below 1")
        if not 0 <= self.label_smoothing < 1:
            raise InputError("--label-smoothing must be at least 0 and below 1")
        if self.select_metric not in SELECT_METRICS:
            raise InputError(f"--select-metric must be one of {SELECT_METRICS}")
        if self.compile not in COMPILE_MODES:
            raise InputError(f"--compile must be one of {COMPILE_MODES}")
        if self.precision not in PRECISIONS:
            raise InputError(f"--precision must be one of {PRECISIONS}")


def cpu_worker_cpus(node_cpus: int, num_workers: int) -> int:
    """CPUs (and torch threads) per CPU worker when --cpus-per-worker is not given: the workers
    share the biggest node's cores. A CPU worker's matmuls run on one thread per CPU it holds;
    one worker on a 2-core machine trained 1.5x faster with 2 than with 1 (BENCHMARKS.md)."""
    return max(1, node_cpus // num_workers)


def _run_config(config: TrainConfig) -> RunConfig:
    filesystem, path = arrow_filesystem(config.resolved_storage_path)
    return RunConfig(
        name=config.run_name, storage_path=path, storage_filesystem=filesystem,
        # selection_score: the --select-metric, ties broken by lower validation loss.
        checkpoint_config=CheckpointConfig(num_to_keep=2, checkpoint_score_attribute="selection_score",
                                           checkpoint_score_order="max"),
        failure_config=FailureConfig(max_failures=config.max_failures),
        callbacks=[WorkerFailureReport(config.max_failures, run_dir=run_folder(config))],
        # Ray Train's INFO lines (the worker group's start, every checkpoint's path) stay in the
        # session's logs/train/ files; our epoch lines are the console's (sentiment/cluster/ray_console.py).
        logging_config=LoggingConfig(log_level=RAY_TRAIN_LOG_LEVEL),
    )


def run_folder(config) -> str:
    """The Ray Train run's folder (storage path / run name) of a train or adapt config: its
    checkpoints, and our records of the run beside them (resume's settings, the worker failures)."""
    return f"{config.resolved_storage_path}/{config.run_name}"


def _checkpoint_uri(config: TrainConfig, checkpoint) -> str:
    return to_uri(config.resolved_storage_path, checkpoint.path)


def absolute_if_local(model: str) -> str:
    """A --model folder given relative to the driver's directory, made absolute: Ray Train's
    workers run elsewhere, where the relative path names nothing and transformers went on to ask
    the hub for it (retrying for 25 s, offline) before the run failed. Hub names pass unchanged;
    a local folder wins over a hub name of the same spelling, as in transformers itself."""
    expanded = os.path.expanduser(model)
    return os.path.abspath(expanded) if os.path.isdir(expanded) else model


def build_trainer(config: TrainConfig, splits) -> TorchTrainer:
    """The TorchTrainer for a resolved, validated config on prepared splits.

    Args:
        config: TrainConfig.resolved(), validated.
        splits: prepare_splits() of the config's data.
    """
    worker_config = {"backbone": absolute_if_local(config.model), "epochs": config.epochs, "batch_size": config.batch_size,
                     "lr": config.lr, "warmup_fraction": config.warmup_fraction,
                     "label_smoothing": config.label_smoothing, "max_length": config.max_length,
                     "seed": config.seed, "train_rows": splits.counts["train"],
                     "cpus_per_worker": config.cpus_per_worker, "select_metric": config.select_metric,
                     "compile": config.compile, "precision": config.precision}
    # Our per-step and per-epoch lines are the progress display; Ray Data's per-shard bars from
    # every worker would bury them. Each dataset carries its own copy of the context.
    for dataset in (splits.train, splits.validation):
        dataset.context.enable_progress_bars = False
    return TorchTrainer(
        train_loop_per_worker, train_loop_config=worker_config,
        scaling_config=ScalingConfig(num_workers=config.num_workers, use_gpu=config.use_gpu,
                                     resources_per_worker={"CPU": config.cpus_per_worker,
                                                           **({"GPU": 1} if config.use_gpu else {})}),
        run_config=_run_config(config),
        datasets={"train": splits.train, "validation": splits.validation},
        # Only train is sharded: Ray shards with streaming_split(equal=True), which drops up to
        # num_workers - 1 rows to even the shards out. Every worker scores the whole (small)
        # validation split instead, so every validation row counts, once.
        dataset_config=DataConfig(datasets_to_split=["train"]),
    )


def train(config: TrainConfig) -> dict:
    """Fine-tune, pick the best epoch by --select-metric on validation, test it, and write the artifact.

    Returns:
        The metrics written to OUTPUT/metrics.json.
    Raises:
        InputError / StorageError: bad data or unreachable storage, before any training starts.
    """
    cpus_given = config.cpus_per_worker is not None
    config = config.resolved()
    config.validate()
    check_max_length(config.max_length, backbone_config(config.model), f"backbone {config.model}")
    started = time.time()
    check_reachable(config.resolved_output)
    check_reachable(config.resolved_storage_path)
    check_output_is_ours(config.resolved_output)
    # Local paths are judged against the cluster's nodes before they are listed, as score does: in
    # a job on a cluster of several nodes, a path only the submitting laptop holds is named as
    # that, not as "not found". It joins a running cluster; a command's own is not started for it.
    require_shared_paths({"--data": config.data, "--output": [config.output],
                          "--storage-path": [config.storage_path] if config.storage_path else [],
                          "--model": [config.model] if local_backbone_folder(config.model) else []},
                         shared_fs=config.shared_fs)
    # Before anything of this run is written: a --data path that matches nothing leaves no run
    # record (prepare_run's) behind. prepare_splits reads this listing once Ray is up, so what
    # the listing says (a file the inputs reach twice) is said once.
    listed = list_shard_files(config.data, config.format)
    # Read here, on the driver (Ray Data ships the rows to the workers): a local path works on
    # any cluster.
    pseudo = (read_pseudo_labels(config.pseudo_labels, config.pseudo_text_column, config.pseudo_min_confidence,
                                 config.pseudo_per_class) if config.pseudo_labels else None)
    resumed_epoch = prepare_run(run_folder(config), run_settings(_recorded(config)))
    if resumed_epoch is not None:
        print(f"resuming run {config.run_name!r} from its checkpoint of epoch {resumed_epoch} "
              f"(in {run_folder(config)})", flush=True)
    ensure_connected()
    if not (cpus_given or config.use_gpu):
        config = replace(config, cpus_per_worker=cpu_worker_cpus(largest_node_cpus(), config.num_workers))
    require({"CPU": config.cpus_per_worker, "GPU": int(config.use_gpu)}, config.num_workers,
            f"train --num-workers {config.num_workers}{' --gpu' if config.use_gpu else ''}")
    log.info("config: %s", json.dumps(asdict(config)))
    # A backbone whose encoder weights do not load is the user's to fix: refuse it here in one
    # line, not in the workers, where Ray would retry it --max-failures times before a traceback.
    # Costs one load of the backbone on the driver (a second or two for MiniLM).
    build_classifier(config.model)

    splits = prepare_splits(config.data, config.text_column, config.score_column, seed=config.split_seed,
                            shuffle_seed=config.seed,
                            val_fraction=config.val_fraction, test_fraction=config.test_fraction,
                            fmt=config.format, limit=config.limit, listed=listed, pseudo=pseudo)
    prepared = time.time()
    trainer = build_trainer(config, splits)
    log_workers_starting(config.num_workers, config.cpus_per_worker, config.use_gpu)
    result = fit_interruptibly(trainer)
    trained = time.time()
    best = result.get_best_checkpoint(metric="selection_score", mode="max")
    if best is None:
        raise RuntimeError(f"training reported no checkpoint; see the run at {config.resolved_storage_path}")

    # Everything is built in a staging folder first, and moved into --output only when whole
    # (see sentiment.train.output). Storage to storage: the checkpoint's optimizer state never
    # passes through the driver.
    staged = staging_folder(config.resolved_output)
    copy_dir(f"{_checkpoint_uri(config, best)}/{MODEL_SUBDIR}", staged)
    history = json.loads(read_bytes(f"{_checkpoint_uri(config, result.checkpoint)}/{HISTORY_FILE}"))
    with tempfile.TemporaryDirectory() as scratch:
        best_epoch = max(history, key=lambda h: selection_score(h, config.select_metric))["epoch"]
        precision = evaluation_precision(history[best_epoch - 1])
        labels = predict_labels_of_splits({"validation": splits.validation, "test": splits.test}, staged,
                                          max_length=config.max_length, use_gpu=config.use_gpu, precision=precision,
                                          with_confidence=True)
        held_out = {name: {**classification_metrics(y_true, y_pred),
                           "calibration": calibration(confidence, y_true == y_pred)}
                    for name, (y_true, y_pred, confidence) in labels.items()}
        test = held_out["test"]
        print(format_metrics(*labels["test"][:2], test))
        print(format_calibration(test["calibration"]))
        metrics = {
            "history": history,
            "best_epoch": best_epoch,
            "test": test,
            # The chosen model re-scored, both splits by the same code at the same precision.
            "validation": held_out["validation"],
            "eval_precision": precision,
            "rows": splits.counts,
            "split_hash": splits.split_hash,
            "config": _recorded(config),
            "recipe": recipe_for(config.model)[0],
            "global_batch_size": config.batch_size * config.num_workers,
            "wall_seconds": {"data_prep": prepared - started, "training": trained - prepared,
                             "test_evaluation": time.time() - trained, "total": time.time() - started},
            "ray_run": {"name": config.run_name, "best_checkpoint": best.path},
            # What the run survived (sentiment.train.faults), over all its attempts: [] for most.
            "worker_failures": read_worker_failures(run_folder(config)),
            "provenance": provenance(),
        }
        artifacts = os.path.join(scratch, "artifacts")
        os.makedirs(artifacts)
        plot_training_history(history, os.path.join(artifacts, "training_history.png"), best_epoch,
                              config.select_metric)
        plot_confusion_matrix(test["confusion_matrix"], os.path.join(artifacts, "confusion_matrix.png"),
                              title=f"Test split, best epoch {best_epoch}")
        upload_dir(artifacts, staged)
    # metrics.json last: its presence tells readers the folder is complete.
    commit_model_folder(staged, config.resolved_output, metrics)
    print(f"model, metrics.json and plots written to {config.resolved_output}")
    print(f"test accuracy {test['accuracy']:.4f}, macro-F1 {test['macro_f1']:.4f}; "
          f"total {metrics['wall_seconds']['total']:.0f}s")
    return metrics


def evaluation_precision(best: dict) -> str:
    """The predictor precision for scoring the chosen model on validation and test: the one its
    epoch was validated at, so that the epoch is chosen and tested at one precision.

    Args:
        best: the chosen epoch's history entry; "precision" is what the workers' autocast ran
            (step.precision_name). fp16 (GPUs without bf16) is scored as bf16, the predictor's
            only reduced precision.
    """
    return "fp32" if best.get("precision", "fp32") == "fp32" else "bf16"


def log_workers_starting(num_workers: int, cpus_per_worker: int, use_gpu: bool) -> None:
    """One line as Ray Train starts the workers. Their start (new processes importing torch and
    transformers, then the model loaded on each) comes before the first line they log: 15-20 s
    for a tiny model on 2 CPU cores, tens of seconds more on a GPU node, with nothing on the
    console before."""
    each = f"1 GPU and {cpus_per_worker} CPU(s)" if use_gpu else f"{cpus_per_worker} CPU(s)"
    log.info("starting %d Ray Train worker(s), %s each; each loads the model before its first line",
             num_workers, each)


def fit_interruptibly(trainer: TorchTrainer):
    """trainer.fit(), with Ctrl-C reaching the caller as KeyboardInterrupt (the CLI then says
    `interrupted` and exits 130, as for every command).

    Called from the main thread, Ray Train (2.60) installs its own SIGINT handler, which aborts
    the run and then exits with status 1 and no message. From another thread it installs none, as
    under Tune. The thread is a daemon: once interrupted nobody waits for it, and the run's
    controller and workers end with this driver.
    """
    outcome: dict = {}

    def fit() -> None:
        try:
            outcome["result"] = trainer.fit()
        except BaseException as error:  # handed to the main thread, raised there as it is
            outcome["error"] = error

    thread = threading.Thread(target=fit, name="ray-train-fit", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(timeout=0.5)  # a join with a timeout lets a signal's KeyboardInterrupt through
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def _recorded(config: TrainConfig) -> dict:
    """The resolved config as metrics.json and the run's settings record it: absolute paths."""
    data = [absolute_uri(path) for path in config.data]
    return {**asdict(config), "data": data, "output": config.resolved_output,
            "storage_path": config.resolved_storage_path}

