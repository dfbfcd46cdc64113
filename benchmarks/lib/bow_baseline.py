"""A bag-of-words reference for the quality table: TF-IDF word and character n-grams into a
logistic regression, trained and scored on exactly the split `sentiment train` makes.

It answers "how much does the fine-tuned encoder add over counting words?" and shows how hard
the data is: where this baseline sits tells a reader what a quality target asks of a backbone."""

from __future__ import annotations

# C chosen on the validation split of all labeled data (1: val acc 0.641, 3: 0.640, 10: 0.630).
REGULARISATION_C = 1.0


def tfidf_baseline(paths: list[str], *, seed: int = 42, val_fraction: float = 0.05, test_fraction: float = 0.05,
                   limit: int | None = None, text_column: str = "content", score_column: str = "score") -> dict:
    """Fit on the train split, score validation and test.

    Returns {"validation", "test"}: classification_metrics() of each, plus "rows" (the split
    counts)."""
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from sentiment.data.labeled import prepare_splits
    from sentiment.train.metrics import classification_metrics
    from sentiment.cluster.connect import ensure_connected

    ensure_connected()
    splits = prepare_splits(paths, text_column, score_column, seed=seed, val_fraction=val_fraction,
                            test_fraction=test_fraction, limit=limit)
    frames = {name: getattr(splits, name).to_pandas() for name in ("train", "validation", "test")}
    vectorizers = [TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
                   TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=2, sublinear_tf=True)]
    train = frames["train"]
    features = hstack([v.fit_transform(train["text"]) for v in vectorizers]).tocsr()
    model = LogisticRegression(C=REGULARISATION_C, max_iter=2000).fit(features, train["label"])
    result = {}
    for name in ("validation", "test"):
        frame = frames[name]
        predicted = model.predict(hstack([v.transform(frame["text"]) for v in vectorizers]).tocsr())
        result[name] = classification_metrics(frame["label"].to_numpy(), predicted)
    return {**result, "rows": splits.counts}
