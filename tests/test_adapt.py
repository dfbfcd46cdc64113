"""`sentiment adapt`: masked-language pre-training continued on real unlabeled reviews, as Ray
Train DDP with 2 CPU workers (gloo) on a real local Ray cluster, written as an encoder folder that
`sentiment train` fine-tunes from; what it reads, leaves out and holds out; and its refusals."""

import json

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from sentiment.cli import main
from tests.helpers import UNLABELED_TEXT, save_tiny_encoder, unlabeled_reviews

LABELED_SHARED = 20  # reviews of the corpus that the "labeled" file holds too
OTHER_TEXT = "Text"  # the text column's name in the corpus's second file


@pytest.fixture(scope="module")
def corpus(shared_data, tmp_path_factory):
    """250 real unlabeled reviews with an empty row and repeats, in two files that name the text
    column differently (the shared corpus's unicorn file calls it Text), and a labeled file that
    shares 20 of them (its other rows are reviews the corpus does not have)."""
    folder = tmp_path_factory.mktemp("corpus")
    texts = [t.strip() for t in unlabeled_reviews(shared_data, "todoist.csv", 800).column(UNLABELED_TEXT).to_pylist()
             if t and t.strip()]
    distinct = list(dict.fromkeys(texts))[:250]
    pd.DataFrame({UNLABELED_TEXT: distinct[:200] + [""]}).to_parquet(folder / "unlabeled.parquet")  # one empty
    # the other 50, and 5 repeats of texts the first file has
    pd.DataFrame({OTHER_TEXT: distinct[200:] + distinct[:5], "Category": "app"}).to_csv(
        folder / "unlabeled-other.csv", index=False)
    shared = distinct[100:100 + LABELED_SHARED]
    pd.DataFrame({"content": shared + ["a review only the labeled data has"], "score": 3}).to_csv(
        folder / "labeled.csv", index=False)
    return folder, distinct, set(shared)


@pytest.fixture(scope="module")
def adapted(ray_cluster, corpus, tiny_backbone, tmp_path_factory):
    """The corpus adapted in 2 epochs by 2 DDP workers, the run killed once on the way: its driver
    is killed after epoch 1's checkpoint, and the same command again (in this process) resumes.
    One run serves both, since each start of a driver and its workers costs tens of seconds."""
    import os
    import signal
    import sys

    from tests.helpers import start_held_after_first_epoch

    folder, _, _ = corpus
    workdir = tmp_path_factory.mktemp("adapted")
    output = workdir / "encoder"
    # A high rate, so that a tiny model's loss visibly falls in 2 short epochs.
    arguments = ["adapt", "--model", tiny_backbone, "--data", *corpus_files(folder),
                 "--text-column", UNLABELED_TEXT, OTHER_TEXT, "--leave-out", str(folder / "labeled.csv"),
                 "--output", str(output), "--num-workers", "2", "--epochs", "2", "--batch-size", "16", "--lr", "2e-3",
                 "--held-out-fraction", "0.05"]
    snapshot = output / "checkpoints" / "sentiment-adapt" / "checkpoint_manager_snapshot.json"
    first, _ = start_held_after_first_epoch([sys.executable, "-m", "sentiment", *arguments], snapshot,
                                            workdir / "first.log", workdir / "points", workers=2,
                                            point="adapt.epoch_reported")
    os.killpg(first.pid, signal.SIGKILL)  # the driver, held after epoch 1 (Ray then kills its workers)
    first.wait()
    assert not (output / "metrics.json").exists()
    # The workers' start is said before their first line, as in train.
    assert "starting 2 Ray Train worker(s), 2 CPU(s) each" in (workdir / "first.log").read_text()
    assert main(arguments) == 0
    return output


def corpus_files(folder) -> list[str]:
    return [str(folder / "unlabeled.parquet"), str(folder / "unlabeled-other.csv")]


def test_every_row_read_is_counted_and_the_labeled_texts_are_left_out(corpus, adapted):
    _, distinct, _ = corpus
    counts = json.loads((adapted / "metrics.json").read_text())["corpus"]
    assert counts["rows_read"] == len(distinct) + 6
    assert sorted(counts["rows_by_file"].values()) == [55, 201]  # each file read, under its own column name
    assert (counts["empty"], counts["repeated"], counts["left_out"]) == (1, 5, LABELED_SHARED)
    assert counts["train"] + counts["held_out"] == len(distinct) - LABELED_SHARED
    assert 0 < counts["held_out"] < 0.2 * len(distinct)


def test_a_text_column_of_numbers_is_counted_and_left_out_of_the_corpus(ray_cluster, tmp_path, caplog):
    """A Parquet file whose text column holds numbers (a wrong column) is named, and its rows are
    counted as not_text, not adapted on as texts "5"; a CSV of all-digit reviews stays text."""
    from sentiment.data.corpus import read_corpus

    pd.DataFrame({"content": [f"review {i}" for i in range(30)] + ["12345"]}).to_csv(tmp_path / "text.csv", index=False)
    pd.DataFrame({"content": [5, 4, 1]}).to_parquet(tmp_path / "numbers.parquet")
    with caplog.at_level("WARNING", logger="sentiment.io.shards"):
        corpus = read_corpus([str(tmp_path)], ["content"], held_out_fraction=0.1)
    assert any("holds no text in 1 file(s) (int64 in " in r.getMessage() and "counted as not_text and left out"
               in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]
    assert corpus.counts["rows_read"] == 34 and corpus.counts["not_text"] == 3
    texts = set(corpus.train) | set(corpus.held_out)
    assert "12345" in texts and not texts & {"5", "4", "1"} and len(texts) == 31


def test_the_encoder_learns_and_is_saved_for_train_with_the_backbones_pooler(adapted, tiny_backbone):
    metrics = json.loads((adapted / "metrics.json").read_text())
    history = metrics["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[0]["head_only_steps"] > 0  # the tiny backbone ships without a language-model head
    assert history[-1]["held_out_loss"] < history[0]["held_out_loss"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    # 7 steps an epoch, fewer than the 50 between logged losses: the plot draws the epoch points.
    assert [h["recent_train_losses"] for h in history] == [[], []]
    assert (adapted / "adaptation_history.png").read_bytes().startswith(b"\x89PNG")
    assert metrics["adapted_from"] == tiny_backbone
    before, after = load_file(f"{tiny_backbone}/model.safetensors"), load_file(adapted / "model.safetensors")
    assert set(after) == set(before)
    assert not torch.equal(after["encoder.layer.1.attention.self.query.weight"],
                           before["encoder.layer.1.attention.self.query.weight"])
    assert torch.equal(after["pooler.dense.weight"], before["pooler.dense.weight"])
    # adapted on spelled emoji, and says so to whatever is trained from it (readable_text)
    assert json.loads((adapted / "tokenizer_config.json").read_text())["spell_unreadable_symbols"] is True


def test_the_adaptation_plot_draws_the_logged_losses_and_each_epochs_held_out_loss():
    import matplotlib.pyplot as plt

    from sentiment.train.plots import adaptation_figure

    history = [{"epoch": 1, "optimizer_step": 120, "train_loss": 5.0, "held_out_loss": 4.5, "head_only_steps": 24,
                "recent_train_losses": [[50, 6.0], [100, 5.0]]},
               {"epoch": 2, "optimizer_step": 240, "train_loss": 4.0, "held_out_loss": 4.2, "head_only_steps": 24,
                "recent_train_losses": [[170, 4.2], [220, 4.0]]}]
    fig = adaptation_figure(history)
    try:
        lines = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in fig.axes[0].get_lines()}
        assert lines["train, as logged (mean of the last steps)"] == ([50, 100, 170, 220], [6.0, 5.0, 4.2, 4.0])
        assert lines["held-out texts"] == ([120, 240], [4.5, 4.2])
        assert lines["encoder trains from step 24"][0] == [24, 24]
        assert "held-out loss 4.200 after 2 epoch(s)" in fig.axes[0].get_title()
    finally:
        plt.close(fig)


def test_train_fine_tunes_the_adapted_encoder_with_the_recipe_of_what_it_adapted(adapted, tiny_backbone):
    from sentiment.model.classifier import build_classifier
    from sentiment.model.recipes import RECIPES, recipe_for

    model, _ = build_classifier(str(adapted))  # refuses an encoder with missing weights
    adapted_query = load_file(adapted / "model.safetensors")["encoder.layer.1.attention.self.query.weight"]
    assert torch.equal(model.bert.encoder.layer[1].attention.self.query.weight, adapted_query)
    assert recipe_for(str(adapted)) == recipe_for(tiny_backbone)
    mpnet_adapted = adapted.parent / "mpnet-adapted"
    mpnet_adapted.mkdir()
    (mpnet_adapted / "metrics.json").write_text(json.dumps({"adapted_from": "mpnet"}))
    assert recipe_for(str(mpnet_adapted)) == ("mpnet", RECIPES["mpnet"])


@pytest.mark.parametrize("kind", ["mpnet", "distilbert"])
def test_the_encoder_of_other_architectures_is_saved_whole(kind, tmp_path):
    from transformers import AutoModel, AutoModelForMaskedLM

    from sentiment.adapt import save_encoder

    backbone = save_tiny_encoder(kind, tmp_path / "backbone")
    masked_lm = AutoModelForMaskedLM.from_pretrained(backbone)
    with torch.no_grad():
        for parameter in masked_lm.base_model.parameters():
            parameter.add_(0.01)  # stands for the adaptation
    masked_lm.save_pretrained(tmp_path / "masked-lm")
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(backbone).save_pretrained(tmp_path / "masked-lm")
    save_encoder(str(tmp_path / "masked-lm"), backbone, str(tmp_path / "encoder"))
    saved, original = AutoModel.from_pretrained(tmp_path / "encoder"), AutoModel.from_pretrained(backbone)
    for name, value in saved.state_dict().items():
        if ".pooler." in f".{name}":
            assert torch.equal(value, original.state_dict()[name])
        else:
            torch.testing.assert_close(value, masked_lm.base_model.state_dict()[name])


def test_refusals_name_the_problem_and_write_nothing(ray_cluster, corpus, tiny_backbone, tmp_path, capsys):
    folder, _, _ = corpus
    base = ["adapt", "--model", tiny_backbone, "--data", str(folder / "unlabeled.parquet"), "--num-workers", "1"]
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "part-0.parquet").write_bytes(b"someone else's")
    assert main([*base, "--text-column", UNLABELED_TEXT, "--output", str(theirs)]) == 2
    assert "already holds files that are not a model of ours" in capsys.readouterr().err
    assert sorted(p.name for p in theirs.iterdir()) == ["part-0.parquet"]

    assert main([*base, "--text-column", UNLABELED_TEXT, "--output", tiny_backbone]) == 2
    assert "is the --model folder" in capsys.readouterr().err

    assert main([*base, "--output", str(tmp_path / "new")]) == 2  # the default text column, content
    error = capsys.readouterr().err
    assert "unlabeled.parquet has no text column 'content'" in error and error.count("\n") == 1
    assert "give --text-column every name" in error

    assert main([*base, "--text-column", "body", "text", "--output", str(tmp_path / "new")]) == 2
    error = capsys.readouterr().err
    assert "unlabeled.parquet has no text column 'body' or 'text'" in error and error.count("\n") == 1
    assert not (tmp_path / "new" / "metrics.json").exists()


@pytest.mark.parametrize("kind", ["bert", "mpnet", "roberta", "distilbert"])
def test_the_loss_at_masked_positions_only_is_the_models_own(kind, tiny_backbone, tmp_path):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from sentiment.train.masked_lm import MaskedCollate, MaskedPositionsLoss

    backbone = tiny_backbone if kind == "bert" else save_tiny_encoder(kind, tmp_path)
    model, tokenizer = AutoModelForMaskedLM.from_pretrained(backbone), AutoTokenizer.from_pretrained(backbone)
    model.eval()
    batch = MaskedCollate(tokenizer, 64, 0.15, None, seed=0)(
        {"text": ["The app crashes every time I open it", "good", "Love the new calendar view, but sync is slow"]})
    fast = MaskedPositionsLoss(model)
    assert (fast.head is None) == (kind == "distilbert")  # its head is three modules: its own forward runs
    with torch.no_grad():
        torch.testing.assert_close(fast(**batch), model(**batch).loss)
        nothing_masked = {**batch, "labels": torch.full_like(batch["labels"], -100)}
        if fast.head is not None:
            assert float(fast(**nothing_masked)) == 0.0


def test_the_adapt_job_refuses_missing_input_in_one_line_and_leaves_no_run_record(ray_cluster, tmp_path, capsys):
    import runpy
    from pathlib import Path

    missing = tmp_path / "no-such-reviews.parquet"
    job = runpy.run_path(str(Path(__file__).resolve().parents[1] / "jobs" / "adapt.py"), run_name="job")
    assert job["main"](["--data", str(missing), "--output", str(tmp_path / "encoder")]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == f"sentiment adapt: error: input not found: {missing}"
    assert "Traceback" not in err and not (tmp_path / "encoder").exists()


def test_the_same_run_with_other_settings_is_refused_not_resumed(corpus, adapted, tiny_backbone, capsys):
    folder, _, _ = corpus
    metrics_before = (adapted / "metrics.json").read_text()
    assert main(["adapt", "--model", tiny_backbone, "--data", *corpus_files(folder),
                 "--text-column", UNLABELED_TEXT, OTHER_TEXT, "--leave-out", str(folder / "labeled.csv"),
                 "--output", str(adapted),
                 "--num-workers", "2", "--epochs", "2", "--batch-size", "16", "--lr", "1e-3",
                 "--held-out-fraction", "0.05"]) == 2
    error = capsys.readouterr().err
    assert "holds checkpoints of a run with other settings (lr 0.002 -> 0.001)" in error
    assert (adapted / "metrics.json").read_text() == metrics_before


def test_a_killed_run_resumes_from_its_last_checkpoint(adapted):
    """The fixture's run, killed after epoch 1: the second attempt trained epoch 2 only, from the
    weights and optimizer state epoch 1 saved."""
    from tests.helpers import assert_resumed_from_checkpoint

    assert_resumed_from_checkpoint(adapted, 2, restored_epochs=[1])
