"""`sentiment train` with real DDP (2 CPU workers, gloo) on a real local Ray cluster."""

import json
import os

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from sentiment.cli import main
from sentiment.data.labels import LABELS
from sentiment.train.metrics import per_class_f1
from tests.helpers import UNLABELED_TEXT, labeled_sample, logged_warnings, scored_table
from tests.s3_recording import recording_s3_reads

METRIC_KEYS = {"history", "best_epoch", "test", "rows", "config", "wall_seconds", "ray_run"}
DRIVER_READS = {}  # output -> what the training driver (this process) read from S3
DATA = {}  # output -> the folder of labeled files it was trained on
WARNINGS = {}  # output -> the WARNING lines the driver logged
PSEUDO_NEW = ["crashes every time i open it", "it is fine i guess", "love the new widgets", "best planner ever",
              "lost all my notes"]


@pytest.fixture(scope="module")
def trained_on_s3(ray_cluster, s3_server, shared_data, tmp_path_factory):
    """One 2-worker run of a tiny DistilBERT (an encoder other than BERT) on 400 real reviews
    plus a shard of 6 bad rows and pseudo-labels on S3, the backbone named by a relative path, selected by validation
    macro-F1 with a --seed other than the default (the split must not follow it); model,
    checkpoints and metrics go to the S3 server. (Selection by accuracy, the default, is the
    demo's: tests/test_demo.py.)"""
    import boto3

    from sentiment.io.storage import upload_dir
    from tests.helpers import save_tiny_encoder

    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket="models")
    backbone = save_tiny_encoder("distilbert", tmp_path_factory.mktemp("distilbert"))
    data = tmp_path_factory.mktemp("data")
    sample = labeled_sample(shared_data, data, 400)
    # The same file reached twice (a symlink beside it): read once, and said once.
    (data / "latest.csv").symlink_to(sample)
    # Scores out of range, not a number or missing, and blank texts: each dropped and counted.
    (data / "bad.csv").write_text('content,score\n"fine text",0\n"more text",five\n"x y",6\n"no score",\n'
                                  '"",5\n"   ",4\n')
    # Pseudo-labels on S3, as `sentiment score` writes them: of 5 confident new texts the most
    # confident of each class join training (a balanced selection: neutral has one); a text of
    # the labeled data, a row below --pseudo-min-confidence and an unscored row do not.
    labeled_text = pd.read_csv(sample)["content"].iloc[0]
    pseudo = scored_table([*PSEUDO_NEW, labeled_text, "not sure about this one", None],
                          ["negative", "neutral", "positive", "positive", "negative", "positive", "neutral", None],
                          [0.99, 0.8, 0.95, 0.9, 0.97, 0.99, 0.5, None],
                          errors=[None] * 7 + ["null_text"])
    folder = tmp_path_factory.mktemp("pseudo")
    pq.write_table(pseudo, folder / "part-00000.parquet")
    (folder / "_SUCCESS").write_text("")
    upload_dir(str(folder), "s3://models/pseudo/2026-12-04")
    output = "s3://models/tiny-ddp"
    # --model as a folder relative to where the user runs the command: Ray Train's workers run
    # in another directory, where it named nothing until the driver made it absolute.
    here = os.getcwd()
    os.chdir(os.path.dirname(backbone))
    try:
        with recording_s3_reads() as DRIVER_READS[output], logged_warnings() as WARNINGS[output]:
            status = main(["train", "--data", str(data), "--output", output, "--model", os.path.basename(backbone),
                           "--num-workers", "2", "--epochs", "3", "--batch-size", "16", "--lr", "1e-3",
                           "--val-fraction", "0.1", "--test-fraction", "0.1", "--select-metric", "macro_f1",
                           "--seed", "5", "--pseudo-labels", "s3://models/pseudo/2026-12-04",
                           "--pseudo-text-column", UNLABELED_TEXT, "--pseudo-min-confidence", "0.8"])
    finally:
        os.chdir(here)
    assert status == 0
    DATA[output] = data
    return output


def _metrics(output):
    from sentiment.io.storage import read_bytes

    return json.loads(read_bytes(f"{output}/metrics.json"))


def test_artifact_is_a_standard_hf_model_the_pipeline_loads(trained_on_s3):
    from safetensors.torch import load_file
    from transformers import pipeline

    from sentiment.model.classifier import HEAD_DROPOUT

    from sentiment.io.model_cache import fetch_dir_files

    local = fetch_dir_files(trained_on_s3)
    names = set(os.listdir(local))
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= names
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in names)
    classify = pipeline("text-classification", model=local)
    out = classify(["The app crashes every time I open it", "Love it"])
    assert [o["label"] in LABELS for o in out] == [True, True]
    config = json.load(open(f"{local}/config.json"))
    assert config["id2label"] == {"0": "negative", "1": "neutral", "2": "positive"}
    # A DistilBERT backbone gives a DistilBERT classifier, its own head dropout field set, and
    # its encoder weights saved beside the new head.
    assert config["architectures"] == ["DistilBertForSequenceClassification"]
    assert config["seq_classif_dropout"] == HEAD_DROPOUT
    assert {"pre_classifier.weight", "classifier.weight",
            "distilbert.transformer.layer.1.ffn.lin1.weight"} <= set(load_file(f"{local}/model.safetensors"))


def test_the_driver_copies_the_best_model_without_downloading_the_checkpoint(trained_on_s3):
    from sentiment.train.worker_loop import HISTORY_FILE, STATE_FILE

    checkpoint_reads = [key for key, _ in DRIVER_READS[trained_on_s3].calls if "/checkpoints/" in key]
    # Only the small history file; the model is copied server-side, the optimizer state stays put.
    assert checkpoint_reads and all(key.endswith(HISTORY_FILE) for key in checkpoint_reads), checkpoint_reads
    assert DRIVER_READS[trained_on_s3].count_of(STATE_FILE) == 0
    ray_run = _metrics(trained_on_s3)["ray_run"]
    assert ray_run["best_checkpoint"].startswith("models/tiny-ddp/checkpoints/")


def test_a_file_the_data_reaches_twice_is_read_once_and_said_once(trained_on_s3):
    data = DATA[trained_on_s3]
    said = [line for line in WARNINGS[trained_on_s3] if "file(s) once that the inputs reach more than once" in line]
    assert said == [f"reading 1 file(s) once that the inputs reach more than once (a symlink, or the same file "
                    f"given twice): {data / 'labeled-sample-400.csv'} (also as {data / 'latest.csv'})"], said
    assert _metrics(trained_on_s3)["rows"]["rows_read"] == 406  # 400 + the 6 bad rows, none twice


def test_metrics_json_has_every_key_with_values_in_range(trained_on_s3):
    from sentiment.provenance import provenance

    metrics = _metrics(trained_on_s3)
    assert METRIC_KEYS <= set(metrics)
    assert metrics["provenance"] == provenance()  # the code and library versions that trained it
    assert metrics["worker_failures"] == []  # nothing lost in this run (tests/train/test_resume.py loses one)
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3]
    for epoch in metrics["history"]:
        for key in ("train_loss", "val_loss"):
            assert 0 < epoch[key] < 10
    test = metrics["test"]
    matrix = np.array(test["confusion_matrix"])
    assert matrix.shape == (3, 3) and set(test["per_class"]) == set(LABELS)
    # Every figure is the one its confusion matrix gives: accuracy, per-class scores, macro-F1.
    assert test["accuracy"] == pytest.approx(np.trace(matrix) / matrix.sum())
    for i, name in enumerate(LABELS):
        scores = test["per_class"][name]
        assert scores["support"] == matrix[i].sum()
        assert scores["recall"] == pytest.approx(matrix[i, i] / max(matrix[i].sum(), 1))
        assert scores["precision"] == pytest.approx(matrix[i, i] / max(matrix[:, i].sum(), 1))
    assert test["macro_f1"] == pytest.approx(np.mean([s["f1"] for s in test["per_class"].values()]))
    rows = metrics["rows"]
    assert sum(map(sum, matrix)) == test["n"] == rows["test"]
    assert rows["rows_read"] == 406
    assert rows["dropped_invalid_score"] == 4 and rows["dropped_empty_text"] == 2
    # The labeled rows all accounted for; train also holds the pseudo-labeled rows, counted apart.
    pseudo = rows["pseudo_labels"]
    assert pseudo == {"files": 1, "rows_read": 8, "kept": 6, "unscored": 1, "empty_text": 0, "below_confidence": 1,
                      "duplicate_text": 0, "min_confidence": 0.8,
                      "kept_classes": {"negative": 2, "neutral": 1, "positive": 3}, "in_labeled_data": 1,
                      "per_class": "balanced", "over_class_cap": 2, "joined_train": 3,
                      "classes": {"negative": 1, "neutral": 1, "positive": 1}}
    assert rows["rows_read"] == (rows["train"] - pseudo["joined_train"] + rows["validation"] + rows["test"]
                                 + rows["dropped_empty_text"] + rows["dropped_invalid_score"]
                                 + rows["dropped_duplicate_text"])
    assert sum(rows["classes"]["train"].values()) == rows["train"] - pseudo["joined_train"]
    assert metrics["config"]["pseudo_labels"] == ["s3://models/pseudo/2026-12-04"]
    assert metrics["config"]["pseudo_text_column"] == [UNLABELED_TEXT]
    assert metrics["config"]["num_workers"] == 2 and metrics["config"]["lr"] == 1e-3
    # No --cpus-per-worker: the 2 workers share the test cluster's 4 CPUs (conftest).
    assert metrics["config"]["cpus_per_worker"] == 2
    assert metrics["wall_seconds"]["total"] >= metrics["wall_seconds"]["training"] > 0
    for epoch in metrics["history"]:
        val_matrix = np.array(epoch["val_confusion_matrix"])
        assert val_matrix.sum() == rows["validation"]
        assert epoch["val_accuracy"] == pytest.approx(np.trace(val_matrix) / val_matrix.sum())
        assert epoch["val_macro_f1"] == pytest.approx(per_class_f1(val_matrix)[val_matrix.sum(axis=1) > 0].mean())
        assert epoch["train_seconds"] > 0 and epoch["train_tokens_per_review"] > 2
        # streaming_split(equal=True): each of the 2 workers sees the same train_rows // 2 rows.
        assert epoch["train_reviews_per_second"] * epoch["train_seconds"] == pytest.approx(rows["train"] // 2 * 2)
        assert epoch["train_reviews_per_second_per_worker"] == pytest.approx(epoch["train_reviews_per_second"] / 2)
        assert "mfu" not in epoch  # MFU only where the device is a GPU
    assert metrics["global_batch_size"] == 32 and metrics["recipe"] == "reference"
    assert metrics["config"]["warmup_fraction"] == 0.0 and metrics["config"]["select_metric"] == "macro_f1"


def test_select_metric_macro_f1_saves_the_epoch_of_best_validation_macro_f1_the_model_ray_kept(trained_on_s3):
    from safetensors.torch import load_file

    from sentiment.io.model_cache import fetch_dir_files
    from sentiment.train.stats import selection_score, weights_fingerprint

    metrics = _metrics(trained_on_s3)
    history = metrics["history"]
    best_f1 = max(round(h["val_macro_f1"], 6) for h in history)
    candidates = [h for h in history if round(h["val_macro_f1"], 6) == best_f1]
    chosen = min(candidates, key=lambda h: h["val_loss"])  # a tie goes to the lower validation loss
    assert metrics["best_epoch"] == chosen["epoch"] == max(history, key=lambda h: selection_score(h, "macro_f1"))["epoch"]
    # The artifact is the checkpoint Ray's CheckpointConfig ranked first: the same epoch.
    weights = load_file(f"{fetch_dir_files(trained_on_s3)}/model.safetensors")
    assert weights_fingerprint(weights) == chosen["weights_fingerprint"]


def test_validation_and_test_are_scored_at_one_recorded_precision(trained_on_s3):
    from sentiment.model.predictor import native_bf16_cpu

    metrics = _metrics(trained_on_s3)
    validation, chosen = metrics["validation"], metrics["history"][metrics["best_epoch"] - 1]
    # --precision auto: the CPU workers validated in bf16 where this CPU multiplies bf16 natively.
    assert chosen["precision"] == ("bf16" if native_bf16_cpu() else "fp32")
    assert metrics["eval_precision"] == chosen["precision"]
    assert validation["n"] == metrics["rows"]["validation"] and metrics["test"]["n"] == metrics["rows"]["test"]
    # The driver's re-scoring of the saved model agrees with the workers' validation at that epoch
    # (same weights, same precision; batching may flip at most a row on a near tie).
    assert abs(validation["accuracy"] - chosen["val_accuracy"]) <= 1 / validation["n"] + 1e-9
    # Each split's calibration counts its rows once and its right ones as its accuracy does.
    for split in (validation, metrics["test"]):
        bins = split["calibration"]["bins"]
        assert sum(b["rows"] for b in bins) == split["n"]
        assert sum(b["rows"] * b["accuracy"] for b in bins) == pytest.approx(split["accuracy"] * split["n"], abs=1e-3)


def test_metrics_record_the_split_hash_of_split_seed_not_seed(trained_on_s3):
    from sentiment.data.labeled import prepare_splits

    metrics = _metrics(trained_on_s3)
    assert metrics["config"]["seed"] == 5 and metrics["config"]["split_seed"] == 42
    again = prepare_splits([str(DATA[trained_on_s3])], "content", "score", seed=42, val_fraction=0.1, test_fraction=0.1)
    assert metrics["split_hash"] == again.split_hash


def test_training_loss_goes_down(trained_on_s3):
    history = _metrics(trained_on_s3)["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_plots_are_real_pngs(trained_on_s3):
    from sentiment.io.storage import read_bytes

    for name in ("training_history.png", "confusion_matrix.png"):
        data = read_bytes(f"{trained_on_s3}/{name}")
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_evaluate_report_has_the_documented_keys(trained_on_s3, shared_data, tmp_path, capsys):
    data = labeled_sample(shared_data, tmp_path, 120, seed=5)
    report = tmp_path / "report.json"
    assert main(["evaluate", "--model", trained_on_s3, "--data", str(data), "--report", str(report)]) == 0
    printed = capsys.readouterr().out
    assert "macro-F1" in printed and "confusion matrix" in printed and "precision" in printed
    result = json.loads(report.read_text())
    assert {"accuracy", "macro_f1", "per_class", "confusion_matrix", "n", "provenance"} <= set(result)
    assert result["n"] + sum(result["skipped"].values()) == 120


def test_predict_json_lines(trained_on_s3, capsys):
    assert main(["predict", "--model", trained_on_s3, "--json", "great app", "it keeps crashing"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [line["text"] for line in lines] == ["great app", "it keeps crashing"]
    for line in lines:
        assert set(line) == {"text", "sentiment", "prob_negative", "prob_neutral", "prob_positive", "error"}
        assert line["sentiment"] in LABELS
        assert sum(line[f"prob_{name}"] for name in LABELS) == pytest.approx(1, abs=1e-5)


def test_no_credential_reaches_any_artifact_or_checkpoint(trained_on_s3):
    from sentiment.io.storage import fsspec_filesystem
    from tests.conftest import ACCESS_KEY, SECRET_KEY

    fs, root = fsspec_filesystem(trained_on_s3)
    objects = fs.find(root)
    assert any(o.endswith("train_state.pt") for o in objects)  # checkpoints were scanned too
    for key in objects:
        with fs.open(key, "rb") as f:
            content = f.read()
        assert SECRET_KEY.encode() not in content, key
        assert ACCESS_KEY.encode() not in content, key


def test_each_backbone_gets_its_recipe_and_help_lists_them(capsys):
    from dataclasses import replace

    from sentiment.cli import main
    from sentiment.model.recipes import REFERENCE, recipe_for

    minilm = recipe_for("minilm")[1]
    assert (minilm.lr, minilm.warmup_fraction, minilm.epochs, minilm.batch_size) == (1e-4, 0.1, 3, 32)
    assert recipe_for("bert-base-cased") == ("reference", REFERENCE)
    assert (REFERENCE.lr, REFERENCE.warmup_fraction, REFERENCE.epochs) == (2e-5, 0.0, 3)
    # mpnet: the reference rate, one epoch (both 3-epoch runs chose epoch 1, then overfit)
    assert recipe_for("mpnet") == ("mpnet", replace(REFERENCE, epochs=1))
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "--model minilm: lr 0.0001, warmup-fraction 0.1" in shown and "other backbones: lr 2e-05" in shown
    assert "--model mpnet: lr 2e-05, warmup-fraction 0.0, epochs 1" in shown
    assert "label-smoothing" in shown


def test_label_smoothing_flag_parses_defaults_to_the_recipe_and_is_checked():
    import argparse

    from sentiment.cli import add_train_arguments
    from sentiment.errors import InputError
    from sentiment.model.recipes import recipe_for
    from sentiment.train.driver import TrainConfig

    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    given = TrainConfig.from_namespace(parser.parse_args(["--data", "d", "--output", "o", "--label-smoothing", "0.1"]))
    assert given.resolved().label_smoothing == 0.1
    unset = TrainConfig.from_namespace(parser.parse_args(["--data", "d", "--output", "o"])).resolved()
    assert unset.label_smoothing == recipe_for(unset.model)[1].label_smoothing
    with pytest.raises(SystemExit):
        parser.parse_args(["--data", "d", "--output", "o", "--label-smoothing", "1.5"])
    with pytest.raises(InputError, match="--label-smoothing"):
        TrainConfig(data=["d"], output="o", label_smoothing=1.0).resolved().validate()


def test_output_and_storage_path_are_resolved_alike(monkeypatch, tmp_path):
    # --storage-path=~/ckpt once became ./~/ckpt: the shell leaves ~ alone after "=".
    from sentiment.train.driver import TrainConfig

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    config = TrainConfig(data=["d"], output="~/model", storage_path="~/ckpt")
    assert config.resolved_output == str(tmp_path / "home" / "model")
    assert config.resolved_storage_path == str(tmp_path / "home" / "ckpt")
    assert TrainConfig(data=["d"], output="rel/").resolved_storage_path == str(tmp_path / "rel" / "checkpoints")
    assert TrainConfig(data=["d"], output="s3://b/m/", storage_path="s3://b/c/").resolved_storage_path == "s3://b/c"
