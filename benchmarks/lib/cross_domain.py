"""The cross-domain set for the quality benchmark: another scrape's labeled rows, less every
row whose text the model was trained on.

Short reviews like "good" are in both scrapes; scoring a model on texts it was trained on would
flatter the cross-domain number, so those rows are dropped and counted."""

from __future__ import annotations

import os

import pandas as pd

from sentiment.data.labeled import clean_text
from sentiment.io.shards import format_of, list_shard_files


def _read_labeled_files(paths: list[str]) -> pd.DataFrame:
    """Every data file under paths, found as `sentiment train` finds them (folders, compressed
    CSV, Parquet, JSON lines; notes and markers skipped), in one frame. pandas reads each by
    its URI (compression from the name, s3:// through s3fs)."""
    readers = {"csv": pd.read_csv, "parquet": pd.read_parquet, "json": lambda uri: pd.read_json(uri, lines=True)}
    uris = list_shard_files(paths, None).uris
    return pd.concat([readers[format_of(uri, None)](uri) for uri in uris], ignore_index=True)


def unseen_rows(other: list[str], trained_on: list[str], workdir: str, text_column: str = "content") -> dict:
    """The other set's rows whose text (compared as training compares texts) is not in the
    training files, written to one CSV in workdir.

    Returns {"path", "rows", "dropped"}: the file to evaluate on, how many rows it keeps and how
    many shared a text with the training files."""
    frame = _read_labeled_files(other)
    seen = set(clean_text(_read_labeled_files(trained_on)[text_column]))
    overlap = clean_text(frame[text_column]).isin(seen)
    path = os.path.join(workdir, "other-unseen.csv")
    frame[~overlap].to_csv(path, index=False)
    return {"path": path, "rows": int((~overlap).sum()), "dropped": int(overlap.sum())}
