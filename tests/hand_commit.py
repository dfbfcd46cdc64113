"""Commits without Ray or a model, for the commit kill tests, and the previous complete night
that tests of a failed run check is kept (commit_night, called in the test's own process).

Each stages files by hand and commits them through the library's own commit code, exactly as the
command does once its real work has filled the staging folder:
- `night`: a scoring night through sentiment.score.commit (the same lock, clean-up of interrupted
  attempts, moves, `_SUCCESS` and deletes as `sentiment score`);
- `model`: a model folder through sentiment.train.output (as `sentiment train` after training).
A test SIGKILLs the process at a commit pause point; that costs about a second, where a real
scoring or training driver costs 20 s to minutes on 2 cores (torch, Ray and its actors starting).
One end-to-end kill of the real scoring driver (score/test_commit.py, on S3) proves the pipeline
commits through this same code; every training test ends in commit_model_folder.

Run as `python -m tests.hand_commit night OUTPUT NIGHT ROWS FILES` (rows NIGHT*1000 ...
NIGHT*1000+ROWS-1 in a `row_id` column, split over FILES files) or
`python -m tests.hand_commit model OUTPUT TAG` (config.json, model.safetensors and tokenizer.json
holding TAG, and metrics.json {"tag": TAG}).
"""

from __future__ import annotations

import sys


def commit_night(output: str, night: int, rows: int, files: int, *, labels: dict[str, int] | None = None,
                 model: str = "hand-staged", finished_at: str | None = None, actor_processes: list[str] = ()) -> None:
    """labels (label -> rows, in file order), model, finished_at and actor_processes (as the
    scoring actors stamp their rows) fill the night's summary as `sentiment score`'s would be
    (`sentiment nights` reads them); by default no labels, now, no actors."""
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
        row_labels = [label for label, count in (labels or {}).items() for _ in range(count)]
        for i in range(files):
            name = f"{i:05d}.parquet"
            chunk = ids[i * size:(i + 1) * size]
            pq.write_table(pa.table({"row_id": pa.array(chunk, pa.int64())}), f"{staging}/{name}",
                           filesystem=filesystem)
            counts = {}
            for label in row_labels[i * size:(i + 1) * size]:
                counts[label] = counts.get(label, 0) + 1
            written.append({"file": name, "rows": len(chunk), "errored": 0, "labels": counts, "errors": {}})
        source = f"hand-staged night {night}"
        summary = build_summary(written, wall_s=0.0, model=model, output=output, inputs=[source],
                                input_rows={source: rows}, actor_processes=list(actor_processes))
        if finished_at:
            summary["finished_at"] = finished_at
        commit.commit(attempt, summary, written, {source: rows})
    finally:
        attempt.lock.release()


MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json")


def commit_model(output: str, tag: str) -> None:
    from sentiment.io.storage import write_bytes
    from sentiment.train.output import check_output_is_ours, commit_model_folder, staging_folder

    check_output_is_ours(output)
    staged = staging_folder(output)
    for name in MODEL_FILES:
        write_bytes(f"{staged}/{name}", tag.encode())
    commit_model_folder(staged, output, {"tag": tag})


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")  # the clean-up lines, on stderr
    if sys.argv[1] == "night":
        output_arg, night_arg, rows_arg, files_arg = sys.argv[2:]
        commit_night(output_arg, int(night_arg), int(rows_arg), int(files_arg))
    else:
        commit_model(*sys.argv[2:])
