"""Score a night's review shards on the Ray cluster this job is submitted to.

    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python jobs/score.py --model s3://BUCKET/models/2026-11-26 \
        --input s3://BUCKET/reviews/2026-11-26/ --output s3://BUCKET/scored/2026-11-26/ \
        --gpu --concurrency 1,4

Same flags as `sentiment score`. Run by hand outside a cluster, it starts a local Ray.
S3 credentials come from the nodes (instance role, or their AWS environment), never from flags.
"""

import argparse
import sys

from sentiment.cli import add_score_arguments
from sentiment.cluster.jobs import add_job_arguments, run_job


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jobs/score.py", description=__doc__.splitlines()[0])
    add_score_arguments(parser)
    add_job_arguments(parser)
    return run_job("score", parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
