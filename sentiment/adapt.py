"""`sentiment adapt`: continue a backbone's masked-language pre-training on unlabeled reviews with
Ray Train DDP, and write the adapted encoder as a folder that `sentiment train --model` takes.

    sentiment adapt --model mpnet --data ../shared/data/unlabeled-sample.parquet \\
        --text-column "Review Text" --leave-out ../shared/data/labeled --output backbones/mpnet-reviews
    sentiment train --model backbones/mpnet-reviews --data ../shared/data/labeled --output models/m1

Encoders pre-trained on books and the web meet short, informal app reviews; a pass of their own
pre-training task over reviews moves them toward that text before any label is seen
(domain-adaptive pre-training). The folder holds the encoder alone (transformers.AutoModel:
config.json, model.safetensors, tokenizer) with the backbone's own pooler where it has one
(masked-language training never reads it), and metrics.json: what was read, left out and held
out, the loss of every epoch, and the masked-language loss on held-out reviews. It is written
through a staging folder, metrics.json last, as train's model folder is (sentiment.train.output).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace

import pandas as pd
import ray.data
from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from sentiment.cluster.connect import ensure_connected
from sentiment.cluster.ray_console import RAY_TRAIN_LOG_LEVEL
from sentiment.cluster.placement import local_backbone_folder, require_shared_paths
from sentiment.cluster.resources import largest_node_cpus, require
from sentiment.data.corpus import read_corpus
from sentiment.data.labeled import text_column_names
from sentiment.errors import InputError
from sentiment.io.shards import list_shard_files
from sentiment.io.storage import absolute_uri, arrow_filesystem, check_reachable, upload_dir
from sentiment.model.classifier import (DEFAULT_BACKBONE, DEFAULT_MAX_LENGTH, PRECISIONS, backbone_config,
                                        check_max_length, load_encoder_with_head)
from sentiment.train.driver import (GPU_WORKER_CPUS, absolute_if_local, cpu_worker_cpus, fit_interruptibly,
                                    log_workers_starting, run_folder)
from sentiment.train.faults import WorkerFailureReport, read_worker_failures
from sentiment.train.masked_lm import HISTORY_FILE, MODEL_SUBDIR, adapt_loop_per_worker
from sentiment.train.output import check_output_is_ours, commit_model_folder, staging_folder
from sentiment.provenance import provenance
from sentiment.train.plots import plot_adaptation_history
from sentiment.train.resume import prepare_run

log = logging.getLogger(__name__)
# The masked-language loss by step, drawn beside the adapted encoder (train.plots.plot_adaptation_history).
HISTORY_PLOT = "adaptation_history.png"
# The settings that make two attempts the same run (resume.prepare_run).
ADAPT_RUN_KEYS = ("data", "model", "text_column", "format", "leave_out", "leave_out_text_column", "limit", "seed",
                  "held_out_fraction", "max_length", "epochs", "batch_size", "lr", "warmup_fraction",
                  "mask_fraction", "head_only_fraction", "num_workers")


@dataclass
class AdaptConfig:
    data: list[str]
    output: str
    model: str = DEFAULT_BACKBONE
    # Each file's text is in the first of these columns it has (a corpus gathered from sources
    # that name it differently is read in one run).
    text_column: list[str] = field(default_factory=lambda: ["content"])
    format: str | None = None
    leave_out: list[str] | None = None  # files whose texts are never used (the labeled data)
    leave_out_text_column: list[str] = field(default_factory=lambda: ["content"])
    epochs: int = 1
    batch_size: int = 32
    lr: float = 5e-5
    warmup_fraction: float = 0.06
    mask_fraction: float = 0.15
    head_only_fraction: float = 0.1  # of the steps, where the backbone has no language-model head
    max_length: int = DEFAULT_MAX_LENGTH
    held_out_fraction: float = 0.02
    limit: int | None = None
    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: int | None = None
    precision: str = "auto"
    seed: int = 42
    run_name: str = "sentiment-adapt"
    storage_path: str | None = None
    max_failures: int = 2
    shared_fs: bool = False

    def __post_init__(self) -> None:
        # one name (a str) is accepted too
        self.text_column = text_column_names(self.text_column)
        self.leave_out_text_column = text_column_names(self.leave_out_text_column)

    @classmethod
    def from_namespace(cls, args) -> "AdaptConfig":
        return cls(data=args.data, output=args.output, model=args.model, text_column=list(args.text_column),
                   format=args.format, leave_out=args.leave_out, leave_out_text_column=list(args.leave_out_text_column),
                   epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, warmup_fraction=args.warmup_fraction,
                   mask_fraction=args.mask_fraction, head_only_fraction=args.head_only_fraction,
                   max_length=args.max_length, held_out_fraction=args.held_out_fraction, limit=args.limit,
                   num_workers=args.num_workers, use_gpu=args.gpu, cpus_per_worker=args.cpus_per_worker,
                   precision=args.precision, seed=args.seed, run_name=args.run_name, storage_path=args.storage_path,
                   max_failures=args.max_failures, shared_fs=args.shared_fs)

    def validate(self) -> None:
        for name in ("epochs", "batch_size", "num_workers", "max_length"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} must be at least 1")
        if self.lr <= 0:
            raise InputError("--lr must be positive")
        for name in ("warmup_fraction", "head_only_fraction"):
            if not 0 <= getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} must be at least 0 and below 1")
        for name in ("mask_fraction", "held_out_fraction"):
            if not 0 < getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} must be above 0 and below 1")
        if self.precision not in PRECISIONS:
            raise InputError(f"--precision must be one of {PRECISIONS}")

    @property
    def resolved_output(self) -> str:
        return absolute_uri(self.output).rstrip("/")

    @property
    def resolved_storage_path(self) -> str:
        return absolute_uri(self.storage_path).rstrip("/") if self.storage_path else f"{self.resolved_output}/checkpoints"

    def recorded(self) -> dict:
        """As metrics.json and the run's settings record it: absolute paths."""
        return {**asdict(self), "data": [absolute_uri(path) for path in self.data],
                "leave_out": [absolute_uri(path) for path in self.leave_out] if self.leave_out else None,
                "output": self.resolved_output, "storage_path": self.resolved_storage_path}


def adapt(config: AdaptConfig) -> dict:
    """Adapt the backbone on the unlabeled texts and write the encoder folder.

    Returns:
        The metrics written to OUTPUT/metrics.json.
    Raises:
        InputError / ModelError / StorageError: bad flags, data, backbone or storage, before any
            training starts.
    """
    from transformers import AutoModelForMaskedLM

    config.validate()
    check_max_length(config.max_length, backbone_config(config.model), f"backbone {config.model}")
    started = time.time()
    for uri in (config.resolved_output, config.resolved_storage_path):
        check_reachable(uri)
    if absolute_if_local(config.model).rstrip("/") == config.resolved_output:
        raise InputError(f"--output {config.output} is the --model folder: write the adapted encoder to a new folder")
    check_output_is_ours(config.resolved_output)
    list_shard_files(config.data, config.format)  # a path that matches nothing fails before any record is made
    run_dir = run_folder(config)
    recorded = config.recorded()
    if prepare_run(run_dir, {key: recorded[key] for key in ADAPT_RUN_KEYS}, ADAPT_RUN_KEYS) is not None:
        print(f"resuming run {config.run_name!r} from its last checkpoint (in {run_dir})", flush=True)
    ensure_connected()
    if config.cpus_per_worker is None:
        config = replace(config, cpus_per_worker=GPU_WORKER_CPUS if config.use_gpu else
                         cpu_worker_cpus(largest_node_cpus(), config.num_workers))
    require_shared_paths({"--data": config.data, "--leave-out": config.leave_out or [], "--output": [config.output],
                          "--storage-path": [config.storage_path] if config.storage_path else [],
                          "--model": [config.model] if local_backbone_folder(config.model) else []},
                         shared_fs=config.shared_fs)
    require({"CPU": config.cpus_per_worker, "GPU": int(config.use_gpu)}, config.num_workers,
            f"adapt --num-workers {config.num_workers}{' --gpu' if config.use_gpu else ''}")
    log.info("config: %s", json.dumps(asdict(config)))
    # A backbone that cannot be loaded is refused here in one line, not retried by every worker.
    _, _, new_head = load_encoder_with_head(AutoModelForMaskedLM, config.model)
    corpus = read_corpus(config.data, config.text_column, fmt=config.format, leave_out=config.leave_out,
                         leave_out_text_columns=config.leave_out_text_column,
                         held_out_fraction=config.held_out_fraction, seed=config.seed, limit=config.limit)
    prepared = time.time()
    trainer = _trainer(config, corpus, head_is_new=bool(new_head))
    log_workers_starting(config.num_workers, config.cpus_per_worker, config.use_gpu)
    result = fit_interruptibly(trainer)
    trained = time.time()
    if result.checkpoint is None:
        raise RuntimeError(f"adaptation reported no checkpoint; see the run at {run_dir}")

    staged = staging_folder(config.resolved_output)
    with tempfile.TemporaryDirectory() as scratch, result.checkpoint.as_directory() as checkpoint:
        with open(os.path.join(checkpoint, HISTORY_FILE)) as file:
            history = json.load(file)
        encoder_folder = os.path.join(scratch, "encoder")
        save_encoder(os.path.join(checkpoint, MODEL_SUBDIR), config.model, encoder_folder)
        plot_adaptation_history(history, os.path.join(encoder_folder, HISTORY_PLOT))
        upload_dir(encoder_folder, staged)
    metrics = {"adapted_from": absolute_if_local(config.model), "history": history, "held_out_loss": history[-1]["held_out_loss"],
               "corpus": corpus.counts, "config": config.recorded(),
               "wall_seconds": {"data_prep": prepared - started, "training": trained - prepared,
                                "total": time.time() - started},
               "ray_run": {"name": config.run_name, "checkpoint": result.checkpoint.path},
               "worker_failures": read_worker_failures(run_dir),  # what the run survived (sentiment.train.faults)
               "provenance": provenance()}
    commit_model_folder(staged, config.resolved_output, metrics)
    print(f"adapted encoder written to {config.resolved_output}: held-out masked-language loss "
          f"{metrics['held_out_loss']:.4f} after {len(history)} epoch(s) over {corpus.counts['train']} texts; "
          f"train on it with `sentiment train --model {config.resolved_output}`")
    return metrics


def _trainer(config: AdaptConfig, corpus, *, head_is_new: bool) -> TorchTrainer:
    worker_config = {"backbone": absolute_if_local(config.model), "epochs": config.epochs,
                     "batch_size": config.batch_size, "lr": config.lr, "warmup_fraction": config.warmup_fraction,
                     "mask_fraction": config.mask_fraction, "head_only_fraction": config.head_only_fraction,
                     "head_is_new": head_is_new, "max_length": config.max_length, "seed": config.seed,
                     "precision": config.precision, "cpus_per_worker": config.cpus_per_worker,
                     "train_rows": len(corpus.train), "held_out": corpus.held_out}
    texts = ray.data.from_pandas(pd.DataFrame({"text": corpus.train}))
    texts.context.enable_progress_bars = False  # our step lines are the progress display
    filesystem, path = arrow_filesystem(config.resolved_storage_path)
    return TorchTrainer(
        adapt_loop_per_worker, train_loop_config=worker_config,
        scaling_config=ScalingConfig(num_workers=config.num_workers, use_gpu=config.use_gpu,
                                     resources_per_worker={"CPU": config.cpus_per_worker,
                                                           **({"GPU": 1} if config.use_gpu else {})}),
        run_config=RunConfig(name=config.run_name, storage_path=path, storage_filesystem=filesystem,
                             checkpoint_config=CheckpointConfig(num_to_keep=1),
                             failure_config=FailureConfig(max_failures=config.max_failures),
                             callbacks=[WorkerFailureReport(config.max_failures, tag="[adapt]",
                                                            run_dir=run_folder(config))],
                             logging_config=LoggingConfig(log_level=RAY_TRAIN_LOG_LEVEL)),
        datasets={"train": texts})


def save_encoder(masked_lm_folder: str, backbone: str, directory: str) -> None:
    """The encoder of a masked-language model folder, saved as a bare encoder folder, with the
    pooler (which masked-language training neither has nor trains) taken from the backbone.

    Raises:
        RuntimeError: the two do not fit together (a bug: the model was built from the backbone).
    """
    from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer
    from transformers.utils.logging import disable_progress_bar

    disable_progress_bar()  # its per-shard bar would follow our last line on the terminal
    adapted = AutoModelForMaskedLM.from_pretrained(masked_lm_folder, use_safetensors=True)
    encoder, _, _ = load_encoder_with_head(AutoModel, backbone)  # the backbone, loaded and checked as everywhere
    missing, unexpected = encoder.load_state_dict(adapted.base_model.state_dict(), strict=False)
    if unexpected or any(".pooler." not in f".{name}" for name in missing):
        raise RuntimeError(f"the adapted weights do not fit {backbone}'s encoder: missing {missing[:4]}, "
                           f"unexpected {unexpected[:4]}")
    encoder.save_pretrained(directory, safe_serialization=True)
    AutoTokenizer.from_pretrained(masked_lm_folder).save_pretrained(directory)
