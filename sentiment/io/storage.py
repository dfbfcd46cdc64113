"""Local paths and s3:// URIs behind one interface.

s3:// goes through s3fs because it honours the whole standard AWS environment, AWS_ENDPOINT_URL
included. pyarrow's native S3FileSystem would spare every read and write task a GIL-bound
Python filesystem, but it still ignores that variable: checked 2026-11-27 with pyarrow 26.0.1
against the moto server, S3FileSystem() went to bucket.s3.us-east-1.amazonaws.com while
S3FileSystem(endpoint_override=...) listed the bucket. Ray wants pyarrow filesystems, so
arrow_filesystem() wraps the same s3fs instance. Credentials are never read or passed here:
botocore finds them (environment, profile, instance role), so they never reach logs or configs.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field

import fsspec
import pyarrow.fs as pafs

from sentiment.errors import InputError, StorageError
from sentiment.pause_points import pause_point

try:  # botocore comes with s3fs; its errors are storage errors whatever s3fs lets through
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:  # pragma: no cover - s3fs is a dependency
    BotoCoreError = ClientError = OSError

log = logging.getLogger(__name__)

# What storage failures raise: OSError (local files, and s3fs's translation of S3 errors:
# FileNotFoundError, PermissionError, timeouts) and botocore's own classes. Anything else is a
# bug in this package and keeps its traceback.
STORAGE_ERRORS = (OSError, BotoCoreError, ClientError)
# What write_bytes writes a local file under before renaming it over the file's name.
PARTIAL_SUFFIX = ".partial"
# Names in an input folder that are not data and are skipped (and listed as skipped): notes
# beside the shards. Hidden and `_` files (markers such as _SUCCESS, .crc) are skipped too.
NOTE_SUFFIXES = (".txt", ".md", ".rst")
NOTE_NAMES = ("readme", "license", "notes")
_GLOB_CHARS = set("*?[")
# A dead endpoint should fail within seconds at 3 a.m., not after botocore's minutes of retries.
_S3_CLIENT_CONFIG = {"connect_timeout": 5, "read_timeout": 60, "retries": {"max_attempts": 3}}


# Codecs by the end of a file's name, any case: Arrow's own detection (pa.Codec.detect, used by
# Ray too) knows only lower-case names, so `B.CSV.GZ` was read as plain text.
_CODECS = {".gz": "gzip", ".zst": "zstd", ".bz2": "bz2"}


def compression_of(path: str) -> str | None:
    """The compression codec of a file from its name, any case ("gzip", "zstd", "bz2"), or None."""
    name = path.lower()
    return next((codec for suffix, codec in _CODECS.items() if name.endswith(suffix)), None)


def has_glob(path: str) -> bool:
    """Whether a path or URI is a glob pattern (holds *, ? or [), not a name."""
    return bool(_GLOB_CHARS & set(path))


def is_s3(uri: str) -> bool:
    return uri.startswith(("s3://", "s3a://"))


def absolute_uri(uri: str) -> str:
    """uri as a process in any directory opens it: s3:// as given, a local path made absolute
    (with ~ expanded). Ray's workers and actors do not run in the driver's directory, where a
    relative path named something."""
    return uri if is_s3(uri) else os.path.abspath(os.path.expanduser(uri))


def _strip_scheme(uri: str) -> str:
    return uri.split("://", 1)[1]


def s3_endpoint() -> str:
    """The S3 endpoint in use, for error messages (never credentials)."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or "AWS S3 (default endpoint)"


def fsspec_filesystem(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem for a URI and the path within it."""
    if is_s3(uri):
        # The endpoint is part of fsspec's instance-cache key, so a changed AWS_ENDPOINT_URL
        # never reuses a client bound to the old one.
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        fs = fsspec.filesystem("s3", endpoint_url=endpoint, config_kwargs=_S3_CLIENT_CONFIG)
        return fs, _strip_scheme(uri).rstrip("/")
    return fsspec.filesystem("file"), os.path.abspath(os.path.expanduser(uri))


def arrow_filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem for a URI and the path within it, as Ray Data and Ray Train take them."""
    if is_s3(uri):
        fs, path = fsspec_filesystem(uri)
        return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path
    return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(uri))


def to_uri(uri_like: str, path: str) -> str:
    """Turn a filesystem path back into a URI of the same kind as uri_like."""
    return f"s3://{path}" if is_s3(uri_like) else path


def describe_failure(uri: str, error: BaseException) -> str:
    """A one-line explanation of a storage failure that names endpoint and bucket for s3."""
    if is_s3(uri):
        bucket = _strip_scheme(uri).split("/", 1)[0]
        return (f"cannot access {uri}: object storage at {s3_endpoint()}, bucket '{bucket}': "
                f"{type(error).__name__}: {error}")
    return f"cannot access {uri}: {type(error).__name__}: {error}"


def check_reachable(uri: str) -> None:
    """Fail fast when the storage behind uri cannot be reached (s3: naming endpoint and bucket)
    or, for a local path, when its nearest existing parent folder is not writable.

    Raises:
        StorageError: if the bucket cannot be listed or the local folder cannot be written.
    """
    if not is_s3(uri):
        folder = os.path.abspath(os.path.expanduser(uri))
        while not os.path.exists(folder):
            folder = os.path.dirname(folder)
        if not (os.path.isdir(folder) and os.access(folder, os.W_OK)):
            raise StorageError(f"cannot write under {uri}: {folder} is not a writable folder")
        try:  # os.access says yes to root everywhere, /proc and read-only mounts included
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as error:
            raise StorageError(f"cannot write under {uri}: {folder} is not a writable folder "
                               f"({error.strerror or error})") from None
        return
    fs, path = fsspec_filesystem(uri)
    try:
        fs.ls(path.split("/", 1)[0], detail=False)
    except STORAGE_ERRORS as error:
        raise StorageError(describe_failure(uri, error)) from None


@dataclass(frozen=True)
class InputFiles:
    """Input files resolved from user paths: filesystem, paths within it, and a URI for each."""

    filesystem: pafs.FileSystem
    paths: list[str]
    uris: list[str]
    skipped: list[str] = field(default_factory=list)  # URIs under the inputs that are not read


def _kind_of(path: str, suffixes: tuple[str, ...], skip: tuple[str, ...]) -> str:
    """"data", "skip" (markers, notes, formats not asked for) or "unknown" for one file.

    path is relative to the input folder: anything under a hidden or `_` folder is skipped too,
    as Spark and Hive do (`_temporary/`, a failed attempt's `_NAME.staging/`).
    """
    name = path.rsplit("/", 1)[-1].lower()
    if any(part.startswith((".", "_")) for part in path.split("/")) or name.endswith(NOTE_SUFFIXES) \
            or name.startswith(NOTE_NAMES):
        return "skip"
    if name.endswith(suffixes):
        return "data"
    return "skip" if name.endswith(skip) else "unknown"


def list_input_files(uris: list[str], suffixes: tuple[str, ...], skip: tuple[str, ...] = ()) -> InputFiles:
    """Expand files, folders (recursively) and globs into a sorted list of data files.

    Every file found is read or accounted for: names ending in suffixes (any case) are data;
    hidden and `_` files, notes (README, .txt, .md) and names ending in skip are listed in
    `skipped`; anything else is an error, so a new kind of dump is never silently left out.
    All inputs must be on the same kind of storage (all local or all s3://).

    Raises:
        InputError: if a path does not exist, nothing matches, or a file is of an unknown kind.
        StorageError: if the storage cannot be reached.
    """
    if not uris:
        raise InputError("no input paths given")
    kinds = {is_s3(uri) for uri in uris}
    if len(kinds) > 1:
        raise InputError("mixing local paths and s3:// URIs in one input is not supported")
    found: dict[str, None] = {}  # ordered and O(1) de-duplication: 20,000 names in milliseconds
    skipped: dict[str, None] = {}
    unknown: list[str] = []
    reached: list[str] = []  # every data file each input reached, repeats included
    for uri in uris:
        fs, path = fsspec_filesystem(uri)
        try:
            if has_glob(path):
                matches = {p: p.rsplit("/", 1)[-1] for p in fs.glob(path) if fs.isfile(p)}
            elif fs.isdir(path):
                matches = {p: p[len(path.rstrip("/")) + 1:] for p in fs.find(path)}  # relative to the folder
            elif fs.isfile(path):
                if not path.lower().endswith(suffixes):
                    raise InputError(f"cannot read {uri}: input files must end in {'/'.join(suffixes)}")
                matches = {path: None}  # named by the user: data whatever its name
            else:
                raise InputError(f"input not found: {uri}")
        except STORAGE_ERRORS as error:
            raise StorageError(describe_failure(uri, error)) from None
        by_kind: dict[str, list[str]] = {"data": [], "skip": [], "unknown": []}
        for p in sorted(matches):
            by_kind["data" if matches[p] is None else _kind_of(matches[p], suffixes, skip)].append(p)
        unknown += by_kind["unknown"]
        skipped.update(dict.fromkeys(by_kind["skip"]))
        if not by_kind["data"] and not by_kind["unknown"]:
            raise InputError(f"no {'/'.join(suffixes)} files found in {uri}")
        found.update(dict.fromkeys(by_kind["data"]))
        reached += by_kind["data"]
    if unknown:
        names = ", ".join(to_uri(uris[0], p) for p in unknown[:5])
        more = f" (and {len(unknown) - 5} more)" if len(unknown) > 5 else ""
        raise InputError(f"cannot tell how to read {names}{more}: input files must end in {'/'.join(suffixes)} "
                         "(any case); move other files out of the input folder")
    filesystem, _ = arrow_filesystem(uris[0])
    paths = _once_per_file(reached, local=not is_s3(uris[0]))
    return InputFiles(filesystem, paths, [to_uri(uris[0], p) for p in paths],
                      [to_uri(uris[0], p) for p in skipped if p not in found])


def _once_per_file(paths: list[str], local: bool) -> list[str]:
    """paths with each file kept once, in order: a symlink beside its target, a path given twice,
    or a folder given beside a file in it would otherwise be read twice, every row scored twice.
    Local paths are compared by their real path (symlinks resolved)."""
    reached: dict[str, list[str]] = {}
    for path in paths:
        reached.setdefault(os.path.realpath(path) if local else path, []).append(path)
    repeated = [ways for ways in reached.values() if len(ways) > 1]
    if repeated:
        shown = [f"{ways[0]} (also as {', '.join(dict.fromkeys(w for w in ways[1:] if w != ways[0])) or 'itself'})"
                 for ways in repeated[:5]]
        more = f" and {len(repeated) - 5} more" if len(repeated) > 5 else ""
        log.warning("reading %d file(s) once that the inputs reach more than once (a symlink, or the same file "
                    "given twice): %s%s", len(repeated), "; ".join(shown), more)
    return [ways[0] for ways in reached.values()]


def write_bytes(uri: str, data: bytes, *, partial_name: str | None = None) -> None:
    """Write a whole object or file, creating parent folders.

    Readers, and a kill at any point, see the old contents or the new, never a part: S3 replaces
    an object whole when its upload completes, and a local file is written beside its name
    (partial_name in the same folder; default NAME.<random>.partial, PARTIAL_SUFFIX) and renamed
    over it. A kill before the rename leaves that partial file and the old contents; folders that
    check their files count it as ours (score's commit names it with its attempt id for that).
    """
    fs, path = fsspec_filesystem(uri)
    try:
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        if is_s3(uri):
            with fs.open(path, "wb") as f:
                f.write(data)
            return
        partial = (os.path.join(os.path.dirname(path), partial_name) if partial_name
                   else f"{path}.{uuid.uuid4().hex[:12]}{PARTIAL_SUFFIX}")
        try:
            with open(partial, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())  # the bytes on disk before the name points at them
            pause_point(f"storage.before_rename:{os.path.basename(path)}")
            os.replace(partial, path)
            _fsync_folder(os.path.dirname(path))  # and the rename itself
        finally:
            if os.path.exists(partial):
                os.remove(partial)
    except STORAGE_ERRORS as error:
        raise StorageError(describe_failure(uri, error)) from None


def make_durable(uri: str, names: list[str]) -> None:
    """Flush the local files `names` in folder `uri`, and the folder itself, to disk (fsync).

    A process kill never loses what the page cache holds, but a power cut or a kernel crash can:
    a marker written after its data files (`_SUCCESS`, a model folder's metrics.json) may reach
    the disk first and name files that come back empty. Committers call this on the files a marker
    will name, then write the marker with write_bytes, which flushes its own file the same way.
    S3 holds an object durably once its upload completes: nothing to do there.
    """
    if is_s3(uri):
        return
    _, folder = fsspec_filesystem(uri)
    try:
        for name in names:
            descriptor = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
        _fsync_folder(folder)
    except STORAGE_ERRORS as error:
        raise StorageError(describe_failure(uri, error)) from None


def _fsync_folder(folder: str) -> None:
    # A folder's entries (new names, renames) reach the disk when the folder itself is flushed.
    # Some file systems (network and FUSE mounts among them) refuse fsync on a folder: EINVAL,
    # nothing better to do there.
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    except OSError as error:
        if error.errno != errno.EINVAL:
            raise
    finally:
        os.close(descriptor)


def read_bytes(uri: str) -> bytes:
    fs, path = fsspec_filesystem(uri)
    try:
        with fs.open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise InputError(f"not found: {uri}") from None
    except STORAGE_ERRORS as error:
        raise StorageError(describe_failure(uri, error)) from None


def exists(uri: str) -> bool:
    fs, path = fsspec_filesystem(uri)
    try:
        return fs.exists(path)
    except STORAGE_ERRORS as error:
        raise StorageError(describe_failure(uri, error)) from None


def upload_dir(local_dir: str, uri: str) -> None:
    """Copy the files of a local folder (recursively) to a local folder or an s3:// prefix."""
    fs, path = fsspec_filesystem(uri)
    try:
        if is_s3(uri):
            fs.put(local_dir.rstrip("/") + "/", path + "/", recursive=True)
        else:
            shutil.copytree(local_dir, path, dirs_exist_ok=True)
    except STORAGE_ERRORS as error:
        raise StorageError(describe_failure(uri, error)) from None


def copy_dir(source: str, destination: str) -> None:
    """Copy a folder's files (recursively) between local paths and s3:// prefixes, storage to storage.

    S3 to S3 is a server-side copy, so nothing passes through this process; the other cases
    stream each file straight to its destination, with no staging folder.

    Raises:
        StorageError: either side cannot be read or written.
    """
    source_fs, source_path = fsspec_filesystem(source)
    _, destination_path = fsspec_filesystem(destination)
    try:
        if not is_s3(source) and not is_s3(destination):
            shutil.copytree(source_path, destination_path, dirs_exist_ok=True)
        elif not is_s3(source):
            upload_dir(source_path, destination)
        else:
            files = source_fs.find(source_path)
            targets = [destination_path + name[len(source_path):] for name in files]
            if is_s3(destination):
                source_fs.copy(files, targets)
            else:
                source_fs.get(files, targets)
    except OSError as error:
        raise StorageError(f"cannot copy {source} to {destination}: {type(error).__name__}: {error}") from None
