"""Labeled reviews into Ray Data: read, validate, label, drop bad rows (counted), dedupe, split.

The split is a seeded hash of the text, not a shuffle: it is the same whatever the file order,
block layout or cluster size, and every copy of a text lands in the same split, so no text can
leak from train into validation or test.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import ray
from ray.data.expressions import col

from sentiment.errors import InputError
from sentiment.io.storage import InputFiles
from sentiment.io.file_checks import CSV_PARSE, check_files, csv_read_options
from sentiment.data.labels import INVALID_LABEL, LABELS, scores_to_label_ids
from sentiment.io.shards import (TEXT_TYPE_COLUMN, as_plain_strings, by_compression, files_without_text, format_of,
                                 group_by_column_types, list_shard_files, read_options, read_parquet, with_text_type)

if TYPE_CHECKING:  # pseudo_labels cleans its texts with clean_text, from here
    from sentiment.data.pseudo_labels import PseudoLabels

log = logging.getLogger(__name__)

EMPTY_TEXT, INVALID_SCORE = "empty_text", "invalid_score"
# Rows of a Parquet or JSON file whose text column holds numbers or another non-text type: a wrong
# --text-column, most likely (the stars?). Their string forms ("5") are not reviews to learn from.
TEXT_NOT_STRING = "text_not_string"


def text_column_names(text_column: str | Sequence[str]) -> list[str]:
    """--text-column as a list of names: one name (str, as runs recorded it before several names
    were allowed) or several, tried in order in each file."""
    return [text_column] if isinstance(text_column, str) else list(text_column)


def read_labeled(paths: list[str], text_column: str | Sequence[str], score_column: str,
                 fmt: str | None = None, limit: int | None = None, seed: int = 0,
                 listed: InputFiles | None = None, group_column: str | None = None) -> ray.data.Dataset:
    """Read labeled reviews as one dataset with columns text (str), label (int) and problem (str).

    The same files as `sentiment score` reads (CSV, compressed CSV, Parquet, JSON lines; a file
    of no known kind is an error, notes and markers are skipped). Files may have different extra
    columns, and the two columns may have different types in different files; only the text and
    score columns are read, as strings. Rows with empty text or a score outside 1-5 are kept,
    marked in `problem`, so they can be counted.
    `text_column` may be several names, as `sentiment score` takes them: each file's text is read
    from the first of them it has.
    `limit` keeps a random sample of that many rows, seeded by `seed`: real files are often
    sorted (ours by score), so the first N rows would be one class.
    `listed` is list_shard_files(paths, fmt) where the caller has it already: listing again would
    say a second time what the listing says (a file the inputs reach twice).
    `group_column`, when given, is read too (as a string) and comes back as the column `group`
    (`evaluate --by`): every file must have it.
    A Parquet or JSON file whose text column is not text (int64, say) is read, with a warning
    naming it, and its rows are marked TEXT_NOT_STRING, as `sentiment score` keeps such rows with
    an error. (A CSV's text is always read as a string: reviews that are all digits stay texts.)

    Raises:
        InputError: a path matches no file, a file is unreadable, or lacks one of the columns.
    """
    names = text_column_names(text_column)
    files = listed if listed is not None else list_shard_files(paths, fmt)
    if files.skipped:
        log.warning("not reading %d file(s) that are not data: %s", len(files.skipped), ", ".join(files.skipped[:5]))
    kinds = [format_of(path, fmt) for path in files.paths]
    schemas = {path: schema for path, (schema, _) in zip(files.paths, check_files(files, kinds))}
    # (format, the file's own name for the text column) -> its files
    by_format: dict[tuple[str, str], list[str]] = {}
    text_types = []  # (uri, path, format, the type of its text column)
    for path, uri, kind in zip(files.paths, files.uris, kinds):
        have = schemas[path].names
        own_text = next((name for name in names if name in have), None)
        wanted = ([] if own_text else [" or ".join(names)]) + [score_column] + ([group_column] if group_column else [])
        missing = [c for c in wanted if c not in have]
        if missing:
            raise InputError(f"{uri}: missing column(s) {missing}; it has {have}. "
                             f"Choose columns with --text-column / --score-column{' / --by' if group_column else ''}"
                             + (" (give --text-column every name the files use)" if not own_text else ""))
        by_format.setdefault((kind, own_text), []).append(path)
        text_types.append((uri, path, kind, schemas[path].field(own_text).type))
    not_text = files_without_text(text_types, f"their rows are counted as {TEXT_NOT_STRING} and left out")
    parts = []
    extra = [group_column] if group_column and group_column not in (score_column, *names) else []
    for (kind, own_text), kind_paths in by_format.items():
        parts += [_renamed(part, own_text, names[0])
                  for part in _read_columns(kind, kind_paths, [own_text, score_column, *extra], schemas,
                                            files.filesystem, not_text)]
    dataset = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    if limit:
        dataset = dataset.random_shuffle(seed=seed).limit(limit)
    return dataset.map_batches(_normalize, fn_kwargs={"text_column": names[0], "score_column": score_column,
                                                      "group_column": group_column}, batch_format="pandas")


def _read_columns(kind: str, paths: list[str], columns: list[str], schemas: dict, filesystem,
                  not_text: dict[str, str]) -> list:
    """Lazy Datasets of paths' (all of one format) text and score columns (and a --by column), as strings.

    They are read as strings: a score like "five" must become a counted bad row, not a
    type-inference crash, numeric-looking texts must stay texts, and files that disagree on a
    column's type (int64 stars here, "4" there) still read as one dataset.
    Where some file's text column is not text (not_text, read_labeled's), every part also has
    TEXT_TYPE_COLUMN: that type on the rows of such a file, null on the others. (Each group read
    together shares the text column's type, so a part is all one or the other.)"""
    def marked(part: ray.data.Dataset, group: list[str]) -> ray.data.Dataset:
        if not not_text:
            return part
        return part.map_batches(with_text_type, batch_format="pyarrow", batch_size=None,
                                fn_args=(not_text.get(group[0]),))

    if kind == "csv":
        convert = pacsv.ConvertOptions(include_columns=columns, column_types={c: pa.string() for c in columns})
        blocks = csv_read_options(schemas[path] for path in paths)
        return [marked(ray.data.read_csv(group, parse_options=CSV_PARSE, convert_options=convert, read_options=blocks,
                                         arrow_open_stream_args={"compression": codec},
                                         **read_options(filesystem, "csv")), group)
                for codec, group in by_compression(paths).items()]  # Ray detects lower-case names only
    read = read_parquet if kind == "parquet" else ray.data.read_json
    parts = []
    for group in group_by_column_types(paths, schemas, columns):
        codecs = by_compression(group).items() if kind == "json" else [(None, group)]
        for codec, same_codec in codecs:
            stream_args = {"arrow_open_stream_args": {"compression": codec}} if kind == "json" else {}
            parts.append(marked(read(same_codec, **stream_args, **read_options(filesystem, kind))
                                .select_columns(columns)
                                .map_batches(as_plain_strings, fn_args=(columns,), batch_format="pyarrow",
                                             batch_size=None), same_codec))
    return parts


def _renamed(part: ray.data.Dataset, own_text: str, text_column: str) -> ray.data.Dataset:
    """part with its text column under text_column, the name every file's text is read as."""
    return part if own_text == text_column else part.rename_columns({own_text: text_column})


def clean_text(raw: pd.Series) -> pd.Series:
    """Review texts as training sees them: null -> "", surrounding whitespace stripped.

    Deduplication compares these, so anything else that asks "is this the same review?" should too."""
    return raw.where(raw.notna(), "").astype(str).str.strip()


def _normalize(batch: pd.DataFrame, text_column: str, score_column: str, group_column: str | None = None) -> pd.DataFrame:
    text = clean_text(batch[text_column])
    label = scores_to_label_ids(batch[score_column].astype(object))
    problem = np.where(text == "", EMPTY_TEXT, np.where(label == INVALID_LABEL, INVALID_SCORE, ""))
    if TEXT_TYPE_COLUMN in batch:
        problem = np.where(batch[TEXT_TYPE_COLUMN].notna().to_numpy(), TEXT_NOT_STRING, problem)
    columns = {"text": text.to_numpy(dtype=object), "label": label, "problem": problem}
    if group_column:  # a missing value is a group of its own, named so
        columns["group"] = batch[group_column].astype(object).where(batch[group_column].notna(), "(missing)").astype(str).to_numpy(dtype=object)
    return pd.DataFrame(columns)


def split_of(text: str, seed: int, val_fraction: float, test_fraction: float) -> str:
    """train / validation / test for one text, from a seeded hash of the text alone."""
    digest = hashlib.blake2b(f"{seed}\x00{text}".encode("utf-8"), digest_size=8).digest()
    u = int.from_bytes(digest, "big") / 2**64
    return "test" if u < test_fraction else "validation" if u < test_fraction + val_fraction else "train"


def _dedupe_and_split(block: pd.DataFrame, seed: int, val_fraction: float, test_fraction: float) -> pd.DataFrame:
    """One row per text (blocks are hash-partitioned by text), plus its split.

    Duplicates with different stars keep the most common label (ties: the lower id), so the
    choice does not depend on row order.
    """
    votes = block.groupby(["text", "label"], sort=False).size().reset_index(name="votes")
    votes = votes.sort_values(["text", "votes", "label"], ascending=[True, False, True], kind="stable")
    unique = votes.drop_duplicates("text", keep="first")[["text", "label"]].reset_index(drop=True)
    unique["split"] = [split_of(t, seed, val_fraction, test_fraction) for t in unique["text"]]
    return unique


# Labeled data up to this size (read, as Arrow) is deduplicated and split in the driver. Above it,
# a hash shuffle by text does it on the cluster, but the shuffle's aggregator actors take 15-25 s
# to start on 2 cores, far longer than deduplicating 15,000 reviews (8 MB) takes with pandas.
IN_DRIVER_MAX_BYTES = 128 * 1024 * 1024


def _split_blocks() -> int:
    """Blocks of the deduplicated rows, either way they are made: one per CPU of the cluster (at
    least 2), so the training split streams to the workers alike."""
    return max(2, int(ray.cluster_resources().get("CPU", 2)))


def _usable_in_driver(labeled: ray.data.Dataset) -> tuple[dict, pd.DataFrame]:
    """Rows per problem kind, and the usable rows (text, label) as one frame on the driver."""
    frame = labeled.to_pandas()
    problems = {str(problem): int(n) for problem, n in frame["problem"].value_counts().items()}
    return problems, frame[frame["problem"] == ""].drop(columns=["problem"])


def _dedupe_and_split_by_shuffle(labeled: ray.data.Dataset, split_args: dict) -> tuple[dict, ray.data.Dataset | None]:
    """Rows per problem kind, and the unique usable rows with their split (None if there are
    none): what _usable_in_driver and _dedupe_and_split do for small data, on the cluster."""
    problems = count_problems(labeled)
    if not problems.get("", 0):
        return problems, None
    usable = labeled.filter(expr=col("problem") == "").drop_columns(["problem"])
    # Hash-partition by text so all copies of a text share a block, then dedupe each block with
    # vectorised pandas. (groupby().map_groups() calls Python once per text: 20x slower here.)
    return problems, usable.repartition(_split_blocks(), keys=["text"]).map_batches(
        _dedupe_and_split, batch_size=None, batch_format="pandas", fn_kwargs=split_args).materialize()


@dataclass
class LabeledSplits:
    """Train/validation/test datasets (columns text, label) and the row accounting behind them."""

    train: ray.data.Dataset
    validation: ray.data.Dataset
    test: ray.data.Dataset
    counts: dict
    # sha256 of the validation and test texts, sorted: equal hashes, equal held-out rows.
    split_hash: str = ""


def count_rows_by(dataset: ray.data.Dataset, columns: list[str]) -> dict[tuple, int]:
    """Rows per distinct value of columns, counted block by block and summed on the driver.

    A map over blocks, not groupby().count(): Ray's groupby is a hash shuffle whose aggregator
    actors take longer to start than counting takes, and the counts here are a few numbers.
    """
    def count_block(block: pd.DataFrame) -> pd.DataFrame:
        counts = block.groupby(columns, sort=False).size().reset_index(name="rows")
        return counts.astype({c: str for c in columns})

    totals: dict[tuple, int] = {}
    for row in dataset.select_columns(columns).map_batches(count_block, batch_format="pandas",
                                                           batch_size=None).take_all():
        key = tuple(row[c] for c in columns)
        totals[key] = totals.get(key, 0) + int(row["rows"])
    return totals


def count_problems(dataset: ray.data.Dataset) -> dict[str, int]:
    """Rows per problem kind ("" = usable) of a read_labeled dataset."""
    return {problem: n for (problem,), n in count_rows_by(dataset, ["problem"]).items()}


def prepare_splits(paths: list[str], text_column: str | Sequence[str], score_column: str, *, seed: int,
                   val_fraction: float, test_fraction: float, fmt: str | None = None,
                   limit: int | None = None, shuffle_seed: int | None = None,
                   listed: InputFiles | None = None, pseudo: PseudoLabels | None = None) -> LabeledSplits:
    """Read labeled reviews and return deduplicated, leak-free splits with full row accounting.

    Args:
        text_column: one name, or several tried in order in each file (read_labeled).
        seed: the split seed: which rows a --limit sample keeps and which split each text hashes to.
        shuffle_seed: the order of the training rows (default: seed). `sentiment train` passes
            its --seed here and its --split-seed as seed, so runs that differ only in --seed are
            scored on the same validation and test rows.
        listed: the files of paths, where the caller listed them already (read_labeled).
        pseudo: pseudo-labeled rows (read_pseudo_labels) to add to the training split only,
            those whose text the labeled data lacks; counts["pseudo_labels"] says how many, and
            counts["train"] includes them.

    Raises:
        InputError: unreadable inputs, missing columns, or no usable rows left.
    """
    if not (0 < val_fraction and 0 < test_fraction and val_fraction + test_fraction < 1):
        raise InputError("--val-fraction and --test-fraction must be positive and sum to less than 1")
    labeled = read_labeled(paths, text_column, score_column, fmt, limit, seed, listed).materialize()
    split_args = {"seed": seed, "val_fraction": val_fraction, "test_fraction": test_fraction}
    shuffle_seed = seed if shuffle_seed is None else shuffle_seed
    if labeled.size_bytes() <= IN_DRIVER_MAX_BYTES:
        problems, usable = _usable_in_driver(labeled)
        _refuse_if_none_usable(paths, problems)
        return _splits_in_driver(problems, _dedupe_and_split(usable, **split_args), shuffle_seed, split_args, pseudo)
    problems, with_split = _dedupe_and_split_by_shuffle(labeled, split_args)
    _refuse_if_none_usable(paths, problems)
    splits = {name: with_split.filter(expr=col("split") == name).drop_columns(["split"])
              for name in ("train", "validation", "test")}
    pseudo_counts = None
    if pseudo is not None:
        extra, pseudo_counts = pseudo.for_training(_texts_of(with_split))
        # As Arrow: the shuffle below cannot mix the Arrow blocks of the split with pandas ones.
        splits["train"] = splits["train"].union(ray.data.from_arrow(pa.Table.from_pandas(extra, preserve_index=False)))
    # A seeded shuffle once, so the local shuffle buffer in the training loop is not stuck with
    # one input file's rows at a time.
    splits["train"] = splits["train"].random_shuffle(seed=shuffle_seed)
    splits = {name: ds.materialize() for name, ds in splits.items()}
    counts = _row_counts(problems, with_split.count(), {name: ds.count() for name, ds in splits.items()}, split_args)
    counts["classes"] = _classes_per_split(count_rows_by(with_split, ["split", "label"]))
    if pseudo_counts is not None:
        counts["pseudo_labels"] = pseudo_counts
    log.info("rows: %s", counts)
    return LabeledSplits(splits["train"], splits["validation"], splits["test"], counts,
                         held_out_hash(*(_texts_of(splits[name]) for name in ("validation", "test"))))


def _splits_in_driver(problems: dict, unique: pd.DataFrame, shuffle_seed: int, split_args: dict,
                      pseudo: PseudoLabels | None = None) -> LabeledSplits:
    """prepare_splits for data that fits on the driver: splits, counts, classes and the held-out
    hash from the one frame of unique rows, with no further Ray Data step. (Each one, the train
    split's all-to-all shuffle above all, costs seconds of scheduling on 2 cores for a few
    hundred rows.) The datasets come out in blocks as the cluster path's do (_split_blocks)."""
    frames = {name: unique[unique["split"] == name].drop(columns=["split"]) for name in ("train", "validation", "test")}
    pseudo_counts = None
    if pseudo is not None:
        extra, pseudo_counts = pseudo.for_training(unique["text"])
        frames["train"] = pd.concat([frames["train"], extra], ignore_index=True)
    # The seeded shuffle of the training rows, as the cluster path's random_shuffle does.
    frames["train"] = frames["train"].sample(frac=1.0, random_state=shuffle_seed)
    counts = _row_counts(problems, len(unique), {name: len(frame) for name, frame in frames.items()}, split_args)
    per_split_label = unique.groupby(["split", "label"]).size()
    counts["classes"] = _classes_per_split({key: int(n) for key, n in per_split_label.items()})
    if pseudo_counts is not None:
        counts["pseudo_labels"] = pseudo_counts
    log.info("rows: %s", counts)
    blocks = _split_blocks()
    datasets = {name: ray.data.from_pandas([frame.iloc[i::blocks].reset_index(drop=True) for i in range(blocks)])
                for name, frame in frames.items()}
    return LabeledSplits(datasets["train"], datasets["validation"], datasets["test"], counts,
                         held_out_hash(frames["validation"]["text"], frames["test"]["text"]))


def unusable_rows(problems: dict, score_words: str = "a score outside 1-5") -> str:
    """The rows left out, in words: "3 with empty text, 4 with a score outside 1-5" (and the rows
    of files whose text column held no text, where there were any)."""
    words = f"{problems.get(EMPTY_TEXT, 0)} with empty text, {problems.get(INVALID_SCORE, 0)} with {score_words}"
    if problems.get(TEXT_NOT_STRING):
        words += f", {problems[TEXT_NOT_STRING]} in a text column that holds no text"
    return words


def _refuse_if_none_usable(paths: list[str], problems: dict) -> None:
    if not problems.get("", 0):
        raise InputError(f"no usable rows in {paths}: {unusable_rows(problems)}")


def _row_counts(problems: dict, n_unique: int, per_split: dict, split_args: dict) -> dict:
    """The row accounting of prepare_splits; refuses splits left empty."""
    val_fraction, test_fraction = split_args["val_fraction"], split_args["test_fraction"]
    counts = {
        "rows_read": sum(problems.values()),
        "dropped_empty_text": problems.get(EMPTY_TEXT, 0),
        "dropped_invalid_score": problems.get(INVALID_SCORE, 0),
        "dropped_text_not_string": problems.get(TEXT_NOT_STRING, 0),
        "dropped_duplicate_text": problems.get("", 0) - n_unique,
        **per_split,
    }
    held_out = f"--val-fraction {val_fraction:g} and --test-fraction {test_fraction:g}"
    if counts["train"] == 0:
        raise InputError(f"the train split is empty ({n_unique} unique usable rows, of which {held_out} hold out "
                         f"{val_fraction + test_fraction:.0%}); use more data or a smaller --val-fraction/--test-fraction")
    for name in ("validation", "test"):
        if counts[name] == 0:
            raise InputError(f"the {name} split is empty ({n_unique} unique usable rows, {held_out}); use more data "
                             f"or a larger --{'val' if name == 'validation' else 'test'}-fraction")
    return counts


def _texts_of(dataset: ray.data.Dataset) -> list[str]:
    """The texts of a held-out split (a few percent of the data: they fit on the driver)."""
    return dataset.select_columns(["text"]).to_pandas()["text"].tolist()


def held_out_hash(validation_texts, test_texts) -> str:
    """sha256 over the sorted texts of validation, then of test: two runs with the same hash
    were selected and tested on the same rows."""
    digest = hashlib.sha256()
    for name, texts in (("validation", validation_texts), ("test", test_texts)):
        digest.update(f"{name}\x00".encode())
        for text in sorted(texts):
            digest.update(text.encode("utf-8") + b"\x00")
    return digest.hexdigest()


def _classes_per_split(rows_by_split_and_label: dict[tuple, int]) -> dict[str, dict[str, int]]:
    """Rows of each class in each split, with a warning for every split that lacks a class:
    a model never shown a class cannot predict it, and a split without one cannot test it."""
    classes = {name: dict.fromkeys(LABELS, 0) for name in ("train", "validation", "test")}
    for (split, label), n in rows_by_split_and_label.items():
        classes[split][LABELS[int(label)]] = n
    for name, per_class in classes.items():
        missing = [label for label, n in per_class.items() if n == 0]
        if missing:
            log.warning("the %s split has no %s rows (%s): %s", name, " or ".join(missing),
                        ", ".join(f"{label} {n}" for label, n in per_class.items()),
                        "the model cannot learn to predict them" if name == "train"
                        else "its macro-F1 averages over the classes present")
    return classes
