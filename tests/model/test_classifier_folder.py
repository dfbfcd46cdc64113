"""check_classifier_folder: config and the safetensors header only, by ranged reads on s3://."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from sentiment.errors import ModelError
from sentiment.model.classifier import check_classifier_folder
from sentiment.io.storage import upload_dir, write_bytes
from tests.s3_recording import recording_s3_reads


def test_checking_an_s3_model_reads_config_and_weights_header_only(s3_bucket, tiny_classifier, tmp_path,
                                                                     monkeypatch, model_cache):
    upload_dir(tiny_classifier, f"{s3_bucket}/model")
    weights = (Path(tiny_classifier) / "model.safetensors").read_bytes()
    header_length = int.from_bytes(weights[:8], "little")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where any mkdtemp would land
    cached_before = sorted(model_cache.iterdir())

    with recording_s3_reads() as reads:
        check_classifier_folder(f"{s3_bucket}/model")

    assert {key.rsplit("/", 1)[-1] for key, _ in reads.calls} == {"config.json", "model.safetensors"}
    assert reads.bytes_of("model.safetensors") == 8 + header_length < len(weights) / 10
    assert list(tmp_path.iterdir()) == [] and sorted(model_cache.iterdir()) == cached_before


@pytest.mark.parametrize("damage, reason", [
    (lambda weights: weights[: len(weights) // 2], "truncated"),
    (lambda weights: b"\xff" * 64, "not a safetensors file"),
    (lambda weights: (20).to_bytes(8, "little") + b'{"w": {"dtype": 1}}  ' + weights[28:], "corrupt header"),
])
def test_damaged_weights_on_s3_are_a_model_error(s3_bucket, tiny_classifier, damage, reason):
    upload_dir(tiny_classifier, f"{s3_bucket}/model")
    weights = (Path(tiny_classifier) / "model.safetensors").read_bytes()
    write_bytes(f"{s3_bucket}/model/model.safetensors", damage(weights))
    with pytest.raises(ModelError, match=f"{s3_bucket}/model could not be loaded as a model: .*{reason}"):
        check_classifier_folder(f"{s3_bucket}/model")


def test_a_model_with_other_labels_is_refused(s3_bucket, tiny_classifier):
    upload_dir(tiny_classifier, f"{s3_bucket}/model")
    config = (Path(tiny_classifier) / "config.json").read_text().replace('"negative"', '"angry"')
    write_bytes(f"{s3_bucket}/model/config.json", config.encode())
    with pytest.raises(ModelError, match="predicts .*angry.*expected"):
        check_classifier_folder(f"{s3_bucket}/model")
