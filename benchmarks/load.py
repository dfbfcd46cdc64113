"""Load test: score the real corpus replicated to --rows rows, S3 -> S3, and account for every row.

    python -m benchmarks.load                       # 1,000,000 rows (the issue's target)
    python -m benchmarks.load --rows 200000         # what a loaded 2-core machine finishes

Starts its own moto S3 server on 127.0.0.1 (the AWS_* environment is set before Ray starts, so
every Ray worker inherits it), writes the unlabeled corpus, replicated, as alternating CSV and
Parquet shards with a unique int64 `row_id`, uploads a tiny 3-class model, runs
`sentiment score` in a subprocess while sampling the memory of its whole process tree, then
checks the output: _SUCCESS rows and files, _summary.json, and every row id exactly once.
The check streams the `row_id` column batch by batch into a bitmap, so nothing close to the
whole output is held on this process. Not run in CI: it takes minutes to hours.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.lib.process_memory import run_sampled
from benchmarks.lib.review_sample import load_corpus
from tests.local_s3 import MotoServer  # run from the repository root: python -m benchmarks.load

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "unlabeled"
TEXT = "Review Text"
BUCKET = "load-test"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="rows to score (default: %(default)s)")
    p.add_argument("--rows-per-shard", type=int, default=50_000, help="rows per input shard (default: %(default)s)")
    p.add_argument("--data", default=str(DEFAULT_DATA), help="folder of unlabeled review CSVs (default: %(default)s)")
    p.add_argument("--score-args", default="", help="extra flags for `sentiment score`, e.g. '--concurrency 2'")
    p.add_argument("--json", default=None, help="also write the results here")
    return p


def write_input_shards(texts: list, rows: int, rows_per_shard: int, uri: str) -> int:
    """The corpus replicated to `rows` rows with row ids, as CSV/Parquet shards under `uri`."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from sentiment.io.storage import arrow_filesystem

    fs, base = arrow_filesystem(uri)
    corpus = pa.array(texts, pa.string())
    shards = 0
    for index, start in enumerate(range(0, rows, rows_per_shard)):
        ids = np.arange(start, min(start + rows_per_shard, rows), dtype=np.int64)
        table = pa.table({"row_id": ids, TEXT: corpus.take(pa.array(ids % len(texts)))})
        if index % 2:
            pq.write_table(table, f"{base}/shard-{index:05d}.parquet", filesystem=fs)
        else:
            with fs.open_output_stream(f"{base}/shard-{index:05d}.csv") as out:
                pacsv.write_csv(table, out)
        shards += 1
    return shards


def account_rows(output_uri: str, rows: int) -> dict:
    """Stream the output's row ids into a bitmap: how many rows, missing, duplicated, stray."""
    import numpy as np
    import pyarrow.dataset as ds

    from sentiment.io.storage import arrow_filesystem, read_bytes

    fs, base = arrow_filesystem(output_uri)
    seen = np.zeros(rows, dtype=np.uint8)
    total = stray = 0
    dataset = ds.dataset(base, format="parquet", filesystem=fs)  # skips _SUCCESS/_summary.json
    for batch in dataset.to_batches(columns=["row_id"], batch_size=65_536):
        ids = batch.column(0).to_numpy(zero_copy_only=False)
        total += len(ids)
        inside = (ids >= 0) & (ids < rows)
        stray += int((~inside).sum())
        np.add.at(seen, ids[inside], 1)
    marker = json.loads(read_bytes(output_uri + "/_SUCCESS"))
    summary = json.loads(read_bytes(output_uri + "/_summary.json"))
    return {"rows_in_output": total, "missing": int((seen == 0).sum()), "duplicated": int((seen > 1).sum()),
            "stray_ids": stray, "marker_rows": marker["rows"], "marker_files": len(marker["files"]),
            "output_files": len(dataset.files), "summary_rows_read": summary["rows_read"],
            "summary_rows_errored": summary["rows_errored"],
            "exact": total == rows and not (seen != 1).any() and stray == 0
            and marker["rows"] == rows == summary["rows_read"] and len(marker["files"]) == len(dataset.files)}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with MotoServer() as moto:
        os.environ.update(moto.aws_environment("load-access", "load-secret"))
        import boto3

        from benchmarks.lib.scoring_benchmark import save_benchmark_model
        from sentiment.io.storage import upload_dir

        boto3.client("s3", endpoint_url=moto.endpoint).create_bucket(Bucket=BUCKET)
        with tempfile.TemporaryDirectory(prefix="sentiment-load-") as tmp:
            upload_dir(save_benchmark_model(os.path.join(tmp, "model"), "tiny"), f"s3://{BUCKET}/model")
        t0 = time.perf_counter()
        shards = write_input_shards(load_corpus(args.data, keep_blank=True), args.rows, args.rows_per_shard, f"s3://{BUCKET}/in")
        prep_s = time.perf_counter() - t0
        output = f"s3://{BUCKET}/scored"
        command = [sys.executable, "-m", "sentiment", "score", "--model", f"s3://{BUCKET}/model",
                   "--input", f"s3://{BUCKET}/in/", "--output", output, "--text-column", TEXT,
                   *args.score_args.split()]
        for _ in range(3):
            run = run_sampled(command, poll_s=0.5)
            # Ray gives its raylet a fixed 30 s to come up; a machine loaded by others can miss it.
            if run.returncode == 0 or "timed out during startup" not in run.stderr:
                break
            print("Ray did not start in time; running the command again", file=sys.stderr)
        if run.returncode != 0:
            print(run.stderr[-3000:], file=sys.stderr)
            print(f"sentiment score exited {run.returncode} after {run.seconds:.0f} s", file=sys.stderr)
            return 1
        accounting = account_rows(output, args.rows)
        result = {"rows": args.rows, "shards": shards, "shard_prep_s": round(prep_s, 1),
                  "wall_s": round(run.seconds, 1), "rows_per_s": round(args.rows / run.seconds, 1),
                  "peak_rss_gib": round(run.peak_rss_bytes / 2**30, 2),
                  "peak_pss_gib": round(run.peak_pss_bytes / 2**30, 2),
                  "accounting": accounting, "command": " ".join(command)}
        print(json.dumps(result, indent=2))
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2))
        return 0 if accounting["exact"] else 1


if __name__ == "__main__":
    sys.exit(main())
