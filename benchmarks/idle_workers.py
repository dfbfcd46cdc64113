"""A local Ray cluster that keeps its idle workers (sentiment.cluster.connect.OWN_CLUSTER_CONFIG)
against Ray's defaults (at most num_cpus idle workers, the rest killed after 1 s), alternately.

    python -m benchmarks.idle_workers --rounds 2

Each run is a fresh process that starts its own local cluster (4 logical CPUs, as the tests'),
then, in that one process: two `sentiment train` runs of the tiny model (2 DDP workers, 2
epochs, 300 real labeled reviews) and one `sentiment score` of 200 real reviews. Prints per run
the wall seconds, the CPU seconds of the whole machine (from /proc/stat, so every process Ray
starts is counted) and the Ray worker processes started, then the medians and their ratios.
Cluster start-up is not counted.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

SHARED_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data")
VARIANTS = ("Ray's defaults", "idle workers kept")


def one_run(variant: str, workdir: str) -> dict:
    """In this process: start a cluster with the variant's settings, then train twice and score once."""
    import ray

    from benchmarks.lib.machine_cost import machine_cpu_seconds, ray_workers_started
    from sentiment.cli import main
    from sentiment.cluster.connect import OWN_CLUSTER_CONFIG

    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False,
             _system_config=dict(OWN_CLUSTER_CONFIG) if variant == VARIANTS[1] else {})
    started_workers, cpu, wall = ray_workers_started(), machine_cpu_seconds(), time.perf_counter()
    common = ["--data", os.path.join(workdir, "labeled.csv"), "--model", os.path.join(workdir, "model"),
              "--epochs", "2", "--num-workers", "2", "--lr", "1e-3"]
    for n in range(2):
        assert main(["train", *common, "--output", os.path.join(workdir, f"{variant[:4]}-train-{n}")]) == 0
    assert main(["score", "--model", os.path.join(workdir, "model"), "--input", os.path.join(workdir, "unlabeled.csv"),
                 "--output", os.path.join(workdir, f"{variant[:4]}-scored"), "--text-column", "content"]) == 0
    result = {"wall_s": time.perf_counter() - wall, "cpu_s": machine_cpu_seconds() - cpu,
              "workers": ray_workers_started() - started_workers}
    ray.shutdown()
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.idle_workers", description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=2, help="rounds of the two runs (default: %(default)s)")
    p.add_argument("--data", default=SHARED_DATA, help="folder with labeled/ and unlabeled/ review CSVs")
    p.add_argument("--one-run", nargs=2, metavar=("VARIANT", "WORKDIR"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one_run:
        print("RESULT " + json.dumps(one_run(*args.one_run)), flush=True)
        return 0

    import pandas as pd

    from benchmarks.lib.review_sample import load_labeled, sample_reviews
    from benchmarks.lib.scoring_benchmark import save_benchmark_model
    from sentiment.cluster.connect import OWN_CLUSTER_ENV

    with tempfile.TemporaryDirectory(prefix="sentiment-idle-workers-") as workdir:
        save_benchmark_model(os.path.join(workdir, "model"), "tiny")
        labeled = load_labeled(os.path.join(args.data, "labeled"))
        labeled.sample(n=300, random_state=2).to_csv(os.path.join(workdir, "labeled.csv"), index=False)
        pd.DataFrame({"content": sample_reviews(os.path.join(args.data, "unlabeled"), 200, seed=0)}).to_csv(
            os.path.join(workdir, "unlabeled.csv"), index=False)
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env.update(RAY_ADDRESS="local", RAY_USAGE_STATS_ENABLED="0", **OWN_CLUSTER_ENV,
                   OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
        results = {variant: [] for variant in VARIANTS}
        for _ in range(args.rounds):
            for variant in VARIANTS:
                out = subprocess.run([sys.executable, "-m", "benchmarks.idle_workers", "--one-run", variant, workdir],
                                     env=env, capture_output=True, text=True, check=False)
                lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
                if out.returncode != 0 or not lines:
                    sys.exit(f"{variant} run failed:\n{out.stderr[-3000:]}")
                r = json.loads(lines[-1][len("RESULT "):])
                results[variant].append(r)
                print(f"{variant:<18} wall {r['wall_s']:6.1f} s  machine CPU {r['cpu_s']:6.1f} s  "
                      f"Ray workers started {r['workers']:3d}", flush=True)
    medians = {name: {key: statistics.median(r[key] for r in runs) for key in ("wall_s", "cpu_s", "workers")}
               for name, runs in results.items()}
    base, kept = medians[VARIANTS[0]], medians[VARIANTS[1]]
    print(f"medians: Ray's defaults {base['wall_s']:.1f} s wall, {base['cpu_s']:.1f} CPU-s, {base['workers']:.0f} "
          f"workers; idle workers kept {kept['wall_s']:.1f} s, {kept['cpu_s']:.1f} CPU-s, {kept['workers']:.0f} "
          f"workers: {kept['wall_s'] / base['wall_s']:.2f}x wall, {kept['cpu_s'] / base['cpu_s']:.2f}x CPU")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
