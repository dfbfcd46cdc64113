"""One scoring run per output at a time: the `_LOCK` object in the output folder.

The lock holds the attempt's id, host, pid and a heartbeat time. It is taken with a conditional
create, so of two runs that start together exactly one gets it: a local exclusive create
(`open(path, "x")`) or, on S3, a PUT with `If-None-Match: *` (honoured by AWS S3 since 2024-08,
by MinIO and by moto >= 5.0.15; s3fs turns the refusal into FileExistsError). Locally the lock
is written whole to `_LOCK.ATTEMPT.tmp` and hard-linked to `_LOCK`, which fails if `_LOCK`
exists: as exclusive as `open(path, "x")`, and no reader ever sees a half-written lock. A store that
ignores the header would let two runs both "take" it; each run re-reads the lock before its
commit and stops if it no longer holds it, which narrows that window to seconds.

A thread rewrites the heartbeat every HEARTBEAT_S. A lock whose heartbeat is older than
STALE_AFTER_S (overridable with $SENTIMENT_LOCK_STALE_S), or whose holder is a dead process on
this same host, belongs to a run that was killed: it is taken over, and the takeover is logged.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import socket
import threading
import time
import uuid

from sentiment.errors import InputError, StorageError
from sentiment.io.storage import STORAGE_ERRORS, describe_failure, fsspec_filesystem, is_s3

log = logging.getLogger(__name__)

LOCK = "_LOCK"
HEARTBEAT_S = 30.0
# Ten heartbeats missed: a run that is alive but stalled on storage gets ample time to beat again.
STALE_AFTER_S = 600.0
STALE_ENV = "SENTIMENT_LOCK_STALE_S"


def new_attempt_id() -> str:
    """Sortable by start time and unique: 20261201T025301Z-1a2b3c4d."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def stale_after_s() -> float:
    return float(os.environ.get(STALE_ENV, STALE_AFTER_S))


class OutputLock:
    """The `_LOCK` of one output folder, held by one attempt; `release()` when done."""

    def __init__(self, output_uri: str, attempt: str):
        self.output_uri = output_uri
        self.uri = output_uri.rstrip("/") + "/" + LOCK
        self.attempt = attempt
        self.fs, self.path = fsspec_filesystem(self.uri)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _body(self) -> bytes:
        now = time.time()
        return json.dumps({"attempt": self.attempt, "host": socket.gethostname(), "pid": os.getpid(),
                           "heartbeat": datetime.datetime.fromtimestamp(now, datetime.timezone.utc)
                           .isoformat(timespec="seconds"), "heartbeat_epoch": now}).encode()

    def _create(self) -> bool:
        """Create the lock only if there is none; False when another run's lock is there."""
        try:
            if is_s3(self.uri):
                self.fs.pipe_file(self.path, self._body(), IfNoneMatch="*")
            else:
                os.makedirs(os.path.dirname(self.path), exist_ok=True)
                temporary = f"{self.path}.{self.attempt}.tmp"
                with open(temporary, "wb") as file:
                    file.write(self._body())
                try:
                    os.link(temporary, self.path)
                finally:
                    os.unlink(temporary)
            return True
        except FileExistsError:
            return False
        except STORAGE_ERRORS as error:
            raise StorageError(describe_failure(self.uri, error)) from None

    def read(self) -> dict | None:
        """The lock's contents, None when there is none; contents that are not ours count as a
        lock with no heartbeat."""
        try:
            self.fs.invalidate_cache()
            with self.fs.open(self.path, "rb") as file:
                data = file.read()
        except FileNotFoundError:
            return None
        except STORAGE_ERRORS as error:
            raise StorageError(describe_failure(self.uri, error)) from None
        try:
            holder = json.loads(data)
            return holder if isinstance(holder, dict) else {}
        except ValueError:
            return {}

    def acquire(self) -> None:
        """Take the lock, taking over a dead run's, and start the heartbeat.

        Raises:
            InputError: a live run holds it (the message names it and its last heartbeat).
            StorageError: the storage cannot be written.
        """
        while not self._create():
            holder = self.read()
            if holder is None:  # released between our create and our read: try again
                continue
            why_dead = _dead_because(holder)
            if why_dead is None:
                age = time.time() - holder.get("heartbeat_epoch", 0)
                raise InputError(
                    f"--output {self.output_uri} is being written by attempt {holder.get('attempt')} on host "
                    f"{holder.get('host')} (pid {holder.get('pid')}), last heartbeat {holder.get('heartbeat')} "
                    f"({age:.0f} s ago); wait for it to finish (a lock silent for {stale_after_s():.0f} s is "
                    f"taken over), or remove {self.uri} if that run is surely gone")
            # Remove only the lock we judged dead: a run that took it over meanwhile keeps its own.
            if self.read() == holder:
                log.warning("taking over the lock of %s: attempt %s on host %s (pid %s) %s",
                            self.output_uri, holder.get("attempt"), holder.get("host"), holder.get("pid"), why_dead)
                try:
                    self.fs.rm(self.path)
                except FileNotFoundError:
                    pass
                except STORAGE_ERRORS as error:
                    raise StorageError(describe_failure(self.uri, error)) from None
        self._thread = threading.Thread(target=self._beat, name="sentiment-lock-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                if (self.read() or {}).get("attempt") != self.attempt:
                    log.error("the lock of %s was taken over by another run; this attempt will not commit",
                              self.output_uri)
                    return
                self._rewrite()
            except (StorageError, *STORAGE_ERRORS) as error:  # the next beat tries again
                log.warning("could not refresh the lock %s: %s", self.uri, error)

    def _rewrite(self) -> None:
        if is_s3(self.uri):
            self.fs.pipe_file(self.path, self._body())  # one PUT: readers see the old or the new beat
        else:
            temporary = f"{self.path}.{self.attempt}.tmp"
            with open(temporary, "wb") as file:
                file.write(self._body())
            os.replace(temporary, self.path)

    def check_held(self) -> None:
        """Raise unless this attempt still holds the lock (called right before the commit).

        Raises:
            StorageError: another run took the lock over; this attempt must not commit.
        """
        holder = self.read()
        if (holder or {}).get("attempt") != self.attempt:
            raise StorageError(f"the lock {self.uri} is no longer held by this attempt ({self.attempt}) but by "
                               f"{(holder or {}).get('attempt')}: this attempt stops without committing")

    def release(self) -> None:
        """Stop the heartbeat and remove the lock if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            if (self.read() or {}).get("attempt") == self.attempt:
                self.fs.rm(self.path)
        except (StorageError, *STORAGE_ERRORS) as error:  # the next run will find it stale
            log.warning("could not remove the lock %s: %s", self.uri, error)


def live_holder(output_uri: str) -> dict | None:
    """The `_LOCK` of the run that writes output_uri now, None when no live run holds it; for
    `score --check`, which takes no lock."""
    holder = OutputLock(output_uri, attempt="").read()
    return holder if holder is not None and _dead_because(holder) is None else None


def _dead_because(holder: dict) -> str | None:
    """Why a lock's holder is surely gone ("its heartbeat stopped ..."), or None if it may live."""
    beat = holder.get("heartbeat_epoch")
    if not isinstance(beat, (int, float)):
        return "left an unreadable lock"
    age = time.time() - beat
    if age > stale_after_s():
        return f"stopped beating {age:.0f} s ago"
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int) \
            and not _pid_alive(holder["pid"]):
        return "is no longer running on this host"
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True
