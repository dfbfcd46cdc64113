"""What the connected Ray cluster has to offer: sizing actor pools, and refusing requests it can
never satisfy before Ray waits on them forever."""

from __future__ import annotations

import json
import logging
import time

from sentiment.errors import ResourceError
from sentiment.cluster.placement import v1_autoscaler_has_node_types
from sentiment.cluster.connect import ensure_connected

log = logging.getLogger(__name__)

# Seconds a shortage must last before warn_if_held warns about it (see there).
SETTLE_S = 2.0


def largest_node_cpus() -> int:
    """CPUs of the biggest live node of the cluster this process is connected to.

    Not the cluster total: one actor lives on one node, and asking for more CPUs than any node
    has waits forever.
    """
    import ray

    return max(1, int(max(node["Resources"].get("CPU", 0) for node in ray.nodes() if node["Alive"])))


def require(per_unit: dict[str, float], units: int, asked: str) -> None:
    """Fail within seconds if the cluster can never place `units` bundles of `per_unit`.

    Ray waits forever for a request no node can hold ("pending: 1 GPU", nothing else said). When
    an autoscaler could add nodes that hold it, this logs what it waits for and returns.

    Args:
        per_unit: resources of one worker or actor, e.g. {"CPU": 1, "GPU": 1}.
        units: how many of them must run at once.
        asked: the flags that asked for them, for the message (e.g. "--num-workers 8").

    Raises:
        ResourceError: naming what was asked for and what the cluster has.
    """
    import ray

    ensure_connected()
    wanted = {k: v for k, v in per_unit.items() if v > 0}
    nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
    fit = sum(min(int(node.get(k, 0) // v) for k, v in wanted.items()) for node in nodes) if wanted else units
    if fit >= units:
        warn_if_held(per_unit, units, asked)
        return
    total = ray.cluster_resources()
    need = ", ".join(f"{units * v:g} {k}" for k, v in wanted.items())
    each = " + ".join(f"{v:g} {k}" for k, v in wanted.items())
    have = ", ".join(f"{total.get(k, 0):g} {k}" for k in wanted)
    reachable = _autoscaler_limits()
    if reachable is not None and (not reachable or all(reachable.get(k, 0) >= units * v for k, v in wanted.items())):
        log.warning("%s needs %s (%d x %s); the cluster has %s now: waiting for the autoscaler to add nodes",
                    asked, need, units, each, have)
        return
    raise ResourceError(f"{asked} needs {need} ({units} x {each} on one node each), but the Ray cluster has "
                        f"{have} across {len(nodes)} node(s), room for {fit}, and no autoscaler can add more")


def warn_if_held(per_unit: dict[str, float], units: int, asked: str) -> None:
    """Log one line when other work holds what `units` x `per_unit` needs right now.

    The cluster can hold the request (see require), but Ray then waits for it without a word
    until the other work ends: a score beside a running training once waited 11 minutes in
    silence. Summed over the cluster: a short count is certain, an ample one may still not fit
    on one node.
    """
    import ray

    wanted = {k: units * v for k, v in per_unit.items() if v > 0}
    # Ray's view of free resources lags: tasks that have just returned (score's input checks, up to
    # one per CPU) still count as holding theirs for up to a second or so. Other work holds them
    # for as long as it runs, so a short count that lasts SETTLE_S is the one worth a warning.
    deadline = time.monotonic() + SETTLE_S
    while True:
        free = ray.available_resources()
        if all(free.get(k, 0) >= v for k, v in wanted.items()):
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    total = ray.cluster_resources()
    log.warning("%s needs %s; other work on the Ray cluster holds the rest (%s free of %s): it waits until they "
                "are released", asked, ", ".join(f"{v:g} {k}" for k, v in wanted.items()),
                ", ".join(f"{free.get(k, 0):g}" for k in wanted), ", ".join(f"{total.get(k, 0):g} {k}" for k in wanted))


def _autoscaler_limits() -> dict[str, float] | None:
    """The most of each resource the cluster's autoscaler may reach; {} when an autoscaler runs
    but does not say how far (the v1 autoscaler); None when nothing can add nodes."""
    from ray._private import ray_constants
    from ray._private.state import state  # Ray Data reads the same config to plan autoscaling
    from ray.experimental.internal_kv import _internal_kv_get

    try:
        limits = state.get_max_resources_from_cluster_config()  # autoscaler v2
        if limits is not None:
            return limits
        status = _internal_kv_get(ray_constants.DEBUG_AUTOSCALING_STATUS)
    except Exception as error:  # internal APIs: a change in them may cost the hint, never the run
        log.debug("cannot read the autoscaler's state: %s", error)
        return None
    # Every head runs a read-only v1 monitor, which can launch nothing; see placement.
    return {} if status and v1_autoscaler_has_node_types(json.loads(status)) else None
