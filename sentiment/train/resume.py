"""Resume a Ray Train run only when it is the same run: same data, backbone and hyperparameters.

Ray Train resumes any run whose folder (storage path / run name) holds a checkpoint, and the
model then comes from that checkpoint whatever --model, --data or --lr say. So train() records
the settings that define a run beside Ray's files, and refuses to continue a run whose stored
settings differ, saying how to start fresh or how to resume.
"""

from __future__ import annotations

import json

from sentiment.errors import InputError
from sentiment.io.storage import exists, read_bytes, write_bytes

SETTINGS_FILE = "sentiment_run.json"
SNAPSHOT_FILE = "checkpoint_manager_snapshot.json"  # Ray Train's record of registered checkpoints
# What makes two runs the same run. Resources (GPU, CPUs, torch.compile) and the selection
# metric may change between attempts without changing what is being trained.
RUN_KEYS = ("data", "model", "text_column", "score_column", "format", "limit", "seed", "split_seed", "val_fraction",
            "test_fraction", "max_length", "epochs", "batch_size", "lr", "warmup_fraction", "label_smoothing",
            "num_workers", "pseudo_labels", "pseudo_text_column", "pseudo_min_confidence", "pseudo_per_class")
# Keys added to RUN_KEYS after runs were already being recorded, with the value those older runs
# trained with, so that upgrading mid-run still resumes instead of reporting a change.
OLDER_RUNS_USED = {"label_smoothing": 0.0, "pseudo_labels": None, "pseudo_text_column": None,
                   "pseudo_min_confidence": None, "pseudo_per_class": None}


def run_settings(config: dict) -> dict:
    """The subset of a resolved train config that defines a run."""
    return {key: config[key] for key in RUN_KEYS}


def _same_setting(recorded, now) -> bool:
    # adapt's text columns became lists of names (2026-12-05): a run recorded with one name is
    # the same run as its one-name list.
    return recorded == now or (isinstance(now, list) and isinstance(recorded, str) and now == [recorded])


def prepare_run(run_dir: str, settings: dict, keys: tuple[str, ...] = RUN_KEYS) -> int | None:
    """Check a run folder before training and record this run's settings in it.

    Args:
        run_dir: the Ray Train run folder (storage path / run name), local or s3://.
        settings: run_settings() of the resolved config.
        keys: the settings that define a run (another command's own, for `sentiment adapt`).
    Returns:
        The epoch of the checkpoint the run resumes from, or None for a fresh run.
    Raises:
        InputError: the folder holds a checkpoint of a run with other settings.
    """
    snapshot_uri, settings_uri = f"{run_dir}/{SNAPSHOT_FILE}", f"{run_dir}/{SETTINGS_FILE}"
    latest = json.loads(read_bytes(snapshot_uri)).get("latest_checkpoint_result") if exists(snapshot_uri) else None
    if not latest:
        write_bytes(settings_uri, json.dumps(settings, indent=2).encode())
        return None
    stored = json.loads(read_bytes(settings_uri)) if exists(settings_uri) else {}
    # Before --split-seed, --seed also seeded the split.
    stored = {**OLDER_RUNS_USED, "split_seed": stored.get("seed"), **stored}
    changed = [f"{key} {stored.get(key, '(not recorded)')!r} -> {settings[key]!r}"
               for key in keys if not _same_setting(stored.get(key), settings[key])]
    if changed:
        raise InputError(f"{run_dir} holds checkpoints of a run with other settings ({'; '.join(changed)}); "
                         "to start a fresh run pass a new --run-name (or another --storage-path), "
                         "to resume that run repeat its settings")
    return latest["metrics"]["epoch"]
