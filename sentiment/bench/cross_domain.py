"""The cross-domain set for the quality benchmark: another scrape's labeled rows, less every
row whose text the model was trained on.

Short reviews like "good" are in both scrapes; scoring a model on texts it was trained on would
flatter the cross-domain number, so those rows are dropped and counted."""

from __future__ import annotations

import os

import pandas as pd

from sentiment.data import clean_text


def _read_csvs(paths: list[str]) -> pd.DataFrame:
    files = [os.path.join(p, name) for p in paths if os.path.isdir(p) for name in sorted(os.listdir(p))
             if name.endswith(".csv")] + [p for p in paths if not os.path.isdir(p)]
    return pd.concat([pd.read_csv(f) for f in files], ignore_index=True)


def unseen_rows(other: list[str], trained_on: list[str], workdir: str, text_column: str = "content") -> dict:
    """The other set's rows whose text (compared as training compares texts) is not in the
    training files, written to one CSV in workdir.

    Returns {"path", "rows", "dropped"}: the file to evaluate on, how many rows it keeps and how
    many shared a text with the training files."""
    frame = _read_csvs(other)
    seen = set(clean_text(_read_csvs(trained_on)[text_column]))
    overlap = clean_text(frame[text_column]).isin(seen)
    path = os.path.join(workdir, "other-unseen.csv")
    frame[~overlap].to_csv(path, index=False)
    return {"path": path, "rows": int((~overlap).sum()), "dropped": int(overlap.sum())}
