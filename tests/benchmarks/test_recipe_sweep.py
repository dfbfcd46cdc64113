"""The recipe sweep (benchmarks/recipes.py): per-layer learning rates, and seeded trials on
`sentiment train`'s own splits, run in parallel processes, scored on every held-out row."""

import json

import pandas as pd
import pytest

from tests.helpers import labeled_sample


def test_layer_decay_gives_each_layer_its_rate_and_every_parameter_one(tiny_backbone):
    from sentiment.model.classifier import build_classifier
    from sentiment.train.step import layer_rate_groups

    model, _ = build_classifier(tiny_backbone)  # 2 encoder layers
    groups = layer_rate_groups(model, lr=1.0, layer_decay=0.5)
    rate_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    assert sum(len(g["params"]) for g in groups) == len(rate_of) == len(list(model.parameters()))
    named = dict(model.named_parameters())
    assert rate_of[id(named["classifier.weight"])] == 1.0
    assert rate_of[id(named["bert.pooler.dense.weight"])] == 1.0
    assert rate_of[id(named["bert.encoder.layer.1.attention.self.query.weight"])] == 0.5
    assert rate_of[id(named["bert.encoder.layer.0.output.dense.bias"])] == 0.25
    assert rate_of[id(named["bert.embeddings.word_embeddings.weight"])] == 0.125
    assert len(layer_rate_groups(model, lr=3e-4, layer_decay=1.0)) == 1


def test_comparison_trials_keep_the_backbones_recipe_and_pair_each_seed():
    """benchmarks.pooling and benchmarks.spelling compare one change on the backbone's own recipe:
    a seed's trials are adjacent (a sweep cut short keeps whole pairs), and only the field varies."""
    from benchmarks.lib.recipe_sweep import recipe_trials
    from sentiment.model.recipes import RECIPES

    trials = recipe_trials("mpnet", [42, 43], "spelling", (True, False))
    assert [(t.seed, t.spelling) for t in trials] == [(42, True), (42, False), (43, True), (43, False)]
    recipe = RECIPES["mpnet"]
    assert {(t.lr, t.epochs, t.batch_size, t.warmup_fraction, t.pooling) for t in trials} == {
        (recipe.lr, recipe.epochs, recipe.batch_size, recipe.warmup_fraction, "head")}


def test_sweep_trials_are_seeded_and_score_every_held_out_row(ray_cluster, shared_data, tmp_path, tiny_backbone):
    from benchmarks.lib.recipe_sweep import Trial, best_epoch, run_sweep, summarize_sweep, sweep_table, write_splits

    counts = write_splits([str(labeled_sample(shared_data, tmp_path, 400))], str(tmp_path / "splits"),
                          val_fraction=0.15, test_fraction=0.15)
    sizes = {name: len(pd.read_parquet(tmp_path / "splits" / f"{name}.parquet")) for name in ("train", "validation", "test")}
    assert sizes == {name: counts[name] for name in sizes} and min(sizes.values()) > 30

    trials = [Trial(lr=1e-3, epochs=2, seed=0), Trial(lr=1e-3, epochs=2, seed=0), Trial(lr=1e-3, epochs=2, seed=1)]
    results_path = tmp_path / "sweep.jsonl"
    results = run_sweep(trials, str(tmp_path / "splits"), tiny_backbone, processes=2, results_path=str(results_path))

    assert len(results) == 3 and len(results_path.read_text().splitlines()) == 3
    for result in results:
        assert [m["epoch"] for m in result["history"]] == [1, 2]
        for m in result["history"]:
            assert sum(map(sum, m["val_confusion_matrix"])) == sizes["validation"]
            assert sum(map(sum, m["test_confusion_matrix"])) == sizes["test"]
    by_seed = sorted(results, key=lambda r: r["trial"]["seed"])
    assert by_seed[0]["history"] == by_seed[1]["history"]  # same seed, same run
    assert by_seed[0]["history"][0]["train_loss"] != by_seed[2]["history"][0]["train_loss"]

    (row,) = summarize_sweep(results)
    assert row["setting"] == "--lr 0.001 --epochs 2" and row["seeds"] == 3
    chosen = [best_epoch(r["history"], "accuracy") for r in results]
    assert row["test_accuracy"][0] == pytest.approx(sum(m["test_accuracy"] for m in chosen) / 3)
    assert all(m["val_accuracy"] == max(h["val_accuracy"] for h in r["history"]) for m, r in zip(chosen, results))
    assert "`--lr 0.001 --epochs 2` | 3 |" in sweep_table([row])
    assert json.loads(results_path.read_text().splitlines()[0])["trial"]["lr"] == 1e-3


def test_star_loss_trial_finds_every_star_and_scores_through_the_class_head(ray_cluster, shared_data, tmp_path,
                                                                           tiny_backbone):
    from benchmarks.lib.recipe_sweep import write_splits
    from benchmarks.star_loss import STAR_TO_CLASS, add_stars, best_epoch, run_trial, table

    sample = labeled_sample(shared_data, tmp_path, 300)
    write_splits([str(sample)], str(tmp_path / "splits"), val_fraction=0.15, test_fraction=0.15)
    assert add_stars(str(tmp_path / "splits"), [str(sample)]) == {"train": 0, "validation": 0, "test": 0}
    train = pd.read_parquet(tmp_path / "splits" / "train-stars.parquet")
    assert set(train["star"]) == {1, 2, 3, 4, 5}
    assert (train["star"].map(lambda star: STAR_TO_CLASS[star - 1]) == train["label"]).all()

    plain, with_stars = (run_trial(str(tmp_path / "splits"), tiny_backbone, weight, seed=0, threads=1)
                         for weight in (0.0, 1.0))
    held_out = {name: len(pd.read_parquet(tmp_path / "splits" / f"{name}.parquet")) for name in ("validation", "test")}
    for result in (plain, with_stars):
        for epoch in result["history"]:
            assert sum(map(sum, epoch["val_confusion_matrix"])) == held_out["validation"]
            assert sum(map(sum, epoch["test_confusion_matrix"])) == held_out["test"]
    # The star term adds to the loss (ln 5 at the start): same seed, same batches, another loss.
    assert with_stars["history"][0]["train_loss"] > plain["history"][0]["train_loss"] + 1.0
    assert best_epoch(plain)["val_accuracy"] == max(m["val_accuracy"] for m in plain["history"])
    assert f"| {tiny_backbone} | 1 | 0 |" in table([plain, with_stars])


def test_mean_pooled_head_ignores_padding_and_trains_the_encoder_with_the_train_step(tiny_backbone):
    import torch

    from benchmarks.lib.mean_pooling import MeanPooledClassifier
    from sentiment.model.classifier import build_classifier
    from sentiment.train.step import optimizer_and_schedule, run_epoch

    torch.manual_seed(0)
    model, tokenizer = build_classifier(tiny_backbone)
    pooled = MeanPooledClassifier(model, dropout=0.0).eval()
    texts = ["bad", "a much longer review that pads the first one"]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    alone = tokenizer(texts[:1], return_tensors="pt")
    assert batch["attention_mask"][0].sum() < batch["attention_mask"].shape[1]  # "bad" is padded in the batch
    with torch.no_grad():
        assert torch.allclose(pooled(**batch).logits[0], pooled(**alone).logits[0], atol=1e-5)

    labels = torch.tensor([0, 2])
    encoder_weight = pooled.encoder.embeddings.word_embeddings.weight.detach().clone()
    optimizer, scheduler = optimizer_and_schedule(pooled, lr=1e-3, layer_decay=1.0, warmup_fraction=0.0,
                                                  total_steps=30, device=torch.device("cpu"))
    step_batches = [{**batch, "labels": labels}] * 30
    first = run_epoch(pooled.train(), step_batches[:1], torch.device("cpu"))["loss"]
    run_epoch(pooled, step_batches, torch.device("cpu"), optimizer=optimizer, scheduler=scheduler,
              scaler=torch.amp.GradScaler("cpu", enabled=False))
    after = run_epoch(pooled.eval(), step_batches[:1], torch.device("cpu"))
    assert after["loss"] < 0.75 * first and after["accuracy"] == 1.0
    assert not torch.equal(pooled.encoder.embeddings.word_embeddings.weight, encoder_weight)


def test_spelling_benchmark_scores_the_reviews_spelling_changes_apart(shared_data, tmp_path, tiny_backbone):
    """benchmarks.spelling writes the held-out reviews whose text spelling changes, and every trial
    scores them as a set of their own, with spelling on or off."""
    from benchmarks.lib.recipe_sweep import Trial, run_trial, trial_table, write_splits
    from benchmarks.spelling import SYMBOLS, write_spelled_rows

    write_splits([str(labeled_sample(shared_data, tmp_path, 1500))], str(tmp_path / "splits"),
                 val_fraction=0.1, test_fraction=0.1)
    counts = write_spelled_rows(str(tmp_path / "splits"), tiny_backbone)
    symbols = pd.read_parquet(tmp_path / "splits" / f"{SYMBOLS}.parquet")
    assert len(symbols) == counts["validation"] + counts["test"] > 0
    assert symbols["text"].map(lambda text: not text.isascii()).all()

    results = []
    for spelling in (True, False):
        results.append(run_trial(Trial(epochs=1, spelling=spelling), str(tmp_path / "splits"), tiny_backbone,
                                 extra_held_out=(SYMBOLS,)))
        (epoch,) = results[-1]["history"]
        assert sum(map(sum, epoch[f"{SYMBOLS}_confusion_matrix"])) == len(symbols)
    # the per-trial table gives each trial's accuracy on them in a column of its own
    header, _, *rows = trial_table(results, "spelling", extra_held_out=(SYMBOLS,)).splitlines()
    assert header.endswith(f"| {SYMBOLS} acc |") and len(rows) == 2
    for row, result in zip(rows, sorted(results, key=lambda r: str(r["trial"]["spelling"]))):
        assert row.endswith(f"| {result['history'][0][f'{SYMBOLS}_accuracy']:.3f} |")
