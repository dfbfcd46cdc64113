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
from sentiment.cluster.connect import ensure_connected

log = logging.getLogger(__name__)


def add_job_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags every job takes on top of its command's own."""
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")


def connect() -> str:
    """Connect this driver to its Ray cluster, starting a local one if there is none.

    Under `ray job submit`, RAY_ADDRESS names the cluster the job was submitted to; on a node
    where `ray start` ran, Ray finds that cluster; anywhere else `ray.init()` starts a local one.

    Returns:
        A one-line description of the cluster, for the job log.

    Raises:
        SentimentError: if RAY_ADDRESS names a cluster that cannot be reached.
    """
    import ray

    ensure_connected()
    nodes = [node for node in ray.nodes() if node["Alive"]]
    resources = ray.cluster_resources()
    return (f"Ray cluster {ray.get_runtime_context().gcs_address}: {len(nodes)} node(s), "
            f"{resources.get('CPU', 0):g} CPU, {resources.get('GPU', 0):g} GPU")


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
        log.info(connect())
    except SentimentError as error:
        if args.verbose:
            traceback.print_exc()  # and still the one line and exit 2, as sentiment.cli does
        print(f"jobs/{name}.py: error: {error}", file=sys.stderr)
        return 2
    status = run_command(name, args)
    log.info("jobs/%s.py finished with exit status %d", name, status)
    return status
