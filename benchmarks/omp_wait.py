"""The Predictor's forward pass under OpenMP's two wait policies, in fresh processes, alternately.

    python -m benchmarks.omp_wait --model-size tiny --rows 4096 --rounds 2
    python -m benchmarks.omp_wait --model-size minilm --rows 512 --rounds 2

OMP_WAIT_POLICY is read once, when torch loads OpenMP, so each measurement is its own process:
1 thread (the policy does not matter), then 2 threads ACTIVE (OpenMP's default: idle threads
spin) and 2 threads PASSIVE (idle threads sleep), round after round, on the same real reviews.
Prints wall and CPU seconds of predict_proba_tokens per run (model loading and one warm-up
batch excluded), and the ratios of the medians. Why the scoring actors run PASSIVE.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

DEFAULT_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "unlabeled")
RUNS = (("1 thread", 1, "ACTIVE"), ("2 threads, ACTIVE", 2, "ACTIVE"), ("2 threads, PASSIVE", 2, "PASSIVE"))


def child(model_dir: str, texts_file: str, threads: int) -> dict:
    import torch

    from sentiment.model.predictor import Predictor

    torch.set_num_threads(threads)
    with open(texts_file) as f:
        texts = json.load(f)
    predictor = Predictor(model_dir, device=torch.device("cpu"), precision="fp32")
    tokens = predictor.tokenize(texts)
    predictor.predict_proba_tokens(tokens[:64])  # warm-up: allocator, kernels
    wall, cpu = time.perf_counter(), time.process_time()
    predictor.predict_proba_tokens(tokens)
    return {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.omp_wait", description=__doc__.splitlines()[0])
    p.add_argument("--model-size", choices=["tiny", "minilm"], default="tiny", help="default: %(default)s")
    p.add_argument("--rows", type=int, default=4096, help="real reviews per run (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=2, help="rounds of the three runs (default: %(default)s)")
    p.add_argument("--data", default=DEFAULT_DATA, help="folder of unlabeled review CSVs")
    p.add_argument("--child", nargs=3, metavar=("MODEL", "TEXTS", "THREADS"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], int(args.child[2]))))
        return 0
    from benchmarks.lib.review_sample import sample_reviews
    from benchmarks.lib.scoring_benchmark import save_benchmark_model

    with tempfile.TemporaryDirectory(prefix="sentiment-omp-") as tmp:
        model = save_benchmark_model(os.path.join(tmp, "model"), args.model_size)
        texts = os.path.join(tmp, "texts.json")
        with open(texts, "w") as f:
            json.dump(sample_reviews(args.data, args.rows, seed=0), f)
        results = {name: [] for name, _, _ in RUNS}
        for _ in range(args.rounds):
            for name, threads, policy in RUNS:
                done = subprocess.run([sys.executable, "-m", "benchmarks.omp_wait", "--child", model, texts,
                                       str(threads)], env={**os.environ, "OMP_WAIT_POLICY": policy},
                                      capture_output=True, text=True, check=True)
                results[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(f"{name:20} wall {results[name][-1]['wall_s']:7.2f} s  CPU {results[name][-1]['cpu_s']:7.2f} s",
                      flush=True)
    median = {name: statistics.median(r["wall_s"] for r in runs) for name, runs in results.items()}
    print(f"{args.model_size}, {args.rows} reviews, median wall: "
          + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in median.items())
          + f"; 2 threads ACTIVE / PASSIVE = {median['2 threads, ACTIVE'] / median['2 threads, PASSIVE']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
