"""The laptop-to-cluster path, for real: `ray start` a head and a second node on this machine,
`ray job submit --working-dir` jobs/train.py and jobs/score.py to it, against the S3 server.

The nodes get the AWS_* variables in their environment, as an instance role gives them on EC2;
the submitting process does not have them, so nothing secret can travel with a job.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import psutil
import pyarrow.parquet as pq
import pytest

from tests.local_s3 import free_port

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray"))
# One CPU per node: the two DDP workers (one CPU each) cannot share a node, so DDP really
# crosses nodes; the splits are materialized before the workers start, so data preparation
# is never starved. Scoring runs its one model actor on one node and Ray Data's read, tokenize
# and write tasks on the other (two half-CPU actors would leave no node a whole CPU for them).
NODE_CPUS = 1
OBJECT_STORE_BYTES = 300 * 1024 * 1024  # the default (30% of RAM per node) is far more than needed
SHARDS = {"todoist.csv": 120, "khan.csv": 120, "copper.csv": 120}  # unlabeled file -> rows taken
TEXT_COLUMN = "Review Text"  # the corpus' name for it; a space also tests entrypoint quoting
# Only a guard against a hung job: the train job took 130-250 s on a 2-core machine under load.
JOB_TIMEOUT_S = int(os.environ.get("SENTIMENT_TEST_JOB_TIMEOUT_S", 900))


@dataclass
class Cluster:
    dashboard: str  # the job server, http://127.0.0.1:PORT
    submit_env: dict[str, str]
    token: str  # Ray's cluster access token: a credential too
    secret_key: str  # the S3 secret the nodes hold (conftest's distinctive SECRET_KEY)
    gcs_address: str  # 127.0.0.1:PORT, what `ray start --address` joins
    node_env: dict[str, str]  # a node's environment, as a shell on it has
    ray_tmp: Path  # RAY_TMPDIR for a command on the head node: its `ray start` record is below

    def state(self, resource: str, **filters: str) -> list[dict]:
        """Rows of Ray's state API (`ray list RESOURCE --detail`) over plain HTTP."""
        return _state(self.dashboard, self.token, resource, **filters)

    def job_info(self, job_id: str) -> dict:
        """The job server's record of a job: status, entrypoint, runtime_env, metadata."""
        return _get_json(f"{self.dashboard}/api/jobs/{job_id}", self.token)

    def ray_job(self, command: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """`ray job COMMAND --address DASHBOARD ARGS`, as a user's laptop or scheduler runs it."""
        return subprocess.run([RAY, "job", command, "--address", self.dashboard, *args], env=self.submit_env,
                              capture_output=True, text=True, timeout=timeout)


def _start_node(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    # --block keeps `ray start` in the foreground as the leader of its own process group, so
    # teardown can stop exactly this node's processes; `ray stop` would kill every Ray on the
    # machine, other people's included.
    with open(log_path, "wb") as log:
        return subprocess.Popen([RAY, "start", *args, "--block"], env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _descendants(pid: int) -> list[int]:
    """pid's live descendants: job drivers run in sessions of their own, so they are outside
    the node's process group but still below its `ray start`."""
    try:
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _stop_nodes(procs: list[subprocess.Popen]) -> None:
    """Stop every process these `ray start`s spawned, by pid, and nothing else."""
    pids = [pid for proc in procs if proc.poll() is None for pid in (proc.pid, *_descendants(proc.pid))]
    _signal(pids, signal.SIGTERM)
    # Some of a node's processes were still alive after 15 s of SIGTERM in every run (the teardown
    # always took the whole 15 s); they get SIGKILL below and the cluster's files are removed next,
    # so a short grace is enough.
    deadline = time.time() + 5
    while time.time() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
        for proc in procs:
            proc.poll()  # reap our direct children so they do not linger as zombies
        time.sleep(0.5)
    # Whatever ignored SIGTERM (a pid reused since is vanishingly unlikely within 5 s).
    _signal([pid for pid in pids if Path(f"/proc/{pid}").exists()], signal.SIGKILL)
    for proc in procs:
        proc.wait(timeout=10)


def _get_json(url: str, token: str):
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def _state(dashboard: str, token: str, resource: str, **filters: str) -> list[dict]:
    query = [("detail", "1"), ("limit", "1000")]
    for key, value in filters.items():
        query += [("filter_keys", key), ("filter_predicates", "="), ("filter_values", value)]
    return _get_json(f"{dashboard}/api/v0/{resource}?{urllib.parse.urlencode(query)}", token)["data"]["result"]["result"]


def _wait_for_nodes(dashboard: str, token: str, count: int, procs: list[subprocess.Popen], logs: list[Path]) -> None:
    deadline, problem = time.time() + 180, None
    while time.time() < deadline:
        for proc, log in zip(procs, logs):
            if proc.poll() is not None:
                raise RuntimeError(f"`ray start` exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if len(_state(dashboard, token, "nodes", state="ALIVE")) == count:
                return
        except (OSError, ValueError, KeyError) as error:  # the dashboard is still starting
            problem = error
        time.sleep(2)
    raise RuntimeError(f"{count} Ray node(s) not up within 180 s; last problem: {problem!r}\n"
                       + "\n".join(log.read_text()[-2000:] for log in logs))


@pytest.fixture(scope="module")
def two_node_cluster(s3_server):
    """A head (dashboard and job server on 127.0.0.1) and one worker node, each with NODE_CPUS.

    Stopped, and its temp dirs removed, whatever the test's outcome.
    """
    # Short root: Ray's Unix socket paths live under it and must stay under 108 bytes.
    root = Path(tempfile.mkdtemp(prefix="rmn", dir="/tmp"))
    # The environment an EC2 instance role gives a node: AWS settings present, no Ray leftovers.
    node_env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_") and k != "PYTHONPATH"}
    node_env.update(RAY_USAGE_STATS_ENABLED="0", TOKENIZERS_PARALLELISM="false",
                    # `python` in a job's entrypoint is the environment's, as on a cluster image.
                    PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    secret_key = node_env["AWS_SECRET_ACCESS_KEY"]  # set by the s3_server fixture
    # Ray 2.60 clusters require a token; this one's is the test's own, in a file only the nodes
    # and the submitting "laptop" are pointed at.
    token = secrets.token_hex(32)
    (root / "auth_token").write_text(token)
    (root / "auth_token").chmod(0o600)
    node_env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(root / "auth_token"))
    submit_env = {k: v for k, v in node_env.items() if not k.startswith("AWS_")}
    gcs_port, dashboard_port = free_port(), free_port()
    common = ["--node-ip-address=127.0.0.1", f"--num-cpus={NODE_CPUS}", "--num-gpus=0",
              f"--object-store-memory={OBJECT_STORE_BYTES}", "--disable-usage-stats"]
    head_args = ["--head", f"--port={gcs_port}", "--include-dashboard=true",
                 "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}",
                 f"--ray-client-server-port={free_port()}"]
    worker_args = [f"--address=127.0.0.1:{gcs_port}"]
    procs, logs = [], []
    try:
        for name, args in (("head", head_args), ("worker", worker_args)):
            # Fixed default ports (dashboard agent 52365, ...) would clash between the two nodes
            # and with other clusters on this machine, so each node gets free ones.
            ports = [f"--dashboard-agent-listen-port={free_port()}", f"--metrics-export-port={free_port()}"]
            logs.append(root / f"{name}.log")
            # The head's temp dir is RAY_TMPDIR=root's default, ROOT/ray, so that commands given
            # that RAY_TMPDIR find the head's `ray start` record as on a real head node.
            temp_dir = root / ("ray" if name == "head" else name)
            procs.append(_start_node([*args, *common, *ports, f"--temp-dir={temp_dir}"], node_env, logs[-1]))
            if name == "head":
                _wait_for_nodes(f"http://127.0.0.1:{dashboard_port}", token, 1, procs, logs)
        dashboard = f"http://127.0.0.1:{dashboard_port}"
        _wait_for_nodes(dashboard, token, 2, procs, logs)
        yield Cluster(dashboard, submit_env, token, secret_key, f"127.0.0.1:{gcs_port}", node_env, root)
    finally:
        _stop_nodes(procs)
        shutil.rmtree(root, ignore_errors=True)


def _submit(cluster: Cluster, job_id: str, script: str, *args: str) -> subprocess.CompletedProcess:
    """`ray job submit --working-dir REPO -- python jobs/SCRIPT ARGS`, waiting for the end.

    A job still running after JOB_TIMEOUT_S is stopped, and the test fails with its log.
    """
    try:
        return cluster.ray_job("submit", "--submission-id", job_id, "--working-dir", str(REPO), "--",
                               "python", f"jobs/{script}", *args, timeout=JOB_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        logs = cluster.ray_job("logs", job_id).stdout
        cluster.ray_job("stop", job_id)
        pytest.fail(f"job {job_id} still running after {JOB_TIMEOUT_S} s; its log ends:\n{logs[-6000:]}")


def _job_record(cluster: Cluster, job_id: str) -> tuple[str, str]:
    """(`ray job status` output + the job server's JSON record, `ray job logs` output)."""
    status = cluster.ray_job("status", job_id)
    logs = cluster.ray_job("logs", job_id)
    assert logs.returncode == 0, logs.stderr
    return status.stdout + status.stderr + json.dumps(cluster.job_info(job_id)), logs.stdout


def _upload_shards(shared_data: Path, prefix: str) -> int:
    """A night's shards: slices of real unlabeled reviews with a row id, as CSV and Parquet."""
    from sentiment.io.storage import write_bytes

    total = 0
    for i, (name, rows) in enumerate(SHARDS.items()):
        frame = pd.read_csv(shared_data / "unlabeled" / name, nrows=rows)
        frame.insert(0, "row_id", range(total, total + len(frame)))
        total += len(frame)
        if i % 2:
            write_bytes(f"{prefix}/shard-{i}.csv", frame.to_csv(index=False).encode())
        else:
            buffer = io.BytesIO()
            frame.to_parquet(buffer, index=False)
            write_bytes(f"{prefix}/shard-{i}.parquet", buffer.getvalue())
    return total


def _train_worker_nodes(cluster: Cluster) -> list[str]:
    return [actor["node_id"] for actor in cluster.state("actors", class_name="RayTrainWorker")]


# First in the file, so the two-node cluster below is not yet up and idling beside it.
def test_a_job_run_by_hand_starts_a_local_cluster(tmp_path, shared_data, tiny_classifier):
    # Outside any cluster (RAY_ADDRESS=local: never join a cluster someone else started here).
    # --check: every check a night runs, on the cluster the job started (its Ray tasks read the
    # file, its actor pool is planned), without the model actor a whole night would start too;
    # the jobs below score for real.
    shard = tmp_path / "shard.csv"
    pd.read_csv(shared_data / "unlabeled" / "todoist.csv", nrows=40).to_csv(shard, index=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_ADDRESS="local", RAY_USAGE_STATS_ENABLED="0")
    result = subprocess.run(
        [sys.executable, "jobs/score.py", "--model", tiny_classifier, "--input", str(shard),
         "--output", str(tmp_path / "scored"), "--text-column", TEXT_COLUMN, "--check"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=JOB_TIMEOUT_S)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Ray cluster" in result.stderr and "1 node(s)" in result.stderr
    assert "check passed: 1 file(s), 40 rows, would be scored by" in result.stderr, result.stderr[-4000:]
    assert json.loads(result.stdout)["input_files"][0]["rows"] == 40
    assert not (tmp_path / "scored").exists()


def test_train_then_score_jobs_on_a_two_node_cluster(two_node_cluster, s3_bucket, shared_data, tiny_backbone):
    from sentiment.io.storage import fsspec_filesystem

    cluster = two_node_cluster
    fs, _ = fsspec_filesystem(s3_bucket)
    bucket = s3_bucket.removeprefix("s3://")
    model_uri = f"{s3_bucket}/models/2026-11-26"
    run = uuid.uuid4().hex[:8]
    started = time.time()

    # Local --data and --model paths work because both nodes are on this machine, which
    # --shared-fs declares; on a real cluster they are s3:// URIs or a hub name.
    train = _submit(cluster, f"train-{run}", "train.py", "--shared-fs",
                    "--data", str(shared_data / "labeled" / "gplay-2020.csv"), str(shared_data / "labeled" / "gplay-2024.csv"),
                    "--limit", "300", "--model", tiny_backbone, "--output", model_uri,
                    "--num-workers", "2", "--epochs", "1", "--batch-size", "16", "--max-length", "64")
    train_status, train_logs = _job_record(cluster, f"train-{run}")
    assert train.returncode == 0, f"train job failed:\n{train_logs[-5000:]}\n{train.stderr[-2000:]}"
    assert cluster.job_info(f"train-{run}")["status"] == "SUCCEEDED" and "succeeded" in train_status
    train_seconds = time.time() - started

    # DDP crossed nodes: the two Ray Train workers ran on two different raylets.
    nodes = _train_worker_nodes(cluster)
    assert len(nodes) == 2 and len(set(nodes)) == 2, nodes
    # The code that ran is the copy --working-dir shipped, not the checkout's editable install.
    shipped = [line for line in train_logs.splitlines() if "sentiment from " in line]
    assert shipped and str(REPO) not in shipped[0], shipped

    model_files = set(p.rsplit("/", 1)[-1] for p in fs.ls(f"{bucket}/models/2026-11-26", detail=False))
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "metrics.json",
            "training_history.png", "confusion_matrix.png"} <= model_files, model_files
    metrics = json.loads(fs.cat(f"{bucket}/models/2026-11-26/metrics.json"))
    assert [h["epoch"] for h in metrics["history"]] == [1]
    assert metrics["config"]["num_workers"] == 2 and metrics["rows"]["rows_read"] == 300
    matrix = metrics["test"]["confusion_matrix"]
    assert metrics["test"]["accuracy"] == pytest.approx(sum(matrix[i][i] for i in range(3)) / sum(map(sum, matrix)))
    assert sum(map(sum, metrics["test"]["confusion_matrix"])) == metrics["rows"]["test"] > 0

    rows = _upload_shards(shared_data, f"{s3_bucket}/reviews/2026-11-26")
    out_uri = f"{s3_bucket}/scored/2026-11-26"
    score = _submit(cluster, f"score-{run}", "score.py", "--model", model_uri,
                    "--input", f"{s3_bucket}/reviews/2026-11-26/", "--output", out_uri + "/",
                    "--text-column", TEXT_COLUMN, "--concurrency", "1")
    score_status, score_logs = _job_record(cluster, f"score-{run}")
    assert score.returncode == 0, f"score job failed:\n{score_logs[-5000:]}\n{score.stderr[-2000:]}"
    assert cluster.job_info(f"score-{run}")["status"] == "SUCCEEDED" and "succeeded" in score_status

    marker = json.loads(fs.cat(f"{bucket}/scored/2026-11-26/_SUCCESS"))
    parquet_files = [p for p in fs.ls(f"{bucket}/scored/2026-11-26", detail=False) if p.endswith(".parquet")]
    scored = pd.concat([pq.read_table(p, filesystem=fs).to_pandas() for p in parquet_files])
    assert len(scored) == rows and sorted(scored["row_id"]) == list(range(rows))
    assert marker["rows"] == rows and sum(f["rows"] for f in marker["files"]) == rows
    assert sorted(f["file"].rsplit("/", 1)[-1] for f in marker["files"]) == sorted(p.rsplit("/", 1)[-1] for p in parquet_files)
    has_text = scored[TEXT_COLUMN].fillna("").str.strip() != ""
    assert scored.loc[has_text, "sentiment"].isin(["negative", "neutral", "positive"]).all()

    # No credential in anything a job printed or recorded: logs, status and the job server's
    # record of entrypoint, runtime_env and metadata, and the submit CLI's own output.
    for text in (train_logs, score_logs, train_status, score_status, train.stdout, score.stdout):
        assert cluster.secret_key not in text and cluster.token not in text
    print(f"\nmulti-node: train job {train_seconds:.0f} s, train+score {time.time() - started:.0f} s")



def test_a_command_run_on_the_head_node_joins_the_cluster_ray_start_recorded(two_node_cluster, tmp_path):
    # `sentiment ...` typed in a shell on the head node, no RAY_ADDRESS: it joins the cluster
    # `ray start` recorded there (not a private cluster of its own), with the node's token.
    cluster = two_node_cluster
    env = {k: v for k, v in cluster.node_env.items() if k != "RAY_ADDRESS"} | {"RAY_TMPDIR": str(cluster.ray_tmp)}
    probe = ("import json, ray\n"
             "from sentiment.cluster.connect import ensure_connected\n"
             "ensure_connected()\n"
             "print(json.dumps({'head': ray._private.worker._global_node.head,\n"
             "                  'gcs': ray.get_runtime_context().gcs_address}))\n")
    result = subprocess.run([sys.executable, "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    joined = json.loads(result.stdout.strip().splitlines()[-1])
    recorded = (cluster.ray_tmp / "ray" / "ray_current_cluster").read_text().strip()
    # The record names the head by this machine's address, the cluster by its GCS port.
    assert joined == {"head": False, "gcs": recorded}
    assert recorded.rpartition(":")[2] == cluster.gcs_address.rpartition(":")[2]


def test_local_paths_on_two_nodes_fail_up_front_unless_declared_shared(two_node_cluster, tmp_path, shared_data,
                                                                      tiny_classifier):
    # What a scheduler sees for a user mistake: `ray job submit` exits non-zero, the job is
    # FAILED, and its log says what is wrong in one line instead of a traceback. (The same
    # runner's line for a missing train input: tests/test_flags_and_inputs.py.)
    # Without the declaration, Ray Data would write the Parquet files on whichever node runs each
    # write task and _SUCCESS on the driver's: the job must refuse before anything is written.
    cluster = two_node_cluster
    shard, output = tmp_path / "shard.csv", tmp_path / "scored"
    pd.read_csv(shared_data / "unlabeled" / "todoist.csv", nrows=40).to_csv(shard, index=False)
    args = ["--model", tiny_classifier, "--input", str(shard), "--output", str(output), "--text-column", TEXT_COLUMN]
    refused_id = f"score-local-{uuid.uuid4().hex[:8]}"
    refused = _submit(cluster, refused_id, "score.py", *args)
    status, logs = _job_record(cluster, refused_id)
    assert refused.returncode != 0 and cluster.job_info(refused_id)["status"] == "FAILED", status
    line = next((line for line in logs.splitlines() if line.startswith("sentiment score: error: ")), "")
    assert f"--output {output}" in line and f"--input {shard}" in line and f"--model {tiny_classifier}" in line, logs[-3000:]
    assert "the Ray cluster has 2 nodes" in line and "use s3:// or a filesystem every node mounts" in line
    assert "--shared-fs" in line and "Traceback" not in logs
    assert not output.exists()

    # Both nodes really share this machine's disk, so the declaration is true here. With it the
    # same check passes on this cluster, and `score --shared-fs` hands it to that check. (A whole
    # job with local paths and --shared-fs: the train job above. A scoring job more cost ~40 s.)
    from sentiment.cli import build_parser
    from sentiment.score.pipeline import ScoreConfig

    assert ScoreConfig.from_namespace(build_parser().parse_args(["score", *args, "--shared-fs"])).shared_fs
    env = {k: v for k, v in cluster.node_env.items() if k != "RAY_ADDRESS"} | {"RAY_TMPDIR": str(cluster.ray_tmp)}
    probe = ("import ray\n"
             "from sentiment.cluster.connect import ensure_connected\n"
             "from sentiment.cluster.placement import require_shared_paths\n"
             "ensure_connected()\n"
             "assert len([n for n in ray.nodes() if n['Alive']]) == 2\n"
             f"require_shared_paths({{'--input': [{str(shard)!r}], '--output': [{str(output)!r}]}}, shared_fs=True)\n"
             "print('accepted')\n")
    result = subprocess.run([sys.executable, "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and result.stdout.split() == ["accepted"], result.stderr[-3000:]
