import numpy as np
import pandas as pd
import pytest

from sentiment.data.labels import INVALID_LABEL, LABELS, scores_to_label_ids


def test_label_order_is_negative_neutral_positive():
    assert LABELS == ("negative", "neutral", "positive")


@pytest.mark.parametrize("score,label", [(1, "negative"), (2, "negative"), (3, "neutral"),
                                         (4, "positive"), (5, "positive")])
def test_each_star_score_maps_to_its_class(score, label):
    assert LABELS[scores_to_label_ids(pd.Series([score]))[0]] == label


@pytest.mark.parametrize("bad", [0, 6, -1, 2.5, None, "five"])
def test_score_outside_one_to_five_is_invalid(bad):
    assert scores_to_label_ids(pd.Series([bad], dtype=object))[0] == INVALID_LABEL


def test_vectorised_mapping_marks_invalid_scores():
    scores = pd.Series([1, "2", 3.0, "4", 5, 0, 6, 2.5, None, "abc", float("nan")], dtype=object)
    expected = [0, 0, 1, 2, 2] + [INVALID_LABEL] * 6
    np.testing.assert_array_equal(scores_to_label_ids(scores), expected)
