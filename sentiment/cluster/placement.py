"""Local paths on a cluster of several nodes: refuse them unless the user says every node sees them.

A plain local path means a different folder on every node. Ray Data writes the Parquet files of
a local --output on whichever node runs each write task, while `_SUCCESS` lands on the driver's
disk; a local --storage-path leaves each DDP worker's checkpoint on its own node; a local input
or model is missing on every node but the driver's. None of that fails loudly, so we fail first.
"""

from __future__ import annotations

import os

from sentiment.errors import InputError
from sentiment.cluster.connect import ensure_connected, joins_a_running_cluster
from sentiment.io.storage import is_s3

SHARED_FS_FLAG = "--shared-fs"


def local_backbone_folder(name: str) -> bool:
    """True when a training backbone names a local folder rather than the packaged MiniLM or a hub
    name (which every node resolves by itself)."""
    return os.path.isdir(os.path.expanduser(name)) or name.startswith(("/", "./", "../", "~"))


def cluster_can_span_nodes() -> str | None:
    """Why the Ray cluster the command runs on has, or can get, more than one node; None for a
    single node.

    Joins a running cluster (as the job would next) when not yet connected. A command that would
    start a cluster of its own gets one local node with no autoscaler, so None is known without
    starting it: the checks that need no cluster still come before its 5-7 s start.
    """
    import json

    import ray
    from ray._private.ray_constants import DEBUG_AUTOSCALING_STATUS
    from ray.data._internal.cluster_autoscaler.util import is_autoscaling_enabled
    from ray.experimental.internal_kv import _internal_kv_get

    if not joins_a_running_cluster():
        return None
    ensure_connected()
    alive = [node for node in ray.nodes() if node["Alive"]]
    if len(alive) > 1:
        return f"the Ray cluster has {len(alive)} nodes"
    # KubeRay and autoscaler v2 publish their node groups, which Ray Data's own check reads; the
    # v1 autoscaler of `ray up cluster.yaml` only posts its status.
    v1_status = _internal_kv_get(DEBUG_AUTOSCALING_STATUS)
    if is_autoscaling_enabled() or (v1_status and v1_autoscaler_has_node_types(json.loads(v1_status))):
        return "the Ray cluster has an autoscaler that can add nodes"
    return None


def v1_autoscaler_has_node_types(status: dict) -> bool:
    """True when a v1 autoscaler status comes from a cluster config with node types (`ray up`).

    Every head also runs a read-only monitor that posts the same status, but it names each node's
    type after the node itself ("node_<id>"), as there is no config to take type names from.
    """
    mapping = (status.get("autoscaler_report") or {}).get("node_type_mapping") or {}
    return any(node_type != f"node_{node_id}" for node_id, node_type in mapping.items())


def require_shared_paths(paths: dict[str, list[str]], *, shared_fs: bool) -> None:
    """Refuse local paths when the job can run on more than one node, unless declared shared.

    Args:
        paths: flag name -> the paths given for it, e.g. {"--output": ["/data/scored"]}.
        shared_fs: the user's declaration that every node mounts these local paths (--shared-fs).

    Raises:
        InputError: a local path is given, the cluster spans (or can span) nodes, and shared_fs is
            False. One line naming the flags, their paths and what to use instead.
    """
    local = [f"{flag} {path}" for flag, values in paths.items() for path in values if not is_s3(path)]
    if not local or shared_fs:
        return
    reason = cluster_can_span_nodes()
    if reason is None:
        return
    raise InputError(f"{', '.join(local)}: local path(s), but {reason}, and each node would read and write "
                     f"its own disk: use s3:// or a filesystem every node mounts, and say so with {SHARED_FS_FLAG}")
