"""What a power cut cannot undo: a local commit flushes (fsync) every file its marker names, and
the folder holding their names, before the marker goes in, and the marker's own bytes before its
rename. A SIGKILL cannot show this (the page cache survives a killed process), so these tests
record the order of the real commits' fsync and rename calls (tests/hand_commit.py: the library's
own commit code, without Ray).
"""

from __future__ import annotations

import errno
import json
import os

import pytest

from sentiment.errors import StorageError
from tests.hand_commit import MODEL_FILES, commit_model, commit_night


@pytest.fixture
def disk_events(monkeypatch):
    """[("fsync", path) | ("replace", destination)] in call order, the calls still made."""
    events = []
    fsync, replace = os.fsync, os.replace

    def recording_fsync(descriptor):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{descriptor}")))
        fsync(descriptor)

    def recording_replace(source, destination):
        events.append(("replace", os.path.realpath(destination)))
        replace(source, destination)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording_replace)
    return events


def _flushed_before(events: list, path: str, event: tuple) -> bool:
    return ("fsync", path) in events[:events.index(event)]


def test_a_scoring_night_is_on_disk_before_success_names_it(tmp_path, disk_events):
    output = tmp_path / "scored"
    commit_night(str(output), night=1, rows=30, files=3)
    commit_night(str(output), night=2, rows=30, files=3)  # the second replaces a night that exists

    out = os.path.realpath(output)
    listed = [f["file"] for f in json.loads((output / "_SUCCESS").read_text())["files"]]
    assert len(listed) == 3
    marker = ("replace", f"{out}/_SUCCESS")
    assert disk_events.count(marker) == 2
    last_marker = len(disk_events) - 1 - disk_events[::-1].index(marker)
    before = disk_events[:last_marker]
    for name in listed:
        assert ("fsync", f"{out}/{name}") in before
    # The folder after the moves (their new names) and before the marker, and again after it.
    moved = max(before.index(("fsync", f"{out}/{name}")) for name in listed)
    assert ("fsync", out) in before[moved:]
    assert ("fsync", out) in disk_events[last_marker:]
    # The marker's own bytes, under its temporary name, before the rename.
    assert any(kind == "fsync" and path.startswith(f"{out}/_SUCCESS.") and path.endswith(".tmp")
               for kind, path in before[moved:])


def test_a_model_folder_is_on_disk_before_metrics_json_marks_it_complete(tmp_path, disk_events):
    output = tmp_path / "model"
    commit_model(str(output), "run-1")

    out = os.path.realpath(output)
    assert json.loads((output / "metrics.json").read_text()) == {"tag": "run-1"}
    marker = ("replace", f"{out}/metrics.json")
    for name in MODEL_FILES:
        assert _flushed_before(disk_events, f"{out}/{name}", marker)
    assert _flushed_before(disk_events, out, marker)
    assert ("fsync", out) in disk_events[disk_events.index(marker):]


def test_a_folder_fsync_refused_by_the_file_system_is_passed_over_and_other_failures_are_named(tmp_path, monkeypatch):
    from sentiment.io.storage import make_durable

    (tmp_path / "part.parquet").write_bytes(b"rows")
    fsync = os.fsync

    def refusing(errno_for_folders):
        def fake(descriptor):
            if os.path.isdir(os.readlink(f"/proc/self/fd/{descriptor}")):
                raise OSError(errno_for_folders, os.strerror(errno_for_folders))
            fsync(descriptor)
        return fake

    monkeypatch.setattr(os, "fsync", refusing(errno.EINVAL))  # e.g. some network and FUSE mounts
    make_durable(str(tmp_path), ["part.parquet"])
    monkeypatch.setattr(os, "fsync", refusing(errno.EIO))
    with pytest.raises(StorageError, match=str(tmp_path)):
        make_durable(str(tmp_path), ["part.parquet"])
    with pytest.raises(StorageError, match="missing.parquet"):
        monkeypatch.setattr(os, "fsync", fsync)
        make_durable(str(tmp_path), ["missing.parquet"])
