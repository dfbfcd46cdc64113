"""How commands connect to Ray: a cluster a command starts for itself keeps its idle workers."""

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest


# Connects as a command does, runs a small Ray Data job in the driver and in a worker, and prints
# where it connected and what Ray Data's console handler and the warning filters are in each.
CONSOLE_PROBE = ("import json, logging, os, ray, ray.data\n"
                 "from sentiment.cluster.connect import ensure_connected\n"
                 "ensure_connected()\n"
                 "def console_levels():\n"
                 "    return sorted({h.level for h in logging.getLogger('ray.data').handlers\n"
                 "                   if type(h).__name__ == 'PlainRayHandler'})\n"
                 "@ray.remote\n"
                 "def in_a_worker():\n"
                 "    ray.data.range(4).materialize()\n"
                 "    return console_levels(), os.environ.get('PYTHONWARNINGS')\n"
                 "ray.data.range(4).materialize()\n"
                 "node = ray._private.worker._global_node\n"
                 "print(json.dumps({'head': node.head, 'gcs': ray.get_runtime_context().gcs_address,\n"
                 "                  'config': node._ray_params._system_config, 'driver': console_levels(),\n"
                 "                  'worker': ray.get(in_a_worker.remote()),\n"
                 "                  'preemption_watcher': os.environ.get('RAY_TRAIN_ENABLE_PREEMPTION_WATCHER')}))\n")


def test_a_command_starts_its_own_cluster_beside_another_commands_and_keeps_its_idle_workers(ray_cluster, tmp_path):
    import ray

    from sentiment.cluster.connect import OWN_CLUSTER_CONFIG
    from tests.local_s3 import free_port

    # This test process's cluster is what another command's looks like: started by ray.init, not
    # `ray start`. Ray's address="auto" joined such a cluster (a score then waited for a training's
    # CPUs). And a `ray start` record whose cluster has stopped (nothing listens at its address) is
    # passed over at once: Ray's own join retried one for over 10 minutes. RAY_TMPDIR points Ray at
    # a temp dir holding only that record (short: Ray's socket paths live under it).
    ray_tmp = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))
    (ray_tmp / "ray").mkdir()
    (ray_tmp / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{free_port()}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_USAGE_STATS_ENABLED="0", RAY_TMPDIR=str(ray_tmp))
    # It also runs a small Ray Data job in the driver and in a worker: neither may print Ray Data's
    # INFO lines to the console (sentiment/cluster/ray_console.py), and both keep its warnings.
    try:
        result = subprocess.run([sys.executable, "-c", CONSOLE_PROBE], env=env, cwd=tmp_path, capture_output=True,
                                text=True, timeout=120)  # a real start (10 s)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert result.returncode == 0, result.stderr[-3000:]
    started = json.loads(result.stdout.strip().splitlines()[-1])
    assert started["gcs"] != ray.get_runtime_context().gcs_address
    assert started["head"]  # it started the cluster, so its settings are the ones Ray runs with
    assert OWN_CLUSTER_CONFIG.items() <= started["config"].items()
    assert started["driver"] == [logging.WARNING] and "Starting execution of Dataset" not in result.stderr
    worker_levels, worker_warning_filters = started["worker"]
    assert worker_levels == [logging.WARNING]  # the worker inherited the configuration
    assert "exclude_resources" in worker_warning_filters
    assert started["preemption_watcher"] == "0"  # nothing drains the one machine of its own cluster


def test_joining_by_address_without_the_token_mode_says_how_to_send_the_token(ray_cluster, tmp_path):
    # The session's cluster, started by ray.init, requires Ray's token; the tests' own drivers
    # join it because ray.init set RAY_AUTH_MODE=token in this process's environment. A user
    # who names a cluster in RAY_ADDRESS has no such variable: Ray then sends no token.
    from tests.helpers import session_cluster_env

    if os.environ.get("RAY_AUTH_MODE") != "token":
        pytest.skip("the session's Ray cluster runs without token authentication (RAY_AUTH_MODE set otherwise)")
    env = {k: v for k, v in session_cluster_env().items() if k != "RAY_AUTH_MODE"}
    probe = "from sentiment.cluster.connect import ensure_connected\nensure_connected()\n"
    result = subprocess.run([sys.executable, "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert f"cannot connect to the Ray cluster at {env['RAY_ADDRESS']}" in last
    assert "set RAY_AUTH_MODE=token, with the cluster's token in ~/.ray/auth_token or RAY_AUTH_TOKEN" in last
    # With the mode set, as the hint says, the same join works. As a job submitted with
    # `--runtime-env-json '{"env_vars": {"PYTHONWARNINGS": ...}}'`: that variable is the user's in
    # the driver and in the job's runtime env. The job's workers, started by the cluster and not by
    # this driver, still get our quiet Ray Data console; the user's warning filter wins over ours.
    env["RAY_AUTH_MODE"] = "token"
    theirs = "error::ResourceWarning"
    env = {k: v for k, v in env.items() if k not in ("RAY_DATA_LOGGING_CONFIG", "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER")}
    env["PYTHONWARNINGS"] = theirs
    env["RAY_JOB_CONFIG_JSON_ENV_VAR"] = json.dumps({"runtime_env": {"env_vars": {"PYTHONWARNINGS": theirs}}})
    # Ray Data sets its console handler up when a process imports it (the first test shows that
    # level is what keeps its lines off the console): the worker imports it and runs no dataset.
    probe = ("import json, logging, os, ray\n"
             "from sentiment.cluster.connect import ensure_connected\n"
             "ensure_connected()\n"
             "@ray.remote\n"
             "def in_a_worker():\n"
             "    import ray.data\n"
             "    return (sorted({h.level for h in logging.getLogger('ray.data').handlers\n"
             "                    if type(h).__name__ == 'PlainRayHandler'}), os.environ.get('PYTHONWARNINGS'))\n"
             "print(json.dumps([*ray.get(in_a_worker.remote()), os.environ.get('RAY_TRAIN_ENABLE_PREEMPTION_WATCHER')]))\n")
    joined = subprocess.run([sys.executable, "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)
    assert joined.returncode == 0, joined.stderr[-2000:]
    # Ray Train's preemption watcher keeps Ray's default on a cluster someone else started.
    assert json.loads(joined.stdout.strip().splitlines()[-1]) == [[logging.WARNING], theirs, None]


@pytest.mark.parametrize("address, recorded, joins", [
    ("127.0.0.1:6379", None, True),  # a submitted job: Ray Jobs sets RAY_ADDRESS
    ("local", "127.0.0.1:6379", False),  # asked for its own cluster, whatever `ray start` recorded
    (None, "127.0.0.1:6379", True),  # a shell on a node where `ray start` runs
    (None, None, False),  # a laptop: the command starts its own
])
def test_joins_a_running_cluster_says_whether_connecting_starts_a_cluster(address, recorded, joins, monkeypatch):
    import ray

    import sentiment.cluster.connect as connect

    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # this process may hold the session's cluster
    monkeypatch.setattr(connect, "_ray_start_address", lambda: recorded)
    if address is None:
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
    else:
        monkeypatch.setenv("RAY_ADDRESS", address)
    assert connect.joins_a_running_cluster() is joins


def test_a_command_that_would_start_its_own_cluster_spans_one_node_without_starting_it(no_cluster):
    # Its own cluster is one local node with no autoscaler: known without the 5-7 s start (a
    # connection here fails the test), so require_shared_paths can come before the cheap checks.
    from sentiment.cluster.placement import cluster_can_span_nodes, require_shared_paths

    assert cluster_can_span_nodes() is None
    require_shared_paths({"--input": ["/data/reviews.csv"]}, shared_fs=False)


def test_a_users_own_ray_data_logging_and_warning_filters_are_kept(monkeypatch):
    from sentiment.cluster.ray_console import RAY_DATA_LOGGING_CONFIG, ray_console_env

    monkeypatch.delenv("RAY_DATA_LOGGING_CONFIG", raising=False)
    monkeypatch.delenv("PYTHONWARNINGS", raising=False)
    ours = ray_console_env()
    assert ours["RAY_DATA_LOGGING_CONFIG"] == RAY_DATA_LOGGING_CONFIG and Path(RAY_DATA_LOGGING_CONFIG).is_file()
    monkeypatch.setenv("RAY_DATA_LOGGING_CONFIG", "/etc/mine.yaml")
    monkeypatch.setenv("PYTHONWARNINGS", "error::ResourceWarning")
    theirs = ray_console_env()
    assert "RAY_DATA_LOGGING_CONFIG" not in theirs
    assert theirs["PYTHONWARNINGS"] == "error::ResourceWarning," + ours["PYTHONWARNINGS"]
    monkeypatch.setenv("PYTHONWARNINGS", theirs["PYTHONWARNINGS"])
    assert ray_console_env() == {}  # a second command started from the first adds nothing twice
