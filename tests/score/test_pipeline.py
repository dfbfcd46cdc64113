"""`sentiment score` end to end on real parts: a moto S3 server, a local Ray cluster, real reviews.

Shards are built from ../shared/data/unlabeled with a row_id column, so every assertion about
"exactly once" is about real row identities, not counts that could balance out by accident.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from sentiment.cli import main
from sentiment.data.labels import LABELS, PROB_COLUMNS
from sentiment.io.storage import arrow_filesystem, fsspec_filesystem, upload_dir
from tests.helpers import UNLABELED_TEXT, unlabeled_reviews

TEXT = UNLABELED_TEXT
SOURCES = ("copper.csv", "webmd.csv", "lego.csv", "newsmatic.csv")
ROWS_PER_SHARD = 150


def _shard_tables(shared_data) -> list[pa.Table]:
    """Four shards of real reviews with row ids, plus blank texts of every kind we must survive."""
    tables, next_id = [], 0
    for name in SOURCES:
        table = unlabeled_reviews(shared_data, name, ROWS_PER_SHARD)
        texts = table[TEXT].to_pylist()
        texts[:3] = ["", "   \n\t", None]  # a CSV cannot hold a null; it reads back as ""
        table = pa.table({"row_id": pa.array(range(next_id, next_id + len(texts)), pa.int64()),
                          TEXT: pa.array(texts, pa.string()),
                          "app": pa.array([name.removesuffix(".csv")] * len(texts))})
        tables.append(table)
        next_id += len(texts)
    return tables


def _write_shards(tables: list[pa.Table], folder) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, table in enumerate(tables):
        if i % 2:
            pq.write_table(table, folder / f"part-{i}.parquet")
        else:
            pacsv.write_csv(table, folder / f"part-{i}.csv")


def _read_output(uri: str) -> pa.Table:
    fs, path = fsspec_filesystem(uri)
    files = sorted(p for p in fs.find(path) if p.endswith(".parquet"))
    arrow_fs, _ = arrow_filesystem(uri)
    return pa.concat_tables([pq.read_table(p, filesystem=arrow_fs) for p in files])


def _read_json(uri: str) -> dict:
    fs, path = fsspec_filesystem(uri)
    with fs.open(path, "rb") as f:
        return json.loads(f.read())


def _score(*args: str) -> int:
    return main(["score", "--text-column", TEXT, *args])


@pytest.fixture(scope="module")
def s3_scored(shared_data, s3_server, ray_cluster, tiny_classifier, tmp_path_factory):
    """Shards and the model on S3, scored once s3:// -> s3:// with two model actors."""
    import boto3

    tables = _shard_tables(shared_data)
    local = tmp_path_factory.mktemp("shards")
    _write_shards(tables, local)
    bucket = "scoring-e2e"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=bucket)
    upload_dir(str(local), f"s3://{bucket}/reviews/2026-11-26")
    upload_dir(tiny_classifier, f"s3://{bucket}/models/tiny")
    paths = {"input": f"s3://{bucket}/reviews/2026-11-26/", "output": f"s3://{bucket}/scored/2026-11-26",
             "model": f"s3://{bucket}/models/tiny"}
    assert _score("--model", paths["model"], "--input", paths["input"], "--output", paths["output"],
                  "--concurrency", "2") == 0
    return pa.concat_tables(tables), paths


def test_s3_scoring_writes_every_input_row_exactly_once(s3_scored):
    expected, paths = s3_scored
    out = _read_output(paths["output"])
    assert out.num_rows == expected.num_rows
    assert sorted(out["row_id"].to_pylist()) == list(range(expected.num_rows))
    # Kept columns travel with their row: the text and app of each row id are the input's.
    got = dict(zip(out["row_id"].to_pylist(), zip(out["app"].to_pylist(), out[TEXT].to_pylist())))
    for row_id, app, text in zip(*(expected[c].to_pylist() for c in ("row_id", "app", TEXT))):
        assert got[row_id][0] == app
        assert (got[row_id][1] or "") == (text or "")
    assert set(out["model"].to_pylist()) == {paths["model"]}


def test_s3_scored_output_reads_back_as_pseudo_labels(s3_scored):
    """What `sentiment score` wrote is what `sentiment train --pseudo-labels` reads: every row
    kept or counted with its reason."""
    from sentiment.data.pseudo_labels import read_pseudo_labels
    from sentiment.errors import InputError

    expected, paths = s3_scored
    texts = [(t or "").strip() for t in expected[TEXT].to_pylist()]
    unique = {t for t in texts if t}
    # The tiny model is untrained: every row's chosen class (neutral, for all) has about a third,
    # never 0.99.
    pseudo = read_pseudo_labels([paths["output"]], TEXT, 0.3, "all")
    counts = pseudo.counts
    assert counts["rows_read"] == expected.num_rows and counts["below_confidence"] == 0
    assert counts["kept"] == len(unique) == len(pseudo.rows) and set(pseudo.rows["text"]) == unique
    assert counts["unscored"] + counts["empty_text"] == texts.count("")
    assert counts["duplicate_text"] == sum(1 for t in texts if t) - len(unique)
    with pytest.raises(InputError, match="lower --pseudo-min-confidence"):
        read_pseudo_labels([paths["output"]], TEXT, 0.99, "all")


def test_s3_scoring_probabilities_sum_to_one_and_label_is_argmax(s3_scored):
    _, paths = s3_scored
    out = _read_output(paths["output"])
    scored = out.filter(pa.compute.is_null(out["error"]))
    assert all(out.schema.field(c).type == pa.float32() for c in PROB_COLUMNS)
    probs = np.stack([scored[c].to_numpy() for c in PROB_COLUMNS], axis=1)
    assert len(probs) > 500
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert scored["sentiment"].to_pylist() == [LABELS[i] for i in probs.argmax(axis=1)]


def test_s3_scoring_marks_blank_text_rows_with_an_error_instead_of_dropping_them(s3_scored):
    expected, paths = s3_scored
    blank_ids = {r for r, t in zip(expected["row_id"].to_pylist(), expected[TEXT].to_pylist()) if not (t or "").strip()}
    assert len(blank_ids) >= 3 * len(SOURCES)
    out = _read_output(paths["output"]).to_pylist()
    errored = {row["row_id"] for row in out if row["error"] is not None}
    assert errored == blank_ids
    for row in out:
        if row["row_id"] in blank_ids:
            assert row["sentiment"] is None and all(row[c] is None for c in PROB_COLUMNS)
            assert "null" in row["error"] or "empty" in row["error"]


def test_s3_scoring_marker_and_summary_count_what_was_written(s3_scored):
    expected, paths = s3_scored
    marker = _read_json(paths["output"] + "/_SUCCESS")
    summary = _read_json(paths["output"] + "/_summary.json")
    fs, path = fsspec_filesystem(paths["output"])
    parquet = sorted(p.rsplit("/", 1)[-1] for p in fs.find(path) if p.endswith(".parquet"))
    assert sorted(f["file"] for f in marker["files"]) == parquet
    arrow_fs, _ = arrow_filesystem(paths["output"])
    for f in marker["files"]:
        assert pq.read_metadata(f"{path}/{f['file']}", filesystem=arrow_fs).num_rows == f["rows"]
    assert marker["rows"] == sum(f["rows"] for f in marker["files"]) == expected.num_rows
    blanks = sum(not (t or "").strip() for t in expected[TEXT].to_pylist())
    assert summary["rows_read"] == expected.num_rows
    assert summary["rows_errored"] == blanks
    assert summary["rows_scored"] == expected.num_rows - blanks == sum(summary["labels"].values())
    assert summary["rows_per_s"] == pytest.approx(summary["rows_read"] / summary["wall_s"], rel=0.01)
    # The precision the actors ran (default --precision auto), not the word "auto".
    import torch

    from sentiment.model.predictor import resolve_precision

    assert summary["precision"] == resolve_precision("auto", torch.device("cpu"))
    from sentiment.provenance import provenance

    assert summary["provenance"] == provenance()


def test_s3_scoring_never_writes_credentials_into_its_artifacts(s3_scored):
    from tests.conftest import SECRET_KEY

    _, paths = s3_scored
    fs, path = fsspec_filesystem(paths["output"])
    for file in fs.find(path):
        with fs.open(file, "rb") as f:
            assert SECRET_KEY.encode() not in f.read(), file


def test_rerun_into_the_same_output_leaves_exactly_one_copy_of_each_row(s3_scored):
    expected, paths = s3_scored
    first = _read_json(paths["output"] + "/_SUCCESS")
    first_summary = _read_json(paths["output"] + "/_summary.json")
    assert "previous_night" not in first_summary  # the first night has none
    assert _score("--model", paths["model"], "--input", paths["input"], "--output", paths["output"],
                  "--concurrency", "1,2") == 0
    out = _read_output(paths["output"])
    assert sorted(out["row_id"].to_pylist()) == list(range(expected.num_rows))
    second = _read_json(paths["output"] + "/_SUCCESS")
    # New file names prove the second run really wrote; one copy proves it replaced the first.
    assert not {f["file"] for f in first["files"]} & {f["file"] for f in second["files"]}
    assert second["rows"] == expected.num_rows
    # Tonight against the night it replaced: the same rows and model, so every share moved by 0.
    summary = _read_json(paths["output"] + "/_summary.json")
    assert summary["previous_night"]["attempt"] == first["attempt"] != summary["attempt"]
    assert summary["previous_night"]["label_fractions"] == first_summary["label_fractions"]
    assert summary["label_shift"] == {label: 0.0 for label in LABELS}


@pytest.fixture(scope="module")
def spread_classifier(shared_data, tmp_path_factory) -> str:
    """The packaged MiniLM with a head that spreads real reviews over all three classes, so
    comparing two code paths to 1e-4 means something. (The tiny untrained BERT gives every text
    ~1/3 each, and its pooled output varies so little that any head amplifies float noise.)
    The head standardises the pooled output over a sample of reviews and projects it randomly.
    """
    import torch

    from sentiment.model.classifier import build_classifier, save_classifier

    torch.manual_seed(0)
    model, tokenizer = build_classifier("minilm")
    texts = [t for t in unlabeled_reviews(shared_data, "lego.csv", 200)[TEXT].to_pylist() if t.strip()]
    with torch.no_grad():
        enc = tokenizer(texts, truncation=True, max_length=64, padding=True, return_tensors="pt")
        pooled = model.eval().bert(**enc).pooler_output
        mean, std = pooled.mean(0), pooled.std(0) + 1e-6
        weight = torch.randn(3, pooled.shape[1]) * 0.1 / std
        model.classifier.weight.copy_(weight)
        model.classifier.bias.copy_(-weight @ mean)
    path = tmp_path_factory.mktemp("spread-classifier")
    save_classifier(model, tokenizer, str(path))
    return str(path)


def test_small_datasets_scored_in_the_driver_match_the_actor(shared_data, ray_cluster, spread_classifier,
                                                              monkeypatch, caplog):
    """`sentiment train` and `evaluate` score small datasets in the driver (IN_DRIVER_MAX_ROWS),
    large ones in an actor: both give every row the same prediction, and the actor's rows are
    counted in progress lines as they come back."""
    import ray

    import sentiment.model.labeling as labeling

    texts = [t for t in unlabeled_reviews(shared_data, "webmd.csv", 160)[TEXT].to_pylist() if t.strip()]
    # The label column carries a row number, so rows can be matched across the two paths.
    splits = {name: ray.data.from_items([{"text": t, "label": i} for i, t in enumerate(texts) if i % 2 == part])
              for part, name in enumerate(("validation", "test"))}
    in_driver = labeling.predict_labels_of_splits(splits, spread_classifier, max_length=64, precision="fp32",
                                                  with_confidence=True)
    monkeypatch.setattr(labeling, "IN_DRIVER_MAX_ROWS", 0)
    monkeypatch.setattr(labeling, "PROGRESS_EVERY_S", 1e-9)  # a line for every batch that comes back
    # The model named relative to the user's directory: the actor runs in another one. (`sentiment
    # evaluate`'s one-dataset path through the actor: the baseline test below.)
    monkeypatch.chdir(Path(spread_classifier).parent)
    with caplog.at_level("INFO", logger="sentiment.model.labeling"):
        by_actor = labeling.predict_labels_of_splits(splits, Path(spread_classifier).name, max_length=64,
                                                     precision="fp32", with_confidence=True)
    lines = [r.getMessage() for r in caplog.records if r.name == "sentiment.model.labeling"]
    assert lines and lines[-1].startswith(f"scored {len(texts)} of {len(texts)} rows (100%) in "), lines
    for name in splits:
        rows, predicted, confidence = in_driver[name]
        assert sorted(rows) == [i for i in range(len(texts)) if i % 2 == (name == "test")]
        assert dict(zip(*by_actor[name][:2])) == dict(zip(rows, predicted))
        actor_confidence = dict(zip(by_actor[name][0], by_actor[name][2]))
        assert all(abs(actor_confidence[row] - value) < 1e-5 for row, value in zip(rows, confidence))
        assert ((1 / 3 <= confidence + 1e-6) & (confidence <= 1)).all()
    assert len(set(np.concatenate([in_driver[name][1] for name in splits]))) == 3


def test_evaluate_against_a_baseline_pairs_the_same_rows_in_the_driver_and_in_an_actor(
        shared_data, ray_cluster, spread_classifier, tmp_path, monkeypatch, capsys):
    import pandas as pd

    import sentiment.evaluate as evaluate
    import sentiment.model.labeling as labeling
    from sentiment.data.labels import scores_to_label_ids
    from sentiment.errors import ModelError
    from sentiment.model.predictor import Predictor

    import torch

    from sentiment.model.classifier import load_classifier, save_classifier

    # The baseline: the spread model with its head's rows rotated, so it labels each row otherwise,
    # and just as varied (the untrained tiny model gives every row one label: no test of pairing).
    model, tokenizer = load_classifier(spread_classifier)
    with torch.no_grad():
        model.classifier.weight.copy_(model.classifier.weight.roll(1, dims=0))
        model.classifier.bias.copy_(model.classifier.bias.roll(1))
    baseline = str(tmp_path / "baseline")
    save_classifier(model, tokenizer, baseline)
    rows = pd.read_csv(shared_data / "labeled" / "gplay-2024.csv", usecols=["content", "score"]).dropna()
    rows = rows[rows["content"].str.strip() != ""].sample(n=80, random_state=3)
    data = tmp_path / "labeled.csv"
    rows.to_csv(data, index=False)
    # What the comparison must count, from each model's own predictions of each row.
    truth = np.asarray(scores_to_label_ids(rows["score"]))
    right = {uri: Predictor(uri, max_length=64, precision="fp32").predict_proba(rows["content"].tolist()).argmax(1) == truth
             for uri in (spread_classifier, baseline)}
    only_model = int((right[spread_classifier] & ~right[baseline]).sum())
    only_baseline = int((right[baseline] & ~right[spread_classifier]).sum())
    assert only_model + only_baseline > 10  # the two models disagree on enough rows to pair wrongly

    report = tmp_path / "report.json"
    args = ["evaluate", "--model", spread_classifier, "--baseline", baseline, "--data", str(data),
            "--max-length", "64", "--precision", "fp32", "--report", str(report)]
    assert main(args) == 0
    compared = json.loads(report.read_text())["against_baseline"]
    assert (compared["only_model_right"], compared["only_baseline_right"]) == (only_model, only_baseline)
    assert compared["baseline"] == baseline and compared["n"] == 80
    assert compared["accuracy"] == pytest.approx(right[spread_classifier].mean())
    assert compared["baseline_accuracy"] == pytest.approx(right[baseline].mean())
    assert f"only the model is right on {only_model}, only the baseline on {only_baseline}" in capsys.readouterr().out

    monkeypatch.setattr(labeling, "IN_DRIVER_MAX_ROWS", 0)  # both models in one Ray Data actor
    assert main(args) == 0
    assert json.loads(report.read_text())["against_baseline"] == compared

    with pytest.raises(ModelError):  # a baseline that is not a model fails before anything runs
        evaluate.evaluate(evaluate.EvaluateConfig(model=spread_classifier, data=[str(data)], baseline=str(tmp_path)))


def test_score_probabilities_equal_predictor_for_the_same_texts(shared_data, ray_cluster, spread_classifier, tmp_path,
                                                                monkeypatch):
    import os

    from sentiment.model.predictor import Predictor

    texts = unlabeled_reviews(shared_data, "webmd.csv", 160)[TEXT].to_pylist()
    texts = [t for t in texts if t.strip()]
    shard = pa.table({"row_id": pa.array(range(len(texts)), pa.int64()), "content": texts,
                      "extra": pa.array(range(len(texts)))})
    pq.write_table(shard, tmp_path / "shard.parquet")
    # Every path relative to the user's directory: the cluster's actors and tasks run in another
    # one (this test process's), where the model folder named nothing until the driver made it absolute.
    monkeypatch.chdir(tmp_path)
    model = os.path.relpath(spread_classifier)
    # --batch-size 7 makes the actor's batches (and so their padding) differ from predict's.
    assert main(["score", "--model", model, "--input", "shard.parquet", "--output", "out", "--keep-columns", "row_id",
                 "--batch-size", "7", "--precision", "fp32"]) == 0
    out = pq.read_table(tmp_path / "out").sort_by("row_id")
    assert out.column_names == ["row_id", "sentiment", *PROB_COLUMNS, "error", "model"]
    assert set(out["model"].to_pylist()) == {spread_classifier}  # recorded absolute
    got = np.stack([out[c].to_numpy() for c in PROB_COLUMNS], axis=1)
    want = Predictor(spread_classifier, batch_size=64, precision="fp32").predict_proba(texts)
    # The comparison has teeth: confident rows, every class predicted, rows that differ.
    assert want.max(axis=1).mean() > 0.6 and len(set(want.argmax(axis=1))) == 3 and want.std(axis=0).min() > 0.05
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert out["sentiment"].to_pylist() == [LABELS[i] for i in want.argmax(axis=1)]


def test_cpu_actor_pool_is_capped_to_leave_a_cpu_for_reading_and_writing(ray_cluster):
    from sentiment.score.pipeline import ScoreConfig, actor_pool_plan

    def plan(**kwargs):
        return actor_pool_plan(ScoreConfig(model="m", inputs=["i"], output="o", **kwargs))

    # ray_cluster has 4 CPUs: three 1-CPU actors fit beside the read and write tasks.
    assert plan(concurrency=(2, 8)) == (2, 3)
    assert plan(concurrency=(5, 5)) == (3, 3)
    assert plan(concurrency=(2, 8), cpus_per_actor=1.5) == (2, 2)
    assert plan(concurrency=(2, 8), gpu=True) == (2, 8)
    # Nodes too small for even one actor now: no error before an autoscaler can add nodes.
    assert plan(concurrency=(1, 2), cpus_per_actor=4) == (1, 2)


def test_actor_threads_come_from_the_actors_own_resources_and_node(ray_cluster):
    import ray

    from sentiment.score.actor import actor_threads

    @ray.remote
    class Probe:
        def threads(self, whole_node):
            return actor_threads(whole_node)

    two_cpus = Probe.options(num_cpus=2).remote()
    half_cpu = Probe.options(num_cpus=0.5).remote()
    # ray_cluster is one node of 4 CPUs: a lone actor computes on all of them.
    assert ray.get([two_cpus.threads.remote(False), half_cpu.threads.remote(False),
                    half_cpu.threads.remote(True)]) == [2, 1, 4]


def test_autoscaling_actor_pool_grows_from_one_to_two_actors(shared_data, ray_cluster, tiny_classifier, tmp_path,
                                                              monkeypatch):
    import threading

    from sentiment.pause_points import PAUSE_AT_ENV, PAUSE_DIR_ENV, release, wait_until_reached

    texts = [t for t in unlabeled_reviews(shared_data, "copper.csv", 1500)[TEXT].to_pylist() if t.strip()]
    pq.write_table(pa.table({"content": texts}), tmp_path / "shard.parquet")
    # Each actor is held in its first call: the first one's windows (128 rows, --batch-size 2)
    # queue up behind it, so Ray Data must start a second actor, which is held in turn. Two
    # processes held at the point are two actors that each received work. The tiny model: what
    # is scored does not matter here, and MiniLM at batch 2 took most of the test's time.
    points = tmp_path / "points"
    points.mkdir()
    monkeypatch.setenv(PAUSE_AT_ENV, "score.actor_batch")
    monkeypatch.setenv(PAUSE_DIR_ENV, str(points))
    status = {}
    run = threading.Thread(target=lambda: status.setdefault("code", main([
        "score", "--model", tiny_classifier, "--input", str(tmp_path / "shard.parquet"), "--output",
        str(tmp_path / "out"), "--concurrency", "1,2", "--batch-size", "2", "--precision", "fp32"])))
    run.start()
    try:
        actors = wait_until_reached(str(points), "score.actor_batch", timeout_s=300, count=2)
    finally:
        release(str(points), "score.actor_batch")
        run.join(timeout=600)
    assert len(set(actors)) == 2
    assert status["code"] == 0
    assert pq.read_table(tmp_path / "out").num_rows == len(texts)


def test_auto_precision_follows_the_hardware():
    import torch

    from sentiment.model.predictor import resolve_precision

    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    native = torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()
    assert resolve_precision("auto", torch.device("cpu")) == ("bf16" if native else "fp32")
    assert resolve_precision("fp32", torch.device("cuda")) == "fp32"
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp16", torch.device("cpu"))


def test_tokenize_batch_emits_arrow_token_lists_with_nulls_for_unusable_rows(shared_data, tiny_classifier):
    from transformers import AutoTokenizer

    from sentiment.score.actor import tokenize_batch
    from sentiment.score.columns import INPUT_IDS_COLUMN

    tokenizer = AutoTokenizer.from_pretrained(tiny_classifier)
    texts = unlabeled_reviews(shared_data, "lego.csv", 50)[TEXT].to_pylist()
    texts[3:6] = [None, " ", "word " * 400]
    out = tokenize_batch(pa.table({"content": pa.array(texts, pa.string())}), tokenizer=tokenizer,
                         text_column="content", max_length=40, drop_text=False)
    assert out.schema.field(INPUT_IDS_COLUMN).type == pa.list_(pa.int32())
    ids = out[INPUT_IDS_COLUMN].to_pylist()
    usable = [i for i, t in enumerate(texts) if t and t.strip()]
    assert [i for i, row in enumerate(ids) if row is not None] == usable
    assert [ids[i] for i in usable] == tokenizer([texts[i] for i in usable], truncation=True, max_length=40)["input_ids"]
    assert len(ids[5]) == 40 and out["error"].to_pylist()[3:5] == ["text is null", "text is empty or whitespace"]


def test_tokenize_to_arrow_gives_the_transformers_ids_through_the_backend(shared_data):
    """The backend path must give exactly what the transformers call gives: truncation at
    max_length on either side, special tokens, and no padding although MiniLM's tokenizer.json
    pads to 128."""
    from transformers import AutoTokenizer

    from sentiment.model.classifier import resolve_backbone
    from sentiment.model.token_batches import tokenize_to_arrow

    texts = [t for t in unlabeled_reviews(shared_data, "webmd.csv", 3000)[TEXT].to_pylist() if t.strip()]
    tokenizer = AutoTokenizer.from_pretrained(resolve_backbone("minilm"))
    assert tokenizer.backend_tokenizer.padding is not None  # what the backend path must undo
    for side in ("right", "left"):
        tokenizer.truncation_side = side
        ids = tokenize_to_arrow(tokenizer, texts, 24).to_pylist()
        assert ids == tokenizer(texts, truncation=True, max_length=24)["input_ids"]
        assert max(map(len, ids)) == 24 and min(map(len, ids)) < 24


def test_the_scoring_driver_does_not_import_torch():
    # torch costs the driver 2.7 s of a scoring run on 2 cores; only actors and tasks need it.
    code = ("import sys; from sentiment.score.pipeline import ScoreConfig, batch_window_rows; "
            "batch_window_rows(ScoreConfig(model='m', inputs=[], output='o', gpu=True)); "
            "import sentiment.cli; print('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


def test_token_budget_batches_real_reviews_with_little_padding(shared_data, tiny_classifier):
    from transformers import AutoTokenizer

    from sentiment.model.token_batches import batch_bounds, tokenize_to_arrow

    texts = [t for t in unlabeled_reviews(shared_data, "webmd.csv", 5000)[TEXT].to_pylist() if t.strip()][:4096]
    lengths = np.sort(pa.compute.list_value_length(tokenize_to_arrow(AutoTokenizer.from_pretrained(tiny_classifier),
                                                                      texts)).to_numpy())
    bounds = batch_bounds(lengths, 2048)
    assert [b[0] for b in bounds[1:]] == [b[1] for b in bounds[:-1]] and bounds[-1][1] == len(texts)
    padded = sum((end - start) * lengths[end - 1] for start, end in bounds)
    for start, end in bounds:
        assert (end - start) * lengths[end - 1] <= 2048 or end - start == 1
    # Short reviews share big batches, long ones small ones, and padding stays near 1.06x.
    sizes = [end - start for start, end in bounds]
    assert sizes[0] > 100 and sizes[-1] < 30
    assert padded / lengths.sum() < 1.15
    assert batch_bounds(lengths, 2048, rows=64)[:2] == [(0, 64), (64, 128)]


def test_token_budget_and_fixed_batches_give_the_same_probabilities(shared_data, spread_classifier):
    from sentiment.model.predictor import Predictor

    texts = [t for t in unlabeled_reviews(shared_data, "webmd.csv", 300)[TEXT].to_pylist() if t.strip()]
    by_tokens = Predictor(spread_classifier, precision="fp32", tokens_per_batch=512).predict_proba(texts)
    by_rows = Predictor(spread_classifier, precision="fp32", batch_size=5).predict_proba(texts)
    np.testing.assert_allclose(by_tokens, by_rows, atol=1e-5)


def test_tokenize_tasks_of_a_gpu_run_turn_the_tokenizers_thread_pool_off(monkeypatch):
    from sentiment.score.pipeline import tokenize_env

    monkeypatch.delenv("TOKENIZERS_PARALLELISM", raising=False)
    env = {"OMP_WAIT_POLICY": "PASSIVE"}
    assert tokenize_env(env, gpu=False) == env  # the actor's own: Ray fuses the two stages on CPU
    assert tokenize_env(env, gpu=True) == {**env, "TOKENIZERS_PARALLELISM": "false"}
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "true")  # the driver's choice wins
    assert tokenize_env(env, gpu=True)["TOKENIZERS_PARALLELISM"] == "true"
