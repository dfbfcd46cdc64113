"""Every input file is checked before a pipeline starts: its schema and row count, or its name
and what is wrong with it.

A wrong text column or a corrupt file must fail the run in seconds with the file's name, not an
hour into the night with a Ray traceback, and every file's row count must be known up front:
- a Parquet file's footer is read (one small read);
- a JSON file is parsed in full (JSON lines, or one JSON array of objects);
- a CSV file is read once in full by Python's strict CSV reader (see csv_check): Arrow's CSV
  parser silently merges every row after a quote that is never closed into one text.
"""

from __future__ import annotations

import io
import json
from collections import Counter

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from sentiment.csv_check import check_csv_body
from sentiment.errors import InputError, StorageError
from sentiment.storage import STORAGE_ERRORS, describe_failure

# Reviews contain line breaks inside quoted fields; pyarrow splits rows on them unless told not to.
CSV_PARSE = pacsv.ParseOptions(newlines_in_values=True)


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
            table = _read_json(filesystem, path)
            schema, rows = table.schema, table.num_rows
        else:
            with filesystem.open_input_stream(path) as stream:  # decompresses .gz/.zst/.bz2
                schema = pacsv.open_csv(stream, parse_options=CSV_PARSE,
                                        read_options=pacsv.ReadOptions(block_size=1 << 20)).schema
            rows = check_csv_body(filesystem, path, uri)
    except InputError:
        raise
    except STORAGE_ERRORS as error:
        # Arrow's own I/O and format failures are OSErrors without an errno; the OS's and
        # s3fs's carry one (ENOENT, EACCES, EIO, timeouts).
        if isinstance(error, OSError) and error.errno is None and not isinstance(error, (ConnectionError, TimeoutError)):
            raise InputError(f"{uri} is not a readable {fmt.upper()} file: {error}") from None
        raise StorageError(describe_failure(uri, error)) from None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as error:
        raise InputError(f"{uri} is not a readable {fmt.upper()} file: {error}") from None
    repeated = [name for name, n in Counter(schema.names).items() if n > 1]
    if repeated:
        raise InputError(f"{uri} has the column name(s) {', '.join(repeated)} more than once; "
                         "give every column a distinct name")
    return schema, rows


def _read_json(filesystem, path: str) -> pa.Table:
    """A JSON-lines file, or a file holding one JSON array of objects (Ray reads both)."""
    with filesystem.open_input_stream(path) as stream:
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
