"""Training precision (`sentiment train --precision`): auto runs the matmuls in bf16 where the
device multiplies bf16 natively and in fp32 elsewhere; the chosen epoch is then tested at the
precision it was validated at; a bf16 epoch learns what an fp32 one does."""

import numpy as np
import pyarrow.csv as pacsv
import pytest
import torch

from sentiment.io.file_checks import CSV_PARSE
from sentiment.model import predictor
from sentiment.train import step
from sentiment.train.driver import evaluation_precision
from sentiment.train.step import autocast_dtype, length_bucketed_batches, optimizer_and_schedule, run_epoch

CPU = torch.device("cpu")


@pytest.mark.parametrize("native", [True, False])
def test_auto_is_bf16_on_a_cpu_with_native_bf16_and_fp32_elsewhere(native, monkeypatch):
    monkeypatch.setattr(predictor, "native_bf16_cpu", lambda: native)
    assert autocast_dtype(CPU, "auto") == (torch.bfloat16 if native else None)
    # An explicit choice holds whatever the CPU: fp32 is plain, bf16 is bf16 even where emulated.
    assert autocast_dtype(CPU, "fp32") is None
    assert autocast_dtype(CPU, "bf16") == torch.bfloat16
    assert step.precision_name(autocast_dtype(CPU, "auto")) == ("bf16" if native else "fp32")


def test_native_bf16_follows_what_torch_reports_of_this_cpu():
    reported = torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()
    assert predictor.native_bf16_cpu() == reported


def test_an_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="fp16"):
        autocast_dtype(CPU, "fp16")


def test_the_chosen_epoch_is_tested_at_the_precision_it_was_validated_at():
    assert evaluation_precision({"precision": "fp32"}) == "fp32"
    assert evaluation_precision({"precision": "bf16"}) == "bf16"
    # A GPU without bf16 trains in fp16; the predictor's reduced precision is bf16.
    assert evaluation_precision({"precision": "fp16"}) == "bf16"
    # Histories of runs from before the precision was recorded trained in fp32 on CPU.
    assert evaluation_precision({}) == "fp32"


def test_a_bf16_epoch_learns_what_an_fp32_epoch_learns(shared_data, tiny_classifier):
    """Three epochs of the tiny model on the same 96 real reviews, from the same weights, in fp32
    and in bf16 autocast: the weights stay fp32, and the losses agree to within bf16's rounding."""
    from sentiment.model.classifier import build_classifier

    table = pacsv.read_csv(shared_data / "labeled" / "gplay-2024.csv",
                           parse_options=CSV_PARSE)
    texts = [t for t in table["content"].to_pylist()[:200] if t and t.strip()][:96]
    labels = np.arange(len(texts)) % 3
    losses = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        model, tokenizer = build_classifier(tiny_classifier)
        batches = length_bucketed_batches(tokenizer, texts, labels, max_length=160, batch_size=16,
                                          pad_to_multiple_of=None, seed=0, pin=False)
        optimizer, scheduler = optimizer_and_schedule(model, lr=1e-3, layer_decay=1.0, warmup_fraction=0.0,
                                                      total_steps=3 * len(batches), device=CPU)
        scaler = torch.amp.GradScaler("cpu", enabled=False)
        amp_dtype = autocast_dtype(CPU, precision)
        losses[precision] = [run_epoch(model, batches, CPU, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                                       amp_dtype=amp_dtype)["loss"] for _ in range(3)]
        assert all(p.dtype == torch.float32 for p in model.parameters())
    assert losses["fp32"][-1] < losses["fp32"][0]  # it learns at all
    assert losses["bf16"] == pytest.approx(losses["fp32"], abs=0.02)
    assert losses["bf16"] != losses["fp32"]  # and bf16 did run: its rounding shows
