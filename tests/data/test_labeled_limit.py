"""--limit N trains on a seeded random sample, not the first N rows of files sorted by score."""

import pandas as pd

from sentiment.data.labeled import read_labeled


def test_limit_takes_a_seeded_random_sample_of_a_file_sorted_by_score(ray_cluster, shared_data, tmp_path):
    real = pd.read_csv(next((shared_data / "labeled").glob("*.csv")), usecols=["content", "score"])
    sorted_by_score = real.dropna().sort_values("score", kind="stable")
    path = tmp_path / "sorted.csv"
    sorted_by_score.to_csv(path, index=False)
    assert sorted_by_score["score"].head(300).nunique() == 1  # the first 300 rows are one class

    def sample(seed):
        rows = read_labeled([str(path)], "content", "score", limit=300, seed=seed).to_pandas()
        return rows.sort_values("text").reset_index(drop=True)

    first, again, other = sample(1), sample(1), sample(2)
    assert len(first) == 300
    assert first["label"].nunique() == 3
    pd.testing.assert_frame_equal(first, again)
    assert not first["text"].equals(other["text"])
