"""The strict CSV check: every CSV is read once in full before scoring or training starts, by the
check tasks on the workers (see file_checks), not on the driver.

Arrow's CSV parser accepts a quote left open to the end of the file and silently merges every
later row into one text, and its UTF-8 errors reach us as an opaque Ray task failure. Python's
strict csv reader catches both and names the line; it runs at about 100 MB/s per core. The
stream is opened through Arrow, decompressing by the caller's codec (see storage.compression_of).

Python's csv refuses fields over its field_size_limit (131,072 characters by default), a limit
of the module, not of the file: a valid review of 2 MB must be read. The limit is lifted, so a
field is bounded only by the file that holds it, and the longest record is measured, so that
Arrow's reader gets blocks big enough to hold it (Arrow fails on a row longer than its block).
"""

from __future__ import annotations

import codecs
import csv
import io
import sys

from sentiment.errors import InputError


def check_csv_body(filesystem, path: str, uri: str, compression: str | None = None) -> tuple[int, int]:
    """Read a whole CSV strictly, so that damage past its header is caught before scoring.

    Returns:
        The number of data rows (blank lines skipped, as Arrow does), and the length in
        characters of the longest record.

    Raises:
        InputError: naming the file and line of a quote left open, a character after a closing
            quote, a row whose field count differs from the header's, or bytes that are not UTF-8.
    """
    csv.field_size_limit(sys.maxsize)  # see the module docstring
    with filesystem.open_input_stream(path, compression=compression) as stream:
        reader = csv.reader(io.TextIOWrapper(stream, encoding="utf-8-sig", newline=""), strict=True)
        record_start, width, records, longest = 1, None, 0, 0
        try:
            for row in reader:
                longest = max(longest, sum(map(len, row)) + len(row))
                # Arrow skips blank lines and fails the whole read on a row of another width.
                if row and len(row) != (width := width or len(row)):
                    raise InputError(f"{uri} is malformed CSV: the row starting at line {record_start} has "
                                     f"{len(row)} fields, the header has {width}")
                records += bool(row)
                record_start = reader.line_num + 1
        except csv.Error as error:
            hint = " (a quote opened here is never closed)" if "unexpected end of data" in str(error) else ""
            raise InputError(f"{uri} is malformed CSV in the row starting at line {record_start}: "
                             f"{printable(str(error))}{hint}") from None
        except UnicodeDecodeError:
            pass
        else:
            return max(0, records - 1), longest
    line, offset, byte = _first_invalid_utf8(filesystem, path, compression)
    raise InputError(f"{uri} is not valid UTF-8 text: byte 0x{byte:02x} at line {line} (byte offset {offset}); "
                     "re-encode it as UTF-8, e.g. iconv -f latin1 -t utf-8") from None


def _first_invalid_utf8(filesystem, path: str, compression: str | None) -> tuple[int, int, int]:
    """Line number, byte offset and value of the first byte that is not UTF-8 (error path only)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, lines = 0, 1
    with filesystem.open_input_stream(path, compression=compression) as stream:
        while chunk := stream.read(1 << 20):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as error:
                # error.start counts from the bytes the decoder still held from the last chunk.
                held = len(error.object) - len(chunk)
                bad = offset - held + error.start
                return lines + error.object[:error.start].count(b"\n"), bad, error.object[error.start]
            offset += len(chunk)
            lines += chunk.count(b"\n")
    return lines, offset, 0


_MESSAGE_CHARS = 300


def printable(text: str, limit: int = _MESSAGE_CHARS) -> str:
    """text safe for one terminal line: characters that are not printable (control bytes,
    undecodable bytes, U+FFFD) escaped as \\xNN / \\uNNNN, and cut after limit characters, so a
    reader's error quoting a binary file never floods or garbles the terminal."""
    safe = "".join(c if c.isprintable() and c != "\ufffd" else c.encode("unicode_escape").decode("ascii")
                   for c in text[:limit])
    return safe if len(text) <= limit else f"{safe}... ({len(text) - limit} more characters cut)"
