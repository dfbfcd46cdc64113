"""The Parquet sink of `sentiment score`: writes each block as a file of the attempt's staging folder
and returns its counts, which are all that reaches the driver."""

from __future__ import annotations

import pyarrow.compute as pc
import pyarrow.parquet as pq
from ray.data import BlockBasedFileDatasink, SaveMode

from sentiment.score.columns import ACTOR_PROCESS_COLUMN, ERROR_COLUMN, INTERNAL_COLUMNS, LABEL_COLUMN, PRECISION_COLUMN


class ScoredParquetSink(BlockBasedFileDatasink):
    """Parquet writer that also returns, per file, its name, rows, errors and label counts.

    Those small dicts are all that reaches the driver; they make the summary and the manifest.
    """

    def __init__(self, path: str, *, filesystem, rows_per_file: int):
        # path is this attempt's own staging folder (commit.begin_attempt), new and empty;
        # OVERWRITE only says so to Ray, which otherwise refuses a folder that exists.
        super().__init__(path, filesystem=filesystem, file_format="parquet", mode=SaveMode.OVERWRITE,
                         min_rows_per_file=rows_per_file)
        self.written: list[dict] = []
        self.precisions: list[str] = []
        self.actor_processes: list[str] = []

    def open_output_stream(self, path: str):
        self._file = path.rsplit("/", 1)[-1]  # the only place the datasink reveals the name
        return super().open_output_stream(path)

    def write_block_to_file(self, block, file) -> None:
        table = block.to_arrow()
        precisions, processes = (pc.unique(table[c]).to_pylist() if c in table.column_names else []
                                 for c in (PRECISION_COLUMN, ACTOR_PROCESS_COLUMN))
        table = table.drop_columns([c for c in INTERNAL_COLUMNS if c in table.column_names])
        pq.write_table(table, file)
        counts = pc.value_counts(table[LABEL_COLUMN]).to_pylist()
        self._stats = {"file": self._file, "rows": table.num_rows, "precision": precisions, "actor_processes": processes,
                       "errored": table.num_rows - pc.count(table[ERROR_COLUMN], mode="only_null").as_py(),
                       "labels": {c["values"]: c["counts"] for c in counts if c["values"] is not None},
                       "errors": {c["values"]: c["counts"] for c in pc.value_counts(table[ERROR_COLUMN]).to_pylist()
                                  if c["values"] is not None}}

    def write(self, blocks, ctx):
        self._stats = None
        super().write(blocks, ctx)
        return self._stats

    def on_write_complete(self, write_result) -> None:
        super().on_write_complete(write_result)
        self.written = [w for w in write_result.write_returns if w]
        self.precisions = sorted({p for w in self.written for p in w.pop("precision")})
        self.actor_processes = sorted({p for w in self.written for p in w.pop("actor_processes")})
