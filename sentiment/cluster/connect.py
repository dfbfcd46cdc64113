"""Connecting this process to Ray: the one way every command and job does it."""

from __future__ import annotations

import os

from sentiment.errors import SentimentError


def ensure_connected() -> None:
    """Connect to Ray unless already connected, as Ray Data or Ray Train would on first use.

    Under `ray job submit`, RAY_ADDRESS names the cluster the job was submitted to; on a node
    where `ray start` ran, Ray finds that cluster; anywhere else `ray.init()` starts a local one.

    Raises:
        SentimentError: if RAY_ADDRESS names a cluster that cannot be reached (one line, not
            Ray's traceback).
    """
    import ray

    if ray.is_initialized():
        return
    try:
        ray.init()
    except ConnectionError as error:
        where = os.environ.get("RAY_ADDRESS") or "the address recorded by `ray start`"
        raise SentimentError(f"cannot connect to the Ray cluster at {where}: {error}") from None


def describe_cluster() -> str:
    """One line for a job log: the cluster's address, live nodes, CPUs and GPUs."""
    import ray

    nodes = [node for node in ray.nodes() if node["Alive"]]
    resources = ray.cluster_resources()
    return (f"Ray cluster {ray.get_runtime_context().gcs_address}: {len(nodes)} node(s), "
            f"{resources.get('CPU', 0):g} CPU, {resources.get('GPU', 0):g} GPU")
