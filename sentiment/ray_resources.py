"""What the connected Ray cluster has to offer, for sizing actor pools."""

from __future__ import annotations


def largest_node_cpus() -> int:
    """CPUs of the biggest live node of the cluster this process is connected to.

    Not the cluster total: one actor lives on one node, and asking for more CPUs than any node
    has waits forever.
    """
    import ray

    return max(1, int(max(node["Resources"].get("CPU", 0) for node in ray.nodes() if node["Alive"])))
