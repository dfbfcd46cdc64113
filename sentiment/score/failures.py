"""Why a scoring pipeline failed, told apart by exception type: the storage, an input file, or a bug."""

from __future__ import annotations

import pyarrow as pa

from sentiment.errors import InputError, SentimentError, StorageError
from sentiment.score.commit import MARKER
from sentiment.io.storage import BotoCoreError, ClientError, describe_failure


def _causes(error: BaseException):
    """error and what it wraps: Ray's RayTaskError.cause, then the usual __cause__/__context__."""
    seen, todo = set(), [error]
    while todo:
        current = todo.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [getattr(current, "cause", None), current.__cause__, current.__context__]


def pipeline_failure(error: BaseException, uris: list[str], paths: list[str], output: str) -> SentimentError | None:
    """The user-facing error for a failed scoring pipeline, told apart by the type of what failed.

    The up-front checks read every CSV and JSON file and each Parquet footer; what still fails
    in the pipeline is storage (OSError with an errno, botocore errors) or a damaged Parquet page
    (Arrow's own errors).

    Args:
        error: what the pipeline raised (a RayTaskError wrapping the task's exception, usually).
        uris, paths: the input files, as URIs and as paths within their filesystem.
        output: the output URI, for the storage message.

    Returns:
        A StorageError or InputError to show as one line, or None for anything else: a bug,
        which keeps its traceback.
    """
    from ray.exceptions import RayTaskError

    for cause in _causes(error):
        if isinstance(cause, RayTaskError):  # it subclasses its cause's type too: look inside
            continue
        if isinstance(cause, (BotoCoreError, ClientError)) or (isinstance(cause, OSError) and cause.errno):
            return StorageError(describe_failure(output, cause) + f"; the output was left as it was, with no new "
                                f"{MARKER}")
        if isinstance(cause, (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, OSError)):
            reason = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
            # Arrow's messages name the file when they know it; the type said it is the input's fault.
            named = next((uri for uri, path in zip(uris, paths) if path in str(cause)), "an input file")
            return InputError(f"{named} could not be read: {reason}; the output was left as it was")
    return None
