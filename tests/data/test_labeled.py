"""Reading labeled reviews: columns, bad rows, dedup and the seeded split."""

import pandas as pd
import pytest

from sentiment.data.labeled import prepare_splits, read_labeled, split_of
from sentiment.errors import InputError


def _texts(dataset):
    return set(dataset.to_pandas()["text"])


def test_split_is_a_pure_function_of_seed_and_text():
    texts = [f"review number {i}" for i in range(4000)]
    first = [split_of(t, 7, 0.05, 0.05) for t in texts]
    assert first == [split_of(t, 7, 0.05, 0.05) for t in texts]
    assert first != [split_of(t, 8, 0.05, 0.05) for t in texts]
    shares = pd.Series(first).value_counts(normalize=True)
    assert shares["train"] == pytest.approx(0.90, abs=0.02)
    assert shares["validation"] == pytest.approx(0.05, abs=0.015)
    assert shares["test"] == pytest.approx(0.05, abs=0.015)


def test_bad_rows_are_counted_and_duplicates_dropped_without_leakage(ray_cluster, tmp_path, monkeypatch):
    rows = [(f"distinct review {i}", 1 + i % 5) for i in range(300)]
    rows += [("good", 5)] * 6 + [("good", 3)] * 2          # duplicates, conflicting stars
    rows += [("", 4), ("   ", 2), (None, 1)]               # empty text
    rows += [("fine text", 0), ("more text", "five"), ("x y", 6), ("no score", None)]  # invalid score
    path = tmp_path / "reviews.csv"
    pd.DataFrame(rows, columns=["content", "score"]).to_csv(path, index=False)

    splits = prepare_splits([str(path)], "content", "score", seed=3, val_fraction=0.1, test_fraction=0.1)
    counts = splits.counts
    assert counts["rows_read"] == len(rows)
    assert counts["dropped_empty_text"] == 3
    assert counts["dropped_invalid_score"] == 4
    assert counts["dropped_duplicate_text"] == 7
    assert counts["train"] + counts["validation"] + counts["test"] == 301
    train, val, test = _texts(splits.train), _texts(splits.validation), _texts(splits.test)
    assert not (train & val) and not (train & test) and not (val & test)
    everything = pd.concat([s.to_pandas() for s in (splits.train, splits.validation, splits.test)])
    assert everything.loc[everything.text == "good", "label"].tolist() == [2]  # majority of 5-star votes

    # Data this small is deduplicated and split in the driver; larger data by a hash shuffle on
    # the cluster. Both give the same rows, counts and splits.
    import sentiment.data.labeled

    monkeypatch.setattr(sentiment.data.labeled, "IN_DRIVER_MAX_BYTES", 0)
    again = prepare_splits([str(path)], "content", "score", seed=3, val_fraction=0.1, test_fraction=0.1)
    assert again.counts == counts and again.split_hash == splits.split_hash
    assert _texts(again.test) == test and _texts(again.validation) == val and _texts(again.train) == train
    assert again.train.count() == counts["train"] and len(train) == counts["train"]


def test_both_real_files_with_different_columns_read_as_one(ray_cluster, shared_data):
    files = sorted(str(p) for p in (shared_data / "labeled").glob("*.csv"))
    dataset = read_labeled(files, "content", "score", limit=None)
    assert dataset.columns() == ["text", "label", "problem"]
    assert dataset.count() == 7572 + 5901


def test_parquet_and_csv_inputs_mix(ray_cluster, tmp_path):
    pd.DataFrame({"content": ["a b", "c d"], "score": [1, 5], "extra": [0, 0]}).to_parquet(tmp_path / "x.parquet")
    pd.DataFrame({"content": ["e f"], "score": ["3"]}).to_csv(tmp_path / "y.csv", index=False)
    frame = read_labeled([str(tmp_path)], "content", "score").to_pandas().sort_values("text")
    assert frame["label"].tolist() == [0, 2, 1]


def test_missing_column_names_the_file_and_its_columns(ray_cluster, tmp_path):
    pd.DataFrame({"review": ["a"], "score": [1]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(InputError, match=r"bad\.csv: missing column\(s\) \['content'\]; it has \['review', 'score'\]"):
        read_labeled([str(tmp_path / "bad.csv")], "content", "score")


def test_files_naming_the_text_column_differently_read_as_one_with_several_names(ray_cluster, tmp_path):
    import json

    pd.DataFrame({"content": ["a b", "12345"], "score": [1, 5]}).to_csv(tmp_path / "x.csv", index=False)
    pd.DataFrame({"Review Text": ["c d"], "score": ["3"], "content2": ["not this"]}).to_parquet(tmp_path / "y.parquet")
    pd.DataFrame({"Text": ["e f"], "score": [4]}).to_parquet(tmp_path / "z.parquet")  # score int64 here
    (tmp_path / "w.jsonl").write_text(json.dumps({"Text": "g h", "score": 2}) + "\n")
    frame = read_labeled([str(tmp_path)], ["content", "Review Text", "Text"], "score").to_pandas().sort_values("text")
    assert frame["text"].tolist() == ["12345", "a b", "c d", "e f", "g h"]  # all-digit text stays text
    assert frame["label"].tolist() == [2, 0, 1, 2, 0] and (frame["problem"] == "").all()

    with pytest.raises(InputError, match=r"y\.parquet: missing column\(s\) \['content or Text'\].*"
                                         r"give --text-column every name"):
        read_labeled([str(tmp_path)], ["content", "Text"], "score")


def test_a_text_column_of_numbers_is_counted_apart_not_learned_from(ray_cluster, tmp_path, caplog):
    """A Parquet or JSON file whose text column holds numbers (a wrong --text-column: the stars?)
    is not read as reviews "5", "4": its rows are counted as text_not_string, with a warning
    naming it, beside files of text, and a CSV of all-digit reviews stays text."""
    import json

    pd.DataFrame({"content": [f"review {i}" for i in range(40)] + ["12345"], "score": [1 + i % 5 for i in range(41)]}
                 ).to_csv(tmp_path / "text.csv", index=False)
    pd.DataFrame({"content": [5, 4, 1], "score": [5, 4, 1]}).to_parquet(tmp_path / "numbers.parquet")
    (tmp_path / "numbers.jsonl").write_text("".join(json.dumps({"content": 2.5, "score": 3}) + "\n" for _ in range(2)))
    with caplog.at_level("WARNING", logger="sentiment.data.labeled"):
        splits = prepare_splits([str(tmp_path)], "content", "score", seed=0, val_fraction=0.2, test_fraction=0.2)
    warning = next(r.getMessage() for r in caplog.records if "holds no text" in r.getMessage())
    assert "2 file(s)" in warning and "int64 in " in warning and "numbers.parquet" in warning
    assert "double in " in warning and "numbers.jsonl" in warning
    counts = splits.counts
    assert counts["dropped_text_not_string"] == 5 and counts["rows_read"] == 46
    learned = set().union(*(_texts(s) for s in (splits.train, splits.validation, splits.test)))
    assert "12345" in learned and not learned & {"5", "4", "1", "2.5"}

    with pytest.raises(InputError, match=r"no usable rows .*0 with empty text, 0 with a score outside 1-5, "
                                         r"3 in a text column that holds no text"):
        prepare_splits([str(tmp_path / "numbers.parquet")], "content", "score", seed=0, val_fraction=0.2,
                       test_fraction=0.2)


def test_reads_labeled_reviews_from_s3(ray_cluster, s3_bucket, shared_data):
    from sentiment.io import storage

    storage.write_bytes(f"{s3_bucket}/labeled/gplay-2024.csv", (shared_data / "labeled" / "gplay-2024.csv").read_bytes())
    dataset = read_labeled([f"{s3_bucket}/labeled/"], "content", "score")
    assert dataset.count() == 5901


@pytest.mark.parametrize("val,test", [(0.05, 0.0), (0.0, 0.05), (0.5, 0.5), (0.6, 0.6)])
def test_split_fractions_must_be_positive_and_leave_room_for_training(val, test):
    with pytest.raises(InputError, match="--val-fraction and --test-fraction"):
        prepare_splits(["unused.csv"], "content", "score", seed=1, val_fraction=val, test_fraction=test)


def test_training_reads_every_data_file_in_a_folder_and_names_the_rest(ray_cluster, tmp_path, shared_data):
    import gzip
    import json

    real = pd.read_csv(shared_data / "labeled" / "gplay-2024.csv", usecols=["content", "score"]).sample(
        n=40, random_state=0)
    parts = [real.iloc[i * 10:(i + 1) * 10] for i in range(4)]
    folder = tmp_path / "labeled"
    folder.mkdir()
    (folder / "a.csv.gz").write_bytes(gzip.compress(parts[0].to_csv(index=False).encode()))
    (folder / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in parts[1].to_dict("records")))
    parts[2].to_parquet(folder / "c.PQ")  # score as int64 here...
    parts[3].astype({"score": str}).to_parquet(folder / "d.parquet")  # ...and as strings here
    (folder / "README.md").write_text("where these came from")
    frame = read_labeled([str(folder)], "content", "score").to_pandas()
    assert len(frame) == 40 and (frame["problem"] == "").all()
    assert sorted(frame["text"]) == sorted(real["content"].str.strip())
    (folder / "extra.tsv").write_text("content\tscore\n")
    with pytest.raises(InputError, match=r"cannot tell how to read .*extra\.tsv"):
        read_labeled([str(folder)], "content", "score")
