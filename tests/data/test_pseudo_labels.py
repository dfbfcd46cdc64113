"""Pseudo-labels (`sentiment train --pseudo-labels`): confident rows of `sentiment score` output join
the training split only; every other row is counted with its reason. The end-to-end run through
DDP, with the pseudo-labels on S3, is tests/train/test_driver.py's; real `sentiment score` output read
back is tests/score/test_pipeline.py's."""

import pandas as pd
import pyarrow.parquet as pq
import pytest

from sentiment.data.labels import LABEL_TO_ID
from sentiment.data.pseudo_labels import read_pseudo_labels
from sentiment.errors import InputError
from tests.helpers import UNLABELED_TEXT, labeled_sample, scored_table


def test_only_confident_scored_rows_are_kept_and_every_other_row_is_counted(tmp_path):
    folder = tmp_path / "scored"
    folder.mkdir()
    pq.write_table(scored_table(["great app", "  meh  ", "awful", "unsure", "", None],
                                ["positive", "neutral", "negative", "positive", "negative", None],
                                [0.97, 0.9, 0.95, 0.6, 0.99, None],
                                errors=[None, None, None, None, None, "empty_text"]), folder / "part-0.parquet")
    # A second file repeats a text (kept once, the first seen) and brings one more.
    pq.write_table(scored_table(["great app", "crashes daily"], ["negative", "negative"], [0.99, 0.91]),
                   folder / "part-1.parquet")
    (folder / "_SUCCESS").write_text("")  # markers and the summary are not data
    (folder / "_summary.json").write_text("{}")
    pseudo = read_pseudo_labels([str(folder)], UNLABELED_TEXT, 0.9)
    assert pseudo.rows[["text", "label"]].to_dict("list") == {
        "text": ["great app", "meh", "awful", "crashes daily"],
        "label": [LABEL_TO_ID["positive"], LABEL_TO_ID["neutral"], LABEL_TO_ID["negative"], LABEL_TO_ID["negative"]]}
    counts = pseudo.counts
    assert counts == {"files": 2, "rows_read": 8, "kept": 4, "unscored": 1, "empty_text": 1, "below_confidence": 1,
                      "duplicate_text": 1, "min_confidence": 0.9,
                      "kept_classes": {"negative": 2, "neutral": 1, "positive": 1}}
    assert counts["rows_read"] == sum(counts[k] for k in ("kept", "unscored", "empty_text", "below_confidence",
                                                          "duplicate_text"))


def test_outputs_that_name_the_text_column_differently_are_read_with_several_names(tmp_path):
    pq.write_table(scored_table(["great app", "awful"], ["positive", "negative"], [0.97, 0.95]), tmp_path / "a.parquet")
    pq.write_table(scored_table(["great app", "so so"], ["positive", "neutral"], [0.99, 0.91], text_column="Text"),
                   tmp_path / "b.parquet")
    pseudo = read_pseudo_labels([str(tmp_path)], [UNLABELED_TEXT, "Text"], 0.9)
    assert sorted(pseudo.rows["text"]) == ["awful", "great app", "so so"]
    assert pseudo.counts["rows_read"] == 4 and pseudo.counts["duplicate_text"] == 1  # across the two names
    with pytest.raises(InputError, match=r"b\.parquet: missing column\(s\) \['Review Text'\].*every name"):
        read_pseudo_labels([str(tmp_path)], UNLABELED_TEXT, 0.9)


def test_a_file_that_is_not_scored_output_is_named_with_what_it_lacks(tmp_path):
    pq.write_table(scored_table(["fine"], ["positive"], [0.99]).drop(["prob_neutral"]), tmp_path / "a.parquet")
    with pytest.raises(InputError, match=r"a\.parquet: missing column\(s\) \['prob_neutral'\] of scored reviews; "
                                         r"it has .*; --pseudo-labels takes the output of `sentiment score`"):
        read_pseudo_labels([str(tmp_path / "a.parquet")], UNLABELED_TEXT, 0.9)
    pq.write_table(scored_table(["fine"], ["positive"], [0.5]), tmp_path / "b.parquet")
    with pytest.raises(InputError, match=r"b\.parquet: missing column\(s\) \['content'\].*--pseudo-text-column"):
        read_pseudo_labels([str(tmp_path / "b.parquet")], "content", 0.9)
    with pytest.raises(InputError, match="none was scored with a probability of at least 0.9.*lower --pseudo-min"):
        read_pseudo_labels([str(tmp_path / "b.parquet")], UNLABELED_TEXT, 0.9)
    with pytest.raises(InputError, match="--pseudo-min-confidence must be above 0 and at most 1"):
        read_pseudo_labels([str(tmp_path / "b.parquet")], UNLABELED_TEXT, 1.5)
    with pytest.raises(InputError, match="--pseudo-per-class must be balanced, all or a positive whole number, got '-3'"):
        read_pseudo_labels([str(tmp_path / "b.parquet")], UNLABELED_TEXT, 0.5, "-3")


def _confident_positives_and_a_few_others(tmp_path):
    """What a real model gives app reviews: many confident positives, fewer negatives, neutral
    rarely and never sure (scored with mpnet, 24,000 unlabeled reviews at 0.9: positive only)."""
    texts = [f"positive {i}" for i in range(6)] + [f"negative {i}" for i in range(3)] + ["neutral 0", "neutral 1"]
    labels = ["positive"] * 6 + ["negative"] * 3 + ["neutral"] * 2
    confidences = [0.99, 0.6, 0.97, 0.95, 0.7, 0.98] + [0.9, 0.95, 0.8] + [0.55, 0.65]
    pq.write_table(scored_table(texts, labels, confidences), tmp_path / "scored.parquet")
    return str(tmp_path / "scored.parquet")


@pytest.mark.parametrize("per_class, joined", [
    ("balanced", ["positive 0", "negative 0", "negative 1", "neutral 0", "neutral 1", "positive 5"]),
    ("all", None),
    ("1", ["negative 1", "neutral 1", "positive 0"]),
])
def test_each_class_contributes_its_most_confident_rows(tmp_path, per_class, joined):
    pseudo = read_pseudo_labels([_confident_positives_and_a_few_others(tmp_path)], UNLABELED_TEXT, 0.5, per_class)
    rows, counts = pseudo.for_training(["negative 2"])  # the labeled data has one of them
    expected = joined or [t for t in pseudo.rows["text"] if t != "negative 2"]
    assert sorted(rows["text"]) == sorted(expected)
    assert list(rows.columns) == ["text", "label"]
    assert counts["joined_train"] == len(expected) and counts["in_labeled_data"] == 1
    assert counts["over_class_cap"] == 10 - len(expected) and counts["per_class"] == per_class


def test_a_balanced_selection_without_a_confident_class_says_so(tmp_path):
    scored = _confident_positives_and_a_few_others(tmp_path)
    with pytest.raises(InputError, match=r"no pseudo-labeled neutral rows .* at --pseudo-min-confidence 0.9 \(negative 2, "
                                         r"neutral 0, positive 4\), so a balanced selection keeps none; lower"):
        read_pseudo_labels([scored], UNLABELED_TEXT, 0.9)
    assert read_pseudo_labels([scored], UNLABELED_TEXT, 0.9, "all").counts["kept"] == 6


@pytest.mark.parametrize("where", ["driver", "cluster"])
def test_pseudo_labels_join_training_only_and_never_a_labeled_text(ray_cluster, shared_data, tmp_path, monkeypatch,
                                                                   where):
    import sentiment.data.labeled
    from sentiment.data.labeled import prepare_splits

    if where == "cluster":  # the path of labeled data too big for the driver: a hash shuffle on the cluster
        monkeypatch.setattr(sentiment.data.labeled, "IN_DRIVER_MAX_BYTES", 0)
    data = labeled_sample(shared_data, tmp_path, 300)
    args = dict(seed=42, val_fraction=0.1, test_fraction=0.1)
    plain = prepare_splits([str(data)], "content", "score", **args)
    frames = {name: getattr(plain, name).to_pandas() for name in ("train", "validation", "test")}
    # Two texts the labeled data has (one held out, one in train), each pseudo-labeled against its
    # stars, and three new ones.
    held_out = frames["validation"].iloc[0]
    trained = frames["train"].iloc[0]
    wrong = {label: name for name, label in LABEL_TO_ID.items()}
    new = ["totally new review one", "another unseen review", "a third fresh one"]
    pq.write_table(scored_table([held_out["text"], trained["text"], *new],
                                [wrong[(held_out["label"] + 1) % 3], wrong[(trained["label"] + 1) % 3],
                                 "negative", "neutral", "positive"], [0.95] * 5), tmp_path / "scored.parquet")
    pseudo = read_pseudo_labels([str(tmp_path / "scored.parquet")], UNLABELED_TEXT, 0.9)
    with_pseudo = prepare_splits([str(data)], "content", "score", **args, pseudo=pseudo)

    assert with_pseudo.split_hash == plain.split_hash
    for name in ("validation", "test"):
        pd.testing.assert_frame_equal(getattr(with_pseudo, name).to_pandas().sort_values("text").reset_index(drop=True),
                                      frames[name].sort_values("text").reset_index(drop=True))
    train = with_pseudo.train.to_pandas()
    expected = pd.concat([frames["train"], pd.DataFrame({"text": new, "label": [0, 1, 2]})])
    pd.testing.assert_frame_equal(train.sort_values("text").reset_index(drop=True),
                                  expected.sort_values("text").reset_index(drop=True), check_dtype=False)
    counts = with_pseudo.counts
    assert counts["train"] == len(frames["train"]) + 3 == len(train)
    assert counts["pseudo_labels"]["in_labeled_data"] == 2 and counts["pseudo_labels"]["joined_train"] == 3
    assert counts["pseudo_labels"]["classes"] == {"negative": 1, "neutral": 1, "positive": 1}
    # The labeled rows keep their star label (the pseudo-label against it is not used).
    assert train.set_index("text").loc[trained["text"], "label"] == trained["label"]
