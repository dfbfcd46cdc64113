"""`sentiment average` on two real `sentiment train` runs (one on local disk, one on the S3
server), on a real local Ray cluster: the average is the parameter mean, scored beside its members
on the rows they held out; and every way it can be misused is refused before anything is written."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from sentiment.cli import main
from sentiment.io.storage import exists, read_bytes
from tests.helpers import labeled_sample

SPLIT = ["--val-fraction", "0.2", "--test-fraction", "0.2"]


@pytest.fixture(scope="module")
def members(ray_cluster, s3_server, shared_data, tiny_backbone, tmp_path_factory):
    """Two 1-epoch runs of the tiny BERT that differ only in --seed, on 300 real reviews."""
    import boto3

    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket="soups")
    data = labeled_sample(shared_data, tmp_path_factory.mktemp("data"), 300, seed=3)
    outputs = [str(tmp_path_factory.mktemp("seed-1") / "model"), "s3://soups/seed-2"]
    for seed, output in zip((1, 2), outputs):
        assert main(["train", "--data", str(data), "--output", output, "--model", tiny_backbone, "--epochs", "1",
                     "--num-workers", "1", "--batch-size", "16", "--lr", "1e-3", "--seed", str(seed), *SPLIT]) == 0
    return outputs


@pytest.fixture(scope="module")
def averaged(members, tmp_path_factory):
    import contextlib
    import io

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["average", "--models", *members, "--output", "s3://soups/average"]) == 0
    return "s3://soups/average", printed.getvalue()


def _metrics(folder: str) -> dict:
    return json.loads(read_bytes(f"{folder}/metrics.json"))


def _weights(folder: str) -> dict:
    from sentiment.model.classifier import load_classifier

    return load_classifier(folder)[0].state_dict()


def test_the_average_is_the_parameter_mean_of_its_members(members, averaged):
    output, _ = averaged
    first, second = (_weights(member) for member in members)
    average = _weights(output)
    assert set(average) == set(first)
    moved = 0
    for name, value in average.items():
        if value.is_floating_point():
            torch.testing.assert_close(value, (first[name] + second[name]) / 2)
            moved += not torch.equal(first[name], second[name])
    assert moved > 0  # the seeds gave different weights, so the mean is a new model


def test_members_and_average_are_scored_on_the_rows_the_members_held_out(members, averaged):
    output, printed = averaged
    metrics = _metrics(output)
    recorded = [_metrics(member) for member in members]
    assert metrics["split_hash"] == recorded[0]["split_hash"] == recorded[1]["split_hash"]
    assert [m["model"] for m in metrics["averaged_from"]] == members
    assert [m["seed"] for m in metrics["averaged_from"]] == [1, 2]
    for member, own in zip(metrics["averaged_from"], recorded):
        for split in ("validation", "test"):
            # The same rows at the same precision as its own run scored them: the same figures.
            assert member[split]["n"] == own[split]["n"] == metrics[split]["n"] > 0
            assert member[split]["accuracy"] == pytest.approx(own[split]["accuracy"], abs=1e-9)
    assert metrics["eval_precision"] == recorded[0]["eval_precision"]
    assert np.asarray(metrics["test"]["confusion_matrix"]).sum() == metrics["test"]["n"]
    assert metrics["config"]["model"] == recorded[0]["config"]["model"]
    assert metrics["rows"]["validation"] == metrics["validation"]["n"]
    # The table names both members and the average, with the figures metrics.json keeps.
    assert f"{metrics['validation']['accuracy']:.3f}" in printed.split("average of 2")[1]
    assert "validation accuracy: the average" in printed and "standard error" in printed


def test_the_average_is_a_model_folder_like_trains(averaged):
    from transformers import pipeline

    from sentiment.data.labels import LABELS
    from sentiment.io.model_cache import fetch_dir_files

    output, _ = averaged
    for name in ("model.safetensors", "config.json", "confusion_matrix.png", "average.png"):
        assert exists(f"{output}/{name}"), name
    assert read_bytes(f"{output}/average.png")[:8] == b"\x89PNG\r\n\x1a\n"
    classify = pipeline("text-classification", model=fetch_dir_files(output))
    assert classify("the app crashes every time")[0]["label"] in LABELS


def test_precision_and_max_length_reach_the_scoring(members, tmp_path, capsys):
    output = tmp_path / "fp32"
    assert main(["average", "--models", *members, "--output", str(output), "--precision", "fp32",
                 "--max-length", "8"]) == 0
    assert _metrics(str(output))["eval_precision"] == "fp32"
    assert "512" in _refused(capsys, "--models", *members, "--output", str(tmp_path / "long"), "--max-length", "600")


def _copy_with_metrics(member: str, directory, change) -> str:
    """A local copy of a member's folder whose metrics.json is changed by change(metrics)."""
    from sentiment.io.model_cache import fetch_dir_files

    shutil.copytree(fetch_dir_files(member), directory)
    metrics = _metrics(member)
    change(metrics)
    (directory / "metrics.json").write_text(json.dumps(metrics))
    return str(directory)


def _refused(capsys, *args) -> str:
    assert main(["average", *args]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_misuse_is_refused_in_one_line_before_anything_is_written(members, tiny_classifier, tiny_backbone,
                                                                  shared_data, tmp_path, capsys):
    first, second = members
    output = tmp_path / "average"
    assert "more than once" in _refused(capsys, "--models", first, first, "--output", str(output))
    assert "at least two" in _refused(capsys, "--models", first, "--output", str(output))
    assert f"{tiny_classifier} has no metrics.json" in _refused(capsys, "--models", first, tiny_classifier,
                                                               "--output", str(output))
    assert "is one of --models" in _refused(capsys, "--models", first, second, "--output", first)

    other_backbone = _copy_with_metrics(second, tmp_path / "mpnet", lambda m: m["config"].update(model="mpnet"))
    line = _refused(capsys, "--models", first, other_backbone, "--output", str(output))
    assert "different backbone" in line and "mpnet" in line

    # A member recorded --text-column as one name (before it took several): the same split settings.
    from sentiment.average import read_members

    one_name = _copy_with_metrics(second, tmp_path / "one-name", lambda m: m["config"].update(text_column="content"))
    assert first.endswith("model") and len(read_members([first, one_name])) == 2
    other_text = _copy_with_metrics(second, tmp_path / "text", lambda m: m["config"].update(text_column=["review"]))
    assert "different split settings" in _refused(capsys, "--models", first, other_text, "--output", str(output))

    # A member trained before emoji were spelled out (sentiment.model.readable_text) beside one trained since.
    unspelled = Path(_copy_with_metrics(second, tmp_path / "unspelled", lambda m: None))
    tokenizer_config = json.loads((unspelled / "tokenizer_config.json").read_text())
    del tokenizer_config["spell_unreadable_symbols"]
    (unspelled / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    line = _refused(capsys, "--models", first, str(unspelled), "--output", str(output))
    assert "different text reading" in line and "emoji as unknown tokens" in line

    other_split = _copy_with_metrics(second, tmp_path / "split", lambda m: m.update(split_hash="0" * 64))
    assert "different split (" in _refused(capsys, "--models", first, other_split, "--output", str(output))

    # The data both members name has changed since they trained: its split no longer matches.
    changed = labeled_sample(shared_data, tmp_path, 300, seed=4)
    moved = [_copy_with_metrics(member, tmp_path / f"moved-{n}", lambda m: m["config"].update(data=[str(changed)]))
             for n, member in enumerate(members)]
    assert "no longer gives the split the members trained on" in _refused(capsys, "--models", *moved,
                                                                           "--output", str(output))

    # Another architecture behind the same records: the weights cannot be averaged.
    from transformers import AutoTokenizer, BertConfig, BertModel

    from sentiment.model.classifier import build_classifier, save_classifier

    one_layer = tmp_path / "one-layer-backbone"
    BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)).save_pretrained(one_layer)
    AutoTokenizer.from_pretrained(tiny_backbone).save_pretrained(one_layer)
    smaller = _copy_with_metrics(second, tmp_path / "smaller", lambda m: None)
    save_classifier(*build_classifier(str(one_layer)), smaller)
    assert "not the same architecture" in _refused(capsys, "--models", first, smaller, "--output", str(output))
    assert not output.exists()

    foreign = tmp_path / "theirs"
    foreign.mkdir()
    (foreign / "part-0.parquet").write_bytes(b"not ours")
    assert "not a model of ours" in _refused(capsys, "--models", first, second, "--output", str(foreign))
    assert [p.name for p in foreign.iterdir()] == ["part-0.parquet"]
