"""The scoring output folder: what may be replaced, the commit protocol, the summary and the marker.

Readers trust a scored folder only when `_SUCCESS` is there. It is written last and holds a JSON
manifest (every input file and every Parquet file with its row count), so a half-written night
is never mistaken for a finished one. Names starting with `_` are skipped by Spark, pyarrow, Ray
and this package's own input listing, so the marker, `_summary.json` and the staging folder
never get read as data.

Commit protocol (as Hadoop's and Spark's output committers): an attempt writes everything into
a staging folder beside the output (`_NAME.staging`); only when every file is there does it
replace the output's contents and write `_SUCCESS` last. A failed attempt leaves yesterday's
complete output untouched, plus its staging folder, which the next attempt removes first.
"""

from __future__ import annotations

import datetime
import json
import logging
import os

from sentiment.errors import InputError, StorageError
from sentiment.data.labels import LABELS
from sentiment.io.storage import STORAGE_ERRORS, describe_failure, fsspec_filesystem, is_s3, write_bytes

log = logging.getLogger(__name__)

MARKER = "_SUCCESS"
SUMMARY = "_summary.json"
_GLOB_CHARS = set("*?[")


def _join(uri: str, name: str) -> str:
    return uri.rstrip("/") + "/" + name


def _norm(uri: str) -> str:
    return fsspec_filesystem(uri)[1].rstrip("/") + "/"


def check_output_folder(output_uri: str, input_uris: list[str], given_inputs: tuple[str, ...] = ()) -> None:
    """Refuse an output folder whose replacement would destroy anything but an earlier scoring,
    or that lies inside an input folder (the next run would read the scores as input).

    A re-run replaces the folder's contents (that is what keeps rows from doubling), so the
    folder must hold only what `score` writes: Parquet files, the marker and the summary.

    Args:
        output_uri: the --output folder or prefix.
        input_uris: every input file found.
        given_inputs: the --input paths as given (folders, globs, files).

    Raises:
        InputError: the output holds an input file or files `score` did not write, or is inside an input folder.
        StorageError: the output storage cannot be listed.
    """
    out = _norm(output_uri)
    same_kind = [u for u in input_uris if is_s3(u) == is_s3(output_uri)]
    inside = [u for u in same_kind if _norm(u).startswith(out)]
    if inside:
        raise InputError(f"--output {output_uri} contains input file {inside[0]}; "
                         "scoring replaces the output folder, so choose another one")
    for given in (g for g in given_inputs if is_s3(g) == is_s3(output_uri)):
        root = _norm(given.split("*")[0].split("?")[0].split("[")[0].rsplit("/", 1)[0]
                     if _GLOB_CHARS & set(given) else given)
        if out.startswith(root):
            raise InputError(f"--output {output_uri} is inside the input folder {given}: the next run would read "
                             "the scores as input; choose an output folder outside the inputs")
    fs, path = fsspec_filesystem(output_uri)
    try:
        existing = fs.find(path) if fs.isdir(path) else []
        if not existing and fs.isfile(path):
            raise InputError(f"--output {output_uri} is a file; it must be a folder or prefix")
    except STORAGE_ERRORS as error:
        raise StorageError(describe_failure(output_uri, error)) from None
    foreign = [p for p in existing if not _is_ours(p.rsplit("/", 1)[-1])]
    if foreign:
        raise InputError(f"--output {output_uri} holds files that `sentiment score` did not write "
                         f"(e.g. {foreign[0]}); scoring replaces the folder, so choose an empty one")


def _is_ours(name: str) -> bool:
    return name.endswith(".parquet") or name in (MARKER, SUMMARY)


def staging_uri(output_uri: str) -> str:
    """Where an attempt writes before it commits: `_NAME.staging` beside the output.

    Raises:
        InputError: the output is a bucket root, which has nothing beside it.
    """
    base = output_uri.rstrip("/") if is_s3(output_uri) else os.path.abspath(os.path.expanduser(output_uri))
    parent, _, name = base.rpartition("/")
    if not name or parent.endswith(":/") or not parent:
        raise InputError(f"--output {output_uri} must be a folder or prefix below a bucket or root folder, "
                         "so that an attempt can be staged beside it")
    return f"{parent}/_{name}.staging"


def begin_attempt(output_uri: str) -> str:
    """An empty staging folder for this attempt; an earlier failed attempt's is removed first.

    Raises:
        InputError: see staging_uri. StorageError: the storage cannot be written.
    """
    staging = staging_uri(output_uri)
    fs, path = fsspec_filesystem(staging)
    try:
        if fs.exists(path):
            log.warning("removing %s, left by an earlier attempt that failed", staging)
            fs.rm(path, recursive=True)
    except STORAGE_ERRORS as error:
        raise StorageError(describe_failure(staging, error)) from None
    return staging


def commit(staging: str, output_uri: str, summary: dict, written: list[dict], inputs: dict[str, int]) -> None:
    """Replace the output with the staged attempt, `_SUCCESS` last, and remove the staging folder.

    Args:
        staging: the attempt's folder, holding every Parquet file already.
        output_uri: the output folder; its old contents (only `score`'s, see check_output_folder) go.
        summary: written as `_summary.json`.
        written: the per-file stats of the staged Parquet files.
        inputs: rows of every input file, for the manifest.

    Raises:
        StorageError: the storage failed; the output then has no `_SUCCESS`.
    """
    write_bytes(_join(staging, SUMMARY), json.dumps(summary, indent=2, sort_keys=True).encode())
    fs, out = fsspec_filesystem(output_uri)
    _, stage = fsspec_filesystem(staging)
    try:
        remove_marker(output_uri)  # from here until the new marker, readers see an incomplete night
        if fs.exists(out):
            fs.rm(out, recursive=True)
        fs.makedirs(out, exist_ok=True)
        for source in fs.find(stage):
            fs.mv(source, out + source[len(stage):])
    except STORAGE_ERRORS as error:
        raise StorageError(describe_failure(output_uri, error) + f"; the output has no {MARKER}") from None
    write_bytes(_join(output_uri, MARKER), json.dumps(_manifest(summary, written, inputs), indent=2).encode())
    try:
        if fs.exists(stage):
            fs.rm(stage, recursive=True)
    except STORAGE_ERRORS as error:  # the night is complete; the next attempt removes the rest
        log.warning("could not remove %s: %s", staging, error)


def remove_marker(output_uri: str) -> None:
    """Delete a previous run's marker before replacing the output, so it reads as incomplete."""
    fs, path = fsspec_filesystem(_join(output_uri, MARKER))
    try:
        if fs.exists(path):
            fs.rm(path)
    except STORAGE_ERRORS as error:
        raise StorageError(describe_failure(output_uri, error)) from None


def build_summary(written: list[dict], *, wall_s: float, model: str, output: str, inputs: list[str],
                  precision: str = "auto", input_rows: dict[str, int] | None = None,
                  skipped: list[str] = ()) -> dict:
    """Totals over the per-file stats the writer returned.

    Args:
        written: one dict per Parquet file: file, rows, errored, labels (label -> count) and
            errors (error text -> count).
        wall_s: seconds from the start of the run to the last file written.
        model: the model identifier stored in every row.
        precision: the --precision asked for ("auto" resolves per actor: bf16 on GPUs and AMX CPUs).
        output, inputs: URIs, recorded for whoever reads the summary tomorrow.
        input_rows: rows of every input file read, by URI.
        skipped: files under the inputs that were not read (markers, notes, other formats).

    Returns:
        A JSON-serialisable summary (see the README's scoring section for the fields).
    """
    rows = sum(w["rows"] for w in written)
    errored = sum(w["errored"] for w in written)
    labels = {name: sum(w["labels"].get(name, 0) for w in written) for name in LABELS}
    errors: dict[str, int] = {}
    for w in written:
        for text, count in w.get("errors", {}).items():
            errors[text] = errors.get(text, 0) + count
    return {
        "model": model,
        "precision": precision,
        "inputs": inputs,
        "input_files": [{"file": uri, "rows": n} for uri, n in sorted((input_rows or {}).items())],
        "skipped_files": list(skipped),
        "output": output,
        "rows_read": rows,
        "rows_scored": rows - errored,
        "rows_errored": errored,
        "errors": dict(sorted(errors.items(), key=lambda kv: -kv[1])),
        "wall_s": round(wall_s, 2),
        "rows_per_s": round(rows / wall_s, 1) if wall_s > 0 else None,
        "labels": labels,
        "label_fractions": {k: round(v / (rows - errored), 4) if rows > errored else 0.0 for k, v in labels.items()},
        "files": len(written),
        "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _manifest(summary: dict, written: list[dict], inputs: dict[str, int]) -> dict:
    return {
        "model": summary["model"],
        "rows": summary["rows_read"],
        "files": sorted(({"file": w["file"], "rows": w["rows"]} for w in written), key=lambda f: f["file"]),
        "inputs": [{"file": uri, "rows": n} for uri, n in sorted(inputs.items())],
        "skipped_inputs": summary.get("skipped_files", []),
        "finished_at": summary["finished_at"],
    }


def read_marker(output_uri: str) -> dict | None:
    """The manifest of a completed output, or None while it is incomplete."""
    fs, path = fsspec_filesystem(_join(output_uri, MARKER))
    try:
        if not fs.exists(path):
            return None
        with fs.open(path, "rb") as f:
            return json.loads(f.read())
    except STORAGE_ERRORS as error:
        raise StorageError(describe_failure(output_uri, error)) from None
