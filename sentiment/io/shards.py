"""Input shards for batch scoring: find them, check them up front, read them as one Ray Dataset.

Every file under an input folder is read or named: CSV (plain or .gz/.zst/.bz2), Parquet and
JSON lines; markers and notes are skipped and listed. Every file is checked before the pipeline
starts, by Ray tasks on the workers (see file_checks), so a wrong text column or a corrupt file
fails the run before anything is scored, naming the file, and every file's row count is known up
front. The strict CSV pass runs at about 100 MB/s per core, far faster than scoring the same rows.
"""

from __future__ import annotations

import logging
import math
import os
from collections import defaultdict
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.csv as pacsv

from sentiment.errors import InputError
from sentiment.io.file_checks import CSV_PARSE, check_files, csv_read_options, first_file_columns
from sentiment.io.storage import InputFiles, compression_of, list_input_files

log = logging.getLogger(__name__)

# Compressed CSV and JSON are decompressed by the codec their name ends in, any case
# (storage.compression_of), by Ray and by the check.
SUFFIXES = {"csv": (".csv", ".csv.gz", ".csv.zst", ".csv.bz2"), "parquet": (".parquet", ".pq"),
            "json": (".jsonl", ".json", ".jsonl.gz", ".json.gz", ".jsonl.zst", ".json.zst", ".jsonl.bz2",
                     ".json.bz2")}
# Shown at most this many problems in one error, so 5,000 bad shards still give a readable line.
_MAX_LISTED = 5


# Where some file's text column holds no text: each row's text type in its file, or null (read_shards).
TEXT_TYPE_COLUMN = "__sentiment_text_type"


@dataclass(frozen=True)
class Shards:
    """Validated input files, grouped by format, and what the pipeline must read from them."""

    filesystem: object  # pyarrow.fs.FileSystem
    paths_by_format: dict[str, list[str]]
    uris: list[str]
    paths: list[str]  # the same files as uris, as paths within filesystem
    columns: list[str] | None  # kept input columns; None keeps every column of every file
    text_column: str
    parquet_rows: int  # rows in the Parquet footers
    rows_by_uri: dict[str, int] = field(default_factory=dict)  # every input file's rows
    skipped: list[str] = field(default_factory=list)  # files under the inputs that are not data
    as_string: list[str] = field(default_factory=list)  # columns whose type differs across files
    schemas: dict[str, pa.Schema] = field(default_factory=dict)  # by path
    # Files whose text is under another of the names find_shards was given (by path): read
    # under text_column, so the pipeline sees one text column.
    renamed: dict[str, str] = field(default_factory=dict)
    # Files whose text column holds no text (a Parquet or JSON column of numbers, say), by path:
    # the column's type. Their rows are read with TEXT_TYPE_COLUMN set, and kept with an error.
    not_text: dict[str, str] = field(default_factory=dict)

    @property
    def input_rows(self) -> int:
        return sum(self.rows_by_uri.values())

    @property
    def text_read_from(self) -> dict[str, str]:
        """URI -> the other text column name its text was read from, for the files in `renamed`."""
        return {uri: self.renamed[path] for uri, path in zip(self.uris, self.paths) if path in self.renamed}


def list_shard_files(uris: list[str], fmt: str | None) -> InputFiles:
    """The data files under uris (all formats, or only fmt's; the others are listed as skipped).

    Raises:
        InputError: a path matches nothing or holds a file of no known kind.
        StorageError: the storage cannot be reached.
    """
    wanted = SUFFIXES[fmt] if fmt else sum(SUFFIXES.values(), ())
    others = sum((v for k, v in SUFFIXES.items() if k != fmt), ()) if fmt else ()
    return list_input_files(uris, wanted, skip=others)


def as_plain_strings(batch: pa.Table, columns: list[str]) -> pa.Table:
    """batch with columns cast to plain `string` (columns it lacks are skipped).

    Dictionary-encoded text (pandas' category), large_string and string_view are all text to us;
    numbers become their string form, so files that disagree on a column's type read as one.
    """
    for name in columns:
        index = batch.schema.get_field_index(name)
        if index < 0 or batch.schema.field(index).type == pa.string():
            continue
        column = batch.column(index)
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        batch = batch.set_column(index, name, column.cast(pa.string()))
    return batch


def is_text(kind: pa.DataType) -> bool:
    """Whether a column of this type holds text: string, large_string, string_view, or a
    dictionary of one of them (pandas' category)."""
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)


def plain_text(batch: pa.Table, text_column: str) -> pa.Table:
    """batch with its text column as plain `string` if it holds text in another encoding
    (dictionary, large_string, string_view); a non-text column is left for the caller to flag."""
    column = batch[text_column] if text_column in batch.column_names else None
    if column is None or column.type == pa.string():
        return batch
    return as_plain_strings(batch, [text_column]) if is_text(column.type) else batch


def files_without_text(text_types, fate: str) -> dict[str, str]:
    """path -> its text column's type, for each Parquet or JSON file whose text column holds no
    text (numbers, most likely a wrong --text-column), all named in one warning that ends with
    `fate`, what becomes of their rows. CSV text is always read as a string, so no CSV is one.

    Args:
        text_types: (uri, path, format, the text column's pa.DataType) of every file.
    """
    not_text, named = {}, []
    for uri, path, fmt, kind in text_types:
        if fmt != "csv" and not is_text(kind):
            not_text[path] = str(kind)
            named.append(f"{kind} in {uri}")
    if not_text:
        log.warning("the text column holds no text in %d file(s) (%s): %s", len(not_text), "; ".join(named)[:500],
                    fate)
    return not_text


def format_of(path: str, forced: str | None) -> str:
    """The format of one file: forced by --format, else from its extension (any case)."""
    if forced:
        return forced
    name = path.lower()
    for fmt, suffixes in SUFFIXES.items():
        if name.endswith(suffixes):
            return fmt
    raise InputError(f"cannot tell the format of {path}: name it .csv/.parquet/.jsonl or pass --format")


def find_shards(uris: list[str], *, text_column: str, fmt: str | None = None,
                keep_columns: list[str] | None = None, reserved: tuple[str, ...] = (),
                other_text_columns: tuple[str, ...] = (), listed: InputFiles | None = None,
                not_text_fate: str = "their rows are kept, each with the error 'text is not a string'") -> Shards:
    """Resolve input paths to data files and check that every file can be scored.

    Args:
        uris: files, folders or globs, local or s3:// (not mixed).
        text_column: the column holding the review text; every file must have it (or one of
            other_text_columns).
        fmt: "csv" or "parquet" to read every file as that format; None picks by extension.
        keep_columns: input columns to carry into the output; None keeps all of them.
        reserved: output column names the scorer adds; an input column with one of these names
            must be left out with keep_columns rather than be silently replaced.
        other_text_columns: names the text column may have instead in some files, tried in order
            after text_column; such a file's text is read as text_column (Shards.renamed).
        listed: list_shard_files(uris, fmt), where the caller listed them already (listing needs
            no Ray; the checks do).
        not_text_fate: what becomes of the rows of a file whose text column holds no text
            (Shards.not_text), as the warning that names such files says it.

    Returns:
        The files grouped by format with the columns to read.

    Raises:
        InputError: a path matches nothing, a file is corrupt, or a file lacks the text column,
            a kept column or has a column the output would overwrite. All such files are named.
        StorageError: the storage cannot be reached.
    """
    files = listed if listed is not None else list_shard_files(uris, fmt)
    formats = [format_of(p, fmt) for p in files.paths]
    names = (text_column, *other_text_columns)
    first = first_file_columns(files, formats)
    if first is not None and not any(name in first for name in names):
        raise InputError(_no_text_column(files.uris[0], names, first) + "." + _TEXT_COLUMN_HINT)
    found = check_files(files, formats)
    wanted = list(keep_columns) if keep_columns is not None else None
    problems: list[str] = []
    renamed: dict[str, str] = {}
    for uri, path, (schema, _) in zip(files.uris, files.paths, found):
        columns = schema.names
        own = next((name for name in names if name in columns), None)
        if own is None:
            problems.append(_no_text_column(uri, names, columns))
            continue
        if own != text_column:
            renamed[path] = own
        # the text column is kept under text_column whatever the file calls it
        missing = [c for c in (wanted or []) if c not in columns and c != text_column]
        if missing:
            problems.append(f"{uri} lacks --keep-columns {', '.join(missing)}; its columns are: {', '.join(columns)}")
        clash = [c for c in (wanted if wanted is not None else columns) if c in reserved]
        if clash:
            problems.append(f"{uri} already has output column(s) {', '.join(clash)}; "
                            f"leave them out with --keep-columns")
    if problems:
        more = f" (and {len(problems) - _MAX_LISTED} more files)" if len(problems) > _MAX_LISTED else ""
        hint = _TEXT_COLUMN_HINT if any("no text column" in p for p in problems) else ""
        raise InputError("; ".join(problems[:_MAX_LISTED]) + more + "." + hint)
    by_format: dict[str, list[str]] = defaultdict(list)
    for path, f in zip(files.paths, formats):
        by_format[f].append(path)
    parquet_rows = sum(rows for rows, f in zip((r for _, r in found), formats) if f == "parquet")
    if files.skipped:
        log.warning("not reading %d file(s) that are not data: %s", len(files.skipped), ", ".join(files.skipped[:5]))
    not_text = files_without_text(((uri, path, fmt, schema.field(renamed.get(path, text_column)).type)
                                   for uri, path, fmt, (schema, _) in zip(files.uris, files.paths, formats, found)),
                                  not_text_fate)
    return Shards(files.filesystem, dict(by_format), files.uris, files.paths, wanted, text_column, parquet_rows,
                  rows_by_uri={uri: rows for uri, (_, rows) in zip(files.uris, found)}, skipped=files.skipped,
                  as_string=disagreeing_columns(files.uris, [schema for schema, _ in found], wanted, text_column),
                  schemas={path: schema for path, (schema, _) in zip(files.paths, found)}, renamed=renamed,
                  not_text=not_text)


_TEXT_COLUMN_HINT = (" Where files name the text column differently, give --text-column every name (a file's text"
                     " is read from the first it has).")


def _no_text_column(uri: str, names: tuple[str, ...], columns: list[str]) -> str:
    wanted_text = " or ".join(f"'{name}'" for name in names)
    return f"{uri} has no text column {wanted_text}; its columns are: {', '.join(columns)}"


def disagreeing_columns(uris: list[str], schemas: list[pa.Schema], wanted: list[str] | None,
                        text_column: str) -> list[str]:
    """Columns (of those read) whose type differs between files; they are read as strings.

    Without this, `app_id` as int64 in one file and string in another fails the run deep inside
    Ray with an ArrowTypeError that names no file. A text column in several text encodings
    (string, large_string, dictionary) is listed too, so its blocks can be concatenated.
    """
    types: dict[str, dict[pa.DataType, str]] = defaultdict(dict)  # column -> type -> first file with it
    for uri, schema in zip(uris, schemas):
        for f in schema:
            if not pa.types.is_null(f.type) and (wanted is None or f.name in wanted or f.name == text_column):
                types[f.name].setdefault(f.type, uri)
    mixed = [name for name, seen in types.items() if len(seen) > 1]
    for name in mixed:
        if all(is_text(t) for t in types[name]) or name == text_column:
            # Text either way (a CSV's string beside a Parquet's large_string): nothing to tell. A
            # text column that holds no text in some file is find_shards' own warning.
            continue
        example = "; ".join(f"{t} in {uri}" for t, uri in list(types[name].items())[:3])
        log.warning("column %r has different types across the input files (%s): reading it as string", name, example)
    return mixed


def read_options(filesystem, fmt: str) -> dict:
    """Keyword arguments for ray.data.read_csv/read_parquet/read_json over files listed here.

    Ray filters by extension even among named files, and its Parquet reader turns None into its
    own ["parquet"], silently dropping .pq files: name every extension we read.
    """
    return {"filesystem": filesystem, "file_extensions": [suffix.lstrip(".") for suffix in SUFFIXES[fmt]]}


# Ray Data 2.60 lists Parquet files by reading their footers on a pool of FooterReader actors, 32
# by default, started anew for every read_parquet call whatever the number of files; each pool
# actor reads footers in batches of 10 files. One actor per batch is all a read can use, so that
# is the pool asked for: on 2 cores, 32 actor processes starting (each importing Ray and Arrow) for
# a read of a few files put the load above 30 and cost seconds of CPU per read.
FOOTER_ACTORS_ENV = "RAY_DATA_PARQUET_FOOTER_NUM_ACTORS"
FOOTERS_PER_ACTOR, MAX_FOOTER_ACTORS = 10, 32


def read_parquet(paths: list[str], **kwargs):
    """ray.data.read_parquet with a footer-reader pool sized to the files (see FOOTER_ACTORS_ENV).

    Ray reads the pool size from the environment when the read is created, in this process;
    a size the user set there is kept."""
    import ray.data

    if FOOTER_ACTORS_ENV in os.environ:
        return ray.data.read_parquet(paths, **kwargs)
    os.environ[FOOTER_ACTORS_ENV] = str(min(MAX_FOOTER_ACTORS, max(1, math.ceil(len(paths) / FOOTERS_PER_ACTOR))))
    try:
        return ray.data.read_parquet(paths, **kwargs)
    finally:
        del os.environ[FOOTER_ACTORS_ENV]


def read_shards(shards: Shards):
    """A lazy, streaming Ray Dataset over all shards, with the kept columns and the text column.

    CSV text is always read as a string: a shard whose reviews happen to be all digits must not
    turn into an int column and lose every row to "not a string". Columns whose type differs
    between files are read as strings in every format. Files whose text is under another name
    (Shards.renamed) are read with it renamed to text_column, as a plain string.

    Where some Parquet or JSON file's text column holds no text (Shards.not_text), every row also
    has TEXT_TYPE_COLUMN: that column's type for the rows of such a file, null for the others. Such
    a column may still be read as strings (its type differs from other files', or it was renamed),
    and its rows must still be kept with the error a file of numbers alone gets.
    """
    parts = []
    by_text_column: dict[str, list[str]] = defaultdict(list)
    for path in shards.paths:
        by_text_column[shards.renamed.get(path, shards.text_column)].append(path)
    for own_column, own_paths in by_text_column.items():
        chosen = set(own_paths)
        paths_by_format = {fmt: [p for p in paths if p in chosen] for fmt, paths in shards.paths_by_format.items()}
        read_parts = _read_formats(shards, {fmt: paths for fmt, paths in paths_by_format.items() if paths}, own_column)
        if own_column != shards.text_column:
            read_parts = [part.rename_columns({own_column: shards.text_column})
                          .map_batches(as_plain_strings, batch_format="pyarrow", batch_size=None,
                                       fn_args=([shards.text_column],))
                          for part in read_parts]
        parts += read_parts
    return parts[0] if len(parts) == 1 else parts[0].union(*parts[1:])


def _read_formats(shards: Shards, paths_by_format: dict[str, list[str]], text_column: str) -> list:
    """One lazy Dataset per read of paths_by_format's files, whose text is in text_column."""
    import ray.data

    # A renamed file's text is read under its own name, renamed after the read (read_shards).
    read = None if shards.columns is None else list(dict.fromkeys(
        [text_column if c == shards.text_column else c for c in shards.columns] + [text_column]))
    parts = []

    def add(part, kind: str | None = None) -> None:
        """kind: Shards.not_text's type of the part's files, None where they hold text."""
        if shards.not_text:
            part = part.map_batches(with_text_type, batch_format="pyarrow", batch_size=None, fn_args=(kind,))
        parts.append(part)

    for fmt, paths in sorted(paths_by_format.items()):
        common = read_options(shards.filesystem, fmt)
        if fmt == "csv":
            types = {c: pa.string() for c in [text_column, *shards.as_string]}
            convert = pacsv.ConvertOptions(column_types=types, include_columns=read or [])
            blocks = csv_read_options(shards.schemas[p] for p in paths if p in shards.schemas)
            for codec, group in by_compression(paths).items():
                add(ray.data.read_csv(group, parse_options=CSV_PARSE, convert_options=convert, read_options=blocks,
                                      arrow_open_stream_args={"compression": codec}, **common))
            continue
        # Grouped by the text column's type too, so that each group's rows are text or not.
        for group in group_by_column_types(paths, shards.schemas, [*shards.as_string, text_column]):
            kind = shards.not_text.get(group[0])
            if fmt == "parquet":
                add(_selected(read_parquet(group, **common), read, shards.as_string), kind)
                continue
            for codec, same_codec in by_compression(group).items():
                part = ray.data.read_json(same_codec, arrow_open_stream_args={"compression": codec}, **common)
                add(_selected(part, read, shards.as_string), kind)
    return parts


def with_text_type(batch: pa.Table, kind: str | None) -> pa.Table:
    """batch with TEXT_TYPE_COLUMN: kind (its text column's type in the file) on every row, or null."""
    return batch.append_column(TEXT_TYPE_COLUMN, pa.array([kind] * batch.num_rows, pa.string()))


def by_compression(paths: list[str]) -> dict[str | None, list[str]]:
    """paths grouped by codec: Ray takes one codec per read, and detects only lower-case names."""
    groups: dict[str | None, list[str]] = defaultdict(list)
    for path in paths:
        groups[compression_of(path)].append(path)
    return dict(groups)


def _selected(part, read: list[str] | None, as_string: list[str]):
    """part with only the columns read, and those whose type differs across files as strings."""
    if read is not None:
        part = part.select_columns(read)
    if as_string:
        part = part.map_batches(as_plain_strings, batch_format="pyarrow", batch_size=None, fn_args=(as_string,))
    return part


def group_by_column_types(paths: list[str], schemas: dict[str, pa.Schema], columns: list[str]) -> list[list[str]]:
    """paths grouped by the types of columns: Ray merges the schemas of the files of one read up
    front, and fails on a column that is int64 in one file and string in another. Read each
    group separately, cast the columns to string, then union."""
    groups: dict[tuple, list[str]] = defaultdict(list)
    for path in paths:
        schema = schemas.get(path, pa.schema([]))
        groups[tuple(str(schema.field(c).type) if c in schema.names else "" for c in columns)].append(path)
    return list(groups.values())
