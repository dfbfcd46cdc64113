"""Smoke tests of the benchmark pieces: tiny model, a few dozen real reviews, no timing asserts."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from sentiment.data.labels import LABELS
from sentiment.errors import InputError
from benchmarks.lib.hardware_limit import forward_flops, matmul_peak_gflops
from benchmarks.lib.process_memory import tree_usage
from benchmarks.lib.review_sample import sample_reviews, write_shards
from benchmarks.lib.scoring_methods import time_hf_pipeline, time_predictor, time_reference_loop


def _bert_config(**overrides):
    from transformers import BertConfig

    values = dict(vocab_size=1000, hidden_size=48, num_hidden_layers=3, num_attention_heads=4,
                  intermediate_size=96, num_labels=3)
    values.update(overrides)
    return BertConfig(**values)


def test_forward_flops_is_the_hand_count_for_minilm():
    config = _bert_config(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)
    h, i, t = 384, 1536, 22
    by_hand = 6 * (2 * (4 * h * h + 2 * h * i) * t + 4 * t * t * h) + 2 * (h * h + 3 * h)
    assert forward_flops(config, np.array([t]))[0] == by_hand
    assert 0.45e9 < by_hand < 0.5e9  # ~0.47 GFLOP for a typical 22-token review


@pytest.mark.parametrize("tokens", [5, 37])
def test_forward_flops_matches_torch_flop_counter(tokens):
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import BertForSequenceClassification

    # Eager attention: torch's counter has no formula for the CPU flash-attention kernel.
    config = _bert_config(attn_implementation="eager")
    model = BertForSequenceClassification(config).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(input_ids=torch.randint(5, 1000, (1, tokens)))
    assert forward_flops(config, np.array([tokens]))[0] == counter.get_total_flops()


def test_sample_reviews_is_seeded_random_and_nonempty(shared_data):
    data = str(shared_data / "unlabeled")
    first, again, other = (sample_reviews(data, 60, seed) for seed in (0, 0, 1))
    assert first == again
    assert first != other
    assert len(set(first)) > 50 and all(t.strip() for t in first)


def test_sample_reviews_names_a_folder_without_csv(tmp_path):
    with pytest.raises(InputError, match=str(tmp_path)):
        sample_reviews(str(tmp_path), 5)


def test_all_three_in_process_methods_give_the_same_probabilities(shared_data, tiny_classifier):
    texts = sample_reviews(str(shared_data / "unlabeled"), 40, seed=3)
    ref = time_reference_loop(tiny_classifier, texts)
    pipe = time_hf_pipeline(tiny_classifier, texts, batch_size=8)
    ours = time_predictor(tiny_classifier, texts, batch_size=16)
    for run in (ref, pipe, ours):
        assert run.reviews == 40 and run.cpu_seconds > 0
        assert run.reviews_per_s == pytest.approx(run.reviews / run.seconds)
        assert run.probs.shape == (40, 3)
        np.testing.assert_allclose(run.probs.sum(axis=1), 1.0, atol=1e-5)
    # Padding to 160 with a mask, per-batch padding and the pipeline must all agree.
    np.testing.assert_allclose(ours.probs, ref.probs, atol=1e-5)
    np.testing.assert_allclose(ours.probs, pipe.probs, atol=1e-5)
    positive = (ours.probs.argmax(1) == 2).mean()
    assert positive == (ref.probs.argmax(1) == 2).mean()


def test_matmul_peak_is_plausible():
    import os
    import time

    wall, per_cpu = matmul_peak_gflops(size=256, repeats=3, threads=1)
    # Physical bound: one core does at most 2 AVX-512 FMA units x 16 fp32 lanes x 2 FLOPs per
    # cycle at ~5 GHz = 320 GFLOP/s; a peak above that is a timing bug.
    assert per_cpu < 320 and wall < 320 * os.cpu_count()
    # Lower bound: the best of 3 is at least half of what a plain timed loop of the same
    # matmul achieves in CPU time (the shared machine only takes time slices away).
    a, b = torch.randn(256, 256), torch.randn(256, 256)
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = time.process_time()
        for _ in range(20):
            a @ b
        plain = 20 * 2 * 256 ** 3 / max(time.process_time() - start, 1e-6) / 1e9
    finally:
        torch.set_num_threads(saved)
    assert per_cpu > 0.5 * plain > 0.5  # BLAS gets more than 1 GFLOP/s even from an old core
    assert torch.get_num_threads() == saved


def test_tree_usage_counts_a_grandchild(tmp_path):
    # A shell whose child holds ~200 MiB: the parent alone holds almost nothing.
    script = "import time; x = bytearray(200 * 2**20); x[::4096] = b'1' * len(x[::4096]); time.sleep(30)"
    proc = subprocess.Popen(["sh", "-c", f'"{sys.executable}" -c "{script}"; true'])
    try:
        deadline = time.time() + 20
        pss = 0
        while time.time() < deadline and pss < 200 * 2**20:
            time.sleep(0.2)
            rss, pss, cpu = tree_usage(proc.pid)
        assert pss >= 200 * 2**20 and rss >= pss
        assert len(cpu) == 2 and all(seconds >= 0 for seconds in cpu.values())
    finally:
        for child in subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split():
            subprocess.run(["kill", child])
        proc.kill()
        proc.wait()


def test_process_cpu_counts_each_started_process_under_its_program(tmp_path, capsys):
    from benchmarks.process_cpu import main

    # A parent that burns CPU and starts a child that lives a second: both are sampled (the
    # interval is far shorter than either lives) and counted apart; nothing older is counted.
    script = ("import subprocess, sys; sum(i * i for i in range(3_000_000)); "
              "subprocess.run([sys.executable, '-m', 'timeit', '-n', '1', '-r', '1', 'import time; time.sleep(1)'])")
    assert main(["--interval", "0.05", "--json", str(tmp_path / "cpu.json"), "--", sys.executable, "-c", script]) == 0
    rows = {row["kind"]: row for row in json.loads((tmp_path / "cpu.json").read_text())["rows"]}
    # Every process started while the command runs is counted (a joined cluster's Ray workers are
    # not its children), so under pytest-xdist what the other worker starts meanwhile may appear
    # too; the test's own pytest worker, a `python -c` older than the command, must not.
    assert {"python -c", "python -m timeit"} <= set(rows), rows
    assert rows["python -c"]["processes"] == rows["python -m timeit"]["processes"] == 1
    assert rows["python -c"]["cpu_s"] >= 0.1  # three million squares in Python
    started = sum(row["processes"] for row in rows.values())
    assert f"{started} processes started; exit status 0" in capsys.readouterr().out


def test_write_shards_cycles_the_texts(tmp_path):
    import pandas as pd

    paths = write_shards(["a", "b", "c"], 7, str(tmp_path), rows_per_shard=3)
    assert len(paths) == 3
    rows = pd.concat(pd.read_csv(p) for p in paths)["Review Text"].tolist()
    assert rows == ["a", "b", "c", "a", "b", "c", "a"]


def test_benchmark_job_prints_a_table_and_writes_json(shared_data, tmp_path):
    import json
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    out = tmp_path / "json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.scoring", "--data", str(shared_data / "unlabeled"), "--n", "48",
         "--baseline-n", "24", "--tune-n", "16", "--pipeline-batch-sizes", "8", "16", "--predictor-batch-sizes", "16",
         "--model-size", "tiny", "--no-score", "--peak-size", "256", "--json", str(out), "--workdir", str(tmp_path / "work")],
        cwd=repo, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert set(result["runs"]) == {"a", "b", "c", "c16"}
    assert result["runs"]["c"]["precision"] == "fp32" and result["runs"]["c16"]["precision"] == "bf16"
    assert set(result["limits"]) == {"fp32", "bf16"} and set(result["fraction_of_limit"]) == {"c", "c16"}
    assert result["runs"]["c"]["reviews"] == 48 and result["runs"]["a"]["reviews"] == 24
    assert result["runs"]["b"]["settings"]["batch_size"] in (8, 16)
    assert result["agreement_c_vs_a"]["same_label"] == 1.0
    assert result["agreement_c16_vs_a"]["max_abs_prob_diff"] < 0.02
    rates = {key: run["reviews_per_s"] for key, run in result["runs"].items()}
    assert result["ratios"]["c/a"] == pytest.approx(rates["c"] / rates["a"])
    assert 0 < result["sample"]["mean_tokens"] < 160
    assert "reference loop" in done.stdout and "c/a" in done.stdout


def test_gpu_benchmark_job_runs_the_whole_table_on_cpu(shared_data, tmp_path, ray_cluster):
    import json
    from pathlib import Path

    from tests.helpers import session_cluster_env

    repo = Path(__file__).resolve().parents[2]
    out = tmp_path / "gpu.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu", "--device", "cpu", "--model-size", "tiny", "--data",
         str(shared_data / "unlabeled"), "--sample", "48", "--baseline-n", "16", "--batch-sizes", "8", "32",
         "--pipeline-batch-sizes", "8", "--rows", "300", "--shards", "3", "--peak-size", "128", "--score-timeout", "800",
         "--workdir", str(tmp_path / "work"), "--json", str(out)],
        # Its end-to-end `sentiment score` joins the session's cluster: starting one of its own
        # costs the suite ~15 CPU-s and is not what this test checks.
        cwd=repo, env=session_cluster_env(), capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    runs = result["runs"]
    assert {"a", "b/8", "c/tokens", "c/8", "c/32", "fwd/fp32/sdpa/8", "fwd/bf16/sdpa/32", "fwd/bf16/eager/8"} <= set(runs)
    assert runs["a"]["reviews"] == 16 and runs["c/8"]["reviews"] == 48
    limit = result["limit"]["max_reviews_per_s"]
    for run in runs.values():  # each rate is its reviews over its seconds, and its share of the same limit
        assert run["reviews_per_s"] == pytest.approx(run["reviews"] / run["seconds"])
        assert run["of_limit"] == pytest.approx(run["reviews_per_s"] / limit)
    end = result["end_to_end"]
    assert "error" not in end, end.get("error")
    assert end["reviews"] == 300 and end["summary"]["rows_scored"] + end["summary"]["rows_errored"] == 300
    assert end["gpu_utilisation"]["source"] is None  # no GPU here: skipped, not faked
    assert {row["stage"] for row in end["summary"]["stages"]} >= {"read", "tokenize", "model", "write"}
    assert done.stdout.startswith("(d) per stage, from Ray Data's stats:\nstage")  # printed first
    assert result["limit"]["max_reviews_per_s"] > 0 and "forward only, bf16 weights, eager" in done.stdout


def test_cross_domain_set_drops_texts_the_model_was_trained_on(tmp_path):
    import pandas as pd

    from benchmarks.lib.cross_domain import unseen_rows

    trained_on = tmp_path / "train.csv"
    pd.DataFrame({"content": ["good", "crashes daily", None], "score": [5, 1, 3]}).to_csv(trained_on, index=False)
    other = tmp_path / "other"
    other.mkdir()
    pd.DataFrame({"content": ["  good ", "love the widgets", "crashes daily"], "score": [4, 5, 2]}).to_csv(
        other / "a.csv", index=False)
    pd.DataFrame({"content": ["meh, it is ok"], "score": [3]}).to_csv(other / "b.csv", index=False)

    kept = unseen_rows([str(other)], [str(trained_on)], str(tmp_path))

    assert (kept["rows"], kept["dropped"]) == (2, 2)
    assert list(pd.read_csv(kept["path"])["content"]) == ["love the widgets", "meh, it is ok"]


def test_quality_benchmark_bag_of_words_row_scores_the_training_split(shared_data, tmp_path, ray_cluster):
    import json
    from pathlib import Path

    from tests.helpers import session_cluster_env

    repo = Path(__file__).resolve().parents[2]
    table = tmp_path / "quality.md"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.quality", "--data", str(shared_data / "labeled"), "--limit", "3000",
         "--bow-baseline", "--settings", "--workdir", str(tmp_path / "work"), "--table", str(table)],
        cwd=repo, env=session_cluster_env(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    (row,) = json.loads((tmp_path / "work" / "quality.json").read_text())
    rows, test = row["rows"], row["test"]
    # Scored on exactly the test split `sentiment train --limit 3000` makes, every row once.
    assert test["n"] == rows["test"] == sum(map(sum, test["confusion_matrix"])) > 100
    assert rows["train"] > 2000
    # Words alone carry sentiment: well above the ~0.36 of always saying the largest class.
    assert test["accuracy"] > 0.5 and row["val_accuracy"] > 0.5
    assert "TF-IDF" in table.read_text() and "--bow-baseline --settings --limit 3000" in table.read_text()


def test_quality_table_gives_one_standard_error_beside_each_accuracy():
    from benchmarks.quality import format_table, standard_error

    test = {"accuracy": 0.676, "macro_f1": 0.673, "n": 608, "confusion_matrix": [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
            "per_class": {name: {"f1": 0.5} for name in LABELS}}
    row = {"setting": "(defaults)", "best_epoch": 3, "val_accuracy": 0.5, "val_macro_f1": 0.5, "test": test,
           "rows": {"validation": 400}, "wall_seconds": 1.0, "command": "sentiment train", "other": None}
    assert standard_error(0.676, 608) == pytest.approx(0.01898, abs=1e-5)
    line = format_table([row]).splitlines()[2]
    assert "| 0.500 ± 0.025 |" in line and "| 0.676 ± 0.019 |" in line


def test_quality_benchmark_streams_each_run_to_a_log_and_shows_its_end_on_failure(tmp_path):
    """A setting the CLI refuses (exit 2 at parse time) fails the benchmark with the log's end in
    the message; the log it wrote as the run went holds the CLI's own error line."""
    from benchmarks.quality import run_setting

    with pytest.raises(RuntimeError) as failed:
        run_setting(["../shared/data/labeled"], str(tmp_path), 0, "--batch-size 0", limit=None)
    log = (tmp_path / "run-0.log").read_text()
    assert "--batch-size" in log and "error" in log
    assert str(tmp_path / "run-0.log") in str(failed.value) and log.strip()[-200:] in str(failed.value)


def test_tokenizing_benchmark_runs(shared_data, capsys):
    from benchmarks.tokenizing import main

    assert main(["--data", str(shared_data / "unlabeled"), "--rows", "64", "--batch-rows", "32", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "transformers call + Arrow" in out and "tokenize_to_arrow / transformers call, CPU:" in out
    assert "spelled / unspelled tokenize_to_arrow, CPU:" in out


def test_batch_forming_benchmark_runs(shared_data, capsys):
    from benchmarks.batch_forming import main

    assert main(["--data", str(shared_data / "labeled"), "--batch-size", "8", "--window-batches", "2", "--windows", "1",
                 "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "16 real reviews in 2 static-shape batches of 8" in out and "length_bucketed_batches / before:" in out


def test_train_step_benchmark_accounts_for_the_whole_step(shared_data, tmp_path):
    """benchmarks.train_step's phases must add up to the step it times: on CPU every phase is
    synchronous, so the host times of the five phases sum to nearly the measured ms per step."""
    from benchmarks.train_step import PHASES, main

    out = tmp_path / "step.json"
    assert main(["--data", str(shared_data / "labeled"), "--size", "tiny", "--device", "cpu", "--rows", "256",
                 "--steps", "8", "--compile", "off", "--json", str(out)]) == 0
    (result,) = json.loads(out.read_text())
    phases = sum(result["host_ms_per_step"][p] for p in PHASES)
    assert result["shapes"] >= 2 and result["steps"] == 8
    assert 0.8 * result["ms_per_step"] <= phases <= result["ms_per_step"]
    assert result["host_ms_per_step"]["forward_backward"] == max(result["host_ms_per_step"].values())


def test_actor_call_benchmark_accounts_for_the_whole_call(shared_data, tmp_path):
    """benchmarks.actor_call's phases must add up to the call it times (on CPU all synchronous)."""
    from benchmarks.actor_call import PHASES, main

    out = tmp_path / "call.json"
    assert main(["--data", str(shared_data / "unlabeled"), "--device", "cpu", "--rows", "1024", "--repeats", "1",
                 "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    phases = sum(result["host_ms_per_call"][p] for p in PHASES)
    assert result["rows"] == 1024 and result["batches"] > 1
    assert 0.8 * result["ms_per_call"] <= phases <= result["ms_per_call"]


def test_unlabeled_sample_is_distinct_stripped_and_seeded(tmp_path):
    import pyarrow.parquet as pq

    from benchmarks.unlabeled_sample import distinct_sample, main

    texts = ["good", " good ", "", None, "   ", "bad app", "fine", "crashes"] * 3
    sample = distinct_sample(texts, 4, seed=1)
    assert sorted(sample) == ["bad app", "crashes", "fine", "good"]
    assert distinct_sample(texts, 4, seed=1) == sample and distinct_sample(texts, 2, seed=1) == sample[:2]
    with pytest.raises(InputError, match="asked for 5 distinct reviews, the corpus has 4"):
        distinct_sample(texts, 5)
    data = tmp_path / "unlabeled"
    data.mkdir()
    (data / "app.csv").write_text('Review Text,Category\n"good",\n" good",\n"slow sync",\n,\n')
    main(["--data", str(data), "--rows", "2", "--output", str(tmp_path / "sample.parquet")])
    assert sorted(pq.read_table(tmp_path / "sample.parquet")["Review Text"].to_pylist()) == ["good", "slow sync"]


def test_an_output_ensemble_is_the_mean_of_its_members_probabilities():
    from benchmarks.ensemble import ensemble_row

    labels = {"validation": np.array([0, 1, 2, 2]), "test": np.array([0, 1, 2, 1])}
    # one member is sure and wrong on the last row, the other unsure and right: the mean is right
    sure = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.05, 0.05, 0.9]])
    unsure = np.array([[0.5, 0.3, 0.2], [0.2, 0.5, 0.3], [0.3, 0.3, 0.4], [0.0, 1.0, 0.0]])
    members = [{"validation": sure, "test": sure}, {"validation": unsure, "test": unsure}]
    row = ensemble_row("both", members, labels)
    assert row["validation"]["accuracy"] == 0.75  # its last row: 0.45 for class 2, 0.525 for class 1
    assert row["test"]["accuracy"] == 1.0
    assert ensemble_row("sure", members[:1], labels)["test"]["accuracy"] == 0.75


def test_a_backbone_split_into_parts_joins_into_the_same_folder_and_a_missing_part_is_named(tiny_backbone, tmp_path):
    # How a backbone too large for one device call travels: bf16 parts here, fp32 again there.
    from safetensors.torch import load_file

    from benchmarks.backbone_parts import join, split
    from sentiment.model.classifier import build_classifier

    parts = tmp_path / "parts"
    manifest = split(tiny_backbone, parts, part_mib=0.25)
    assert len(manifest["parts"]) > 1 and sum(p["bytes"] for p in manifest["parts"]) == manifest["tar_bytes"]
    joined = join(parts, tmp_path / "joined")
    before, after = load_file(f"{tiny_backbone}/model.safetensors"), load_file(joined / "model.safetensors")
    assert set(after) == set(before)
    for name, weight in before.items():
        assert after[name].dtype == weight.dtype
        assert torch.equal(after[name], weight.to(torch.bfloat16).to(weight.dtype))  # bf16-rounded, no more
    build_classifier(str(joined))  # every encoder weight loads (else it refuses)

    (parts / "part-001").write_bytes(b"damaged")
    with pytest.raises(SystemExit, match=r"part-001 is damaged \(7 bytes"):
        join(parts, tmp_path / "again")
    (parts / "part-001").unlink()
    with pytest.raises(SystemExit, match=r"parts part-001 of \d+ are not here"):
        join(parts, tmp_path / "again")


def test_the_average_memory_benchmark_runs_both_ways(tiny_backbone, capsys):
    from benchmarks.average_memory import main

    result = main(["--backbone", tiny_backbone, "--members", "2"])
    assert result["model_mib"] > 0 and {"all-at-once", "one-at-a-time"} <= set(result)
    assert "one at a time / all at once" in capsys.readouterr().out


def test_class_offsets_are_chosen_for_accuracy_and_none_where_none_helps():
    import numpy as np

    from benchmarks.class_offsets import best_offsets

    grid = np.round(np.arange(-1, 1.01, 0.25), 2)
    # Every row's true class is the model's second choice by 0.3 for class 1: an offset of +0.5 on
    # class 1 fixes those rows and breaks none.
    logs = np.log(np.array([[0.5, 0.35, 0.15]] * 4 + [[0.1, 0.2, 0.7]] * 4))
    labels = np.array([1] * 4 + [2] * 4)
    offsets = best_offsets(logs, labels, grid)
    assert offsets[0] == 0 and ((logs + offsets).argmax(axis=1) == labels).all()
    # Already all right: no shift, the smallest of the ties.
    assert best_offsets(logs, np.array([0] * 4 + [2] * 4), grid).tolist() == [0, 0, 0]
