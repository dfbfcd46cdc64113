"""`sentiment predict`: classify a handful of texts in-process, no Ray needed."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from sentiment.errors import InputError
from sentiment.data.labels import LABELS, PROB_COLUMNS
from sentiment.model.classifier import DEFAULT_MAX_LENGTH, check_classifier_folder
from sentiment.model.predictor import Predictor, pick_device

log = logging.getLogger(__name__)
EMPTY_TEXT_ERROR = "text is empty or whitespace"  # the words `sentiment score` uses


@dataclass
class PredictConfig:
    model: str
    texts: list[str]
    as_json: bool = False
    batch_size: int | None = None
    max_length: int = DEFAULT_MAX_LENGTH
    precision: str = "auto"
    use_gpu: bool = False
    tokens_per_batch: int | None = None

    @classmethod
    def from_namespace(cls, args, texts: list[str]) -> "PredictConfig":
        return cls(model=args.model, texts=texts, as_json=args.json, batch_size=args.batch_size,
                   max_length=args.max_length, precision=args.precision, use_gpu=args.gpu,
                   tokens_per_batch=args.tokens_per_batch)


def predict_records(predictor: Predictor, texts: list[str]) -> list[dict]:
    """One record per text, in order: text, sentiment, the three probabilities and error.

    A text that is empty or only whitespace keeps its place with sentiment and probabilities
    None and error "text is empty or whitespace", as `sentiment score` marks such rows.
    """
    usable = [i for i, text in enumerate(texts) if text.strip()]
    probs = dict(zip(usable, predictor.predict_proba([texts[i] for i in usable]))) if usable else {}
    records = []
    for i, text in enumerate(texts):
        row = probs.get(i)
        if row is None:
            records.append({"text": text, "sentiment": None, **dict.fromkeys(PROB_COLUMNS), "error": EMPTY_TEXT_ERROR})
        else:
            records.append({"text": text, "sentiment": LABELS[int(row.argmax())],
                            **{column: float(p) for column, p in zip(PROB_COLUMNS, row)}, "error": None})
    return records


def replace_undecodable(texts: list[str]) -> list[str]:
    """texts with bytes that were not UTF-8 (held as lone surrogates, as Python reads argv and
    stdin in a C locale) replaced by U+FFFD, with one warning naming the texts: the tokenizer
    refuses surrogates, and one bad byte must not cost every other line its answer."""
    fixed = [text.encode("utf-8", "surrogateescape").decode("utf-8", "replace") for text in texts]
    changed = [str(i + 1) for i, (old, new) in enumerate(zip(texts, fixed)) if old != new]
    if changed:
        log.warning("text(s) %s hold bytes that are not UTF-8: classified with each such byte shown as \ufffd",
                    ", ".join(changed[:10]) + (f" and {len(changed) - 10} more" if len(changed) > 10 else ""))
    return fixed


def predict(config: PredictConfig) -> int:
    """Print a label and probabilities per text, one line per text, empty texts included.

    Returns:
        The exit status.

    Raises:
        InputError: if no text at all was given.
    """
    if not config.texts:
        raise InputError("no texts given: pass them as arguments or one per line on stdin")
    texts = replace_undecodable(config.texts)
    # Before torch and the weights load: config.json alone says whether --max-length fits.
    check_classifier_folder(config.model, max_length=config.max_length)
    predictor = Predictor(config.model, device=pick_device(config.use_gpu), batch_size=config.batch_size,
                          tokens_per_batch=config.tokens_per_batch, max_length=config.max_length,
                          precision=config.precision)
    for record in predict_records(predictor, texts):
        if config.as_json:
            print(json.dumps(record, ensure_ascii=False))
        elif record["error"]:
            print(f"{'-':<8}  error: {record['error']}  {record['text']}")
        else:
            probs = "  ".join(f"{name} {record[column]:.3f}" for name, column in zip(LABELS, PROB_COLUMNS))
            print(f"{record['sentiment']:<8}  {probs}  {record['text']}")
    return 0
