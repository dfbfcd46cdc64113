"""Small builders shared by tests: balanced samples of the real reviews, written to tmp."""

from contextlib import contextmanager
from pathlib import Path

import pandas as pd


def labeled_sample(shared_data: Path, out_dir: Path, n: int, seed: int = 0) -> Path:
    """A random sample of n real labeled reviews (both files) as one CSV in out_dir.

    The real files are ordered by score, so a plain --limit would see one class only.
    """
    frames = [pd.read_csv(p, usecols=["content", "score"]) for p in sorted((shared_data / "labeled").glob("*.csv"))]
    sample = pd.concat(frames).sample(n=n, random_state=seed)
    path = out_dir / f"labeled-sample-{n}.csv"
    sample.to_csv(path, index=False)
    return path


UNLABELED_TEXT = "Review Text"  # the text column of the unlabeled files


def unlabeled_reviews(shared_data: Path, name: str, rows: int | None = None):
    """The first `rows` rows (default all) of one real unlabeled file (e.g. "todoist.csv"), as an
    Arrow table of its text column. Reviews may span lines, so the CSV is read with newlines in values."""
    import pyarrow.csv as pacsv

    table = pacsv.read_csv(shared_data / "unlabeled" / name, parse_options=pacsv.ParseOptions(newlines_in_values=True))
    return table.select([UNLABELED_TEXT]).slice(0, rows)


def tiny_train_command(data: Path, output: Path, backbone: str, epochs: int, *extra: str) -> list[str]:
    """`sentiment train` as a subprocess: 2 DDP workers, a tiny model, a high lr."""
    import sys

    return [sys.executable, "-m", "sentiment", "train", "--data", str(data), "--output", str(output),
            "--model", backbone, "--epochs", str(epochs), "--num-workers", "2", "--lr", "1e-3", *extra]


def session_cluster_env(worker_env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a subprocess driver that joins this test process's Ray cluster (the
    session's `ray_cluster` fixture) instead of starting one of its own: 10-20 s less per run on
    2 cores. Killing such a driver is safe: Ray kills the actors it owned (its Ray Train
    controller and workers, its Ray Data actors) and frees their resources.

    The cluster's workers were started by this process, not by the driver, so variables they
    need (pause points) are given as `worker_env`: they reach the job's workers the way
    `ray job submit --runtime-env` sends them, through the job config Ray reads from the
    driver's environment."""
    import json
    import os

    import ray

    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address, "TOKENIZERS_PARALLELISM": "false"}
    if worker_env:
        env["RAY_JOB_CONFIG_JSON_ENV_VAR"] = json.dumps({"runtime_env": {"env_vars": worker_env}})
    return env


def start_held_after_first_epoch(command: list[str], snapshot: Path, log_path: Path, points: Path, workers: int,
                                 point: str = "train.epoch_reported"):
    """Start a training subprocess on the session's Ray cluster and return once its `workers`
    workers are held after reporting epoch 1 and that checkpoint is registered.

    The workers wait at the pause point `point` (adapt's: `adapt.epoch_reported`) until the test
    releases it
    (sentiment.pause_points.release); the test waits for Ray Train's checkpoint-manager snapshot
    too, since only a registered checkpoint is resumable.

    Ctrl-C reaches the driver: SIGINT is set back to its default in the child. pytest-xdist's
    workers ignore it, and an ignored SIGINT is inherited (Python keeps an inherited SIG_IGN), as in
    a shell's background job.

    Returns:
        (the subprocess.Popen, in its own session: os.killpg(proc.pid, ...) kills the driver,
         and Ray then the actors it owned; the pids of the held workers).
    """
    import os
    import signal
    import subprocess

    from sentiment.pause_points import PAUSE_AT_ENV, PAUSE_DIR_ENV, wait_until_reached

    points.mkdir(exist_ok=True)
    env = session_cluster_env({PAUSE_AT_ENV: f"{point}@1", PAUSE_DIR_ENV: str(points)})
    log = open(log_path, "w")
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    log.close()  # the child holds its own copy of the descriptor
    try:
        pids = wait_until_reached(str(points), point, timeout_s=600, count=workers, process=proc)
        wait_for_checkpoint_of_epoch(snapshot, 1)
    except (TimeoutError, RuntimeError, AssertionError) as error:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
        raise AssertionError(f"{error}; training log:\n" + log_path.read_text()[-3000:]) from None
    return proc, pids


def wait_for_checkpoint_of_epoch(snapshot: Path, epoch: int, timeout_s: float = 120.0) -> None:
    """Block until Ray Train's checkpoint-manager snapshot has registered the checkpoint of `epoch`
    (only a registered checkpoint is resumable)."""
    import json
    import time

    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            latest = json.loads(snapshot.read_text()).get("latest_checkpoint_result") or {}
            if latest.get("metrics", {}).get("epoch", 0) >= epoch:
                return
        except (OSError, ValueError):  # not written yet, or being replaced
            pass
        time.sleep(0.2)
    raise AssertionError(f"the checkpoint of epoch {epoch} was never registered in {snapshot}")


def assert_resumed_from_checkpoint(output: Path, epochs: int, restored_epochs: list[int]) -> list[dict]:
    """metrics.json shows a run that restored exactly the checkpoints of `restored_epochs`, in
    order, each time the one it had last saved, then finished.

    Each resumed epoch records the fingerprint of the weights it loaded and the optimizer step it
    restored; both must equal what the checkpointed epoch recorded when it saved them, and the
    final optimizer step must count every epoch's steps (a fresh optimizer would count fewer).

    Returns:
        The `resumed_from` records, in epoch order.
    """
    import json

    history = json.loads((output / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == list(range(1, epochs + 1))
    resumed = [h["resumed_from"] for h in history if "resumed_from" in h]
    assert [r["epoch"] for r in resumed] == restored_epochs, history
    steps_per_epoch = history[0]["optimizer_step"]
    for restored in resumed:
        saved = history[restored["epoch"] - 1]
        assert restored["weights_fingerprint"] == saved["weights_fingerprint"]
        assert restored["optimizer_step"] == saved["optimizer_step"] == restored["epoch"] * steps_per_epoch
    assert history[-1]["optimizer_step"] == epochs * steps_per_epoch
    return resumed


VOCAB_SIZE = 30522  # the MiniLM tokenizer's, which every tiny encoder reuses
_TINY = dict(vocab_size=VOCAB_SIZE, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
             pad_token_id=0)  # the MiniLM tokenizer pads with 0; RoBERTa and MPNet default to 1
# model_type -> (encoder class, config class, config values, a weight of layer 1 by its name in the
# saved encoder, the config field that must carry the head dropout (None: the architecture has none))
TINY_ENCODERS = {
    "roberta": ("RobertaModel", "RobertaConfig", dict(_TINY, max_position_embeddings=514),
                "encoder.layer.1.attention.self.query.weight", "classifier_dropout"),
    "distilbert": ("DistilBertModel", "DistilBertConfig",
                   dict(vocab_size=VOCAB_SIZE, dim=32, n_layers=2, n_heads=2, hidden_dim=64, pad_token_id=0),
                   "transformer.layer.1.attention.q_lin.weight", "seq_classif_dropout"),
    "mpnet": ("MPNetModel", "MPNetConfig", dict(_TINY, max_position_embeddings=514),
              "encoder.layer.1.attention.attn.q.weight", None),
    # DeBERTa-v3's architecture (issue 23 names microsoft/deberta-v3-base), and ELECTRA's.
    "deberta-v2": ("DebertaV2Model", "DebertaV2Config", dict(_TINY, max_position_embeddings=512),
                   "encoder.layer.1.attention.self.query_proj.weight", "pooler_dropout"),
    "electra": ("ElectraModel", "ElectraConfig", dict(_TINY, embedding_size=32),
                "encoder.layer.1.attention.self.query.weight", "classifier_dropout"),
}


def save_tiny_encoder(kind: str, directory) -> str:
    """A tiny pretrained-style encoder of one TINY_ENCODERS kind (hidden 32, 2 layers, seeded
    random weights) with the MiniLM tokenizer, saved as a local backbone folder."""
    import torch
    import transformers
    from transformers import AutoTokenizer

    from sentiment.model.classifier import resolve_backbone

    model_class, config_class, values, _, _ = TINY_ENCODERS[kind]
    torch.manual_seed(0)
    getattr(transformers, model_class)(getattr(transformers, config_class)(**values)).save_pretrained(
        directory, safe_serialization=True)
    AutoTokenizer.from_pretrained(resolve_backbone("minilm")).save_pretrained(directory)
    return str(directory)


@contextmanager
def logged_warnings():
    """The WARNING (and worse) lines logged in this process while inside, as a list of messages:
    caplog for a module-scoped fixture, which cannot have pytest's function-scoped one."""
    import logging

    lines: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: lines.append(record.getMessage())
    logging.getLogger().addHandler(handler)
    try:
        yield lines
    finally:
        logging.getLogger().removeHandler(handler)


def scored_table(texts, labels, confidences, text_column: str = UNLABELED_TEXT, errors=None):
    """A table laid out as `sentiment score` writes its output: the input's text column, the
    label, the three probabilities (the chosen class's given, the rest shared evenly), the error
    and the model. labels are class names, or None where the row has an error."""
    import pyarrow as pa

    from sentiment.data.labels import LABELS, PROB_COLUMNS
    from sentiment.score.columns import ERROR_COLUMN, LABEL_COLUMN, MODEL_COLUMN

    errors = errors or [None] * len(texts)
    probs = {column: [] for column in PROB_COLUMNS}
    for label, confidence in zip(labels, confidences):
        for name, column in zip(LABELS, PROB_COLUMNS):
            probs[column].append(None if label is None else confidence if name == label else (1 - confidence) / 2)
    return pa.table({text_column: texts, LABEL_COLUMN: labels,
                     **{c: pa.array(v, pa.float32()) for c, v in probs.items()},
                     ERROR_COLUMN: errors, MODEL_COLUMN: ["teacher"] * len(texts)})
