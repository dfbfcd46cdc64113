"""Small builders shared by tests: balanced samples of the real reviews, written to tmp."""

from pathlib import Path

import pandas as pd


def labeled_sample(shared_data: Path, out_dir: Path, n: int, seed: int = 0) -> Path:
    """A random sample of n real labeled reviews (both files) as one CSV in out_dir.

    The real files are ordered by score, so a plain --limit would see one class only.
    """
    frames = [pd.read_csv(p, usecols=["content", "score"]) for p in sorted((shared_data / "labeled").glob("*.csv"))]
    sample = pd.concat(frames).sample(n=n, random_state=seed)
    path = out_dir / f"labeled-sample-{n}.csv"
    sample.to_csv(path, index=False)
    return path
