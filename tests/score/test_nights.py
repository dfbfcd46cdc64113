"""`sentiment nights`: committed nights read from local folders and from the moto S3 server, in
the order they finished, with each share's shift from the night before, the nights a share jumped
and the night the model changed; folders without a finished night named, never dropped; the plot
written where asked. The nights are committed by the scoring commit's own code (tests/hand_commit),
so their `_SUCCESS` and `_summary.json` are what `sentiment score` leaves."""

from __future__ import annotations

import json
import os

import matplotlib.image
import pytest

from sentiment.cli import main
from sentiment.errors import InputError
from sentiment.io.storage import fsspec_filesystem, read_bytes, write_bytes
from sentiment.score.nights import NightsConfig, find_night_folders, format_nights, nights
from tests.hand_commit import commit_night

# (folder, model, negative, neutral, positive rows of 100, finish time): listed out of order on
# purpose, and 12-04 moves negative by 14 points under a new model.
NIGHTS = [
    ("2026-12-03", "s3://models/a", 20, 10, 70, "2026-12-03T02:30:00+00:00"),
    ("2026-12-01", "s3://models/a", 22, 11, 67, "2026-12-01T02:30:00+00:00"),
    ("2026-12-02", "s3://models/a", 21, 10, 69, "2026-12-02T02:31:00+00:00"),
    ("2026-12-04", "s3://models/b", 34, 9, 57, "2026-12-04T02:29:00+00:00"),
]


def _commit_nights(root: str) -> None:
    for night, (name, model, negative, neutral, positive, finished_at) in enumerate(NIGHTS, start=1):
        # The night of 12-02 had its one scoring actor's process lost once, and restarted.
        processes = ["a1 100 0", "a1 300 1"] if name == "2026-12-02" else ["a1 100 0"]
        commit_night(f"{root}/{name}", night, 100, 2, model=model, finished_at=finished_at,
                     labels={"negative": negative, "neutral": neutral, "positive": positive},
                     actor_processes=processes)


def _check_the_nights(found, root: str) -> None:
    assert [row["night"] for row in found.rows] == ["2026-12-01", "2026-12-02", "2026-12-03", "2026-12-04"]
    assert [row["folder"] for row in found.rows] == [f"{root}/2026-12-0{day}" for day in (1, 2, 3, 4)]
    first, second, _, last = found.rows
    assert first["shares"] == {"negative": 0.22, "neutral": 0.11, "positive": 0.67} and first["shift"] is None
    assert second["shift"] == {"negative": -0.01, "neutral": -0.01, "positive": 0.02} and not second["moved"]
    assert last["shift"] == {"negative": 0.14, "neutral": -0.01, "positive": -0.13}
    assert last["moved"] == ["negative", "positive"]
    assert [row["model_changed"] for row in found.rows] == [False, False, False, True]
    assert [row["rows_scored"] for row in found.rows] == [100] * 4
    assert [row["actor_restarts"] for row in found.rows] == [0, 1, 0, 0]


def test_nights_in_finish_order_with_shifts_moves_and_the_model_change(tmp_path, capsys):
    root = str(tmp_path / "scored")
    _commit_nights(root)
    # A killed night: files staged beside the output, no _SUCCESS; and a night whose _summary.json is
    # of another attempt than its _SUCCESS (a run killed between writing the two).
    os.makedirs(f"{root}/2026-12-05")
    write_bytes(f"{root}/_2026-12-05.staging/20261205T023000Z-0a1b2c3d/00000.parquet", b"partial")
    commit_night(f"{root}/2026-12-06", 6, 10, 1, labels={"negative": 10})
    summary = json.loads(read_bytes(f"{root}/2026-12-06/_summary.json"))
    write_bytes(f"{root}/2026-12-06/_summary.json", json.dumps({**summary, "attempt": "another"}).encode())

    found = nights(NightsConfig([root], plot=str(tmp_path / "plots" / "nights.png")))
    _check_the_nights(found, root)
    assert found.unfinished == [f"{root}/2026-12-05", f"{root}/2026-12-06"]  # named, not dropped
    table = capsys.readouterr().out
    assert table == format_nights(found) + "\n"
    lines = table.splitlines()
    assert lines[0].split() == ["night", "finished", "(UTC)", "rows", "scored", "errored", "minutes", "negative",
                                "neutral", "positive", "model"]
    assert lines[1].split() == ["2026-12-01", "2026-12-01", "02:30", "100", "0", "0.0", "22.0%", "11.0%", "67.0%",
                                "s3://models/a"]
    assert lines[2].split()[-6:] == ["21.0%", "(-1.0)", "10.0%", "(-1.0)", "69.0%", "(+2.0)"]  # no model: unchanged
    assert lines[4].split()[-8:] == ["34.0%", "(+14.0)!", "9.0%", "(-1.0)", "57.0%", "(-13.0)!", "s3://models/b",
                                     "(new)"]
    assert "1 night(s) where a share moved 10 points or more: 2026-12-04 (negative +14.0, positive -13.0)" in table
    assert ("1 night(s) where Ray restarted a scoring actor whose process was lost (killed, out of memory, its "
            "node gone; every row still scored once): 2026-12-02 (1)") in table
    assert f"no finished night (no _SUCCESS and _summary.json of one attempt) in: {root}/2026-12-05, " \
           f"{root}/2026-12-06" in table
    from sentiment.score.plots import nights_figure

    figure = nights_figure(found.rows)  # the night with the restart is marked above its bar, with its count
    assert [t.get_text() for t in figure.axes[1].texts] == ["1"]
    [marks] = [line for line in figure.axes[1].lines if line.get_label().startswith("Ray restarted a scoring actor")]
    assert list(marks.get_xdata()) == [1]  # the second night, 2026-12-02
    image = matplotlib.image.imread(tmp_path / "plots" / "nights.png")
    assert image.shape[0] > 500 and image.shape[1] > 700  # a real picture, drawn

    # A glob and a night folder given directly select the same nights; JSON for scripts.
    assert find_night_folders([f"{root}/2026-12-0[12]", f"{root}/2026-12-04"]) == [
        f"{root}/2026-12-01", f"{root}/2026-12-02", f"{root}/2026-12-04"]
    assert main(["nights", f"{root}/2026-12-0*", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [row["night"] for row in printed["rows"]] == ["2026-12-01", "2026-12-02", "2026-12-03", "2026-12-04"]
    assert printed["rows"][3]["moved"] == ["negative", "positive"]


def test_nights_on_s3_with_the_plot_written_there(s3_bucket, capsys):
    root = f"{s3_bucket}/scored"
    _commit_nights(root)
    assert main(["nights", root + "/", "--plot", f"{s3_bucket}/reports/nights.png"]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[4].startswith("2026-12-04") and "no finished night" not in table
    fs, path = fsspec_filesystem(f"{s3_bucket}/reports/nights.png")
    with fs.open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    found = nights(NightsConfig([f"{root}/2026-12-0*"]))
    _check_the_nights(found, root)


def test_bad_night_folders_are_one_clear_line(tmp_path, capsys):
    with pytest.raises(InputError, match=r"/missing: no such folder"):
        find_night_folders([str(tmp_path / "missing")])
    with pytest.raises(InputError, match=r"2027-\* matches no folder"):
        find_night_folders([str(tmp_path / "2027-*")])
    (tmp_path / "scored" / "2026-12-01").mkdir(parents=True)
    assert main(["nights", str(tmp_path / "scored")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"sentiment nights: error: no finished night (no _SUCCESS and _summary.json of one attempt) in "
        f"{tmp_path}/scored/2026-12-01")
