"""Tokenizing's CPU cost per review: the scoring pipeline's tokenize step against the bare calls.

Issue 25's GPU run spent 123 µs of CPU per row tokenizing (245 CPU-s for 2,000,000 rows), the
largest CPU cost of the pipeline. This times, in one process on real reviews, best of --repeats:
the transformers tokenizer call with the Arrow conversion (how tokenize_to_arrow tokenized until
2026-12-04), tokenize_to_arrow (the tokenizers backend's encode_batch_fast, without transformers'
wrapper or character offsets), the same for a model trained with its unreadable symbols spelled
(sentiment.model.readable_text: every model trained since 2026-12-05), the backend's
encode_batch with offsets (until 2026-12-05), and the pipeline's `tokenize_batch` (null and
blank checks included), in turns.

    python -m benchmarks.tokenizing --rows 16384 --batch-rows 4096
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import pyarrow as pa

from benchmarks.lib.review_sample import load_corpus

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "unlabeled"


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def real_reviews(data_dir: str, rows: int) -> pa.Table:
    """`rows` non-blank reviews of the corpus in data_dir (review_sample.load_corpus), cycled, as
    a `content` column."""
    corpus = load_corpus(data_dir)
    return pa.table({"content": [corpus[i % len(corpus)] for i in range(rows)]})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tokenizing", description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="folder of review CSVs (default: %(default)s)")
    parser.add_argument("--tokenizer", default="minilm", help="'minilm' (the package) or a tokenizer folder")
    parser.add_argument("--rows", type=int, default=16_384)
    parser.add_argument("--batch-rows", type=int, default=4_096, help="rows per call (the pipeline's: 4,096)")
    parser.add_argument("--max-length", type=int, default=160)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    from copy import deepcopy

    from transformers import AutoTokenizer

    from sentiment.model.classifier import resolve_backbone
    from sentiment.model.readable_text import mark_spelling, readable_texts
    from sentiment.model.token_batches import tokenize_to_arrow
    from sentiment.score.actor import tokenize_batch

    table = real_reviews(args.data, args.rows)
    texts = table["content"].to_pylist()
    tokenizer = AutoTokenizer.from_pretrained(resolve_backbone(args.tokenizer) if args.tokenizer == "minilm"
                                              else args.tokenizer)
    step, n, length = args.batch_rows, len(texts), args.max_length

    def transformers_call():
        for i in range(0, n, step):
            ids = tokenizer(texts[i:i + step], truncation=True, max_length=length, padding=False,
                            return_attention_mask=False)["input_ids"]
            pa.array(ids, pa.list_(pa.int32()))

    backend = tokenizer.backend_tokenizer

    def backend_with_offsets():
        # tokenize_to_arrow's body until 2026-12-05: encode_batch, which also computes offsets
        backend.enable_truncation(length)
        backend.no_padding()
        for i in range(0, n, step):
            pa.array([encoding.ids for encoding in backend.encode_batch(texts[i:i + step])], pa.list_(pa.int32()))

    def backend_call():
        for i in range(0, n, step):
            tokenize_to_arrow(tokenizer, texts[i:i + step], length)

    spelling = deepcopy(tokenizer)
    mark_spelling(spelling)
    readable_texts(spelling, ["👍"])  # its table of unreadable symbols, built once per process (0.1-0.2 s)

    def spelled_call():
        for i in range(0, n, step):
            tokenize_to_arrow(spelling, texts[i:i + step], length)

    def pipeline_step():
        for i in range(0, n, step):
            tokenize_batch(table.slice(i, step), tokenizer=tokenizer, text_column="content", max_length=length,
                           drop_text=False)

    print(f"{n:,} real reviews in calls of {step:,} rows, best of {args.repeats} in turns; µs per review")
    print(f"{'method':52}{'wall':>8}{'CPU':>8}")
    methods = (("transformers call + Arrow (until 2026-12-04)", transformers_call),
               ("tokenize_to_arrow (tokenizers backend, fast)", backend_call),
               ("tokenize_to_arrow, unreadable symbols spelled", spelled_call),
               ("backend encode_batch, offsets (until 2026-12-05)", backend_with_offsets),
               ("scoring's tokenize_batch", pipeline_step))
    best = dict.fromkeys(name for name, _ in methods)
    for _ in range(args.repeats):  # in turns, so that a busy spell of the machine hits every method
        for name, run in methods:
            wall, cpu = time.perf_counter(), _cpu_seconds()
            run()
            timing = (time.perf_counter() - wall, _cpu_seconds() - cpu)
            best[name] = timing if best[name] is None or timing[1] < best[name][1] else best[name]
    for name, (wall, cpu) in best.items():
        print(f"{name:52}{wall * 1e6 / n:8.1f}{cpu * 1e6 / n:8.1f}")
    print(f"tokenize_to_arrow / transformers call, CPU: {best[methods[1][0]][1] / best[methods[0][0]][1]:.2f}x")
    print(f"tokenize_to_arrow / encode_batch with offsets, CPU: {best[methods[1][0]][1] / best[methods[3][0]][1]:.2f}x")
    print(f"spelled / unspelled tokenize_to_arrow, CPU: {best[methods[2][0]][1] / best[methods[1][0]][1]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
