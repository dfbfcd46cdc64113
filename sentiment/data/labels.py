"""The three sentiment classes and the star-score rule that defines them."""

import numpy as np
import pandas as pd

# Order matters: it is the order of the model's logits and of every probability column.
LABELS = ("negative", "neutral", "positive")
LABEL_TO_ID = {name: i for i, name in enumerate(LABELS)}
PROB_COLUMNS = tuple(f"prob_{name}" for name in LABELS)

INVALID_LABEL = -1
# A pseudo-labeled review (sentiment.data.pseudo_labels) may join training when the model gave its
# chosen class at least this probability (more than all others together), and then as many of
# each class as of the scarcest one, the most confident first.
DEFAULT_PSEUDO_MIN_CONFIDENCE = 0.5
DEFAULT_PSEUDO_PER_CLASS = "balanced"


def scores_to_label_ids(scores: pd.Series) -> np.ndarray:
    """Map 1-5 star scores to class ids: 1-2 negative, 3 neutral, 4-5 positive; anything that
    is not a whole number from 1 to 5 becomes INVALID_LABEL.

    Strings such as "4" or "4.0" count as valid, since CSV exports often quote numbers.
    """
    numeric = pd.to_numeric(scores, errors="coerce").to_numpy(dtype="float64")
    labels = np.full(len(numeric), INVALID_LABEL, dtype=np.int64)
    whole = np.isfinite(numeric) & (numeric == np.round(numeric))
    labels[whole & (numeric >= 1) & (numeric <= 2)] = 0
    labels[whole & (numeric == 3)] = 1
    labels[whole & (numeric >= 4) & (numeric <= 5)] = 2
    return labels
