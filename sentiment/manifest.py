"""The scoring output folder: what may be replaced, the summary, and the completion marker.

Readers trust a scored folder only when `_SUCCESS` is there. It is written last and holds a JSON
manifest (every Parquet file and its row count), so a half-written night is never mistaken for
a finished one. Names starting with `_` are skipped by Spark, pyarrow, Ray and this package's own
input listing, so the marker and `_summary.json` never get read as data.
"""

from __future__ import annotations

import datetime
import json

from sentiment.errors import InputError, StorageError
from sentiment.labels import LABELS
from sentiment.storage import describe_failure, fsspec_filesystem, is_s3, write_bytes

MARKER = "_SUCCESS"
SUMMARY = "_summary.json"


def _join(uri: str, name: str) -> str:
    return uri.rstrip("/") + "/" + name


def _norm(uri: str) -> str:
    return fsspec_filesystem(uri)[1].rstrip("/") + "/"


def check_output_folder(output_uri: str, input_uris: list[str]) -> None:
    """Refuse an output folder whose replacement would destroy anything but an earlier scoring.

    A re-run replaces the folder's contents (that is what keeps rows from doubling), so the
    folder must hold only what `score` writes: Parquet files, the marker and the summary.

    Raises:
        InputError: the output holds an input file or files `score` did not write.
        StorageError: the output storage cannot be listed.
    """
    out = _norm(output_uri)
    inside = [u for u in input_uris if (_norm(u) if is_s3(u) == is_s3(output_uri) else "").startswith(out)]
    if inside:
        raise InputError(f"--output {output_uri} contains input file {inside[0]}; "
                         "scoring replaces the output folder, so choose another one")
    fs, path = fsspec_filesystem(output_uri)
    try:
        existing = fs.find(path) if fs.isdir(path) else []
        if not existing and fs.isfile(path):
            raise InputError(f"--output {output_uri} is a file; it must be a folder or prefix")
    except InputError:
        raise
    except Exception as error:
        raise StorageError(describe_failure(output_uri, error)) from None
    foreign = [p for p in existing if not _is_ours(p.rsplit("/", 1)[-1])]
    if foreign:
        raise InputError(f"--output {output_uri} holds files that `sentiment score` did not write "
                         f"(e.g. {foreign[0]}); scoring replaces the folder, so choose an empty one")


def _is_ours(name: str) -> bool:
    return name.endswith(".parquet") or name in (MARKER, SUMMARY)


def remove_marker(output_uri: str) -> None:
    """Delete a previous run's marker before writing, so a failed re-run reads as incomplete."""
    fs, path = fsspec_filesystem(_join(output_uri, MARKER))
    try:
        if fs.exists(path):
            fs.rm(path)
    except Exception as error:
        raise StorageError(describe_failure(output_uri, error)) from None


def build_summary(written: list[dict], *, wall_s: float, model: str, output: str, inputs: list[str],
                  precision: str = "auto") -> dict:
    """Totals over the per-file stats the writer returned.

    Args:
        written: one dict per Parquet file: file, rows, errored and labels (label -> count).
        wall_s: seconds from the start of the run to the last file written.
        model: the model identifier stored in every row.
        precision: the --precision asked for ("auto" resolves per actor: bf16 on GPUs and AMX CPUs).
        output, inputs: URIs, recorded for whoever reads the summary tomorrow.

    Returns:
        A JSON-serialisable summary (see the README's scoring section for the fields).
    """
    rows = sum(w["rows"] for w in written)
    errored = sum(w["errored"] for w in written)
    labels = {name: sum(w["labels"].get(name, 0) for w in written) for name in LABELS}
    return {
        "model": model,
        "precision": precision,
        "inputs": inputs,
        "output": output,
        "rows_read": rows,
        "rows_scored": rows - errored,
        "rows_errored": errored,
        "wall_s": round(wall_s, 2),
        "rows_per_s": round(rows / wall_s, 1) if wall_s > 0 else None,
        "labels": labels,
        "label_fractions": {k: round(v / (rows - errored), 4) if rows > errored else 0.0 for k, v in labels.items()},
        "files": len(written),
        "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def write_summary_and_marker(output_uri: str, summary: dict, written: list[dict]) -> None:
    """Write `_summary.json`, then `_SUCCESS` with the manifest; the marker always goes last."""
    write_bytes(_join(output_uri, SUMMARY), json.dumps(summary, indent=2, sort_keys=True).encode())
    manifest = {
        "model": summary["model"],
        "rows": summary["rows_read"],
        "files": sorted(({"file": w["file"], "rows": w["rows"]} for w in written), key=lambda f: f["file"]),
        "finished_at": summary["finished_at"],
    }
    write_bytes(_join(output_uri, MARKER), json.dumps(manifest, indent=2).encode())


def read_marker(output_uri: str) -> dict | None:
    """The manifest of a completed output, or None while it is incomplete."""
    fs, path = fsspec_filesystem(_join(output_uri, MARKER))
    try:
        if not fs.exists(path):
            return None
        with fs.open(path, "rb") as f:
            return json.loads(f.read())
    except Exception as error:
        raise StorageError(describe_failure(output_uri, error)) from None
