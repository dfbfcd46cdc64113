"""Real reviews for the benchmarks: the whole unlabeled corpus, a seeded random sample of it,
and the same texts written back out as CSV shards for `sentiment score`."""

from __future__ import annotations

import glob
import os

import numpy as np
import pandas as pd

from sentiment.errors import InputError

# One corpus file names its text column "Text"; every other file says "Review Text".
TEXT_COLUMNS = ("Review Text", "Text")


def load_corpus(data_dir: str, keep_blank: bool = False) -> list[str]:
    """All non-empty review texts of every CSV file in `data_dir`, in file order.

    With keep_blank, every row's text, blanks and nulls (None) included: the load test must
    count them, not lose them.

    Raises:
        InputError: if the folder holds no CSV, or a file has no known text column.
    """
    import pyarrow.csv as pa_csv

    paths = sorted(glob.glob(os.path.join(data_dir, "*.csv")))
    if not paths:
        raise InputError(f"{data_dir}: no CSV files to sample reviews from")
    texts = []
    for path in paths:
        table = pa_csv.read_csv(path, parse_options=pa_csv.ParseOptions(newlines_in_values=True))
        column = next((c for c in TEXT_COLUMNS if c in table.column_names), None)
        if column is None:
            raise InputError(f"{path}: no text column (looked for {', '.join(TEXT_COLUMNS)})")
        values = table.column(column).cast("string").to_pylist()
        texts.extend(values if keep_blank else (t for t in values if t and t.strip()))
    return texts


def load_labeled(data_dir: str) -> pd.DataFrame:
    """The text and star columns (content, score) of every labeled CSV file in `data_dir`, in file order."""
    return pd.concat(pd.read_csv(path, usecols=["content", "score"])
                     for path in sorted(glob.glob(os.path.join(data_dir, "*.csv"))))


def sample_reviews(data_dir: str, n: int, seed: int = 0) -> list[str]:
    """`n` reviews drawn at random, without replacement, from the whole corpus in `data_dir`."""
    corpus = load_corpus(data_dir)
    if n > len(corpus):
        raise InputError(f"{data_dir}: asked for {n} reviews, the corpus has {len(corpus)}")
    picks = np.random.default_rng(seed).choice(len(corpus), size=n, replace=False)
    return [corpus[i] for i in picks]


def write_shards(texts: list[str], rows: int, directory: str, rows_per_shard: int = 10_000,
                 column: str = "Review Text") -> list[str]:
    """Write `rows` reviews (cycling through `texts`) as CSV shards; returns their paths."""
    os.makedirs(directory, exist_ok=True)
    paths = []
    for index, start in enumerate(range(0, rows, rows_per_shard)):
        picks = np.arange(start, min(start + rows_per_shard, rows)) % len(texts)
        path = os.path.join(directory, f"shard-{index:05d}.csv")
        pd.DataFrame({column: [texts[i] for i in picks]}).to_csv(path, index=False)
        paths.append(path)
    return paths
