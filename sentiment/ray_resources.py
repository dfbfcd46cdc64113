"""What the connected Ray cluster has to offer, for sizing actor pools."""

from __future__ import annotations


def largest_node_cpus() -> int:
    """CPUs of the biggest live node.

    Not the cluster total: one actor lives on one node, and asking for more CPUs than any node
    has waits forever.
    """
    import ray

    if not ray.is_initialized():
        ray.init()  # what Ray Data would do on first use; connects to RAY_ADDRESS if set
    return max(1, int(max(node["Resources"].get("CPU", 0) for node in ray.nodes() if node["Alive"])))
