"""Training batches formed by length: every row once, the same steps, far less padding."""

import numpy as np
import pyarrow.csv as pacsv
import pytest
import torch
from transformers import AutoTokenizer

from sentiment.train.worker_loop import BUCKET_WINDOW_BATCHES, LengthBucketCollate, TokenizeCollate


@pytest.fixture(scope="module")
def window(shared_data):
    """One training window of real labeled reviews, as Ray hands it to the collate function."""
    table = pacsv.read_csv(shared_data / "labeled" / "gplay-2024.csv",
                           parse_options=pacsv.ParseOptions(newlines_in_values=True))
    texts = [t for t in table["content"].to_pylist() if t and t.strip()]
    rows = np.random.default_rng(0).permutation(len(texts))[:16 * BUCKET_WINDOW_BATCHES - 5]  # a ragged last batch
    return {"text": np.array([texts[i] for i in rows], dtype=object), "label": np.arange(len(rows)) % 3}


def _padding(batches) -> float:
    return sum(b["attention_mask"].numel() for b in batches) / sum(int(b["attention_mask"].sum()) for b in batches)


def test_length_buckets_keep_every_row_once_and_pad_far_less_than_random_batches(window, tiny_backbone):
    tokenizer = AutoTokenizer.from_pretrained(tiny_backbone)
    bucketed = LengthBucketCollate(tokenizer, 160, None, batch_size=16, seed=1, pin=False)(window)
    n = len(window["text"])
    assert [len(b["labels"]) for b in bucketed].count(16) == n // 16 and len(bucketed) == -(-n // 16)
    # Every row once, with its own label: match each batch row back to its text.
    seen = sorted(tokenizer.decode(ids[mask.bool()], skip_special_tokens=True) + f"|{label}"
                  for b in bucketed for ids, mask, label in zip(b["input_ids"], b["attention_mask"], b["labels"]))
    want = sorted(tokenizer.decode(tokenizer(t, truncation=True, max_length=160)["input_ids"], skip_special_tokens=True)
                  + f"|{label}" for t, label in zip(window["text"], window["label"]))
    assert seen == want
    plain = TokenizeCollate(tokenizer, 160, None)
    random_batches = [plain({k: v[i:i + 16] for k, v in window.items()}) for i in range(0, n, 16)]
    # Measured on this window: random batches pad to 1.92x its tokens (2.5x over both files),
    # bucketed ones to 1.03x.
    assert _padding(random_batches) > 1.7 and _padding(bucketed) < 1.1
    lengths = [b["attention_mask"].shape[1] for b in bucketed]
    assert lengths != sorted(lengths)  # batch order is shuffled, not short to long
    again = LengthBucketCollate(tokenizer, 160, None, batch_size=16, seed=1, pin=False)(window)
    assert all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(bucketed, again))


def test_label_smoothing_moves_the_training_target_and_zero_keeps_the_models_loss():
    from transformers.modeling_outputs import SequenceClassifierOutput

    from sentiment.train.step import training_loss

    logits = torch.tensor([[4.0, 0.0, -4.0], [0.0, 3.0, 0.0]])
    labels = torch.tensor([0, 1])
    plain = torch.nn.functional.cross_entropy(logits, labels)
    out = SequenceClassifierOutput(loss=plain, logits=logits)
    assert training_loss(out, labels, 0.0) is out.loss
    # Smoothing 0.3 over 3 classes: target 0.8 on the true class, 0.1 on each other one.
    target = torch.full((2, 3), 0.1)
    target[0, 0] = target[1, 1] = 0.8
    by_hand = -(target * torch.log_softmax(logits, -1)).sum(-1).mean()
    smoothed = training_loss(out, labels, 0.3)
    assert torch.allclose(smoothed, by_hand) and smoothed > plain


@pytest.mark.parametrize("pad_to_multiple_of, pad_lengths", [(None, None), (8, None), (None, (32, 64, 96, 128, 160))])
def test_batches_hold_exactly_what_transformers_tokenizing_and_padding_give(window, tiny_backbone, pad_to_multiple_of,
                                                                           pad_lengths):
    """The numpy padding of length_bucketed_batches against tokenizer() and tokenizer.pad of the
    same rows: the same ids, mask and width, for dynamic, multiple-of-8 and static shapes."""
    from sentiment.train.step import length_bucketed_batches

    tokenizer = AutoTokenizer.from_pretrained(tiny_backbone)
    texts = list(window["text"])
    batches = length_bucketed_batches(tokenizer, texts, window["label"], max_length=160, batch_size=16,
                                      pad_to_multiple_of=pad_to_multiple_of, seed=1, pin=False, pad_lengths=pad_lengths)
    ids = tokenizer(texts, truncation=True, max_length=160, return_attention_mask=False)["input_ids"]
    by_ids = {tuple(row): i for i, row in enumerate(ids)}
    for batch in batches:
        rows = [by_ids[tuple(r[m.bool()].tolist())] for r, m in zip(batch["input_ids"], batch["attention_mask"])]
        width = batch["input_ids"].shape[1]
        padding = ({"padding": "max_length", "max_length": width} if pad_lengths else
                   {"padding": True, "pad_to_multiple_of": pad_to_multiple_of})
        want = tokenizer.pad({"input_ids": [ids[i] for i in rows]}, return_tensors="pt", **padding)
        assert set(batch) == {"input_ids", "attention_mask", "labels"}
        assert torch.equal(batch["input_ids"], want["input_ids"]) and torch.equal(batch["attention_mask"],
                                                                                 want["attention_mask"])
        longest = max(len(ids[i]) for i in rows)
        if pad_lengths:
            assert width == min(n for n in pad_lengths if n >= longest)
        elif pad_to_multiple_of:
            assert width == -(-longest // 8) * 8
        else:
            assert width == longest
