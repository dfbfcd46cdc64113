"""`sentiment score` of a folder of Parquet shards with Ray Data's footer-reader pool sized to the
files (sentiment.io.shards.read_parquet) against Ray's default of 32 actors, alternately, on one
local Ray cluster.

    python -m benchmarks.footer_pool --files 4 --rounds 3

Each run scores the same shards of real reviews with the tiny model into a new folder. Prints
per run the wall seconds, the CPU seconds of the whole machine (from /proc/stat, so the actor
processes Ray starts are counted) and the Ray worker processes started, then the medians and
their ratios. The first run of all warms Ray's workers up and is not counted.
"""

import argparse
import os
import statistics
import tempfile
import time

DEFAULT_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "unlabeled")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.footer_pool", description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=4, help="Parquet shards of 50 reviews (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of the two runs (default: %(default)s)")
    p.add_argument("--data", default=DEFAULT_DATA, help="folder of unlabeled review CSVs")
    args = p.parse_args(argv)

    import pyarrow as pa
    import pyarrow.parquet as pq
    import ray

    from benchmarks.lib.machine_cost import machine_cpu_seconds, ray_workers_started
    from benchmarks.lib.review_sample import sample_reviews
    from benchmarks.lib.scoring_benchmark import save_benchmark_model
    from sentiment.io.shards import FOOTER_ACTORS_ENV
    from sentiment.score.pipeline import ScoreConfig, score

    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false"}})
    ray.data.DataContext.get_current().enable_progress_bars = False

    with tempfile.TemporaryDirectory(prefix="sentiment-footers-") as tmp:
        model = save_benchmark_model(os.path.join(tmp, "model"), "tiny")
        shards = os.path.join(tmp, "in")
        os.mkdir(shards)
        texts = sample_reviews(args.data, 50 * args.files, seed=0)
        for i in range(args.files):
            pq.write_table(pa.table({"content": texts[i * 50:(i + 1) * 50]}), os.path.join(shards, f"part-{i}.parquet"))

        def run(pool: str | None, n: int) -> dict:
            if pool is None:
                os.environ.pop(FOOTER_ACTORS_ENV, None)
            else:
                os.environ[FOOTER_ACTORS_ENV] = pool
            workers, cpu, wall = ray_workers_started(), machine_cpu_seconds(), time.perf_counter()
            summary = score(ScoreConfig(model=model, inputs=[shards], output=os.path.join(tmp, f"out-{n}"),
                                        text_column="content"))
            assert summary["rows_scored"] == 50 * args.files, summary
            # Ray kills the pool when the listing is done; let the killed processes go before counting.
            time.sleep(2)
            return {"wall_s": time.perf_counter() - wall - 2, "cpu_s": machine_cpu_seconds() - cpu,
                    "workers": ray_workers_started() - workers}

        run(None, 0)  # warm-up
        results = {"sized to the files": [], "Ray's default (32)": []}
        n = 1
        for _ in range(args.rounds):
            for name, pool in (("sized to the files", None), ("Ray's default (32)", "32")):
                results[name].append(run(pool, n))
                n += 1
                r = results[name][-1]
                print(f"{name:<20} wall {r['wall_s']:6.2f} s  machine CPU {r['cpu_s']:6.2f} s  "
                      f"Ray workers started {r['workers']:3d}", flush=True)
    os.environ.pop(FOOTER_ACTORS_ENV, None)
    ray.shutdown()
    medians = {name: {key: statistics.median(r[key] for r in runs) for key in ("wall_s", "cpu_s", "workers")}
               for name, runs in results.items()}
    sized, default = medians["sized to the files"], medians["Ray's default (32)"]
    print(f"{args.files} Parquet files: medians sized {sized['wall_s']:.2f} s wall, {sized['cpu_s']:.2f} CPU-s, "
          f"{sized['workers']:.0f} workers; Ray's default {default['wall_s']:.2f} s, {default['cpu_s']:.2f} CPU-s, "
          f"{default['workers']:.0f} workers: {default['wall_s'] / sized['wall_s']:.2f}x wall, "
          f"{default['cpu_s'] / sized['cpu_s']:.2f}x CPU")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
