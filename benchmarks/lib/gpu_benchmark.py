"""Issue 14's whole GPU table in one run: the bf16 matmul peak and FLOP limit; (a) the reference
loop, (b) the HF pipeline and (c) our Predictor at several batch sizes; the forward pass alone
on pre-padded tensors (fp32 weights + autocast vs bf16 weights, SDPA vs eager); and (d)
`sentiment score --gpu` end to end on >= 2,000,000 rows with the GPU's utilisation sampled.

A bert-base-sized classifier (BertConfig() defaults, 3 labels, random weights: speed does not
depend on the weights) with MiniLM's tokenizer, whose files are saved beforehand with
--save-tokenizer, since the device image has no MiniLM package.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from benchmarks.lib.hardware_limit import forward_flops, matmul_peak_gflops
from benchmarks.lib.review_sample import load_corpus
from benchmarks.lib.scoring_methods import time_hf_pipeline, time_predictor, time_reference_loop
from sentiment.data.labels import LABELS

log = logging.getLogger(__name__)
TEXT = "Review Text"


@dataclass
class GpuBenchmark:
    """One run of the GPU table; see benchmarks/gpu.py for the flags."""
    data_dir: str
    workdir: str
    tokenizer_dir: str | None = None  # None: the packaged MiniLM's tokenizer
    device: str = "cuda"
    model_size: str = "bert-base"
    sample: int = 20_000  # reviews for (c) and the forward-only runs
    baseline_n: int = 2_000  # reviews for (a) and (b)
    batch_sizes: tuple[int, ...] = (64, 256, 1024, 4096)
    pipeline_batch_sizes: tuple[int, ...] = (64, 256)
    rows: int = 2_000_000  # (d), the corpus replicated
    shards: int = 16
    score_args: tuple[str, ...] = ()
    score_timeout_s: float = 240
    peak_size: int = 8192
    seed: int = 0
    end_to_end_only: bool = False  # only (d): the pipeline's ceiling (tiny model) or bert-base end to end


def save_tokenizer(directory: str) -> str:
    """Save the packaged MiniLM's tokenizer files (~1 MB) to `directory`, for a machine without it."""
    from transformers import AutoTokenizer

    from sentiment.model.classifier import resolve_backbone

    AutoTokenizer.from_pretrained(resolve_backbone("minilm")).save_pretrained(directory)
    return directory


def save_model(directory: str, size: str, tokenizer_dir: str | None) -> str:
    """A bert-base (or tiny, for smoke runs) 3-class classifier with random weights, saved with
    the tokenizer from `tokenizer_dir` (default: the packaged MiniLM's)."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from sentiment.model.classifier import resolve_backbone, save_classifier

    shape = {"bert-base": {}, "tiny": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                           intermediate_size=64)}[size]
    torch.manual_seed(0)
    config = BertConfig(num_labels=len(LABELS), id2label=dict(enumerate(LABELS)),
                        label2id={name: i for i, name in enumerate(LABELS)}, **shape)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir or resolve_backbone("minilm"))
    save_classifier(BertForSequenceClassification(config), tokenizer, directory)
    return directory


def _rate(run) -> dict:
    return {"name": run.name, "reviews": run.reviews, "seconds": run.seconds, "reviews_per_s": run.reviews_per_s,
            "settings": {k: v for k, v in run.settings.items() if k != "command"}}


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_forward_only(model_dir: str, texts: list[str], batch_size: int, device: str, weights: str,
                      attention: str) -> dict:
    """The model's forward pass alone over pre-padded batches already on the device.

    weights: "fp32" (with bf16 autocast on, as the old Predictor ran) or "bf16" (cast weights).
    attention: "sdpa" or "eager".
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from sentiment.model.token_batches import pad_rows, tokenize_to_arrow

    model = AutoModelForSequenceClassification.from_pretrained(model_dir, attn_implementation=attention)
    model = model.to(device, dtype=torch.bfloat16 if weights == "bf16" else torch.float32).eval()
    tokens = tokenize_to_arrow(AutoTokenizer.from_pretrained(model_dir), texts)
    lengths = pa.compute.list_value_length(tokens).to_numpy().astype(np.int64)
    values = pa.compute.list_flatten(tokens).to_numpy()
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    batches = []
    for start in range(0, len(texts), batch_size):
        rows = np.arange(start, min(start + batch_size, len(texts)))
        ids, mask = pad_rows(values, starts[rows], lengths[rows], 0)
        batches.append((torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)))
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=weights == "fp32")
    with torch.inference_mode(), autocast:
        model(input_ids=batches[0][0], attention_mask=batches[0][1])  # warm-up: kernels, allocator
        _sync(device)
        start = time.perf_counter()
        for ids, mask in batches:
            model(input_ids=ids, attention_mask=mask)
        _sync(device)
    seconds = time.perf_counter() - start
    return {"name": f"forward only, {weights} weights{' + autocast' if weights == 'fp32' else ''}, {attention}",
            "reviews": len(texts), "seconds": seconds, "reviews_per_s": len(texts) / seconds,
            "settings": {"batch_size": batch_size}}


class UtilisationSampler:
    """GPU SM utilisation every `interval_s`, from NVML (nvidia-ml-py) or nvidia-smi; `samples`
    stays empty where neither is present."""

    def __init__(self, interval_s: float = 0.5):
        self.interval_s, self.samples, self.source = interval_s, [], None
        self._done = threading.Event()
        self._read = self._nvml() or self._smi()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _nvml(self):
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        except Exception:  # no library, no driver, no GPU: utilisation is optional
            return None
        self.source = "nvml"
        return lambda: pynvml.nvmlDeviceGetUtilizationRates(handle).gpu

    def _smi(self):
        query = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-i", "0"]
        try:
            subprocess.run(query, capture_output=True, check=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        self.source = "nvidia-smi"
        return lambda: float(subprocess.run(query, capture_output=True, text=True, timeout=10).stdout.split()[0])

    def _run(self):
        while not self._done.wait(self.interval_s):
            self.samples.append(self._read())

    def __enter__(self):
        if self._read:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        if self._read:
            self._thread.join()

    def summary(self) -> dict:
        if not self.samples:
            return {"source": None, "note": "no NVML or nvidia-smi: utilisation not sampled"}
        s = np.array(self.samples, dtype=float)
        return {"source": self.source, "interval_s": self.interval_s, "samples": len(s), "mean": float(s.mean()),
                "max": float(s.max()), "zero_samples": int((s == 0).sum()), "p50": float(np.median(s))}


def write_replicated_shards(corpus: list[str], rows: int, directory: str, shards: int) -> list[str]:
    """`rows` reviews (the corpus cycled) with an int64 row_id, as `shards` Parquet files."""
    os.makedirs(directory, exist_ok=True)
    texts, paths = pa.array(corpus, pa.string()), []
    for index, ids in enumerate(np.array_split(np.arange(rows, dtype=np.int64), shards)):
        path = os.path.join(directory, f"part-{index:03d}.parquet")
        pq.write_table(pa.table({"row_id": ids, TEXT: texts.take(pa.array(ids % len(corpus)))}), path)
        paths.append(path)
    return paths


def run_end_to_end(cfg: GpuBenchmark, model_dir: str, corpus: list[str]) -> dict:
    """(d) `sentiment score` in a fresh process over cfg.rows rows, GPU utilisation sampled."""
    paths = write_replicated_shards(corpus, cfg.rows, os.path.join(cfg.workdir, "shards"), cfg.shards)
    output = os.path.join(cfg.workdir, "scored")
    command = [sys.executable, "-m", "sentiment", "score", "--model", model_dir, "--input", *paths,
               "--output", output, "--text-column", TEXT, *(["--gpu"] if cfg.device == "cuda" else []),
               *cfg.score_args]
    start = time.perf_counter()
    with UtilisationSampler() as sampler:
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=cfg.score_timeout_s)
        except subprocess.TimeoutExpired:
            done = None
    seconds = time.perf_counter() - start
    result = {"name": "sentiment score (end to end)", "reviews": cfg.rows, "seconds": seconds,
              "command": " ".join(command), "gpu_utilisation": sampler.summary()}
    if done is None or done.returncode != 0:
        result["error"] = (f"timed out after {cfg.score_timeout_s:.0f} s" if done is None
                           else f"exit {done.returncode}: {done.stderr[-2000:]}")
        return result
    with open(os.path.join(output, "_summary.json")) as f:
        summary = json.load(f)
    result.update(reviews=summary["rows_read"], reviews_per_s=summary["rows_read"] / seconds, summary=summary)
    # The actors' own account of their start (Ray forwards their log lines to the driver's stderr).
    result["actor_starts"] = [line.split("scoring actor on", 1)[1].strip() for line in done.stderr.splitlines()
                              if "scoring actor on" in line]
    return result


def _in_process_runs(cfg: GpuBenchmark, model_dir: str, texts: list[str], dtype) -> dict:
    """(a), (b), (c) and the forward pass alone."""
    runs, base = {}, texts[:cfg.baseline_n]
    runs["a"] = _rate(time_reference_loop(model_dir, base, device=cfg.device))
    for bs in cfg.pipeline_batch_sizes:
        runs[f"b/{bs}"] = _rate(time_hf_pipeline(model_dir, base, batch_size=bs, device=cfg.device, dtype=dtype))
    runs["c/tokens"] = _rate(time_predictor(model_dir, texts, batch_size=None, device=cfg.device, precision="auto"))
    for bs in cfg.batch_sizes:
        runs[f"c/{bs}"] = _rate(time_predictor(model_dir, texts, batch_size=bs, device=cfg.device, precision="auto"))
    for weights, attention in (("fp32", "sdpa"), ("bf16", "sdpa"), ("bf16", "eager")):
        for bs in cfg.batch_sizes:
            runs[f"fwd/{weights}/{attention}/{bs}"] = time_forward_only(model_dir, texts, bs, cfg.device, weights,
                                                                        attention)
    return runs


def run_gpu_benchmark(cfg: GpuBenchmark) -> dict:
    """Measure the whole table; returns a JSON-ready dict (limit, runs by key, end to end)."""
    from transformers import AutoConfig, AutoTokenizer

    from benchmarks.lib.hardware_limit import token_counts

    model_dir = save_model(os.path.join(cfg.workdir, "model"), cfg.model_size, cfg.tokenizer_dir)
    corpus = load_corpus(cfg.data_dir)
    picks = np.random.default_rng(cfg.seed).choice(len(corpus), size=min(cfg.sample, len(corpus)), replace=False)
    texts = [corpus[i] for i in picks]
    tokens = token_counts(AutoTokenizer.from_pretrained(model_dir), texts)
    gflop = float(forward_flops(AutoConfig.from_pretrained(model_dir), tokens).mean()) / 1e9
    dtype = torch.bfloat16 if cfg.device == "cuda" else torch.float32
    peak, _ = matmul_peak_gflops(cfg.peak_size, dtype=dtype, device=cfg.device)
    result = {"device": torch.cuda.get_device_name(0) if cfg.device == "cuda" else "cpu", "torch": torch.__version__,
              "config": {k: v for k, v in vars(cfg).items()},
              "limit": {"matmul_peak_gflops": peak, "dtype": str(dtype), "gflop_per_review": gflop,
                        "mean_tokens": float(tokens.mean()), "max_reviews_per_s": peak / gflop}, "runs": {}}
    log.info("limit: %s", result["limit"])
    runs = result["runs"]
    if not cfg.end_to_end_only:
        runs.update(_in_process_runs(cfg, model_dir, texts, dtype))
    for key, run in runs.items():
        log.info("%-24s %10.0f reviews/s", key, run["reviews_per_s"])
    if cfg.rows:
        result["end_to_end"] = run_end_to_end(cfg, model_dir, corpus)
    limit = result["limit"]["max_reviews_per_s"]
    for run in [*runs.values(), result.get("end_to_end", {})]:
        if "reviews_per_s" in run:
            run["of_limit"] = run["reviews_per_s"] / limit
    return result


def format_table(result: dict) -> str:
    """The result as the table BENCHMARKS.md shows, after where (d)'s time went, stage by stage."""
    from sentiment.score.stages import format_stages

    lim = result["limit"]
    stages = result.get("end_to_end", {}).get("summary", {}).get("stages")
    lines = [f"(d) per stage, from Ray Data's stats:\n{format_stages(stages)}" if stages
             else "(d) per stage: not measured", f"{result['device']}: matmul peak {lim['matmul_peak_gflops']:,.0f} GFLOP/s ({lim['dtype']}), "
             f"{lim['gflop_per_review']:.2f} GFLOP/review (mean {lim['mean_tokens']:.1f} tokens) -> limit "
             f"{lim['max_reviews_per_s']:,.0f} reviews/s",
             f"{'key':26}{'what':52}{'reviews/s':>12}{'of limit':>10}  settings"]
    rows = list(result["runs"].items()) + ([("d", result["end_to_end"])] if "end_to_end" in result else [])
    for key, run in rows:
        if "reviews_per_s" not in run:
            lines.append(f"{key:26}{run['name']:52}  not measured: {run.get('error', '')[:200]}")
            continue
        lines.append(f"{key:26}{run['name']:52}{run['reviews_per_s']:>12,.0f}{run['of_limit']:>10.1%}  "
                     f"{run.get('settings', {})}")
    if "end_to_end" in result:
        lines.append(f"GPU utilisation during (d): {result['end_to_end']['gpu_utilisation']}")
        lines += [f"scoring actor on {start}" for start in result["end_to_end"].get("actor_starts", [])]
    return "\n".join(lines)
