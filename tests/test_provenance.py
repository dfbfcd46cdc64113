"""What every artifact records about the code that made it (sentiment.provenance)."""

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_provenance_names_this_code_and_the_libraries_behind_the_numbers():
    import torch
    import transformers

    import sentiment
    from sentiment.provenance import provenance

    record = provenance()
    assert record["sentiment"] == sentiment.__version__
    assert record["libraries"]["torch"] == torch.__version__
    assert record["libraries"]["transformers"] == transformers.__version__
    assert set(record["libraries"]) == {"torch", "transformers", "tokenizers", "ray", "pyarrow", "safetensors"}
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout: no commit to record")
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert record["git_commit"] == head and isinstance(record["git_dirty"], bool)


def test_a_copy_without_git_records_no_commit(tmp_path):
    from sentiment.provenance import _git_state

    assert _git_state(str(tmp_path)) == {}
    if (REPO / ".git").exists():
        assert set(_git_state(str(REPO))) == {"git_commit", "git_dirty"}
