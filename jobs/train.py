"""Fine-tune the sentiment classifier on the Ray cluster this job is submitted to.

    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python jobs/train.py --data s3://BUCKET/reviews/labeled/ \
        --output s3://BUCKET/models/2026-11-26 --storage-path s3://BUCKET/ray-train \
        --num-workers 4 --gpu

Same flags as `sentiment train`. Run by hand outside a cluster, it starts a local Ray.
S3 credentials come from the nodes (instance role, or their AWS environment), never from flags.
"""

import argparse
import sys

from sentiment.cli import add_train_arguments
from sentiment.cluster.jobs import add_job_arguments, run_job


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jobs/train.py", description=__doc__.splitlines()[0])
    add_train_arguments(parser)
    add_job_arguments(parser)
    return run_job("train", parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
