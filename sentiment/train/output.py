"""The model folder at `train --output`: only ours is written into, and never left half-written
looking complete.

metrics.json marks a complete model folder. The run builds everything (the best checkpoint's
model, the test metrics, the plots) in OUTPUT/_staging first, the slow part. Only then is the
folder changed: a record of the names about to move (_committing.json) is written, the old
metrics.json removed, the staged files moved in, metrics.json last, and the record deleted. A kill
at any point leaves a folder without metrics.json, which readers must treat as incomplete, and
whose files _committing.json names as ours, so the next run replaces them.
"""

from __future__ import annotations

import json
import logging

from sentiment.errors import InputError, StorageError
from sentiment.io.storage import (PARTIAL_SUFFIX, STORAGE_ERRORS, describe_failure, fsspec_filesystem, make_durable,
                                  read_bytes, write_bytes)
from sentiment.pause_points import pause_point

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"  # written last: the folder is complete when it is there
STAGING = "_staging"
COMMITTING_FILE = "_committing.json"
CHECKPOINTS = "checkpoints"  # Ray Train's run folder by default (--storage-path unset)


def _entries(uri: str) -> dict[str, str]:
    """Top-level names under uri -> "file" or "directory"; empty when it does not exist."""
    fs, path = fsspec_filesystem(uri)
    try:
        if not fs.exists(path):
            return {}
        return {entry["name"].rstrip("/").rsplit("/", 1)[-1]: entry["type"]
                for entry in fs.ls(path, detail=True, refresh=True) if entry["name"].rstrip("/") != path}
    except STORAGE_ERRORS as error:
        raise StorageError(describe_failure(uri, error)) from None


def check_output_is_ours(output: str) -> None:
    """Refuse an --output folder holding files that no run of ours wrote.

    Ours: a complete model folder (metrics.json), Ray Train's checkpoints/ (a run to resume, by
    the rule in sentiment.train.resume), the staging folder and files of an interrupted commit,
    and what a write killed before its rename left (storage.write_bytes' *.partial).

    Raises:
        InputError: naming the folder and up to five of the other files.
    """
    entries = _entries(output)
    if METRICS_FILE in entries:
        return
    ours = {CHECKPOINTS, STAGING, COMMITTING_FILE}
    if COMMITTING_FILE in entries:
        ours.update(json.loads(read_bytes(f"{output}/{COMMITTING_FILE}"))["files"])
        log.warning("%s holds a model commit that was interrupted (no %s): this run replaces it", output, METRICS_FILE)
    others = sorted(name for name in entries if name not in ours and not name.endswith(PARTIAL_SUFFIX))
    if others:
        more = f" and {len(others) - 5} more" if len(others) > 5 else ""
        raise InputError(f"--output {output} already holds files that are not a model of ours "
                         f"({', '.join(others[:5])}{more}; no {METRICS_FILE}); choose a new or empty folder, "
                         "or move those files away")


def staging_folder(output: str) -> str:
    """A fresh, empty staging folder inside output, for this run's model, plots and metrics."""
    staging = f"{output}/{STAGING}"
    fs, path = fsspec_filesystem(staging)
    try:
        if fs.exists(path):
            fs.rm(path, recursive=True)
    except STORAGE_ERRORS as error:
        raise StorageError(describe_failure(staging, error)) from None
    return staging


def commit_model_folder(staging: str, output: str, metrics: dict) -> None:
    """Move the staged files into output, metrics.json last, so that no kill leaves a folder
    that holds metrics.json but not all of this run's files."""
    fs, staging_path = fsspec_filesystem(staging)
    _, output_path = fsspec_filesystem(output)
    try:
        names = sorted(name for name, kind in _entries(staging).items() if kind == "file")
        write_bytes(f"{output}/{COMMITTING_FILE}", json.dumps({"files": [*names, METRICS_FILE]}).encode())
        if fs.exists(f"{output_path}/{METRICS_FILE}"):
            fs.rm(f"{output_path}/{METRICS_FILE}")  # from here on, readers see an incomplete folder
        for number, name in enumerate(names):
            # A local move is a rename; on S3 a copy and a delete, so this loop is the window.
            fs.mv(f"{staging_path}/{name}", f"{output_path}/{name}")
            if number == 0:
                pause_point("train.commit_output")
        make_durable(output, names)  # on disk before metrics.json says the folder is complete
        write_bytes(f"{output}/{METRICS_FILE}", json.dumps(metrics, indent=2).encode())
        fs.rm(f"{output_path}/{COMMITTING_FILE}")
        if fs.exists(staging_path):
            fs.rm(staging_path, recursive=True)
        for name, kind in _entries(output).items():  # what a killed commit's writes left
            if kind == "file" and name.endswith(PARTIAL_SUFFIX):
                fs.rm(f"{output_path}/{name}")
    except STORAGE_ERRORS as error:
        raise StorageError(describe_failure(output, error)) from None

