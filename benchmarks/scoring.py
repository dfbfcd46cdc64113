"""Scoring throughput against the reference loop, the Hugging Face pipeline and the FLOP limit.

    python -m benchmarks.scoring                      # the CPU table in BENCHMARKS.md
    python -m benchmarks.scoring --n 500 --baseline-n 200 --no-score   # a quick look
    python -m benchmarks.scoring --memory-rows 50000 500000 --memory-model tiny
    ray job submit --working-dir . -- python -m benchmarks.scoring --device cuda

Samples --n reviews at random (seeded) from the whole unlabeled corpus, then times, in one
process and one run: (a) the reference loop, (b) transformers.pipeline with the best of
--pipeline-batch-sizes, (c) our Predictor in fp32 and (c16) with bf16 weights, each with the best
of --predictor-batch-sizes, and (d) `sentiment score` end to end in a subprocess with its default
--precision auto, and (d32) with --precision fp32. fp32 runs are held against the fp32 matmul
peak, bf16 runs against the bf16 one. (a) and (b) run on the first --baseline-n of the
sample (itself random). Prints a table and writes everything to --json.
"""

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

from benchmarks.lib.scoring_benchmark import ScoringBenchmark, measure_memory, run_scoring_benchmark

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "unlabeled"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scoring", description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(DEFAULT_DATA), help="folder of unlabeled review CSVs (default: %(default)s)")
    p.add_argument("--n", type=int, default=20_000, help="reviews for (c) and (d) (default: %(default)s)")
    p.add_argument("--baseline-n", type=int, default=3_000, help="reviews for (a) and (b) (default: %(default)s)")
    p.add_argument("--tune-n", type=int, default=500, help="reviews per batch-size trial (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: %(default)s)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="cuda skips (a) (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="torch threads in this process (default: torch's)")
    p.add_argument("--pipeline-batch-sizes", type=int, nargs="+", default=[16, 32, 64, 128])
    p.add_argument("--predictor-batch-sizes", type=int, nargs="+", default=[32, 64, 128])
    p.add_argument("--model-size", choices=["minilm", "tiny"], default="minilm",
                   help="untrained MiniLM classifier, or a tiny one for smoke runs (default: %(default)s)")
    p.add_argument("--no-score", action="store_true", help="skip (d), `sentiment score` end to end")
    p.add_argument("--score-args", default="", help="extra flags for `sentiment score`, e.g. '--batch-size 128'")
    p.add_argument("--memory-rows", type=int, nargs="*", default=[],
                   help="also measure peak memory of `sentiment score` at these row counts (corpus replicated)")
    p.add_argument("--memory-only", action="store_true", help="only the memory runs, not (a)-(d)")
    p.add_argument("--memory-model", choices=["minilm", "tiny"], default="minilm", help="model for the memory runs")
    p.add_argument("--peak-size", type=int, default=4096, help="side of the square matmuls for the peak (default: %(default)s)")
    p.add_argument("--workdir", default=None, help="scratch folder for model, shards and outputs (default: a temp dir)")
    p.add_argument("--json", default="benchmark_scoring.json", help="where to write the results (default: %(default)s)")
    return p


def format_table(result: dict) -> str:
    from sentiment.score.stages import format_stages

    sample, limits = result["sample"], result["limits"]
    lines = []
    for key in ("d", "d32"):  # where the end-to-end runs' time went, first
        stages = ((result["runs"].get(key, {}).get("settings") or {}).get("summary") or {}).get("stages")
        if stages:
            lines.append(f"({key}) per stage, from Ray Data's stats:\n{format_stages(stages)}")
    lines += [f"{sample['reviews']} reviews, mean {sample['mean_tokens']:.1f} tokens, "
             f"{sample['mean_gflop_per_review']:.3f} GFLOP/review"]
    for name, lim in limits.items():
        lines.append(f"{name} limit: matmul peak {lim['matmul_peak_gflops']:.0f} GFLOP/s -> {lim['max_reviews_per_s']:.0f} "
                     f"reviews/s; one core {lim['core_peak_gflops_per_cpu_s']:.0f} GFLOP per CPU-s -> "
                     f"{lim['max_reviews_per_cpu_s']:.0f} reviews per CPU-s")
    lines.append(f"{'':4}{'method':44}{'prec':>5}{'reviews':>8}{'seconds':>9}{'reviews/s':>11}{'of limit':>10}"
                 f"{'CPU-s':>8}{'per CPU-s':>11}  settings")
    for key, run in result["runs"].items():
        settings = {k: v for k, v in run["settings"].items() if k in ("batch_size", "torch_threads", "chunk")}
        of_limit = run["reviews_per_s"] / limits[run["precision"]]["max_reviews_per_s"]
        lines.append(f"{key:4}{run['name']:44}{run['precision']:>5}{run['reviews']:>8}{run['seconds']:>9.1f}"
                     f"{run['reviews_per_s']:>11.1f}{of_limit:>10.0%}"
                     f"{run['cpu_seconds'] or 0:>8.1f}{run['reviews_per_cpu_s'] or 0:>11.1f}  {settings}")
    lines.append("wall-time ratios: " + ", ".join(f"{k} = {v:.2f}x" for k, v in result["ratios"].items()))
    lines.append("CPU-time ratios: " + ", ".join(f"{k} = {v:.2f}x" for k, v in result["cpu_time_ratios"].items())
                 + "; fraction of limit by CPU time: "
                 + ", ".join(f"{k} = {v:.0%}" for k, v in result["cpu_time_fraction_of_limit"].items()))
    return "\n".join(lines + [format_memory(result)])


def format_memory(result: dict) -> str:
    return "\n".join(f"memory: {row['rows']} rows ({row['model']}): peak PSS {row['peak_pss_bytes'] / 2**30:.2f} GiB, "
                     f"peak RSS sum {row['peak_rss_bytes'] / 2**30:.2f} GiB, {row['seconds']:.0f} s"
                     for row in result.get("memory", []))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="sentiment-bench-") as tmp:
        cfg = ScoringBenchmark(
            data_dir=args.data, workdir=args.workdir or tmp, n=args.n, baseline_n=args.baseline_n,
            tune_n=args.tune_n, seed=args.seed, device=args.device, threads=args.threads,
            pipeline_batch_sizes=tuple(args.pipeline_batch_sizes), predictor_batch_sizes=tuple(args.predictor_batch_sizes),
            model_size=args.model_size, run_score=not args.no_score, score_args=tuple(args.score_args.split()),
            memory_rows=tuple(args.memory_rows), memory_model_size=args.memory_model, peak_size=args.peak_size)
        logging.info("benchmark config: %s", cfg)
        result = {"memory": measure_memory(cfg)} if args.memory_only else run_scoring_benchmark(cfg)
    result["command"] = " ".join(["python", "-m", "benchmarks.scoring", *(argv if argv is not None else sys.argv[1:])])
    print(format_table(result) if "runs" in result else format_memory(result))
    Path(args.json).write_text(json.dumps(result, indent=2, default=str))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
