"""Every input file is checked before a pipeline starts, as Ray tasks on the nodes with CPUs.

A wrong text column or a corrupt file must fail the run before anything is scored, naming the
file, not an hour into the night with a Ray traceback, and every file's row count must be known:
- a Parquet file's footer is read (one small read);
- a JSON file is parsed in full (JSON lines, or one JSON array of objects);
- a CSV file is read once in full by Python's strict CSV reader (see csv_check): Arrow's CSV
  parser silently merges every row after a quote that is never closed into one text.

The checks run as Ray tasks wherever there are CPUs, never in the driver: the head of a real
cluster has none for work (cluster.yaml gives it CPU 0), and a check in the driver would download
every CSV to that one machine and parse them on one core (the strict reader holds the GIL). Files
go to tasks in groups, so 20,000 small shards make a few hundred tasks rather than 20,000, while a
handful of big files still get a task each. Tasks get URIs, never a filesystem object: each
resolves its own through storage, so credentials stay wherever botocore finds them on each node.
"""

from __future__ import annotations

import io
import json
import math
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq
import ray

from sentiment.io.csv_check import check_csv_body, printable
from sentiment.errors import InputError, SentimentError, StorageError
from sentiment.cluster.connect import ensure_connected
from sentiment.cluster.resources import warn_if_held
from sentiment.io.storage import STORAGE_ERRORS, InputFiles, arrow_filesystem, compression_of, describe_failure

# Reviews contain line breaks inside quoted fields; pyarrow splits rows on them unless told not to.
CSV_PARSE = pacsv.ParseOptions(newlines_in_values=True)
# Arrow reads CSV in blocks and fails on a record longer than one block ("straddling object"),
# so a file's blocks are sized for its longest record (4 bytes per character at most in UTF-8),
# recorded in the schema the check returns under this key.
CSV_BLOCK_KEY = b"sentiment.csv_block_size"
_MIN_CSV_BLOCK = 1 << 20
# first_file_columns reads this much of the first CSV for its header line.
_HEADER_BYTES = 64 * 1024
# Up to this many tasks before files are grouped: enough to keep a large cluster's CPUs busy.
_TASKS = 256
# At most this many files per task, so one slow group cannot hold the whole check back.
_MAX_FILES_PER_TASK = 64
# Reading a Parquet footer from S3 is mostly waiting on round trips, which threads overlap. (The
# strict CSV reader holds the GIL: threads do not speed up big CSVs.)
_THREADS_PER_TASK = 8


def file_columns(filesystem, path: str, uri: str, fmt: str) -> tuple[pa.Schema, int]:
    """The schema of one file (CSV: as inferred from its first block) and its row count.

    Raises:
        InputError: the file is corrupt, malformed or repeats a column name (naming file and problem).
        StorageError: the storage failed while reading it.
    """
    try:
        if fmt == "parquet":
            meta = pq.read_metadata(path, filesystem=filesystem)
            schema, rows = meta.schema.to_arrow_schema(), meta.num_rows
        elif fmt == "json":
            with filesystem.open_input_stream(path) as stream:
                _refuse_utf16(stream.read(4), uri)
            table = _read_json(filesystem, path)
            schema, rows = table.schema, table.num_rows
        else:
            with filesystem.open_input_stream(path, compression=compression_of(path)) as stream:
                _refuse_utf16(stream.read(4), uri)
            rows, longest = check_csv_body(filesystem, path, uri, compression_of(path))
            block = max(_MIN_CSV_BLOCK, 4 * longest + 1024)
            with filesystem.open_input_stream(path, compression=compression_of(path)) as stream:
                schema = pacsv.open_csv(stream, parse_options=CSV_PARSE,
                                        read_options=pacsv.ReadOptions(block_size=block)).schema
            schema = schema.with_metadata({CSV_BLOCK_KEY: str(block).encode()})
    except InputError:
        raise
    except STORAGE_ERRORS as error:
        # Arrow's own I/O and format failures are OSErrors without an errno; the OS's and
        # s3fs's carry one (ENOENT, EACCES, EIO, timeouts).
        if isinstance(error, OSError) and error.errno is None and not isinstance(error, (ConnectionError, TimeoutError)):
            raise InputError(f"{uri} is not a readable {fmt.upper()} file: {printable(str(error))}") from None
        raise StorageError(describe_failure(uri, error)) from None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as error:
        raise InputError(f"{uri} is not a readable {fmt.upper()} file: {printable(str(error))}") from None
    repeated = [name for name, n in Counter(schema.names).items() if n > 1]
    if repeated:
        raise InputError(f"{uri} has the column name(s) {', '.join(repeated)} more than once; "
                         "give every column a distinct name")
    return schema, rows


def first_file_columns(files: InputFiles, formats: list[str]) -> list[str] | None:
    """The column names of the first input file, read in this process from its head alone (a
    Parquet footer, a CSV's header line), or None where that cannot tell them (a JSON file, which
    is parsed in full; a header over 64 KiB or one with a line break in a quoted name; any
    failure: check_files names it).

    So a wrong --text-column is refused in a second, before the command's own Ray cluster starts
    (5-7 s on 2 cores, and its start-up lines first). The full checks still run on every file.
    """
    if not files.uris or formats[0] not in ("parquet", "csv"):
        return None
    filesystem, path, uri = files.filesystem, files.paths[0], files.uris[0]
    try:
        if formats[0] == "parquet":
            return pq.read_schema(path, filesystem=filesystem).names
        with filesystem.open_input_stream(path, compression=compression_of(path)) as stream:
            head = stream.read(_HEADER_BYTES)  # Arrow's CSV reader reads ahead megabytes: not here
        _refuse_utf16(head, uri)
        if b"\n" not in head:
            return None
        header = head[:head.index(b"\n") + 1]
        return pacsv.read_csv(io.BytesIO(header), parse_options=CSV_PARSE).column_names
    except InputError:
        raise
    except Exception:  # whatever it is, the full check on the workers names it
        return None


# Byte-order marks of text that is not UTF-8: Arrow would parse such a file as bytes, and report
# a column count error full of NUL bytes. UTF-32's marks start with UTF-16's, so they go first.
_FOREIGN_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"),
                 (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16"))


def _refuse_utf16(head: bytes, uri: str) -> None:
    for bom, encoding in _FOREIGN_BOMS:
        if head.startswith(bom):
            raise InputError(f"{uri} is {encoding} text (it starts with a {encoding} byte-order mark); re-save it "
                             f"as UTF-8, e.g. iconv -f {encoding} -t UTF-8")


def _read_json(filesystem, path: str) -> pa.Table:
    """A JSON-lines file, or a file holding one JSON array of objects (Ray reads both)."""
    with filesystem.open_input_stream(path, compression=compression_of(path)) as stream:
        data = stream.read()
    try:
        return pajson.read_json(io.BytesIO(data))
    except pa.ArrowInvalid as lines_error:
        try:
            rows = json.loads(data)
        except ValueError:
            raise lines_error from None
        if not (isinstance(rows, list) and all(isinstance(r, dict) for r in rows)):
            raise ValueError("expected JSON lines or a JSON array of objects") from None
        return pa.Table.from_pylist(rows)


def csv_read_options(schemas) -> pacsv.ReadOptions:
    """Arrow's CSV read options for files checked here: blocks that hold every file's longest record."""
    blocks = [int(s.metadata[CSV_BLOCK_KEY]) for s in schemas if s.metadata and CSV_BLOCK_KEY in s.metadata]
    return pacsv.ReadOptions(block_size=max([_MIN_CSV_BLOCK, *blocks]))


def check_files(files: InputFiles, formats: list[str]) -> list[tuple[pa.Schema, int]]:
    """file_columns() of every file, run as Ray tasks in parallel (Ray is started if it is not).

    Args:
        files: the input files; only their URIs travel to the tasks.
        formats: each file's format ("csv", "parquet" or "json"), in the same order.

    Returns:
        Each file's schema and row count, in the order of files.

    Raises:
        InputError / StorageError: as file_columns, for the first bad file in the order of files.
    """
    if not files.uris:
        return []
    ensure_connected()
    warn_if_held({"CPU": 1}, 1, "checking the input files")
    total = len(files.uris)
    refs = [_check_group.options(name=f"check input files {start + 1}-{stop} of {total}")
            .remote(files.uris[start:stop], formats[start:stop]) for start, stop in file_groups(total)]
    found = []
    for ref in refs:  # in order, so that of several bad files the first one is named, as a loop would
        for result in ray.get(ref):
            if isinstance(result, SentimentError):
                # The other tasks are left to finish, not cancelled: with Ray 2.60 here, a cancel
                # that raced a task's completion aborted the driver ("Tried to complete task that
                # was not pending"; the kind of race of ray-project/ray#54846). Their results are
                # dropped with their refs.
                raise result
            found.append(result)
    return found


def file_groups(total: int) -> list[tuple[int, int]]:
    """[start, stop) ranges over total files: a task per file up to _TASKS files; beyond, groups
    sized for about _TASKS tasks, of at most _MAX_FILES_PER_TASK files (20,000 files: 313 tasks)."""
    size = min(_MAX_FILES_PER_TASK, max(1, math.ceil(total / _TASKS)))
    return [(start, min(start + size, total)) for start in range(0, total, size)]


@ray.remote(num_cpus=1)
def _check_group(uris: list[str], formats: list[str]) -> list[tuple[pa.Schema, int] | SentimentError]:
    """file_columns() of each file up to the first bad one, whose InputError or StorageError is
    returned rather than raised: the driver raises it as it is, and Ray never logs the errors of
    the tasks the driver no longer waits for as "Unhandled error" tracebacks after its one line."""
    def check(uri: str, fmt: str) -> tuple[pa.Schema, int] | SentimentError:
        filesystem, path = arrow_filesystem(uri)  # this node's own client and credentials
        try:
            return file_columns(filesystem, path, uri, fmt)
        except (InputError, StorageError) as error:
            return error

    pool = ThreadPoolExecutor(max_workers=min(_THREADS_PER_TASK, len(uris)))
    found = []
    try:
        for result in pool.map(check, uris, formats):
            found.append(result)
            if isinstance(result, SentimentError):
                break
    finally:
        pool.shutdown(cancel_futures=True)  # after a bad file, the group's other files are not read
    return found
