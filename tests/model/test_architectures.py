"""build_classifier on encoders other than BERT: each loads all its pretrained encoder weights,
gets its own architecture's head, trains, saves, and reloads with `transformers.pipeline`; a
checkpoint whose encoder weights do not match is refused. (`sentiment train` on a DistilBERT
folder: tests/train/test_model_selection.py.)"""

from __future__ import annotations

import json
import shutil

import pytest

from sentiment.data.labels import LABELS
from sentiment.errors import ModelError
from sentiment.model.classifier import HEAD_DROPOUT, build_classifier, load_classifier, save_classifier
from tests.helpers import TINY_ENCODERS as ENCODERS, save_tiny_encoder


@pytest.fixture(scope="module")
def encoders(tmp_path_factory) -> dict[str, str]:
    return {kind: save_tiny_encoder(kind, tmp_path_factory.mktemp(kind)) for kind in ENCODERS}


@pytest.mark.parametrize("kind", list(ENCODERS))
def test_encoder_weights_load_train_save_and_the_pipeline_scores(kind, encoders, tmp_path, caplog):
    import torch
    from safetensors.torch import load_file
    from transformers import pipeline

    from sentiment.train.step import length_bucketed_batches, optimizer_and_schedule, run_epoch

    folder = encoders[kind]
    _, _, _, layer_one_weight, dropout_field = ENCODERS[kind]
    with caplog.at_level("INFO", logger="sentiment.model"):
        model, tokenizer = build_classifier(folder)

    assert model.config.model_type == kind and type(model).__name__.endswith("ForSequenceClassification")
    saved = load_file(f"{folder}/model.safetensors")[layer_one_weight]
    loaded = dict(model.base_model.named_parameters())[layer_one_weight]
    assert torch.equal(loaded, saved)
    if dropout_field:
        assert getattr(model.config, dropout_field) == HEAD_DROPOUT
    assert "encoder weights all from the checkpoint" in caplog.text  # the loading report is logged

    texts = ["great app, love it", "it crashes all the time", "it is ok I guess", "works fine"] * 4
    labels = [2, 0, 1, 2] * 4
    batches = length_bucketed_batches(tokenizer, texts, labels, max_length=32, batch_size=8,
                                      pad_to_multiple_of=None, seed=0, pin=False)
    device = torch.device("cpu")
    optimizer, scheduler = optimizer_and_schedule(model, lr=1e-3, layer_decay=1.0, warmup_fraction=0.0,
                                                  total_steps=len(batches) * 3, device=device)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    before = run_epoch(model, batches, device)["loss"]
    for _ in range(3):
        run_epoch(model, batches, device, optimizer=optimizer, scheduler=scheduler, scaler=scaler)
    assert run_epoch(model, batches, device)["loss"] < before

    save_classifier(model, tokenizer, str(tmp_path))
    classify = pipeline("text-classification", model=str(tmp_path))
    out = classify(["great app, love it", "it crashes all the time"])
    model.eval()
    with torch.inference_mode():
        logits = model(**tokenizer(["great app, love it", "it crashes all the time"], padding=True,
                                   return_tensors="pt")).logits
    assert [o["label"] for o in out] == [LABELS[i] for i in logits.argmax(-1).tolist()]
    assert json.load(open(tmp_path / "config.json"))["id2label"] == {"0": "negative", "1": "neutral", "2": "positive"}
    reloaded, _ = load_classifier(str(tmp_path))
    assert type(reloaded) is type(model)


def test_the_bert_pooler_is_kept_and_an_unused_pooler_is_reported(encoders, tiny_backbone, caplog):
    import torch
    from safetensors.torch import load_file

    with caplog.at_level("INFO", logger="sentiment.model"):
        bert, _ = build_classifier(tiny_backbone)
        build_classifier(encoders["roberta"])
    # BERT's head reads the pretrained pooler; RoBERTa's head has no pooler, so the checkpoint's is dropped.
    assert torch.equal(bert.bert.pooler.dense.weight, load_file(f"{tiny_backbone}/model.safetensors")["pooler.dense.weight"])
    assert "RobertaForSequenceClassification" in caplog.text and "not used: pooler.dense.bias" in caplog.text


def _damaged_copy(source: str, directory, rename) -> str:
    from safetensors.torch import load_file, save_file

    shutil.copytree(source, directory)
    weights = load_file(f"{source}/model.safetensors")
    save_file({rename(name): weight for name, weight in weights.items() if rename(name)},
              f"{directory}/model.safetensors", metadata={"format": "pt"})
    return str(directory)


@pytest.mark.parametrize("rename, named", [
    (lambda name: None if "layer.1." in name else name, "bert.encoder.layer.1."),  # a layer lost
    (lambda name: f"encoder_v2.{name}", "bert.embeddings."),  # keys under another name
])
def test_a_checkpoint_without_all_encoder_weights_is_refused_naming_them(tiny_backbone, tmp_path, rename, named):
    damaged = _damaged_copy(tiny_backbone, tmp_path / "damaged", rename)
    with pytest.raises(ModelError) as refused:
        build_classifier(damaged)
    message = str(refused.value)
    assert "\n" not in message and damaged in message and named in message and "missing" in message


def test_train_refuses_a_damaged_backbone_in_one_line_before_training(tiny_backbone, tmp_path, shared_data, capsys,
                                                                      ray_cluster):
    from sentiment.cli import main
    from tests.helpers import labeled_sample

    damaged = _damaged_copy(tiny_backbone, tmp_path / "damaged", lambda name: None if "layer.0." in name else name)
    data = labeled_sample(shared_data, tmp_path, 60)
    status = main(["train", "--data", str(data), "--output", str(tmp_path / "out"), "--model", damaged,
                   "--num-workers", "1", "--epochs", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert err[-1].startswith("sentiment train: error: ") and "bert.encoder.layer.0." in err[-1]
    assert not (tmp_path / "out" / "metrics.json").exists()
