"""Model selection you can trust: a split that --seed does not move, and a history plot that marks
the epoch --select-metric chose. The end-to-end checks (the saved epoch is the macro-F1 argmax,
validation and test at one recorded precision, the split hash of --split-seed) read
tests/train/test_driver.py's run, which is selected by macro-F1: one Ray Train run fewer."""

from __future__ import annotations

from tests.helpers import labeled_sample


def _texts(dataset) -> list[str]:
    return sorted(dataset.to_pandas()["text"])


def test_the_split_and_its_hash_do_not_move_with_the_training_seed(ray_cluster, shared_data, tmp_path):
    from sentiment.data.labeled import held_out_hash, prepare_splits

    data = [str(labeled_sample(shared_data, tmp_path, 300))]
    common = dict(val_fraction=0.1, test_fraction=0.1, limit=250)
    one = prepare_splits(data, "content", "score", seed=42, shuffle_seed=1, **common)
    two = prepare_splits(data, "content", "score", seed=42, shuffle_seed=2, **common)

    assert _texts(one.validation) == _texts(two.validation) and _texts(one.test) == _texts(two.test)
    assert one.split_hash == two.split_hash and len(one.split_hash) == 64
    assert one.train.to_pandas()["text"].tolist() != two.train.to_pandas()["text"].tolist()  # order follows --seed
    # The hash is of the held-out texts (split_of's seed sensitivity: tests/data/test_labeled.py).
    assert held_out_hash(_texts(one.test), _texts(one.validation)) != one.split_hash


def _history(val_accuracy, val_macro_f1):
    return [{"epoch": i + 1, "train_loss": 1.0 - 0.1 * i, "val_loss": 0.9, "train_accuracy": 0.5,
             "val_accuracy": acc, "val_macro_f1": f1} for i, (acc, f1) in enumerate(zip(val_accuracy, val_macro_f1))]


def test_the_history_plot_marks_the_epoch_select_metric_chose():
    import matplotlib.pyplot as plt

    from sentiment.train.plots import history_figure
    from sentiment.train.stats import selection_score

    # Accuracy peaks at epoch 1, macro-F1 at epoch 2.
    history = _history([0.70, 0.66, 0.65], [0.50, 0.62, 0.60])
    chosen = max(history, key=lambda h: selection_score(h, "macro_f1"))["epoch"]
    assert chosen == 2
    fig = history_figure(history, chosen, "macro_f1")
    try:
        for ax in fig.axes:
            markers = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
            assert [list(line.get_xdata()) for line in markers] == [[2, 2]]
        curves = {line.get_label(): list(line.get_ydata()) for line in fig.axes[1].get_lines()}
        assert curves["validation macro-F1"] == [0.50, 0.62, 0.60]
        assert "saved epoch 2" in fig.texts[0].get_text()
    finally:
        plt.close(fig)
