"""Record every GetObject that s3fs sends, in this process: which key, and how many bytes came back."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field


@dataclass
class S3Reads:
    calls: list[tuple[str, int]] = field(default_factory=list)  # (key, bytes in the response)

    def bytes_of(self, suffix: str) -> int:
        return sum(length for key, length in self.calls if key.endswith(suffix))

    def count_of(self, suffix: str) -> int:
        return sum(1 for key, _ in self.calls if key.endswith(suffix))


@contextlib.contextmanager
def recording_s3_reads():
    """Patch s3fs' single entry point for S3 API calls (every read, ranged or whole, goes through it)."""
    import s3fs

    reads = S3Reads()
    original = s3fs.S3FileSystem._call_s3

    async def recording(self, method, *args, **kwargs):
        response = await original(self, method, *args, **kwargs)
        if method == "get_object":
            reads.calls.append((kwargs["Key"], response.get("ContentLength", 0)))
        return response

    s3fs.S3FileSystem._call_s3 = recording
    try:
        yield reads
    finally:
        s3fs.S3FileSystem._call_s3 = original
