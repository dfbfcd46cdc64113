"""Shared real parts for tests: an S3-protocol server on 127.0.0.1, a local Ray cluster,
tiny BERT models built from a config, and the real review data beside the checkout."""

from __future__ import annotations

import importlib
import os
import uuid
from pathlib import Path

import pytest

from sentiment.cluster.connect import OWN_CLUSTER_ENV
from tests.local_s3 import MotoServer

# Two xdist workers share 2 cores, each driving Ray workers, actors and subprocesses that run
# torch: OpenMP threads that spin while they wait (OMP_WAIT_POLICY's default) take the core from
# the process that has work. Set before anything loads torch (libgomp reads it once), and
# inherited by every subprocess and Ray cluster the tests start. Measured here: the demo test and
# the MiniLM fine-tune side by side, 220 s of wall time with spinning, 165 s passive.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# The session's cluster is started by ray.init here, not by ensure_connected: it gets the
# environment of a command's own cluster as it gets OWN_CLUSTER_CONFIG (Ray Train's preemption
# watcher off: one more process per run on 2 cores, and no test drains a node).
for _name, _value in OWN_CLUSTER_ENV.items():
    os.environ.setdefault(_name, _value)
# Ray Data installs its log handler when it is first imported, and that handler keeps the
# sys.stderr of that moment (ray._private.log.PlainRayHandler). Imported inside a test, that is
# the test's capsys stream, closed when the test ends: every later Ray Data line in the process
# then fails ("Logging error ... I/O operation on closed file") into the next test's stderr, which
# the bad-input tests check for tracebacks. Imported here, it keeps the session's stderr.
importlib.import_module("ray.data")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
# A distinctive value, so tests can prove it never shows up in logs or artifacts.
SECRET_KEY = "sentiment-test-secret-9f3a7c1e"
ACCESS_KEY = "sentiment-test-access-key"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real review data not found at {SHARED_DATA} (it lives beside the checkout)")
    return SHARED_DATA


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory) -> Path:
    """Every process of the session, Ray workers included, caches s3:// models here, not in /tmp."""
    from sentiment.io.model_cache import MODEL_CACHE_ENV

    path = tmp_path_factory.mktemp("model-cache")
    saved = os.environ.get(MODEL_CACHE_ENV)
    os.environ[MODEL_CACHE_ENV] = str(path)
    yield path
    if saved is None:
        os.environ.pop(MODEL_CACHE_ENV, None)
    else:
        os.environ[MODEL_CACHE_ENV] = saved


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server process on 127.0.0.1, with the AWS environment pointed at it.

    The environment is set before any Ray cluster starts, so Ray workers inherit it exactly as
    they would inherit a real user's AWS settings.
    """
    server = MotoServer(start_timeout_s=30)
    env = server.aws_environment(ACCESS_KEY, SECRET_KEY)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield server.endpoint
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    server.stop(timeout_s=10)


@pytest.fixture()
def s3_bucket(s3_server) -> str:
    """A fresh, empty bucket; returns its s3:// URI."""
    import boto3

    name = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=name)
    return f"s3://{name}"


@pytest.fixture(scope="session")
def ray_cluster(s3_server):
    """A real local Ray cluster for the whole session.

    4 logical CPUs on a 2-core machine: two DDP workers hold one CPU each, and Ray Data's read
    and map tasks need CPUs of their own, or ingest would wait forever.
    """
    import ray

    from sentiment.cluster.connect import OWN_CLUSTER_CONFIG  # idle workers kept, as a command's own cluster
    from sentiment.cluster.ray_console import ray_console_env  # its workers' console, as a command's own

    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=True,
             runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false", **ray_console_env()}},
             _system_config=dict(OWN_CLUSTER_CONFIG))
    yield
    ray.shutdown()


@pytest.fixture()
def no_cluster(monkeypatch):
    """Fails the test if the command connects to Ray (every connection goes through ray.init,
    ours through sentiment.cluster.connect.ensure_connected): refusals that need no cluster must
    come before a command's own cluster starts, which costs 5-7 s on 2 cores and prints Ray's
    start-up lines before the one line that matters. The command runs as on a laptop: no
    RAY_ADDRESS and no `ray start` cluster on this machine to join."""
    import ray

    import sentiment.cluster.connect as connect

    def init(*args, **kwargs):
        raise AssertionError("the command connected to Ray before refusing")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # this test process may hold the session's cluster
    monkeypatch.setattr(ray, "init", init)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(connect, "_ray_start_address", lambda: None)


def _tiny_bert_config():
    from transformers import BertConfig

    return BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                      num_attention_heads=2, intermediate_size=64, max_position_embeddings=512)


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory) -> str:
    """A tiny pretrained-style encoder folder (BertModel + the MiniLM tokenizer), for training."""
    import torch
    from transformers import AutoTokenizer, BertModel

    from sentiment.model.classifier import resolve_backbone

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-backbone")
    BertModel(_tiny_bert_config()).save_pretrained(path, safe_serialization=True)
    AutoTokenizer.from_pretrained(resolve_backbone("minilm")).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_classifier(tmp_path_factory, tiny_backbone) -> str:
    """A tiny, untrained 3-class sentiment model folder, for scoring and prediction tests."""
    import torch

    from sentiment.model.classifier import build_classifier, save_classifier

    torch.manual_seed(0)
    model, tokenizer = build_classifier(tiny_backbone)
    path = tmp_path_factory.mktemp("tiny-classifier")
    save_classifier(model, tokenizer, str(path))
    return str(path)


# The costliest modules first (summed `--durations=0` seconds of a fresh-clone run on 2 cores at
# 17807af: 30-270 s each), so that the last module handed to an xdist worker is a short one and
# neither worker idles while the other finishes a long one. Order only: a module not listed runs
# after these, in collection order.
COSTLIEST_FIRST = ["cluster.test_jobs", "train.test_compiled", "score.test_faults", "train.test_resume",
                   "score.test_pipeline", "test_demo", "score.test_commit", "score.test_nothing_lost",
                   "test_flags_and_inputs", "benchmarks.test_pieces", "train.test_driver", "test_average",
                   "test_adapt", "score.test_bad_inputs", "benchmarks.test_training", "cluster.test_connect"]


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(COSTLIEST_FIRST)}
    # By module path below tests/, as "score.test_pipeline".
    items.sort(key=lambda item: rank.get(item.module.__name__.removeprefix("tests."), len(rank)))
