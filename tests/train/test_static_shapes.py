"""Static-shape training batches (issue 26): a few padded lengths, a fixed batch size, and masked
filler rows that change neither the loss, nor the gradients, nor the epoch's counts."""

import numpy as np
import pyarrow.csv as pacsv
import pytest
import torch
from transformers import AutoTokenizer

from sentiment.train.step import (BUCKET_WINDOW_BATCHES, MASKED_LABEL, length_bucketed_batches, run_epoch,
                                  static_lengths)
from sentiment.train.stats import add_batch, new_totals, summarize


@pytest.fixture(scope="module")
def window(shared_data):
    """The epoch's last window of real reviews: 5 rows short of full, so its last batch is partial."""
    table = pacsv.read_csv(shared_data / "labeled" / "gplay-2024.csv",
                           parse_options=pacsv.ParseOptions(newlines_in_values=True))
    texts = [t for t in table["content"].to_pylist() if t and t.strip()]
    rows = np.random.default_rng(0).permutation(len(texts))[:16 * BUCKET_WINDOW_BATCHES - 5]
    return {"text": [texts[i] for i in rows], "label": np.arange(len(rows)) % 3}


def test_static_lengths_are_the_buckets_capped_at_max_length():
    assert static_lengths(160) == (32, 64, 96, 128, 160)
    assert static_lengths(100) == (32, 64, 96, 100)
    assert static_lengths(32) == (32,)
    assert static_lengths(512) == (32, 64, 96, 128, 160, 512)


def test_static_batches_have_one_size_a_bucket_length_and_every_row_once(window, tiny_backbone):
    tokenizer = AutoTokenizer.from_pretrained(tiny_backbone)
    lengths = static_lengths(160)
    batches = length_bucketed_batches(tokenizer, window["text"], window["label"], max_length=160, batch_size=16,
                                      pad_to_multiple_of=None, seed=1, pin=False, pad_lengths=lengths)
    n = len(window["text"])
    assert len(batches) == BUCKET_WINDOW_BATCHES and {len(b["labels"]) for b in batches} == {16}
    assert sum(int((b["labels"] == MASKED_LABEL).sum()) for b in batches) == 5
    for b in batches:
        width = b["input_ids"].shape[1]
        longest = int(b["attention_mask"].sum(-1).max())
        # The shortest bucket that holds the batch's longest row.
        assert width in lengths and width == min(n for n in lengths if n >= longest)
    # Every real row once, with its own label; the filler rows are copies of a real row.
    seen = sorted(tokenizer.decode(ids[mask.bool()], skip_special_tokens=True) + f"|{label}"
                  for b in batches for ids, mask, label in zip(b["input_ids"], b["attention_mask"], b["labels"])
                  if label != MASKED_LABEL)
    want = sorted(tokenizer.decode(tokenizer(t, truncation=True, max_length=160)["input_ids"], skip_special_tokens=True)
                  + f"|{label}" for t, label in zip(window["text"], window["label"]))
    assert seen == want and len(seen) == n
    # The price of few shapes: 1.37x the real tokens over both files (real-length batches: 1.05x),
    # why an eager CPU step, which costs what its tokens cost, keeps real lengths.
    padded = sum(b["attention_mask"].numel() for b in batches)
    real = sum(int(b["attention_mask"][b["labels"] != MASKED_LABEL].sum()) for b in batches)
    assert 1.2 < padded / real < 1.5


def _gradients(model):
    return torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None])


def test_masked_rows_change_neither_loss_nor_gradients_nor_counts(window, tiny_classifier):
    """The epoch's last batch, 11 real rows: padded to 16 rows of a bucket length, it gives the
    loss, the gradients and the counts of the same 11 rows padded only to their own length."""
    from sentiment.model.classifier import build_classifier

    model, tokenizer = build_classifier(tiny_classifier)
    model.eval()  # dropout off: the same rows must give the same numbers
    # Short reviews, so that the bucket length (32 or 64) is longer than their own.
    short = [i for i, text in enumerate(window["text"]) if 20 < len(text) < 100][:11]
    texts, labels = [window["text"][i] for i in short], window["label"][short]
    common = {"max_length": 160, "batch_size": 16, "pad_to_multiple_of": None, "seed": 0, "pin": False}
    (padded,) = length_bucketed_batches(tokenizer, texts, labels, pad_lengths=static_lengths(160), **common)
    (plain,) = length_bucketed_batches(tokenizer, texts, labels, **common)
    assert padded["input_ids"].shape[0] == 16 and plain["input_ids"].shape[0] == 11
    assert padded["input_ids"].shape[1] > plain["input_ids"].shape[1]
    results = []
    for batch in (padded, plain):
        model.zero_grad()
        out = model(**batch)
        out.loss.backward()
        totals = new_totals(torch.device("cpu"))
        add_batch(totals, out.loss, out.logits, batch["labels"], batch["attention_mask"])
        results.append((out.loss.detach(), _gradients(model), summarize(totals.tolist())))
    (loss_padded, grad_padded, sum_padded), (loss_plain, grad_plain, sum_plain) = results
    assert torch.allclose(loss_padded, loss_plain, atol=1e-6)
    assert torch.allclose(grad_padded, grad_plain, atol=1e-6)
    assert sum_padded["n"] == sum_plain["n"] == 11
    assert sum_padded["confusion_matrix"] == sum_plain["confusion_matrix"]
    assert sum_padded["tokens"] == sum_plain["tokens"] and sum_padded["loss"] == pytest.approx(sum_plain["loss"])


def test_a_static_epoch_counts_each_review_once(window, tiny_classifier):
    """run_epoch over one window's static batches: the epoch's review count is the data's size,
    and its validation numbers equal those of the real-length batches."""
    from sentiment.model.classifier import build_classifier

    model, tokenizer = build_classifier(tiny_classifier)
    common = {"max_length": 160, "batch_size": 16, "pad_to_multiple_of": None, "seed": 0, "pin": False}
    static = length_bucketed_batches(tokenizer, window["text"], window["label"], pad_lengths=static_lengths(160),
                                     **common)
    plain = length_bucketed_batches(tokenizer, window["text"], window["label"], **common)
    cpu = torch.device("cpu")
    on_static, on_plain = run_epoch(model, static, cpu), run_epoch(model, plain, cpu)
    assert on_static["n"] == on_plain["n"] == len(window["text"])
    assert on_static["confusion_matrix"] == on_plain["confusion_matrix"]
    assert on_static["loss"] == pytest.approx(on_plain["loss"], abs=1e-5)
    assert on_static["tokens"] == on_plain["tokens"] and on_static["compile_seconds"] == 0
