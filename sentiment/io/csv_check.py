"""The strict CSV check: every CSV is read once in full before scoring or training starts, by the
check tasks on the workers (see file_checks), not on the driver.

Arrow's CSV parser accepts a quote left open to the end of the file and silently merges every
later row into one text, and its UTF-8 errors reach us as an opaque Ray task failure. Python's
strict csv reader catches both and names the line; it runs at about 100 MB/s per core. The
stream is opened through Arrow, which decompresses .csv.gz/.csv.zst/.csv.bz2 by extension.
"""

from __future__ import annotations

import codecs
import csv
import io

from sentiment.errors import InputError


def check_csv_body(filesystem, path: str, uri: str) -> int:
    """Read a whole CSV strictly, so that damage past its header is caught before scoring.

    Returns:
        The number of data rows (blank lines skipped, as Arrow does).

    Raises:
        InputError: naming the file and line of a quote left open, a character after a closing
            quote, a row whose field count differs from the header's, or bytes that are not UTF-8.
    """
    with filesystem.open_input_stream(path) as stream:
        reader = csv.reader(io.TextIOWrapper(stream, encoding="utf-8-sig", newline=""), strict=True)
        record_start, width, records = 1, None, 0
        try:
            for row in reader:
                # Arrow skips blank lines and fails the whole read on a row of another width.
                if row and len(row) != (width := width or len(row)):
                    raise InputError(f"{uri} is malformed CSV: the row starting at line {record_start} has "
                                     f"{len(row)} fields, the header has {width}")
                records += bool(row)
                record_start = reader.line_num + 1
        except csv.Error as error:
            hint = " (a quote opened here is never closed)" if "unexpected end of data" in str(error) else ""
            raise InputError(f"{uri} is malformed CSV in the row starting at line {record_start}: "
                             f"{error}{hint}") from None
        except UnicodeDecodeError:
            pass
        else:
            return max(0, records - 1)
    line, offset, byte = _first_invalid_utf8(filesystem, path)
    raise InputError(f"{uri} is not valid UTF-8 text: byte 0x{byte:02x} at line {line} (byte offset {offset}); "
                     "re-encode it as UTF-8, e.g. iconv -f latin1 -t utf-8") from None


def _first_invalid_utf8(filesystem, path: str) -> tuple[int, int, int]:
    """Line number, byte offset and value of the first byte that is not UTF-8 (error path only)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, lines = 0, 1
    with filesystem.open_input_stream(path) as stream:
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
