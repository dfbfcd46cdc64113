"""The per-stage table of `_summary.json` (sentiment/score/stages.py), from a real small run."""

from __future__ import annotations

import json
import logging
import re
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from sentiment.cli import main
from sentiment.score.stages import STAGES, _busy_and_span, _split, format_stages, pipeline_seconds
from tests.helpers import UNLABELED_TEXT, unlabeled_reviews

TEXT = "Review Text"


def test_stage_table_accounts_for_every_row_of_a_real_run(ray_cluster, tiny_classifier, shared_data, tmp_path, caplog,
                                                          capsys):
    caplog.set_level(logging.INFO, logger="sentiment.score.pipeline")
    # Two CSV and two Parquet shards: two read operators and a union, so the read row must add
    # them up; a blank review is an errored row, which every stage still carries.
    inputs = tmp_path / "in"
    inputs.mkdir()
    source = unlabeled_reviews(shared_data, "lego.csv", 600)
    for i in range(4):
        texts = source.slice(i * 150, 150)[UNLABELED_TEXT].to_pylist()
        texts[0] = "  "
        table = pa.table({TEXT: pa.array(texts, pa.string())})
        if i % 2:
            pq.write_table(table, inputs / f"part-{i}.parquet")
        else:
            pacsv.write_csv(table, inputs / f"part-{i}.csv")
    output = tmp_path / "out"
    assert main(["score", "--model", tiny_classifier, "--input", str(inputs), "--output", str(output),
                 "--text-column", TEXT]) == 0
    summary = json.loads((output / "_summary.json").read_text())
    written = sum(pq.read_metadata(output / f["file"]).num_rows for f in json.loads((output / "_SUCCESS").read_text())["files"])
    stages = {row["stage"]: row for row in summary["stages"]}

    assert {"read", "tokenize", "model", "write"} <= set(stages), summary["stages"]
    assert [row["stage"] for row in summary["stages"]] == [s for s in STAGES if s in stages]
    for row in summary["stages"]:
        assert row["rows"] == 600, row
        assert row["blocks"] >= 1 and row["operators"], row
        assert min(row["start_s"], row["wall_s"], row["task_s"], row["cpu_s"]) >= 0, row
    assert len(stages["read"]["operators"]) >= 2  # a CSV read and a Parquet read, both counted
    assert stages["model"]["rows"] == summary["rows_read"] == written == 600
    assert summary["rows_errored"] == 4
    assert summary["scoring_actors"] == {"actors": 1, "processes": 1, "restarts": 0}
    model = stages["model"]
    assert 0 <= model["wait_s"] <= model["wall_s"] and 0 < model["busy_fraction"] <= 1
    assert model["task_s"] > 0 and model["cpu_s"] > 0  # the model really ran inside this stage
    text = format_stages(summary["stages"])
    assert "model" in text and f"{pipeline_seconds(summary['stages']):.2f} s from the first read" in text
    assert pipeline_seconds(summary["stages"]) <= summary["wall_s"]
    assert re.search(rf"committed 600 rows of 4 files to {re.escape(str(output))} in [0-9a-z ]+ s \([0-9,]+ rows/s\): "
                     rf"596 labeled \(negative [0-9.]+%, neutral [0-9.]+%, positive [0-9.]+%\), "
                     rf"4 errored \(commonest: 'text is empty or whitespace', 4\)$", caplog.text, re.M), caplog.text[-2000:]

    # The next night, into its own folder, compared with this one (--compare-with): half the shards,
    # so other shares; a folder without a finished night is only warned about.
    tonight = tmp_path / "out-2"
    caplog.set_level(logging.INFO, logger="sentiment.score.pipeline")
    assert main(["score", "--model", tiny_classifier, "--input", str(inputs / "part-0.csv"), str(inputs / "part-1.parquet"),
                 "--output", str(tonight), "--text-column", TEXT, "--compare-with", str(output)]) == 0
    second = json.loads((tonight / "_summary.json").read_text())
    assert second["previous_night"]["output"] == summary["output"]
    assert second["previous_night"]["attempt"] == summary["attempt"] and second["previous_night"]["rows_scored"] == 596
    assert second["label_shift"] == pytest.approx({label: second["label_fractions"][label] - summary["label_fractions"][label]
                                                   for label in summary["label_fractions"]}, abs=1e-4)
    assert any(f"against the previous night ({summary['output']}, {summary['attempt']}, 596 rows)" in record.message
               for record in caplog.records)
    # Said before the night is scored: --check, which stops where scoring would start, says it.
    empty = tmp_path / "no-night"
    empty.mkdir()
    caplog.clear()
    capsys.readouterr()  # the two nights' summaries
    assert main(["score", "--model", tiny_classifier, "--input", str(inputs / "part-0.csv"), "--output",
                 str(tmp_path / "out-3"), "--text-column", TEXT, "--compare-with", str(empty), "--check"]) == 0
    assert json.loads(capsys.readouterr().out)["compared_with"] is None
    assert any(f"--compare-with {empty} holds no finished night" in record.message for record in caplog.records)


def _block(node: str, start: float, end: float):
    return SimpleNamespace(exec_stats=SimpleNamespace(node_id=node, start_time_s=start, end_time_s=end))


def test_model_wait_is_the_gaps_between_calls_per_node():
    # Node a: calls 0-2 and 1-3 overlap (two calls per actor), then nothing until 5-6: busy 4 of
    # a 6 s span. Node b's clock is its own: 100-101, busy 1 of 1.
    metadata = {"MapBatches(ScoringActor)": [_block("a", 0, 2), _block("a", 1, 3), _block("a", 5, 6),
                                             _block("b", 100, 101)]}
    assert _busy_and_span(metadata, ["MapBatches(ScoringActor)"]) == (5.0, 7.0)


def test_a_fused_operator_is_shared_out_by_the_time_ray_measured_per_function():
    op = SimpleNamespace(operator_name="MapBatches(tokenize_for_model)->MapBatches(ScoringActor)",
                         stage_time=[SimpleNamespace(sum=1.0), SimpleNamespace(sum=3.0)])
    assert _split(op) == {"tokenize": 0.25, "model": 0.75}
    op.stage_time = None  # not split by Ray: the model, the costlier kind of work, takes it all
    assert _split(op) == {"model": 1.0}
    assert _split(SimpleNamespace(operator_name="ReadFilesParquetV2->MapBatches(as_plain_strings)",
                                  stage_time=None)) == {"read": 1.0}


def test_the_night_in_one_line():
    from sentiment.score.summary import describe_night

    night = {"output": "s3://scored/2026-12-06/", "input_files": [{"file": "a.csv", "rows": 2_000_000}],
             "rows_read": 2_000_000, "rows_scored": 1_999_000, "rows_errored": 1_000, "wall_s": 92.4, "rows_per_s": 21645.0,
             "errors": {"text is null": 900, "text is empty or whitespace": 100},
             "label_fractions": {"negative": 0.25, "neutral": 0.125, "positive": 0.625}}
    assert describe_night(night) == (
        "committed 2,000,000 rows of 1 file to s3://scored/2026-12-06/ in 1 min 32 s (21,645 rows/s): 1,999,000 "
        "labeled (negative 25.0%, neutral 12.5%, positive 62.5%), 1,000 errored (commonest: 'text is null', 900)")
    # A night whose actor Ray restarted says so at the end of the same line.
    night["scoring_actors"] = {"actors": 1, "processes": 2, "restarts": 1}
    assert describe_night(night).endswith("900); 1 scoring actor restart (a process lost, its windows scored again)")


def test_scoring_actor_restarts_are_counted_from_the_processes_that_wrote_rows():
    from sentiment.score.summary import scoring_actors

    assert scoring_actors([]) == {"actors": 0, "processes": 0, "restarts": 0}
    assert scoring_actors(["a1 100 0", "b2 200 0"]) == {"actors": 2, "processes": 2, "restarts": 0}
    # Actor a1 lost its first process, which had written rows: two processes under one id.
    assert scoring_actors(["a1 100 0", "a1 300 1", "b2 200 0"]) == {"actors": 2, "processes": 3, "restarts": 1}
    # Its first process wrote nothing: the restarted one says it was restarted.
    assert scoring_actors(["a1 300 1"]) == {"actors": 1, "processes": 1, "restarts": 1}
    # Lost twice: three processes, the last two marked.
    assert scoring_actors(["a1 100 0", "a1 300 1", "a1 400 1"])["restarts"] == 2


def test_tonight_is_compared_with_the_night_it_replaces(tmp_path, caplog):
    from sentiment.score.commit import read_night_summary
    from sentiment.score.pipeline import log_comparison
    from sentiment.score.summary import compare_with_previous

    tonight = {"output": "s3://scored/2026-12-05/", "model": "s3://models/b", "label_fractions": {"negative": 0.30, "neutral": 0.10, "positive": 0.60}}
    previous = {"output": "s3://scored/2026-12-04/", "attempt": "20261204T020000Z-0a1b2c3d", "finished_at": "2026-12-04T02:31:00+00:00",
                "model": "s3://models/a", "rows_scored": 1000, "stages": {},
                "label_fractions": {"negative": 0.25, "neutral": 0.12, "positive": 0.63}}
    line = compare_with_previous(tonight, previous)
    assert tonight["label_shift"] == {"negative": 0.05, "neutral": -0.02, "positive": -0.03}
    assert tonight["previous_night"] == {key: previous[key] for key in
                                         ("output", "attempt", "finished_at", "model", "rows_scored",
                                          "label_fractions")}
    assert "(s3://scored/2026-12-04/, 20261204T020000Z-0a1b2c3d, 1000 rows, scored by s3://models/a)" in line
    assert "negative 30.0% (+5.0 points)" in line and "positive 60.0% (-3.0 points)" in line
    assert "scored by s3://models/a" in line  # another model: said, as the likeliest cause of a shift
    caplog.set_level(logging.INFO, logger="sentiment.score.pipeline")
    log_comparison(line, tonight["label_shift"])  # 5 points at most: information
    log_comparison("ten", {"negative": 0.1, "neutral": -0.04, "positive": -0.06})
    assert [(r.levelname, r.message) for r in caplog.records] == [
        ("INFO", line), ("WARNING", "ten; a share moved by 10 points or more")]
    first_night = {"model": "m", "label_fractions": {"negative": 1.0, "neutral": 0.0, "positive": 0.0}}
    assert compare_with_previous(first_night, None) is None and "label_shift" not in first_night

    # Only the summary of the night _SUCCESS names counts: not one a killed run left of another attempt.
    output = tmp_path / "scored"
    output.mkdir()
    assert read_night_summary(str(output)) is None
    (output / "_SUCCESS").write_text(json.dumps({"attempt": previous["attempt"], "files": []}))
    assert read_night_summary(str(output)) is None  # no _summary.json
    (output / "_summary.json").write_text(json.dumps(previous))
    assert read_night_summary(str(output)) == previous
    (output / "_summary.json").write_text(json.dumps({**previous, "attempt": "20261205T020000Z-ffffffff"}))
    assert read_night_summary(str(output)) is None
    (output / "_summary.json").write_text("{not json")
    assert read_night_summary(str(output)) is None
