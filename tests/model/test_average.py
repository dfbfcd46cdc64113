"""Weight averaging (benchmarks/soup.py): the average is the parameter-wise mean, it stays a
plain classifier that transformers.pipeline loads, and its held-out scores are those of its labels."""

import numpy as np
import pandas as pd
import pytest
import torch

from sentiment.data.labels import LABELS, scores_to_label_ids
from sentiment.model.classifier import build_classifier, load_classifier, save_classifier


def _saved_classifier(backbone: str, seed: int, directory) -> str:
    torch.manual_seed(seed)  # another seed: another head, as separate fine-tunes would have
    model, tokenizer = build_classifier(backbone)
    with torch.no_grad():  # and moved encoders, so the mean is not the backbone itself
        for parameter in model.bert.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    save_classifier(model, tokenizer, str(directory))
    return str(directory)


def test_average_is_the_parameter_mean_and_loads_as_a_plain_pipeline(tiny_backbone, tmp_path):
    from transformers import pipeline

    from sentiment.model.average import average_weights

    folders = [_saved_classifier(tiny_backbone, seed, tmp_path / f"m{seed}") for seed in range(3)]
    loaded = [(folder, load_classifier(folder)[0]) for folder in folders]
    soup = average_weights(loaded)
    members = [load_classifier(folder)[0].state_dict() for folder in folders]
    for (_, model), saved in zip(loaded, members):  # the members are left as they were
        assert all(torch.equal(value, saved[name]) for name, value in model.state_dict().items())
    for name, value in soup.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(value, sum(m[name] for m in members) / 3)
    assert not torch.equal(soup.classifier.weight, members[0]["classifier.weight"])

    save_classifier(soup, load_classifier(folders[0])[1], str(tmp_path / "soup"))
    classify = pipeline("text-classification", model=str(tmp_path / "soup"))
    assert classify("the app crashes every time")[0]["label"] in LABELS


def test_average_refuses_one_model_and_other_architectures(tiny_backbone, tmp_path):
    from transformers import AutoTokenizer, BertConfig, BertModel

    from sentiment.model.average import average_weights

    first = _saved_classifier(tiny_backbone, 0, tmp_path / "m0")
    with pytest.raises(ValueError, match="at least two"):
        average_weights([(first, load_classifier(first)[0])])
    one_layer = tmp_path / "one-layer-backbone"
    BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)).save_pretrained(one_layer)
    AutoTokenizer.from_pretrained(tiny_backbone).save_pretrained(one_layer)
    other = _saved_classifier(str(one_layer), 1, tmp_path / "other")
    with pytest.raises(ValueError, match="other.*not the same architecture"):
        average_weights([(folder, load_classifier(folder)[0]) for folder in (first, other)])


def test_held_out_scores_match_the_pipelines_labels_on_real_reviews(tiny_backbone, shared_data, tmp_path):
    from transformers import pipeline

    from benchmarks.lib.weight_average import score_held_out, soup_table

    reviews = pd.read_csv(shared_data / "labeled" / "gplay-2024.csv", usecols=["content", "score"]).dropna()
    reviews = reviews.sample(n=160, random_state=0)
    splits = tmp_path / "splits"
    splits.mkdir()
    for split, part in (("validation", reviews[:80]), ("test", reviews[80:])):
        pd.DataFrame({"text": part["content"], "label": scores_to_label_ids(part["score"])}).to_parquet(splits / f"{split}.parquet")
    folder = _saved_classifier(tiny_backbone, 0, tmp_path / "m0")

    scores = score_held_out(*load_classifier(folder), str(splits))

    classify = pipeline("text-classification", model=folder, truncation=True, max_length=160)
    for split, part in (("validation", reviews[:80]), ("test", reviews[80:])):
        predicted = np.array([LABELS.index(r["label"]) for r in classify(part["content"].tolist())])
        truth = scores_to_label_ids(part["score"])
        assert scores[split]["n"] == 80
        assert scores[split]["accuracy"] == pytest.approx((predicted == truth).mean(), abs=1 / 80)
        assert np.asarray(scores[split]["confusion_matrix"]).sum(axis=1).tolist() == np.bincount(truth, minlength=3).tolist()
    table = soup_table([("m0", scores)])
    assert f"| m0 | {scores['validation']['accuracy']:.3f} |" in table


def test_the_running_sum_gives_the_same_average_one_member_at_a_time(tiny_backbone, tmp_path):
    from sentiment.model.average import WeightSum, average_weights

    folders = [_saved_classifier(tiny_backbone, seed, tmp_path / f"m{seed}") for seed in range(3)]
    expected = average_weights([(folder, load_classifier(folder)[0]) for folder in folders]).state_dict()
    weights = WeightSum()
    with pytest.raises(ValueError, match="at least two"):
        weights.mean_into(load_classifier(folders[0])[0])
    for folder in folders:  # as `sentiment average` does: load, add, let go
        last = load_classifier(folder)[0]
        weights.add(folder, last)
    soup = weights.mean_into(last)
    assert soup is last
    for name, value in soup.state_dict().items():
        assert torch.equal(value, expected[name]), name
