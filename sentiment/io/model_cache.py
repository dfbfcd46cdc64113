"""Each node's cache of model folders from s3://: one download per node and model version, shared
by every actor, task and worker there, and the home of what else a node keeps between runs (the
joined all-mpnet-base-v2 folder, the compiled-kernel cache)."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile

from sentiment.errors import StorageError
from sentiment.io.storage import absolute_uri, describe_failure, fsspec_filesystem, is_s3

MODEL_CACHE_ENV = "SENTIMENT_MODEL_CACHE"


def model_cache_root() -> str:
    """This node's cache of s3:// model folders: $SENTIMENT_MODEL_CACHE, else under the temp dir."""
    return os.environ.get(MODEL_CACHE_ENV) or os.path.join(tempfile.gettempdir(), "sentiment-model-cache")


def fetch_dir_files(uri: str, skip_suffixes: tuple[str, ...] = ()) -> str:
    """A local folder holding the top-level files of uri; local folders are used in place.

    Only top-level files travel, so a model folder's checkpoints/ or plots never get downloaded
    by every scoring actor; names ending in skip_suffixes stay behind too (e.g. the weights,
    for a worker that needs only the tokenizer).

    s3:// folders go to a per-node cache, one folder per URI and version (the listing's names,
    sizes and ETags), under a file lock: the actors and tokenize tasks of one node share one
    download, and a model replaced at the same URI is fetched anew while older versions of it
    are removed. A cached file whose size is not the listed one (cut short by a crash of the
    node) is fetched again.

    Raises:
        StorageError: the storage cannot be listed or read.
    """
    if not is_s3(uri):
        return absolute_uri(uri)
    from filelock import FileLock

    fs, path = fsspec_filesystem(uri)
    try:
        listing = [entry for entry in fs.ls(path, detail=True, refresh=True) if entry["type"] == "file"]
    except OSError as error:
        raise StorageError(describe_failure(uri, error)) from None
    version = _digest(sorted((entry["name"], entry["size"], entry.get("ETag", "")) for entry in listing))
    uri_folder = os.path.join(model_cache_root(), _digest(path))
    folder = os.path.join(uri_folder, version)
    os.makedirs(uri_folder, exist_ok=True)
    with FileLock(os.path.join(uri_folder, ".lock")):
        os.makedirs(folder, exist_ok=True)
        for entry in listing:
            target = os.path.join(folder, entry["name"].rsplit("/", 1)[-1])
            # A cached file of the listed size is taken as it is. Another size is what a node's crash
            # leaves of a file whose bytes had not reached its disk: fetched again, not loaded.
            if entry["name"].endswith(skip_suffixes) or (os.path.exists(target)
                                                         and os.path.getsize(target) == entry["size"]):
                continue
            try:
                fs.get_file(entry["name"], target + ".partial")
            except OSError as error:
                raise StorageError(describe_failure(uri, error)) from None
            os.replace(target + ".partial", target)  # atomic: readers never see half a file
        for other in os.listdir(uri_folder):
            if other not in (version, ".lock"):
                shutil.rmtree(os.path.join(uri_folder, other), ignore_errors=True)
    return folder


def _digest(value) -> str:
    return hashlib.sha256(repr(value).encode()).hexdigest()[:16]
