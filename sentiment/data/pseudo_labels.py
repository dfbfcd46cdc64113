"""Pseudo-labels: unlabeled reviews that a trained model scored confidently, as extra training rows.

The lever issue 23 names for the 278,552 unlabeled reviews: a model scores them (`sentiment
score`), and the rows whose most likely class it gives at least a minimum probability join the
training split of a new run, labeled with that class. They never join validation or test, which
stay the labeled data's own rows (the split hash and the held-out hash do not change), and a text
that the labeled data has, in any split, is left out: its star label wins, and no held-out text
reaches training by this door.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from sentiment.data.labeled import clean_text, text_column_names
from sentiment.data.labels import (DEFAULT_PSEUDO_MIN_CONFIDENCE, DEFAULT_PSEUDO_PER_CLASS, LABEL_TO_ID, LABELS,
                                   PROB_COLUMNS)
from sentiment.errors import InputError
from sentiment.io.shards import list_shard_files
from sentiment.score.columns import ERROR_COLUMN, LABEL_COLUMN

log = logging.getLogger(__name__)


@dataclass
class PseudoLabels:
    """Confident pseudo-labeled rows, one per text (columns text, label, confidence), how many rows
    were left out and why, and how many per class training may take (per_class)."""

    rows: pd.DataFrame
    counts: dict
    per_class: str = DEFAULT_PSEUDO_PER_CLASS

    def for_training(self, labeled_texts) -> tuple[pd.DataFrame, dict]:
        """The pseudo-labeled rows (columns text, label) that join training: those whose text the
        labeled data does not have (in any split), then per class the most confident ones up to
        per_class. Also the pseudo-label counts, completed with in_labeled_data, over_class_cap,
        joined_train and its classes.

        Raises:
            InputError: no row is left.
        """
        in_labeled = self.rows["text"].isin(pd.Index(labeled_texts))
        unseen = self.rows[~in_labeled]
        available = _classes(unseen)
        cap = (None if self.per_class == "all" else min(available.values()) if self.per_class == "balanced"
               else int(self.per_class))
        # Most confident first within each class; ties keep the files' order.
        ranked = unseen.sort_values("confidence", ascending=False, kind="stable")
        chosen = ranked.groupby("label", sort=False).head(cap) if cap is not None else ranked
        joined = chosen.sort_index()[["text", "label"]].reset_index(drop=True)
        counts = {**self.counts, "in_labeled_data": int(in_labeled.sum()), "per_class": self.per_class,
                  "over_class_cap": len(unseen) - len(joined), "joined_train": len(joined), "classes": _classes(joined)}
        if joined.empty:
            raise InputError(f"no pseudo-labeled row is left for training: the labeled data has every confident "
                             f"text or a class has none left ({counts})")
        return joined, counts


def parse_per_class(value: str) -> str:
    """"balanced", "all" or a positive whole number (as text): --pseudo-per-class.

    Raises:
        InputError: anything else.
    """
    value = str(value).strip().lower()
    if value in ("balanced", "all") or (value.isdigit() and int(value) > 0):
        return value
    raise InputError(f"--pseudo-per-class must be balanced, all or a positive whole number, got {value!r}")


def read_pseudo_labels(paths: list[str], text_column: str | Sequence[str],
                       min_confidence: float = DEFAULT_PSEUDO_MIN_CONFIDENCE,
                       per_class: str = DEFAULT_PSEUDO_PER_CLASS) -> PseudoLabels:
    """The confident rows of `sentiment score` output, one per text, labeled with the class it chose.

    Args:
        paths: the output folders (or their Parquet files, globs, s3:// URIs) of `sentiment score`.
        text_column: the column holding the review text in that output (the scored input's), or
            several names, tried in order in each file (outputs of runs that named it differently).
        min_confidence: keep a row when its chosen class's probability is at least this.
        per_class: how many rows of each class training takes, the most confident first
            (PseudoLabels.for_training): "balanced" (as many as the scarcest class has), "all", or a
            number. Real reviews are mostly positive, and a model is least sure of neutral ones:
            a plain threshold would teach the new run that every review is positive.

    Counts, every row read once: kept, unscored (the scorer's error column set, or no label),
    empty_text, below_confidence, duplicate_text (a text seen earlier in the files), and the
    kept rows per class (kept_classes).

    Raises:
        InputError: no Parquet files, a file lacks the text or score columns, or nothing is kept
            (with "balanced": a class has no confident row).
    """
    if not 0 < min_confidence <= 1:
        raise InputError(f"--pseudo-min-confidence must be above 0 and at most 1, got {min_confidence}")
    per_class = parse_per_class(per_class)
    text_names = text_column_names(text_column)
    files = list_shard_files(paths, "parquet")
    frames = []
    for path, uri in zip(files.paths, files.uris):
        names = pq.read_schema(path, filesystem=files.filesystem).names
        own_text = next((name for name in text_names if name in names), " or ".join(text_names))
        columns = [own_text, LABEL_COLUMN, *PROB_COLUMNS, ERROR_COLUMN]
        missing = [c for c in columns if c not in names]
        if missing:
            hint = ("name the text column with --pseudo-text-column (every name the outputs use)" if own_text in missing
                    else "--pseudo-labels takes the output of `sentiment score`")
            raise InputError(f"{uri}: missing column(s) {missing} of scored reviews; it has {names}; {hint}")
        table = pq.read_table(path, columns=columns, filesystem=files.filesystem).to_pandas()
        frames.append(table.rename(columns={own_text: text_names[0]}))
    scored = pd.concat(frames, ignore_index=True)
    text_column = text_names[0]
    # As training cleans the labeled texts, so that "the labeled data has this text" means the same.
    text = clean_text(scored[text_column])
    label = scored[LABEL_COLUMN].map(LABEL_TO_ID)
    error = scored[ERROR_COLUMN].where(scored[ERROR_COLUMN].notna(), "").astype(str)
    unscored = (error != "") | label.isna()
    empty = ~unscored & (text == "")
    # In the scorer's float32: 0.9 written by it must pass a --pseudo-min-confidence of 0.9.
    confidence = scored[list(PROB_COLUMNS)].max(axis=1).to_numpy(dtype=np.float32)
    below = ~unscored & ~empty & ~(confidence >= np.float32(min_confidence))
    candidate = ~(unscored | empty | below)
    duplicate = candidate & text.duplicated(keep="first")
    keep = candidate & ~duplicate
    rows = pd.DataFrame({"text": text[keep].to_numpy(dtype=object), "label": label[keep].astype(np.int64).to_numpy(),
                         "confidence": confidence[keep.to_numpy()]})
    classes = _classes(rows)
    counts = {"files": len(files.paths), "rows_read": len(scored), "kept": len(rows),
              "unscored": int(unscored.sum()), "empty_text": int(empty.sum()),
              "below_confidence": int(below.sum()), "duplicate_text": int(duplicate.sum()),
              "min_confidence": min_confidence, "kept_classes": classes}
    shown = ", ".join(f"{name} {n:,}" for name, n in classes.items())
    if rows.empty:
        raise InputError(f"no pseudo-labeled rows in {paths}: of {len(scored)} rows none was scored with a "
                         f"probability of at least {min_confidence:g} ({counts}); lower --pseudo-min-confidence")
    if per_class == "balanced" and not min(classes.values()):
        absent = " or ".join(name for name, n in classes.items() if not n)
        raise InputError(f"no pseudo-labeled {absent} rows in {paths} at --pseudo-min-confidence {min_confidence:g} "
                         f"({shown}), so a balanced selection keeps none; lower --pseudo-min-confidence, or pass "
                         "--pseudo-per-class all or a number")
    log.info("pseudo-labels from %s: %s", ", ".join(paths), counts)
    return PseudoLabels(rows, counts, per_class)


def _classes(rows: pd.DataFrame) -> dict[str, int]:
    return {name: int((rows["label"] == i).sum()) for i, name in enumerate(LABELS)}
