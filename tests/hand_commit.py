"""A scoring attempt without Ray or a model, for the commit kill tests.

It stages one night's Parquet files by hand and commits them through sentiment.score.commit,
exactly as `sentiment score` does once its pipeline has written the staging folder: the same
lock, the same clean-up of interrupted attempts, the same moves, `_SUCCESS` and deletes. A test
SIGKILLs it at a commit pause point; that costs about a second, where a real scoring driver costs
20-40 s on 2 cores (torch, Ray Data and the model actors starting). One end-to-end kill of the real
driver (test_score_commit.py, on S3) proves the pipeline commits through this same code.

Run as `python -m tests.hand_commit OUTPUT NIGHT ROWS FILES`: rows NIGHT*1000 ... NIGHT*1000+ROWS-1
in a `row_id` column, split over FILES files.
"""

from __future__ import annotations

import sys


def commit_night(output: str, night: int, rows: int, files: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sentiment.io.storage import arrow_filesystem
    from sentiment.score import commit
    from sentiment.score.summary import build_summary

    attempt = commit.begin_attempt(output)
    try:
        filesystem, staging = arrow_filesystem(attempt.staging)
        filesystem.create_dir(staging, recursive=True)
        ids = list(range(night * 1000, night * 1000 + rows))
        size = -(-rows // files)
        written = []
        for i in range(files):
            name = f"{i:05d}.parquet"
            chunk = ids[i * size:(i + 1) * size]
            pq.write_table(pa.table({"row_id": pa.array(chunk, pa.int64())}), f"{staging}/{name}",
                           filesystem=filesystem)
            written.append({"file": name, "rows": len(chunk), "errored": 0, "labels": {}, "errors": {}})
        source = f"hand-staged night {night}"
        summary = build_summary(written, wall_s=0.0, model="hand-staged", output=output, inputs=[source],
                                input_rows={source: rows})
        commit.commit(attempt, summary, written, {source: rows})
    finally:
        attempt.lock.release()


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")  # the clean-up lines, on stderr
    output_arg, night_arg, rows_arg, files_arg = sys.argv[1:]
    commit_night(output_arg, int(night_arg), int(rows_arg), int(files_arg))
