"""Which code made an artifact: recorded in every metrics.json, `_summary.json` and evaluate report.

A model or a night of scores is read months later, after upgrades. When a transformers release
changes a tokenizer, or a fix changes what the pipeline writes, the question "which code made
this?" must have an answer in the artifact itself: this package's version and, when it runs from
a git checkout, the commit (and whether the checkout had uncommitted changes), and the versions
of the libraries the numbers depend on. Nothing secret: no environment, no paths, no host names.
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version

# The libraries whose versions change the numbers: the model, its tokenizer, the data and the runtime.
LIBRARIES = ("torch", "transformers", "tokenizers", "ray", "pyarrow", "safetensors")


@functools.lru_cache(maxsize=1)
def provenance() -> dict:
    """{"sentiment": version, "git_commit"?: sha, "git_dirty"?: bool, "python": version,
    "libraries": {name: version}}; computed once per process."""
    from sentiment import __version__

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    record: dict = {"sentiment": __version__, **_git_state(root), "python": platform.python_version(), "libraries": {}}
    for name in LIBRARIES:
        try:
            record["libraries"][name] = version(name)
        except PackageNotFoundError:
            record["libraries"][name] = None
    return record


def _git_state(root: str) -> dict:
    """The commit of the checkout at root (where this package runs from), and whether it had
    uncommitted changes; empty when it is not a git checkout (an installed wheel, a `ray job
    submit --working-dir` copy) or git is missing."""
    if not os.path.exists(os.path.join(root, ".git")):
        return {}
    try:
        commit = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        changes = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                                 capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"git_commit": commit, "git_dirty": bool(changes.strip())}
