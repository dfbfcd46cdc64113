"""Unlabeled review texts for `sentiment adapt`: read, cleaned, each text once, the labeled
data's texts left out, and a held-out share set apart by a seeded hash of the text.

Leaving the labeled texts out keeps the classifier's validation and test rows unseen, even
without their labels, by the encoder that will be fine-tuned on them. The held-out texts measure
the masked-language loss on reviews the adaptation never trained on.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from sentiment.data.labeled import clean_text, split_of
from sentiment.errors import InputError
from sentiment.io.shards import TEXT_TYPE_COLUMN, find_shards, read_shards

log = logging.getLogger(__name__)


@dataclass
class Corpus:
    train: list[str]  # distinct texts, in a seeded order
    held_out: list[str]
    counts: dict  # what was read and what became of it; every row read is in one count


def read_texts(uris: list[str], text_columns: Sequence[str], fmt: str | None = None) -> tuple[list[str], dict, int]:
    """Every row's cleaned text (clean_text) from CSV, Parquet or JSON-lines files, the rows per
    input file, and the rows left out because their file's text column holds no text (numbers, in
    a Parquet or JSON file: a wrong column, whose "5" is no review). Each file's text is in the
    first of text_columns it has. Needs a Ray connection (the files are checked and read by Ray
    tasks).

    Raises:
        InputError: a path matches nothing, a file is unreadable or has none of text_columns,
            naming it.
    """
    text_column, *others = text_columns
    shards = find_shards(uris, text_column=text_column, fmt=fmt, keep_columns=[], other_text_columns=tuple(others),
                         not_text_fate="their rows are counted as not_text and left out")
    dataset = read_shards(shards)
    dataset.context.enable_progress_bars = False
    frame = dataset.to_pandas()
    # The column is there only where some file's text column holds no text (read_shards).
    not_text = frame[TEXT_TYPE_COLUMN].notna() if TEXT_TYPE_COLUMN in frame else pd.Series(False, index=frame.index)
    return clean_text(frame.loc[~not_text, text_column]).tolist(), dict(shards.rows_by_uri), int(not_text.sum())


def read_corpus(uris: list[str], text_columns: Sequence[str], *, fmt: str | None = None, leave_out: list[str] | None = None,
                leave_out_text_columns: Sequence[str] = ("content",), held_out_fraction: float = 0.02, seed: int = 42,
                limit: int | None = None) -> Corpus:
    """The texts to adapt on and to measure with.

    Args:
        uris: unlabeled files, folders, globs or s3:// URIs.
        text_columns: names of their text column; each file's text is in the first of these it
            has, and every file must have one.
        leave_out: files whose texts (the first of leave_out_text_columns each has) are never used,
            such as the labeled data the classifier will be trained, validated and tested on.
        held_out_fraction: share of the distinct texts held out, by a seeded hash of the text
            (at least one text).
        seed: the hash's and the order's seed.
        limit: keep at most this many distinct texts (a seeded sample), held-out ones included.

    Raises:
        InputError: as read_texts; or no text is left to train on.
    """
    texts, rows_by_file, not_text = read_texts(uris, text_columns, fmt)
    empty = sum(1 for text in texts if not text)
    distinct = sorted({text for text in texts if text})
    left_out_texts = set(read_texts(leave_out, leave_out_text_columns)[0]) if leave_out else set()
    kept = [text for text in distinct if text not in left_out_texts]
    left_out = len(distinct) - len(kept)
    random.Random(seed).shuffle(kept)  # a seeded order, the same whatever the file order
    beyond_limit = max(0, len(kept) - limit) if limit else 0
    kept = kept[:len(kept) - beyond_limit]
    held_out = [text for text in kept if split_of(text, seed, held_out_fraction, 0.0) == "validation"]
    if not held_out and len(kept) > 1:
        held_out = kept[-1:]
    held = set(held_out)
    train = [text for text in kept if text not in held]
    if not train:
        raise InputError(f"{', '.join(uris)}: no text is left to train on ({len(texts) + not_text} rows read, "
                         f"{empty} empty, {not_text} in a text column that holds no text, "
                         f"{left_out} in the --leave-out data)")
    counts = {"rows_read": len(texts) + not_text, "rows_by_file": rows_by_file, "not_text": not_text, "empty": empty,
              "repeated": len(texts) - empty - len(distinct), "left_out": left_out,
              "beyond_limit": beyond_limit, "train": len(train), "held_out": len(held_out)}
    log.info("corpus: %d rows read from %d file(s): %d texts to train on, %d held out; %d empty, %d repeats "
             "of a text, %d in the --leave-out data, %d beyond --limit, %d in a text column that holds no text",
             counts["rows_read"], len(rows_by_file), len(train), len(held_out), empty, counts["repeated"],
             counts["left_out"], beyond_limit, not_text)
    return Corpus(train, held_out, counts)
