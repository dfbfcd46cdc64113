"""The three in-process ways to score reviews that the benchmark compares: (a) the tutorial
reference loop, (b) the Hugging Face pipeline, (c) our Predictor. Each times scoring only,
never model loading, and returns the probabilities so the methods can be checked to agree. All
three read the text as the model was trained to (sentiment.model.readable_text: emoji spelled
out for a model trained so), which (a) and (b) do not do by themselves.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from sentiment.data.labels import LABELS
from sentiment.model.classifier import DEFAULT_MAX_LENGTH, load_classifier
from sentiment.model.readable_text import readable_texts


@dataclass
class Timing:
    """Reviews scored in `seconds`; `probs` (n, 3) in label order, when the method returns them."""
    name: str
    reviews: int
    seconds: float
    probs: np.ndarray | None = None
    settings: dict = field(default_factory=dict)
    cpu_seconds: float | None = None  # user+system time of all threads (and child processes)

    @property
    def reviews_per_s(self) -> float:
        return self.reviews / self.seconds

    @property
    def reviews_per_cpu_s(self) -> float | None:
        """Reviews per CPU-second: much steadier than wall time on a machine others load too."""
        return self.reviews / self.cpu_seconds if self.cpu_seconds else None


def time_reference_loop(model_dir: str, texts: list[str], batch_size: int = 16,
                        max_length: int = DEFAULT_MAX_LENGTH, device: str = "cpu") -> Timing:
    """(a) The tutorial loop: each text tokenized alone, padded to `max_length`, a DataLoader, fp32."""
    model, tokenizer = load_classifier(model_dir)
    model.to(device).eval()

    class Reviews(torch.utils.data.Dataset):
        def __len__(self):
            return len(texts)

        def __getitem__(self, i):
            enc = tokenizer(readable[i], padding="max_length", truncation=True,
                            max_length=max_length, return_tensors="pt")
            return {k: v.squeeze(0) for k, v in enc.items()}

    loader = torch.utils.data.DataLoader(Reviews(), batch_size=batch_size)
    out = []
    start, cpu = time.perf_counter(), time.process_time()
    readable = readable_texts(tokenizer, texts)
    with torch.no_grad():
        for batch in loader:
            batch = {k: v.to(device) for k, v in batch.items()}
            out.append(torch.softmax(model(**batch).logits, dim=-1).cpu().numpy())
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return Timing("reference loop", len(texts), seconds, np.concatenate(out),
                  {"batch_size": batch_size, "padding": f"max_length={max_length}"}, cpu)


def time_hf_pipeline(model_dir: str, texts: list[str], batch_size: int,
                     max_length: int = DEFAULT_MAX_LENGTH, device: str = "cpu",
                     dtype: torch.dtype = torch.float32) -> Timing:
    """(b) transformers.pipeline("text-classification") over the texts at one batch size."""
    from transformers import logging, pipeline

    logging.set_verbosity_error()
    pipe = pipeline("text-classification", model=model_dir, device=device, dtype=dtype)
    start, cpu = time.perf_counter(), time.process_time()
    results = pipe(readable_texts(pipe.tokenizer, texts), batch_size=batch_size, truncation=True, max_length=max_length, top_k=None)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    probs = np.array([[{r["label"]: r["score"] for r in row}[name] for name in LABELS]
                      for row in results], dtype=np.float32)
    return Timing(f"HF pipeline ({str(dtype).removeprefix('torch.')})", len(texts), seconds, probs,
                  {"batch_size": batch_size}, cpu)


def time_predictor(model_dir: str, texts: list[str], batch_size: int | None = 64,
                   device: str = "cpu", chunk: int = 10_000, precision: str = "fp32") -> Timing:
    """(c) Our Predictor on in-memory batches of `chunk` texts (as a scoring actor sees them).

    fp32 by default, so it is compared like for like with (a) and (b) and the fp32 limit.
    batch_size None cuts batches by the Predictor's default token budget.
    """
    from sentiment.model.predictor import Predictor

    predictor = Predictor(model_dir, device=torch.device(device), batch_size=batch_size, precision=precision)
    predictor.predict_proba(texts[:batch_size or 256])  # first-call allocations are not throughput
    if device == "cuda":
        torch.cuda.synchronize()
    start, cpu = time.perf_counter(), time.process_time()
    probs = np.concatenate([predictor.predict_proba(texts[i:i + chunk])
                            for i in range(0, len(texts), chunk)])
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return Timing(f"our Predictor ({predictor.precision})", len(texts), seconds, probs,
                  {"batch_size": batch_size or f"{predictor.tokens_per_batch} tokens", "chunk": chunk,
                   "torch_threads": torch.get_num_threads()}, cpu)
