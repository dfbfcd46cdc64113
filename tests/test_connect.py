"""How commands connect to Ray: a cluster a command starts for itself keeps its idle workers."""

import json
import os
import subprocess
import sys


def test_a_cluster_started_for_a_command_keeps_its_idle_workers(tmp_path):
    from sentiment.cluster.connect import OWN_CLUSTER_CONFIG

    # RAY_ADDRESS=local: a new cluster, never one a test or user started here. A real start (10 s).
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_ADDRESS="local", RAY_USAGE_STATS_ENABLED="0")
    probe = ("import json, ray\n"
             "from sentiment.cluster.connect import ensure_connected\n"
             "ensure_connected()\n"
             "node = ray._private.worker._global_node\n"
             "print(json.dumps({'head': node.head, 'config': node._ray_params._system_config}))\n")
    result = subprocess.run([sys.executable, "-c", probe], env=env, cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    started = json.loads(result.stdout.strip().splitlines()[-1])
    assert started["head"]  # it started the cluster, so its settings are the ones Ray runs with
    assert OWN_CLUSTER_CONFIG.items() <= started["config"].items()
