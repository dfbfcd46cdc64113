"""`sentiment nights`: many scoring nights side by side, as a table and a plot.

Each night's `_summary.json` compares it with the night before (`score --compare-with`). What one
comparison cannot show is a share that creeps a point a night for two weeks, or which night a new
model or a broken upstream export began: that needs the nights in a row. Only committed nights
count: the `_summary.json` of the attempt `_SUCCESS` names (commit.read_night_summary), so a
killed run's leftovers never show up as a night. Every folder asked about is either a row or named
as holding no finished night.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import json
import logging
import os
from dataclasses import dataclass

from sentiment.data.labels import LABELS
from sentiment.errors import InputError, StorageError
from sentiment.io.storage import STORAGE_ERRORS, describe_failure, fsspec_filesystem, has_glob, to_uri
from sentiment.score.commit import MARKER, read_night_summary
from sentiment.score.summary import LABEL_SHIFT_WARNING

log = logging.getLogger(__name__)

# Summaries are two small reads each; on S3 their latency, not bandwidth, is the cost of a year.
_READERS = 16
_SHOWN = 3


@dataclass
class NightsConfig:
    """What `sentiment nights` reads and where its plot goes.

    Args:
        outputs: scoring output folders, globs of them, or folders holding them (one level down).
        plot: a PNG path or s3:// URI for the label shares and rows by night; None: no plot.
        as_json: print the nights as JSON instead of a table.
    """

    outputs: list[str]
    plot: str | None = None
    as_json: bool = False

    @classmethod
    def from_namespace(cls, args) -> "NightsConfig":
        return cls(outputs=args.outputs, plot=args.plot, as_json=args.json)


def find_night_folders(uris: list[str]) -> list[str]:
    """The scoring output folders uris name, in the order given, each once.

    A uri is a night's folder when it holds `_SUCCESS`; a glob stands for the folders it matches;
    any other folder stands for its subfolders (a prefix of dated nights), or for itself when it has
    none. Names starting with `_` or `.` (staging folders, markers) are never nights.

    Raises:
        InputError: a uri that does not exist, or a glob that matches no folder.
        StorageError: the storage cannot be listed.
    """
    folders: list[str] = []
    for uri in uris:
        fs, path = fsspec_filesystem(uri)
        path = path.rstrip("/")
        try:
            fs.invalidate_cache()
            if has_glob(uri):
                # detail=True lists each match's type with it: no request per match on S3
                found = sorted(name.rstrip("/") for name, info in fs.glob(path, detail=True).items()
                               if info["type"] == "directory" and not _hidden(name))
                if not found:
                    raise InputError(f"{uri} matches no folder")
            elif fs.exists(f"{path}/{MARKER}"):
                found = [path]
            elif fs.isdir(path):
                found = sorted(entry["name"].rstrip("/") for entry in fs.ls(path, detail=True)
                               if entry["type"] == "directory" and not _hidden(entry["name"])) or [path]
            else:
                raise InputError(f"{uri}: no such folder")
        except STORAGE_ERRORS as error:
            raise StorageError(describe_failure(uri, error)) from None
        folders += [to_uri(uri, p) for p in found]
    return list(dict.fromkeys(folders))


def _hidden(path: str) -> bool:
    return os.path.basename(path.rstrip("/")).startswith(("_", "."))


@dataclass
class Nights:
    """The finished nights, oldest first, one dict each (see night_rows), and the folders without one."""

    rows: list[dict]
    unfinished: list[str]


def read_nights(folders: list[str]) -> Nights:
    """Each folder's committed summary, read in parallel, made into rows oldest first.

    Raises:
        StorageError: a folder cannot be read.
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(_READERS, len(folders)))) as pool:
        summaries = list(pool.map(read_night_summary, folders))
    finished = [(folder, s) for folder, s in zip(folders, summaries)
                if s is not None and isinstance(s.get("label_fractions"), dict)]
    finished.sort(key=lambda pair: str(pair[1].get("finished_at", "")))
    done = {folder for folder, _ in finished}
    unfinished = [folder for folder in folders if folder not in done]
    return Nights(night_rows(finished), unfinished)


def night_rows(finished: list[tuple[str, dict]]) -> list[dict]:
    """One dict per night: its folder and short name, finish time, model, rows, wall time, label
    shares, each share's shift from the row before (None for the first), whether the model changed,
    and the labels whose share moved by LABEL_SHIFT_WARNING or more."""
    names = [os.path.basename(folder.rstrip("/")) for folder, _ in finished]
    if len(set(names)) < len(names):  # nights of several prefixes: the short name is ambiguous
        names = [folder for folder, _ in finished]
    rows: list[dict] = []
    for name, (folder, summary) in zip(names, finished):
        shares = {label: float(summary["label_fractions"].get(label, 0.0)) for label in LABELS}
        before = rows[-1] if rows else None
        shift = {label: round(shares[label] - before["shares"][label], 4) for label in LABELS} if before else None
        rows.append({
            "night": name,
            "folder": folder,
            "finished_at": summary.get("finished_at"),
            "model": summary.get("model"),
            "model_changed": before is not None and summary.get("model") != before["model"],
            "rows_scored": summary.get("rows_scored"),
            "rows_errored": summary.get("rows_errored"),
            "wall_s": summary.get("wall_s"),
            # None for nights scored before the count existed.
            "actor_restarts": (summary.get("scoring_actors") or {}).get("restarts"),
            "shares": shares,
            "shift": shift,
            "moved": [label for label in LABELS if shift and abs(shift[label]) >= LABEL_SHIFT_WARNING],
        })
    return rows


def format_nights(nights: Nights) -> str:
    """The nights as a text table, oldest first: shares with their shift in points from the night
    before (`!` from LABEL_SHIFT_WARNING), the model where it changed, then the folders without a
    finished night and the nights whose shares moved."""
    header = ["night", "finished (UTC)", "rows scored", "errored", "minutes", *LABELS, "model"]
    table = [header]
    for row in nights.rows:
        shares = []
        for label in LABELS:
            cell = f"{row['shares'][label]:.1%}"
            if row["shift"] is not None:
                cell += f" ({row['shift'][label] * 100:+.1f}){'!' if label in row['moved'] else ''}"
            shares.append(cell)
        model = ""
        if row is nights.rows[0] or row["model_changed"]:
            model = str(row["model"]) + (" (new)" if row["model_changed"] else "")
        table.append([row["night"], _when(row["finished_at"]), _count(row["rows_scored"]),
                      _count(row["rows_errored"]), f"{row['wall_s'] / 60:.1f}" if row["wall_s"] is not None else "?",
                      *shares, model])
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) if i in (0, 1, len(header) - 1) else cell.rjust(width)
                       for i, (cell, width) in enumerate(zip(line, widths))).rstrip() for line in table]
    lines.append(f"label shares in % with their shift in points from the night above; ! marks a shift of "
                 f"{LABEL_SHIFT_WARNING * 100:.0f} points or more")
    moved = [row for row in nights.rows if row["moved"]]
    if moved:
        lines.append(f"{len(moved)} night(s) where a share moved {LABEL_SHIFT_WARNING * 100:.0f} points or more: " +
                     "; ".join(f"{row['night']} (" + ", ".join(f"{label} {row['shift'][label] * 100:+.1f}"
                                                                for label in row["moved"]) + ")" for row in moved))
    restarted = [row for row in nights.rows if row["actor_restarts"]]
    if restarted:
        lines.append(f"{len(restarted)} night(s) where Ray restarted a scoring actor whose process was lost "
                     f"(killed, out of memory, its node gone; every row still scored once): " +
                     ", ".join(f"{row['night']} ({row['actor_restarts']})" for row in restarted))
    if nights.unfinished:
        lines.append(f"no finished night (no {MARKER} and _summary.json of one attempt) in: " +
                     ", ".join(nights.unfinished))
    return "\n".join(lines)


def _when(finished_at) -> str:
    try:
        moment = datetime.datetime.fromisoformat(str(finished_at))
    except ValueError:
        return str(finished_at)
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")


def _count(value) -> str:
    return f"{value:,}" if isinstance(value, int) else "?"


def nights(config: NightsConfig) -> Nights:
    """Read every night config.outputs names, print them (format_nights, or JSON), and draw the
    plot when asked.

    Returns:
        The nights (oldest first) and the folders without a finished night.

    Raises:
        InputError: an output that does not exist, or no finished night among them all.
        StorageError: the storage cannot be read, or the plot cannot be written.
    """
    folders = find_night_folders(config.outputs)
    found = read_nights(folders)
    if not found.rows:
        shown = ", ".join(folders[:_SHOWN]) + (f" and {len(folders) - _SHOWN} more" if len(folders) > _SHOWN else "")
        raise InputError(f"no finished night (no {MARKER} and _summary.json of one attempt) in {shown}")
    print(json.dumps(dataclasses.asdict(found), indent=2) if config.as_json else format_nights(found), flush=True)
    if config.plot:
        from sentiment.score.plots import plot_nights

        plot_nights(found.rows, config.plot)
        log.info("wrote %s", config.plot)
    return found
