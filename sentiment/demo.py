"""`sentiment demo`: the whole flow on the built-in sample, on a local Ray cluster, in minutes.

Fine-tunes the packaged MiniLM on 132 hand-written reviews with 2 DDP workers, evaluates it,
predicts a few texts, scores a folder of CSV and Parquet shards, and says where everything went.
The sample is small, so the numbers show the plumbing, not a production-quality model; its
validation split (20%, about 26 reviews) is still large enough to tell epochs apart.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from importlib import resources

import pandas as pd

from sentiment.cluster.connect import ensure_connected

SAMPLE = "reviews.csv"
NEW_REVIEWS = [
    "The app crashes every time I open it",
    "Love it, syncs perfectly across all my devices",
    "It is fine, nothing special",
    "",  # an empty review: scored rows must say why it has no label, not drop it
    "Ads everywhere and it lost my data",
    "Great design and very easy to use",
]


# Clear-cut texts the demo model must get right (the empty one has no label by design).
EXPECTED = {"The app crashes every time I open it": "negative",
            "Love it, syncs perfectly across all my devices": "positive",
            "Ads everywhere and it lost my data": "negative",
            "Great design and very easy to use": "positive"}


@dataclass
class DemoConfig:
    workdir: str = "sentiment-demo"
    epochs: int = 4
    num_workers: int = 2

    @classmethod
    def from_namespace(cls, args) -> "DemoConfig":
        return cls(workdir=args.workdir, epochs=args.epochs, num_workers=args.num_workers)


def _banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


def _write_inputs(workdir: str) -> tuple[str, str]:
    data_dir, shards_dir = os.path.join(workdir, "data"), os.path.join(workdir, "shards")
    os.makedirs(data_dir, exist_ok=True)
    os.makedirs(shards_dir, exist_ok=True)
    sample_path = os.path.join(data_dir, SAMPLE)
    sample = pd.read_csv(resources.files("sentiment.sample") / SAMPLE)
    sample.to_csv(sample_path, index=False)
    # Two shards of a "nightly" drop in two formats, with an id column downstream jobs join on.
    night = pd.DataFrame({"review_id": range(len(NEW_REVIEWS) + 10),
                          "content": NEW_REVIEWS + sample["content"].head(10).tolist()})
    night.iloc[: len(NEW_REVIEWS)].to_csv(os.path.join(shards_dir, "part-0.csv"), index=False)
    night.iloc[len(NEW_REVIEWS):].to_parquet(os.path.join(shards_dir, "part-1.parquet"), index=False)
    return sample_path, shards_dir


def run_demo(config: DemoConfig) -> dict:
    """Train, evaluate, predict and score on the built-in sample; print where it all went.

    Returns:
        {"metrics": the training metrics.json, "predictions": predict records, "summary": the
        scoring summary}.
    """
    from sentiment.evaluate import EvaluateConfig, evaluate
    from sentiment.predict import predict_records
    from sentiment.model.predictor import Predictor
    from sentiment.score.pipeline import ScoreConfig, score
    from sentiment.train.driver import TrainConfig, train

    started = time.time()
    workdir = os.path.abspath(config.workdir)
    sample_path, shards_dir = _write_inputs(workdir)
    model_dir, scored_dir = os.path.join(workdir, "model"), os.path.join(workdir, "scored")
    ensure_connected()

    _banner(f"1/4 train: MiniLM on {sample_path} with {config.num_workers} DDP workers")
    # 132 reviews give ~80 training rows: small batches and a high lr so the model takes enough
    # optimizer steps to visibly learn in a few minutes.
    metrics = train(TrainConfig(data=[sample_path], output=model_dir, epochs=config.epochs, batch_size=4, lr=1e-4,
                                warmup_fraction=0.0, num_workers=config.num_workers, val_fraction=0.2,
                                test_fraction=0.2, run_name=f"demo-{time.strftime('%Y%m%d-%H%M%S')}"))

    _banner("2/4 evaluate: on the whole sample (most of it was seen in training, so this is optimistic)")
    evaluate(EvaluateConfig(model=model_dir, data=[sample_path]))

    _banner("3/4 predict")
    predictions = list(predict_records(Predictor(model_dir), [t for t in NEW_REVIEWS if t]))
    for record in predictions:
        expected = EXPECTED.get(record["text"])
        verdict = "" if expected is None else "  (right)" if expected == record["sentiment"] else f"  (expected {expected})"
        print(f"{record['sentiment']:<8} p(neg/neu/pos) = {record['prob_negative']:.2f}/"
              f"{record['prob_neutral']:.2f}/{record['prob_positive']:.2f}  {record['text']}{verdict}")

    _banner(f"4/4 score: {shards_dir} -> {scored_dir}")
    summary = score(ScoreConfig(model=model_dir, inputs=[shards_dir], output=scored_dir, text_column="content"))
    scored = pd.read_parquet(scored_dir).sort_values("review_id")
    with pd.option_context("display.width", 160, "display.max_colwidth", 45):
        print(scored[["review_id", "content", "sentiment", "prob_negative", "prob_neutral", "prob_positive",
                      "error"]].head(8).to_string(index=False))

    _banner(f"done in {time.time() - started:.0f}s; everything is under {workdir}")
    print(f"  model (Hugging Face folder): {model_dir}")
    print(f"  metrics and plots:           {model_dir}/metrics.json, training_history.png, confusion_matrix.png")
    print(f"  checkpoints (Ray Train):     {model_dir}/checkpoints")
    print(f"  scored shards (Parquet):     {scored_dir}  ({summary['rows_scored']} scored, "
          f"{summary['rows_errored']} with an error)")
    print(f"  try: sentiment predict --model {model_dir} \"What a fantastic update\"")
    return {"metrics": metrics, "predictions": predictions, "summary": summary}
