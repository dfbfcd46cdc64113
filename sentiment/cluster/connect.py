"""Connecting this process to Ray: the one way every command and job does it."""

from __future__ import annotations

import json
import os
import socket

from sentiment.errors import SentimentError


# A cluster a command starts for itself lives only as long as that command. Ray keeps at most
# num_cpus idle worker processes and kills the others after 1 s; a training or scoring run holds
# several actors, so its next task mostly found its worker killed and started a new one (about
# 3 CPU-s of imports each). Kept 10 s instead, they bridge the gaps within and between runs
# (BENCHMARKS.md, CPU training: 0.87x the CPU of two trainings and a scoring run), and die in
# quiet spells: an idle worker still costs about 1% of a core (15 idle workers: 3.9 CPU-s in
# 30 s): kept 10 minutes, 30 of them idled through the test suite, which ran 16% slower. Only for a
# cluster we start: a cluster someone else runs keeps its own settings (Ray refuses
# _system_config when connecting). Pass a copy: ray.init adds its own keys to the dict it gets.
OWN_CLUSTER_CONFIG = {"num_workers_soft_limit": 16, "idle_worker_killing_time_threshold_ms": 10_000}
# Ray Train (2.60) starts a preemption watcher beside every run's controller: an actor that polls
# Ray for nodes being drained (cloud spot notices, the autoscaler) and tells the run which ranks
# will go. A cluster a command starts for itself is this one machine, which nothing drains: the
# actor is one more process importing Ray (a resumed run's test: 148 s with it, 133 s without),
# and at every start Ray logged an E-line about its constructor arguments (ray-project/ray#57733)
# into the demo's output. Off there unless the user set it; on a cluster someone else started,
# Ray's default stands. Ray Train reads it from the driver's environment and passes it on.
OWN_CLUSTER_ENV = {"RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0"}


def ensure_connected() -> None:
    """Connect to Ray unless already connected, as Ray Data or Ray Train would on first use.

    Under `ray job submit`, RAY_ADDRESS names the cluster the job was submitted to; on a node
    where `ray start` ran, it joins the cluster `ray start` recorded; anywhere else a local one
    starts, which keeps its idle workers (OWN_CLUSTER_CONFIG). It never joins the private cluster
    of another command running on this machine: that one stops when its command ends, and holds
    its CPUs until then (a score joined a running training's cluster and waited, silently, for CPUs
    the training never freed).

    Ray Data's INFO lines stay out of this process's console and out of its workers'
    (sentiment/cluster/ray_console.py): a cluster we start inherits the settings from this
    process's environment, and a job on a cluster someone else started sends them to its workers.

    Raises:
        SentimentError: if RAY_ADDRESS names a cluster that cannot be reached (one line, not
            Ray's traceback).
    """
    import ray

    from sentiment.cluster.ray_console import quiet_ray_data_console, ray_console_env

    quiet_ray_data_console()
    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS")
    try:
        if address and address != "local":
            ray.init(runtime_env=_console_runtime_env())
            return
        if not address:
            if _ray_start_address():
                try:
                    # Without an address Ray joins the recorded cluster, and sends it the node's
                    # token (given an address, it does not).
                    ray.init(runtime_env=_console_runtime_env())
                    return
                except ConnectionError:
                    pass  # a record left behind by a cluster that has stopped since
        # Our own (RAY_ADDRESS=local, or no `ray start` cluster). "local": without an address Ray
        # would read `ray start`'s record again.
        # Our workers log as quietly as this driver (sentiment/cluster/ray_console.py): the cluster
        # ray.init starts inherits this process's environment. (A runtime_env would do it too, but
        # workers Ray starts ahead of time, without it, could not be used.) On a cluster someone
        # else started, this job's runtime_env carries them (_console_runtime_env).
        os.environ.update(ray_console_env())
        for name, value in OWN_CLUSTER_ENV.items():
            os.environ.setdefault(name, value)
        ray.init(address="local", _system_config=dict(OWN_CLUSTER_CONFIG))
    except ConnectionError as error:
        where = address or "the address recorded by `ray start`"
        hint = ""
        if address and not os.environ.get("RAY_AUTH_MODE"):
            # Ray sends its token to a cluster found by `ray start`'s record, never to one named by
            # address; that join then fails after ~20 s of "InvalidAuthToken" warnings.
            hint = ("; clusters Ray 2.60 starts require a token by default: to join one by address, set "
                    "RAY_AUTH_MODE=token, with the cluster's token in ~/.ray/auth_token or RAY_AUTH_TOKEN")
        raise SentimentError(f"cannot connect to the Ray cluster at {where}: {error}{hint}") from None


def _console_runtime_env() -> dict | None:
    """The runtime_env that gives this job's workers, on a cluster someone else started, the quiet
    console of ray_console_env(). Their processes descend from that cluster's `ray start`, not from
    this one, so they inherit nothing from this environment: without it, every training run
    printed Ray Data's start, plan and progress-bar lines from its split coordinator and workers,
    and Ray Train's deprecation warning, into `ray job submit`'s output.

    A variable the job's own runtime env sets (`ray job submit --runtime-env-json`) is left out:
    Ray refuses to merge a variable set twice, and the user's setting wins, as it does in
    ray_console_env().
    """
    from sentiment.cluster.ray_console import ray_console_env

    env = ray_console_env()
    # What Ray Jobs gives a job's driver: its JobConfig as JSON (ray/dashboard/modules/job/job_supervisor.py).
    job_config = os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR")
    if job_config:
        try:
            theirs = (json.loads(job_config).get("runtime_env") or {}).get("env_vars") or {}
        except (ValueError, AttributeError):
            theirs = {}  # not ours to judge: ray.init reads it next, and says what is wrong
        env = {name: value for name, value in env.items() if name not in theirs}
    return {"env_vars": env} if env else None


def joins_a_running_cluster() -> bool:
    """Whether ensure_connected() would join a cluster that is already running (a job's, or the one
    `ray start` recorded on this node) rather than start the command's own: then connecting is
    cheap, and the cluster may span nodes."""
    import ray

    address = os.environ.get("RAY_ADDRESS")
    if ray.is_initialized() or (address and address != "local"):
        return True
    return not address and _ray_start_address() is not None


def _ray_start_address() -> str | None:
    """The address of the cluster `ray start` last joined or started on this node, as Ray records
    it (the record `ray.init()` without an address reads), if something listens there; else None.

    Not `address="auto"`: that also joins any Ray process it finds running here, another
    command's private cluster included. And not a record whose cluster has stopped without `ray
    stop`: `ray.init()` retried one for over 10 minutes, saying only "Failed to connect to GCS".
    """
    try:
        from ray._private.services import find_bootstrap_address
        address = find_bootstrap_address(None)
    except (ImportError, OSError):  # private Ray API: a Ray upgrade must not stop every command
        return None
    if not address:
        return None
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return address
    except (OSError, ValueError):
        return None


def describe_cluster() -> str:
    """One line for a job log: the cluster's address, live nodes, CPUs and GPUs."""
    import ray

    nodes = [node for node in ray.nodes() if node["Alive"]]
    resources = ray.cluster_resources()
    return (f"Ray cluster {ray.get_runtime_context().gcs_address}: {len(nodes)} node(s), "
            f"{resources.get('CPU', 0):g} CPU, {resources.get('GPU', 0):g} GPU")
