"""In-process inference: texts in, class probabilities out, as fast as the hardware allows.

Used by `predict`, `evaluate` and each scoring actor, so all three give the same numbers.
Speed comes from what the reference loop does not do: tokenize whole batches with the fast
(Rust) tokenizer, sort texts by length so each batch pads only to its own longest text, and run
under inference_mode (plus bf16 autocast on GPU).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from sentiment.model import DEFAULT_MAX_LENGTH, load_classifier


def pick_device(use_gpu: bool | None = None) -> torch.device:
    """cuda when asked for (or, with None, when present), else cpu."""
    if use_gpu is None:
        use_gpu = torch.cuda.is_available()
    return torch.device("cuda" if use_gpu else "cpu")


def tokenize_texts(tokenizer, texts: Sequence[str], max_length: int = DEFAULT_MAX_LENGTH) -> list[list[int]]:
    """Unpadded token ids, truncated to max_length: the one tokenizer call every path shares."""
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length,
                        padding=False, return_attention_mask=False)
    return encoded["input_ids"]


class Predictor:
    """A loaded model that turns lists of texts into an (n, 3) float32 probability array."""

    def __init__(self, model_uri: str, *, device: torch.device | None = None,
                 batch_size: int = 64, max_length: int = DEFAULT_MAX_LENGTH):
        self.device = device or pick_device()
        self.batch_size = batch_size
        self.max_length = max_length
        model, self.tokenizer = load_classifier(model_uri)
        self.model = model.to(self.device).eval()
        self.model_name = model_uri

    @classmethod
    def from_loaded(cls, model, tokenizer, *, batch_size: int = 64,
                    max_length: int = DEFAULT_MAX_LENGTH) -> "Predictor":
        """Wrap a model already in memory (e.g. right after training)."""
        self = cls.__new__(cls)
        self.device = next(model.parameters()).device
        self.batch_size, self.max_length = batch_size, max_length
        self.model, self.tokenizer = model.eval(), tokenizer
        self.model_name = getattr(model.config, "_name_or_path", "in-memory")
        return self

    @torch.inference_mode()
    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities in label order (negative, neutral, positive), rows summing to 1."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.model.config.num_labels), dtype=np.float32)
        return self.predict_proba_ids(self.tokenize(texts))

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text, truncated to max_length and unpadded (padding happens per batch)."""
        return tokenize_texts(self.tokenizer, texts, self.max_length)

    @torch.inference_mode()
    def predict_proba_ids(self, ids: Sequence[Sequence[int]]) -> np.ndarray:
        """Class probabilities for texts already tokenized by tokenize_texts (as scoring's CPU tasks do).

        Rows are sorted by length so each batch of batch_size pads only to its own longest row.
        """
        ids = list(ids)
        if not ids:
            return np.zeros((0, self.model.config.num_labels), dtype=np.float32)
        order = np.argsort([len(x) for x in ids], kind="stable")
        probs = np.empty((len(ids), self.model.config.num_labels), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            batch = self.tokenizer.pad({"input_ids": [ids[i] for i in rows]}, return_tensors="pt")
            batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
                logits = self.model(**batch).logits
            probs[rows] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        return probs
