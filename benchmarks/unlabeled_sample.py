"""A seeded sample of distinct unlabeled reviews as one Parquet file: the input a teacher model
scores for `sentiment train --pseudo-labels` (issue 23; the measured run is in BENCHMARKS.md,
Model quality).

    python -m benchmarks.unlabeled_sample --rows 24000 --output /tmp/pl/unlabeled-24k.parquet
    sentiment score --model TEACHER --input /tmp/pl/unlabeled-24k.parquet --output /tmp/pl/scored \\
        --text-column "Review Text"
    sentiment train --data ../shared/data/labeled --output OUT \\
        --pseudo-labels /tmp/pl/scored --pseudo-text-column "Review Text"

Texts are stripped and counted once each (the corpus repeats short ones like "good" thousands of
times), then drawn in a seeded order, so the same --rows and --seed give the same file.
"""

from __future__ import annotations

import argparse
import random

import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.lib.review_sample import load_corpus
from sentiment.errors import InputError

TEXT_COLUMN = "Review Text"  # the unlabeled files' own name for it


def distinct_sample(texts: list[str], rows: int, seed: int = 0) -> list[str]:
    """rows distinct stripped texts, in an order seeded by seed."""
    distinct = sorted({text.strip() for text in texts if text and text.strip()})
    if rows > len(distinct):
        raise InputError(f"asked for {rows} distinct reviews, the corpus has {len(distinct)}")
    random.Random(seed).shuffle(distinct)
    return distinct[:rows]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/unlabeled", help="folder of unlabeled CSV files")
    parser.add_argument("--rows", type=int, default=24_000, help="distinct reviews to draw (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    parser.add_argument("--output", required=True, help="the Parquet file to write, column 'Review Text'")
    args = parser.parse_args(argv)
    texts = distinct_sample(load_corpus(args.data), args.rows, args.seed)
    pq.write_table(pa.table({TEXT_COLUMN: texts}), args.output)
    print(f"{len(texts)} distinct reviews from {args.data} written to {args.output}")


if __name__ == "__main__":
    main()
