"""Adapt a backbone to reviews (masked-language pre-training) on the Ray cluster this job is submitted to.

    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python jobs/adapt.py --model mpnet --data s3://BUCKET/reviews/unlabeled/ \
        --leave-out s3://BUCKET/reviews/labeled/ --output s3://BUCKET/backbones/mpnet-reviews \
        --storage-path s3://BUCKET/ray-train --num-workers 4 --gpu

Same flags as `sentiment adapt`. Run by hand outside a cluster, it starts a local Ray.
S3 credentials come from the nodes (instance role, or their AWS environment), never from flags.
"""

import argparse
import sys

from sentiment.cli import add_adapt_arguments
from sentiment.cluster.jobs import add_job_arguments, run_job


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jobs/adapt.py", description=__doc__.splitlines()[0])
    add_adapt_arguments(parser)
    add_job_arguments(parser)
    return run_job("adapt", parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
