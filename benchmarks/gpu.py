"""GPU scoring benchmark: issue 14's whole table in one run, under 5 minutes on one H100/H200.

Here, once (the device image has no MiniLM package, so its tokenizer travels in the kit):
    ../shared/tools/gpu-kit && python -m benchmarks.gpu --save-tokenizer .gpukit/tokenizer
On the GPU machine (the `run` tool, carry [".gpukit"]):
    source .gpukit/setup.sh && python -m benchmarks.gpu --tokenizer .gpukit/tokenizer --json $OUT/gpu.json
A CPU smoke run (what tests/benchmarks/test_pieces.py does):
    python -m benchmarks.gpu --device cpu --model-size tiny --sample 64 --baseline-n 16 --rows 2000 \\
        --batch-sizes 16 64 --pipeline-batch-sizes 16 --peak-size 256

Measures: bf16 matmul peak and the FLOP limit for real review lengths; (a) the reference loop,
(b) transformers.pipeline, (c) our Predictor (token budget, then each --batch-sizes), the
forward pass alone on pre-padded device tensors (fp32 weights + autocast vs bf16 weights, SDPA
vs eager), and (d) `sentiment score --gpu` end to end on --rows rows (the corpus replicated),
with GPU utilisation sampled while it runs. Prints the table and writes everything to --json.
"""

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

from benchmarks.lib.gpu_benchmark import GpuBenchmark, format_table, run_gpu_benchmark, save_tokenizer

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "unlabeled"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.splitlines()[0])
    p.add_argument("--save-tokenizer", metavar="DIR", default=None,
                   help="only save the packaged MiniLM's tokenizer files to DIR, for a machine without it")
    p.add_argument("--tokenizer", default=None, help="tokenizer folder (default: the packaged MiniLM's)")
    p.add_argument("--data", default=str(DEFAULT_DATA), help="folder of unlabeled review CSVs (default: %(default)s)")
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="default: %(default)s")
    p.add_argument("--model-size", choices=["bert-base", "tiny"], default="bert-base", help="default: %(default)s")
    p.add_argument("--sample", type=int, default=20_000, help="reviews for (c) and forward-only (default: %(default)s)")
    p.add_argument("--baseline-n", type=int, default=2_000, help="reviews for (a) and (b) (default: %(default)s)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256, 1024, 4096])
    p.add_argument("--pipeline-batch-sizes", type=int, nargs="+", default=[64, 256])
    p.add_argument("--rows", type=int, default=2_000_000, help="rows for (d); 0 skips it (default: %(default)s)")
    p.add_argument("--shards", type=int, default=16, help="Parquet shards for (d) (default: %(default)s)")
    p.add_argument("--end-to-end-only", action="store_true",
                   help="only (d), `sentiment score` end to end: the pipeline's ceiling with --model-size tiny")
    p.add_argument("--score-args", default="", help="extra flags for `sentiment score`, e.g. '--tokens-per-batch 65536'")
    p.add_argument("--score-timeout", type=float, default=240, help="seconds before (d) is given up (default: %(default)s)")
    p.add_argument("--peak-size", type=int, default=8192, help="side of the square matmuls (default: %(default)s)")
    p.add_argument("--workdir", default=None, help="scratch folder (default: a temp dir)")
    p.add_argument("--json", default="benchmark_gpu.json", help="where to write the results (default: %(default)s)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.save_tokenizer:
        print(f"saved the tokenizer to {save_tokenizer(args.save_tokenizer)}")
        return 0
    with tempfile.TemporaryDirectory(prefix="sentiment-gpu-bench-") as tmp:
        cfg = GpuBenchmark(
            data_dir=args.data, workdir=args.workdir or tmp, tokenizer_dir=args.tokenizer, device=args.device,
            model_size=args.model_size, sample=args.sample, baseline_n=args.baseline_n,
            batch_sizes=tuple(args.batch_sizes), pipeline_batch_sizes=tuple(args.pipeline_batch_sizes),
            rows=args.rows, shards=args.shards, score_args=tuple(args.score_args.split()),
            score_timeout_s=args.score_timeout, peak_size=args.peak_size, end_to_end_only=args.end_to_end_only)
        logging.info("benchmark config: %s", cfg)
        result = run_gpu_benchmark(cfg)
    result["command"] = " ".join(["python", "-m", "benchmarks.gpu", *(argv if argv is not None else sys.argv[1:])])
    print(format_table(result))
    Path(args.json).write_text(json.dumps(result, indent=2, default=str))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
