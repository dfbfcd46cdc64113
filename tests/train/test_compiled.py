"""`--compile` (issue 26): the auto rule, the eager fallback, the node-local compile cache, and a
compiled step under DDP (2 CPU workers, gloo) through `sentiment train`."""

import json
import logging
import os

import numpy as np
import pytest
import torch

from sentiment.train.compiled import (CACHE_SUBDIR, COMPILE_SECONDS_PER_SHAPE, RECORD_FILE, CompiledModel,
                                      compile_decision, record_compile_seconds, recorded_compile_seconds,
                                      use_compile_cache)
from sentiment.train.step import length_bucketed_batches, optimizer_and_schedule, run_epoch, static_lengths


def test_auto_compiles_a_gpu_run_only_when_its_steps_repay_the_compile():
    bert_base = {"num_layers": 12, "shapes": 10}
    # Measured on an H200: 28.2 ms saved per bert-base step; 10 shapes at 17.3 s each cost 173 s:
    # 6,135 steps.
    assert compile_decision("auto", on_gpu=True, planned_steps=6500, recorded_seconds=None, **bert_base)[0]
    assert not compile_decision("auto", on_gpu=True, planned_steps=6000, recorded_seconds=None, **bert_base)[0]
    # This node compiled the same model and shapes in 20 s (a warm cache): 750 steps repay it.
    on, reason = compile_decision("auto", on_gpu=True, planned_steps=750, recorded_seconds=20.0, **bert_base)
    assert on and reason == "auto: compiled, 750 steps save ~21s vs ~20s compile (measured on this node)"
    assert not compile_decision("auto", on_gpu=True, planned_steps=650, recorded_seconds=20.0, **bert_base)[0]
    assert compile_decision("auto", on_gpu=False, planned_steps=10 ** 6, recorded_seconds=1.0,
                            **bert_base) == (False, "auto: eager on CPU")
    assert compile_decision("on", on_gpu=False, planned_steps=1, recorded_seconds=None, **bert_base) == (
        True, "--compile on")
    assert compile_decision("off", on_gpu=True, planned_steps=10 ** 6, recorded_seconds=None, **bert_base) == (
        False, "--compile off")
    assert COMPILE_SECONDS_PER_SHAPE == 17.3


def test_compile_records_live_in_the_nodes_model_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SENTIMENT_MODEL_CACHE", str(tmp_path))
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    # Inductor puts its /tmp default into the environment once it has looked: ours replaces it.
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", default_cache_dir())
    assert use_compile_cache() == str(tmp_path / CACHE_SUBDIR) == os.environ["TORCHINDUCTOR_CACHE_DIR"]
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "users-choice"))
    assert use_compile_cache() == str(tmp_path / "users-choice")
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR")
    assert use_compile_cache() == str(tmp_path / CACHE_SUBDIR)
    assert recorded_compile_seconds("cpu|bert-2x32|b8|32") is None
    record_compile_seconds("cpu|bert-2x32|b8|32", 12.5)
    record_compile_seconds("cpu|bert-2x32|b16|32", 3.0)
    assert recorded_compile_seconds("cpu|bert-2x32|b8|32") == 12.5
    assert json.loads((tmp_path / CACHE_SUBDIR / RECORD_FILE).read_text()) == {
        "cpu|bert-2x32|b8|32": 12.5, "cpu|bert-2x32|b16|32": 3.0}


@pytest.fixture(scope="module")
def short_batches(shared_data, tiny_backbone):
    """Two static-shape batches of 8 real reviews at --max-length 32 (one shape), the second partial."""
    import pandas as pd
    from transformers import AutoTokenizer

    frame = pd.read_csv(shared_data / "labeled" / "gplay-2024.csv", usecols=["content", "score"]).dropna()
    frame = frame.sample(n=13, random_state=0)
    tokenizer = AutoTokenizer.from_pretrained(tiny_backbone)
    return length_bucketed_batches(tokenizer, frame["content"].tolist(), (frame["score"] > 3).to_numpy(int),
                                   max_length=32, batch_size=8, pad_to_multiple_of=None, seed=0, pin=False,
                                   pad_lengths=static_lengths(32))


def _train_once(model_folder, batches, wrap):
    from sentiment.model.classifier import build_classifier

    torch.manual_seed(0)
    model, _ = build_classifier(model_folder)
    model.eval()  # no dropout: eager and fallback runs must agree exactly
    optimizer, scheduler = optimizer_and_schedule(model, lr=1e-3, layer_decay=1.0, warmup_fraction=0.0,
                                                  total_steps=len(batches), device=torch.device("cpu"))
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    stepped = wrap(model)
    shapes = set() if isinstance(stepped, CompiledModel) else None
    result = run_epoch(stepped, batches, torch.device("cpu"), optimizer=optimizer, scheduler=scheduler,
                       scaler=scaler, compiled_shapes=shapes)
    return result, model


def test_a_compile_that_fails_falls_back_to_eager_with_one_line(short_batches, tiny_classifier, caplog):
    def broken_backend(graph, example_inputs):
        raise RuntimeError("no C compiler\nsecond line")

    eager, eager_model = _train_once(tiny_classifier, short_batches, lambda m: m)
    with caplog.at_level(logging.WARNING, logger="sentiment.train"):
        fell_back, model = _train_once(tiny_classifier, short_batches,
                                       lambda m: CompiledModel(m, on_gpu=False, backend=broken_backend))
    lines = [r.getMessage() for r in caplog.records if "torch.compile failed" in r.getMessage()]
    assert len(lines) == 1 and "no C compiler" in lines[0] and "second line" not in lines[0]
    assert "training continues eager" in lines[0]
    assert fell_back["n"] == eager["n"] == 13 and fell_back["loss"] == pytest.approx(eager["loss"], abs=1e-6)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), eager_model.state_dict().values()))


@pytest.fixture()
def one_layer_backbone(tiny_backbone, tmp_path) -> str:
    """The tiny backbone cut to one encoder layer: each DDP worker's compile is mostly Python work
    in proportion to the graph's nodes (66 s of a 75 s epoch with two layers on 2 cores)."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    config = BertConfig.from_pretrained(tiny_backbone)
    config.num_hidden_layers = 1
    torch.manual_seed(0)
    path = tmp_path / "one-layer-backbone"
    BertModel(config).save_pretrained(path, safe_serialization=True)
    AutoTokenizer.from_pretrained(tiny_backbone).save_pretrained(path)
    return str(path)


@pytest.mark.slow
def test_compiled_ddp_run_on_cpu_reports_compile_seconds_and_caches_on_the_node(
        ray_cluster, shared_data, one_layer_backbone, tmp_path, model_cache):
    """`sentiment train --compile on`, 2 CPU workers (gloo), 1 epoch at --max-length 32 (one
    shape): the compiled step trains under DDP, the epoch counts every training review once, the
    compile time is reported apart and recorded, and Inductor's artifacts land in the node's cache."""
    from sentiment.cli import main
    from tests.helpers import labeled_sample

    data = labeled_sample(shared_data, tmp_path, 120, seed=3)
    output = tmp_path / "model"
    assert main(["train", "--data", str(data), "--output", str(output), "--model", one_layer_backbone,
                 "--num-workers", "2", "--epochs", "1", "--batch-size", "8", "--lr", "1e-3",
                 "--max-length", "32", "--compile", "on", "--seed", "1"]) == 0
    metrics = json.loads((output / "metrics.json").read_text())
    (epoch,) = metrics["history"]
    assert epoch["compile"] == "--compile on" and "compile_failed" not in epoch
    assert 0 < epoch["compile_seconds"] < epoch["epoch_seconds"]
    # streaming_split(equal=True) gives each worker train_rows // 2 rows; each counts once.
    train_rows = metrics["rows"]["train"]
    assert epoch["train_reviews_per_second"] * epoch["train_seconds"] == pytest.approx(train_rows - train_rows % 2)
    assert np.isfinite(epoch["train_loss"]) and np.isfinite(epoch["val_loss"])
    assert sum(map(sum, epoch["val_confusion_matrix"])) == metrics["rows"]["validation"]
    cache = model_cache / CACHE_SUBDIR
    records = json.loads((cache / RECORD_FILE).read_text())
    assert any(key.startswith("cpu|bert-1x32|b8|32|") for key in records)
    assert any(name != RECORD_FILE for name in os.listdir(cache))  # Inductor's own artifacts
