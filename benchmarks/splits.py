"""`prepare_splits` with the dedupe and split in the driver against the hash shuffle on the cluster,
alternately, on one local Ray cluster.

    python -m benchmarks.splits --rows 300 --rounds 3
    python -m benchmarks.splits --rounds 2            # all labeled data

The driver path is what `sentiment train` takes for labeled data up to
sentiment.data.labeled.IN_DRIVER_MAX_BYTES; the shuffle path is forced here by setting that
bound to 0. Each round runs both, in turn; the first call of all warms Ray's workers up and is not
counted. Prints wall seconds per run, the medians and their ratio, and checks that both paths
give the same counts and held-out hash.
"""

import argparse
import os
import statistics
import tempfile
import time

DEFAULT_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "labeled")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.splits", description=__doc__.splitlines()[0])
    p.add_argument("--data", default=DEFAULT_DATA, help="folder of labeled review CSVs (default: ../shared/data/labeled)")
    p.add_argument("--rows", type=int, default=None, help="a seeded sample of this many rows (default: all)")
    p.add_argument("--rounds", type=int, default=2, help="rounds of the two paths (default: %(default)s)")
    p.add_argument("--cpus", type=int, default=4, help="logical CPUs of the local Ray cluster (default: %(default)s)")
    args = p.parse_args(argv)

    import ray

    import sentiment.data.labeled as labeled
    from benchmarks.lib.review_sample import load_labeled

    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    with tempfile.TemporaryDirectory(prefix="sentiment-splits-") as tmp:
        sample = load_labeled(args.data)
        if args.rows:
            sample = sample.sample(n=args.rows, random_state=0)
        path = os.path.join(tmp, "labeled.csv")
        sample.to_csv(path, index=False)
        in_driver_bound = labeled.IN_DRIVER_MAX_BYTES

        def run(bound: int):
            labeled.IN_DRIVER_MAX_BYTES = bound
            start = time.perf_counter()
            splits = labeled.prepare_splits([path], "content", "score", seed=42, val_fraction=0.05, test_fraction=0.05)
            return time.perf_counter() - start, splits

        run(in_driver_bound)  # warm-up: Ray's first workers start here
        seconds = {"driver": [], "shuffle": []}
        results = {}
        for _ in range(args.rounds):
            for name, bound in (("driver", in_driver_bound), ("shuffle", 0)):
                wall, splits = run(bound)
                seconds[name].append(wall)
                results[name] = (splits.counts, splits.split_hash)
                print(f"{name:<8} {wall:6.2f} s", flush=True)
    ray.shutdown()
    same = results["driver"] == results["shuffle"]
    driver, shuffle = statistics.median(seconds["driver"]), statistics.median(seconds["shuffle"])
    print(f"{len(sample)} rows read: median {driver:.2f} s in the driver, {shuffle:.2f} s by the shuffle: "
          f"{shuffle / driver:.1f}x; same counts and held-out hash: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
