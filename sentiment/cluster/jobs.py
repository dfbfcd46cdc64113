"""Run one `sentiment` command as a Ray job: connect to the cluster it was submitted to, or start
a local one when run by hand, then hand over to the same runner as the CLI.

The jobs in jobs/ are the entrypoints; this is the little they share, so each stays a parser.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback

from sentiment.cli import run_command
from sentiment.errors import SentimentError
from sentiment.cluster.connect import describe_cluster, ensure_connected

log = logging.getLogger(__name__)


def add_job_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags every job takes on top of its command's own."""
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")


def run_job(name: str, args: argparse.Namespace) -> int:
    """Connect to the cluster and run the command `name` with parsed `args`.

    Args:
        name: a command of sentiment.cli.COMMANDS ("train", "score", ...).
        args: the namespace parsed with that command's add_*_arguments.

    Returns:
        The process exit status: 0 on success, 2 for a problem the user can fix (printed as one
        line), 130 when interrupted. Other failures raise, so the job ends non-zero with a traceback.
    """
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Flags hold paths and numbers only; credentials never travel as flags.
    log.info("jobs/%s.py %s", name, " ".join(f"{k}={v}" for k, v in sorted(vars(args).items())))
    # Shows that the code --working-dir shipped is the code that runs, not an older install.
    log.info("sentiment from %s", os.path.dirname(os.path.abspath(__file__)))
    try:
        ensure_connected()
        log.info(describe_cluster())
    except SentimentError as error:
        if args.verbose:
            traceback.print_exc()  # and still the one line and exit 2, as sentiment.cli does
        print(f"jobs/{name}.py: error: {error}", file=sys.stderr)
        return 2
    status = run_command(name, args)
    log.info("jobs/%s.py finished with exit status %d", name, status)
    return status
