"""The scoring output folder: what is ours, the commit protocol, the summary and the marker.

Readers trust a scored folder through `_SUCCESS`: a JSON manifest listing every Parquet file of
the night with its row count (and every input file). The commit never has a window in which
neither night is complete (see docs/output-commit.md):

 1. the attempt writes its Parquet files into its own staging folder beside the output,
    `_NAME.staging/ATTEMPT/` (names starting with `_` are skipped by Spark, pyarrow, Ray and
    this package's input listing);
 2. they are moved into the output as `part-ATTEMPT-NNNNN.parquet`, beside the old night's files;
 3. `_SUCCESS`, listing exactly the new files, replaces the old one in one step (one S3 PUT, a
    local rename), then `_summary.json`;
 4. the files the previous `_SUCCESS` listed are deleted, then the staging folder.

So a reader following `_SUCCESS` sees the old night until step 3 and the new one after it. A
run killed anywhere leaves files that carry an attempt id and are not listed by `_SUCCESS`; the
next run (holding the output's lock, see lock.py) deletes those, finishing or undoing the
interrupted commit. Nothing else is ever deleted: only files our own `_SUCCESS` listed, or a
whole folder when `--overwrite` says so.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass

from sentiment.errors import InputError, StorageError
from sentiment.io.storage import (STORAGE_ERRORS, describe_failure, fsspec_filesystem, has_glob, is_s3,
                                 make_durable, write_bytes)
from sentiment.pause_points import pause_point
from sentiment.score.lock import LOCK, OutputLock, new_attempt_id

log = logging.getLogger(__name__)

MARKER = "_SUCCESS"
SUMMARY = "_summary.json"
_ATTEMPT = r"\d{8}T\d{6}Z-[0-9a-f]{8}"
# Names only an attempt of ours writes: its part files and its temporary marker and lock files.
_ATTEMPT_FILE = re.compile(rf"^(?:part-(?P<part>{_ATTEMPT})-\d{{5}}\.parquet"
                           rf"|(?:{MARKER}|{LOCK}|{re.escape(SUMMARY)})\.(?P<tmp>{_ATTEMPT})\.tmp)$")
_FOREIGN_SHOWN = 3


def _join(uri: str, name: str) -> str:
    return uri.rstrip("/") + "/" + name


def _norm(uri: str) -> str:
    return fsspec_filesystem(uri)[1].rstrip("/") + "/"


def _attempt_of(name: str) -> str | None:
    """The attempt id in a name only our attempts write, else None."""
    match = _ATTEMPT_FILE.match(name)
    return match and (match["part"] or match["tmp"])


def check_output_folder(output_uri: str, input_uris: list[str], given_inputs: tuple[str, ...] = (),
                        overwrite: bool = False) -> None:
    """Refuse an output folder whose files are not ours, or that lies inside an input folder
    (the next run would read the scores as input).

    Ours are the files an earlier `_SUCCESS` of ours lists, that marker, the summary, the lock,
    and files named with an attempt id. Other files beside an earlier night of ours are left as
    they are; other files with no `_SUCCESS` of ours mean the folder is someone else's, and it is
    replaced only with overwrite.

    Args:
        output_uri: the --output folder or prefix.
        input_uris: every input file found.
        given_inputs: the --input paths as given (folders, globs, files).
        overwrite: --overwrite: replace a folder that holds files not ours.

    Raises:
        InputError: the output holds an input file, or files not ours and no `_SUCCESS` of ours,
            or is inside an input folder.
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
                     if has_glob(given) else given)
        if out.startswith(root):
            raise InputError(f"--output {output_uri} is inside the input folder {given}: the next run would read "
                             "the scores as input; choose an output folder outside the inputs")
    fs, path = fsspec_filesystem(output_uri)
    try:
        if not fs.isdir(path) and fs.isfile(path):
            raise InputError(f"--output {output_uri} is a file; it must be a folder or prefix")
    except STORAGE_ERRORS as error:
        raise StorageError(describe_failure(output_uri, error)) from None
    marker = read_marker(output_uri)
    foreign = _foreign_files(output_uri, marker)
    if foreign and marker is None and not overwrite:
        shown = ", ".join(foreign[:_FOREIGN_SHOWN]) + (f" and {len(foreign) - _FOREIGN_SHOWN} more"
                                                      if len(foreign) > _FOREIGN_SHOWN else "")
        raise InputError(f"--output {output_uri} holds files that `sentiment score` did not write ({shown}) and "
                         f"no {MARKER} of ours; choose an empty folder, or add --overwrite to replace them")


def _listing(output_uri: str) -> list[str]:
    """Every file under the output, as paths relative to it."""
    fs, path = fsspec_filesystem(output_uri)
    try:
        fs.invalidate_cache()
        return sorted(p[len(path.rstrip("/")) + 1:] for p in fs.find(path)) if fs.isdir(path) else []
    except STORAGE_ERRORS as error:
        raise StorageError(describe_failure(output_uri, error)) from None


def _foreign_files(output_uri: str, marker: dict | None) -> list[str]:
    listed = {f["file"] for f in marker["files"]} if marker else set()
    return [name for name in _listing(output_uri)
            if name not in listed and name not in (MARKER, SUMMARY, LOCK) and not _attempt_of(name)]


def staging_root(output_uri: str) -> str:
    """Where attempts stage before they commit, one subfolder each: `_NAME.staging` beside the output.

    Raises:
        InputError: the output is a bucket root, which has nothing beside it.
    """
    base = output_uri.rstrip("/") if is_s3(output_uri) else os.path.abspath(os.path.expanduser(output_uri))
    parent, _, name = base.rpartition("/")
    if not name or parent.endswith(":/") or not parent:
        raise InputError(f"--output {output_uri} must be a folder or prefix below a bucket or root folder, "
                         "so that an attempt can be staged beside it")
    return f"{parent}/_{name}.staging"


@dataclass
class Attempt:
    """One run's claim on an output: its id, its own staging folder and the output's lock."""

    output: str
    id: str
    staging: str
    lock: OutputLock
    overwrite: bool = False


def begin_attempt(output_uri: str, overwrite: bool = False) -> Attempt:
    """Take the output's lock, clean up after interrupted attempts, and give this one a staging folder.

    Raises:
        InputError: another live run holds the output (see lock.py), or see staging_root.
        StorageError: the storage cannot be written.
    """
    attempt_id = new_attempt_id()
    root = staging_root(output_uri)
    lock = OutputLock(output_uri, attempt_id)
    lock.acquire()
    try:
        _clean_interrupted(output_uri, root)
    except BaseException:
        lock.release()
        raise
    return Attempt(output_uri, attempt_id, f"{root}/{attempt_id}", lock, overwrite)


def _clean_interrupted(output_uri: str, root: str) -> None:
    """Delete what killed or failed attempts left: their files in the output that `_SUCCESS`
    does not list, and every staging folder (this run holds the lock, so none is in use)."""
    marker = read_marker(output_uri)
    listed = {f["file"] for f in marker["files"]} if marker else set()
    leftovers = [name for name in _listing(output_uri) if _attempt_of(name) and name not in listed]
    fs, out = fsspec_filesystem(output_uri)
    _, stage = fsspec_filesystem(root)
    try:
        fs.invalidate_cache()
        staged = fs.find(stage) if fs.exists(stage) else []
        for name in leftovers:
            fs.rm(f"{out}/{name}")
        if fs.exists(stage):
            fs.rm(stage, recursive=True)
    except STORAGE_ERRORS as error:
        raise StorageError(describe_failure(output_uri, error)) from None
    if leftovers or staged:
        attempts = sorted({_attempt_of(n) for n in leftovers} | {p[len(stage) + 1:].split("/")[0] for p in staged})
        log.warning("removed %d file(s) in %s and %d staged file(s) in %s left by an earlier attempt that failed or "
                    "was killed (%s); the output now holds %s", len(leftovers), output_uri, len(staged), root,
                    ", ".join(attempts), f"the night of {MARKER} ({marker.get('attempt', 'an earlier run')})"
                    if marker else f"no {MARKER}")


def commit(attempt: Attempt, summary: dict, written: list[dict], inputs: dict[str, int]) -> None:
    """Move the staged files in beside the old night, switch `_SUCCESS` to them, then delete the old files.

    Each step has a pause point (commit.staged, commit.moving, commit.before_marker,
    commit.before_delete, commit.deleting, commit.done), where the kill tests stop the driver.

    Args:
        attempt: from begin_attempt; its staging folder holds every Parquet file already.
        summary: written as `_summary.json`, after `_SUCCESS`.
        written: the per-file stats of the staged Parquet files; their names are updated to the
            committed ones.
        inputs: rows of every input file, for the manifest.

    Raises:
        StorageError: the storage failed, or another run took the lock over; `_SUCCESS` then
            still names one complete night, and the next run cleans up.
    """
    output_uri = attempt.output
    fs, out = fsspec_filesystem(output_uri)
    _, stage = fsspec_filesystem(attempt.staging)
    pause_point("commit.staged")
    attempt.lock.check_held()
    old = read_marker(output_uri)
    new_names = {w["file"]: f"part-{attempt.id}-{i:05d}.parquet" for i, w in enumerate(sorted(
        written, key=lambda w: w["file"]))}
    try:
        fs.makedirs(out, exist_ok=True)
        for i, (staged, name) in enumerate(sorted(new_names.items())):
            fs.mv(f"{stage}/{staged}", f"{out}/{name}")
            if i == 0:
                pause_point("commit.moving")
    except STORAGE_ERRORS as error:
        raise StorageError(describe_failure(output_uri, error) + f"; {MARKER} still names the previous night") from None
    try:
        make_durable(output_uri, list(new_names.values()))  # on disk before _SUCCESS names them
    except StorageError as error:
        raise StorageError(f"{error}; {MARKER} still names the previous night") from None
    for w in written:
        w["file"] = new_names[w["file"]]
    summary["attempt"] = attempt.id
    pause_point("commit.before_marker")
    _replace(output_uri, MARKER, json.dumps(_manifest(summary, written, inputs, attempt.id), indent=2).encode(),
             attempt.id)
    _replace(output_uri, SUMMARY, json.dumps(summary, indent=2, sort_keys=True).encode(), attempt.id)
    pause_point("commit.before_delete")
    keep = {*new_names.values(), MARKER, SUMMARY, LOCK}
    if attempt.overwrite:  # the whole folder was handed over to us
        old_files = [name for name in _listing(output_uri) if name not in keep and not name.startswith(LOCK)]
    else:
        old_files = [f["file"] for f in (old or {}).get("files", []) if f["file"] not in keep]
    try:
        for i, name in enumerate(old_files):
            if fs.exists(f"{out}/{name}"):
                fs.rm(f"{out}/{name}")
            if i == 0:
                pause_point("commit.deleting")
    except STORAGE_ERRORS as error:  # the new night is complete; the next run removes the rest
        log.warning("could not remove the previous night's %s: %s", name, error)
    try:
        if fs.exists(stage):
            fs.rm(stage, recursive=True)
        root = stage.rsplit("/", 1)[0]
        if not is_s3(output_uri) and os.path.isdir(root) and not os.listdir(root):
            os.rmdir(root)
    except STORAGE_ERRORS as error:  # the night is complete; the next attempt removes the rest
        log.warning("could not remove %s: %s", attempt.staging, error)
    pause_point("commit.done")


def _replace(output_uri: str, name: str, data: bytes, attempt_id: str) -> None:
    """Replace one small file whole: readers see the old contents or the new, never a mix."""
    # Locally through a temporary named with the attempt id, which _foreign_files counts as ours
    # and recovery removes; S3 replaces the object in one PUT.
    write_bytes(_join(output_uri, name), data, partial_name=f"{name}.{attempt_id}.tmp")


def _manifest(summary: dict, written: list[dict], inputs: dict[str, int], attempt_id: str) -> dict:
    return {
        "attempt": attempt_id,
        "model": summary["model"],
        "rows": summary["rows_read"],
        "files": sorted(({"file": w["file"], "rows": w["rows"]} for w in written), key=lambda f: f["file"]),
        "inputs": [{"file": uri, "rows": n} for uri, n in sorted(inputs.items())],
        "skipped_inputs": summary.get("skipped_files", []),
        "finished_at": summary["finished_at"],
    }


def read_marker(output_uri: str) -> dict | None:
    """The manifest of a completed output; None when there is no `_SUCCESS`, or one that is not
    ours (Spark's is empty)."""
    try:
        marker = _read_json(output_uri, MARKER)
    except ValueError:
        return None
    ok = isinstance(marker, dict) and isinstance(marker.get("files"), list) \
        and all(isinstance(f, dict) and isinstance(f.get("file"), str) for f in marker["files"])
    return marker if ok else None


def read_night_summary(output_uri: str) -> dict | None:
    """The `_summary.json` of the night `_SUCCESS` names now (what tonight is compared
    with); None when there is none, or when the summary is of another attempt (a run killed
    between writing the two) or unreadable."""
    marker = read_marker(output_uri)
    if marker is None:
        return None
    try:
        summary = _read_json(output_uri, SUMMARY)
    except ValueError:
        log.warning("%s is not JSON; that night is passed over", _join(output_uri, SUMMARY))
        return None
    if not isinstance(summary, dict) or summary.get("attempt") != marker.get("attempt"):
        return None
    return summary


def _read_json(output_uri: str, name: str):
    """The parsed JSON of output_uri/name; None when it does not exist.

    Raises:
        ValueError: it is not JSON. StorageError: the storage failed.
    """
    fs, path = fsspec_filesystem(_join(output_uri, name))
    try:
        fs.invalidate_cache()
        with fs.open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    except STORAGE_ERRORS as error:
        raise StorageError(describe_failure(output_uri, error)) from None
    return json.loads(data)
