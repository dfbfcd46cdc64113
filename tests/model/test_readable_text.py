"""Symbols the tokenizer cannot read are spelled for models trained so, and only for them."""

import json
import shutil

import numpy as np
import pytest

UP, DOWN = "great 👍", "great 👎"


@pytest.fixture(scope="module")
def minilm_tokenizer():
    from transformers import AutoTokenizer

    from sentiment.model.classifier import resolve_backbone

    return AutoTokenizer.from_pretrained(resolve_backbone("minilm"))


def test_a_marked_tokenizer_reads_emoji_as_their_names_and_an_unmarked_one_as_unknown(minilm_tokenizer):
    from copy import deepcopy

    from sentiment.model.readable_text import mark_spelling, readable_texts
    from sentiment.model.token_batches import tokenize_to_arrow

    texts = [UP, DOWN, "😡😡🏽", "plain ascii", "café ☕ naïve"]
    unk = minilm_tokenizer.unk_token_id
    unmarked = tokenize_to_arrow(minilm_tokenizer, texts).to_pylist()
    assert unmarked[0] == unmarked[1] and unk in unmarked[0] and unk in unmarked[2]  # the defect spelling mends

    marked = deepcopy(minilm_tokenizer)
    mark_spelling(marked)
    assert readable_texts(marked, texts) == ["great  thumbs up sign ", "great  thumbs down sign ",
                                             " pouting face  pouting face  ", "plain ascii", "café  hot beverage  naïve"]
    spelled = tokenize_to_arrow(marked, texts).to_pylist()
    assert spelled[0] != spelled[1] and not any(unk in ids for ids in spelled)
    assert spelled[3] == unmarked[3]  # texts without unreadable symbols are unchanged
    assert tokenize_to_arrow(minilm_tokenizer, texts).to_pylist() == unmarked  # the mark is per tokenizer


def test_a_tokenizer_that_reads_every_symbol_is_left_alone(tmp_path):
    """A byte-level vocabulary (RoBERTa's) has no unknown symbols, so nothing is spelled."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizerFast

    from sentiment.model.readable_text import mark_spelling, readable_texts

    trainer = ByteLevelBPETokenizer()
    trainer.train_from_iterator(["great app", "it crashes"], vocab_size=300,
                                special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    trainer.save_model(str(tmp_path))
    tokenizer = RobertaTokenizerFast(vocab_file=str(tmp_path / "vocab.json"), merges_file=str(tmp_path / "merges.txt"))
    mark_spelling(tokenizer)
    assert readable_texts(tokenizer, [DOWN]) == [DOWN]


def test_a_model_marked_for_spelling_scores_emoji_apart_and_a_model_from_before_as_it_was_trained(tiny_classifier, tmp_path):
    """The tiny classifier is untrained: marked, its two texts read as different ids and score apart;
    without the mark both read as one unknown token and score the same."""
    from sentiment.model.predictor import Predictor
    from sentiment.model.readable_text import SPELLING_KEY

    with open(f"{tiny_classifier}/tokenizer_config.json") as file:
        assert json.load(file)[SPELLING_KEY] is True  # build_classifier marks, save_classifier keeps it
    probabilities = Predictor(tiny_classifier).predict_proba([UP, DOWN])
    assert not np.allclose(probabilities[0], probabilities[1])

    before = tmp_path / "trained-before-spelling"
    shutil.copytree(tiny_classifier, before)
    config = json.loads((before / "tokenizer_config.json").read_text())
    del config[SPELLING_KEY]
    (before / "tokenizer_config.json").write_text(json.dumps(config))
    probabilities = Predictor(str(before)).predict_proba([UP, DOWN])
    np.testing.assert_array_equal(probabilities[0], probabilities[1])
