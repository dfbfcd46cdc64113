"""`--compile`: whether to compile the training step, the compiled model with its eager fallback,
and the node-local cache that spares a resumed run (and the next run on the node) the compile.

Issue 26 measured a bert-base step at batch 32 on one H200: 59.9 ms eager, nearly all of it the
CPU issuing kernels, and 6.0 ms under torch.compile(mode="reduce-overhead") (CUDA graphs) over a
fixed shape, after 24 s of compiling. So on GPU the model is compiled with CUDA graphs over the
static shapes of step.static_lengths(), one graph per shape, and "auto" compiles when the planned
steps repay the compile. On CPU a step is bound by its arithmetic, not by launches: the tiny
test model stepped 2.3x slower compiled than eager here (BENCHMARKS.md), so "auto" leaves CPU
runs eager.
"""

from __future__ import annotations

import json
import logging
import os
from typing import TYPE_CHECKING

from sentiment.io.model_cache import model_cache_root

if TYPE_CHECKING:  # annotations only: torch loads where a compile is asked for
    import torch

COMPILE_MODES = ("auto", "on", "off")
COMPILE_HELP = ("compile the training and validation forward/backward with torch.compile over static shapes "
                "(CUDA graphs on GPU); auto (default) compiles a GPU run when its planned steps times the time a "
                "compiled step saves (2.35 ms per encoder layer, measured on an H200) exceed the compile time (last "
                "measured on this node for the same model and shapes, else 17.3 s per shape), and never a CPU run, "
                "where compiled steps measured slower")
# Measured through `sentiment train --gpu` (benchmarks/gpu_check.sh, one H200, 2026-12-04):
# bert-base (12 layers) at batch 32 on static shapes stepped in 62.7 ms eager and 34.5 ms
# compiled in steady state. A launch-bound step costs about the same per layer, so the saving
# scales with the layer count. (The bare step of issue 26, without Ray and with one shape, went
# from 59.9 ms to 6.0 ms: the rest of our compiled step is not in the graph yet.)
SAVED_SECONDS_PER_LAYER_STEP = (62.7 - 34.5) / 1000 / 12
# The same run compiled its 10 shapes (5 training, 5 validation) in 173 s cold; a second run on
# the node took 30.6 s from the compile cache. Used until this node has measured its own.
COMPILE_SECONDS_PER_SHAPE = 17.3
# Under SENTIMENT_MODEL_CACHE (the node's model cache): Inductor's compiled kernels and graphs,
# and our record of how long compiling took.
CACHE_SUBDIR = "torch-compile"
RECORD_FILE = "compile_seconds.json"
log = logging.getLogger("sentiment.train")


def compile_decision(mode: str, *, on_gpu: bool, planned_steps: int, num_layers: int, shapes: int,
                     recorded_seconds: float | None) -> tuple[bool, str]:
    """Whether to compile, and the reason in a few words (printed in the first epoch line).

    Args:
        mode: "auto", "on" or "off" (--compile).
        planned_steps: training steps this run will take (all epochs, one worker).
        num_layers: encoder layers of the model.
        shapes: distinct input shapes the run will compile (training and validation).
        recorded_seconds: compile seconds measured by an earlier run on this node for the same
            model and shapes (record_compile_seconds), or None.
    """
    if mode != "auto":
        return mode == "on", f"--compile {mode}"
    if not on_gpu:
        return False, "auto: eager on CPU"
    cost = recorded_seconds if recorded_seconds is not None else COMPILE_SECONDS_PER_SHAPE * shapes
    source = "measured on this node" if recorded_seconds is not None else f"estimated for {shapes} shapes"
    saved = SAVED_SECONDS_PER_LAYER_STEP * num_layers * planned_steps
    verdict = "compiled" if saved > cost else "eager"
    return saved > cost, f"auto: {verdict}, {planned_steps} steps save ~{saved:.0f}s vs ~{cost:.0f}s compile ({source})"


def use_compile_cache() -> str:
    """Point Inductor's cache at the node's cache folder, unless the user set
    TORCHINDUCTOR_CACHE_DIR, and return it: Inductor's default is a per-user folder under /tmp
    that nothing of ours keeps or cleans, and SENTIMENT_MODEL_CACHE is where a node keeps what
    runs reuse."""
    current = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    # Inductor writes its default into the environment the first time it looks: that is not a
    # user's choice.
    if current is None or current == _inductor_default_cache_dir():
        current = os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(model_cache_root(), CACHE_SUBDIR)
    os.makedirs(current, exist_ok=True)
    return current


def _inductor_default_cache_dir() -> str | None:
    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir
    except ImportError:  # moved in another torch version: treat any value as the user's
        return None
    return default_cache_dir()


def recorded_compile_seconds(key: str) -> float | None:
    """Compile seconds an earlier run on this node recorded for `key`, or None."""
    try:
        with open(os.path.join(use_compile_cache(), RECORD_FILE)) as f:
            return float(json.load(f)[key])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def record_compile_seconds(key: str, seconds: float) -> None:
    """Keep the compile seconds of this run for `key` (the next run's "auto" reads them). Written
    whole and renamed, so a reader never sees half a file."""
    path = os.path.join(use_compile_cache(), RECORD_FILE)
    try:
        with open(path) as f:
            records = json.load(f)
    except (OSError, ValueError):
        records = {}
    records[key] = seconds
    partial = f"{path}.{os.getpid()}"
    with open(partial, "w") as f:
        json.dump(records, f, indent=1)
    os.replace(partial, path)


def compile_key(model_config, device: torch.device, batch_size: int, lengths: tuple[int, ...]) -> str:
    """What a compile's cost depends on: device, model shape, batch size, lengths, torch version."""
    import torch

    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return (f"{device_name}|{model_config.model_type}-{model_config.num_hidden_layers}x{model_config.hidden_size}"
            f"|b{batch_size}|{','.join(map(str, lengths))}|torch {torch.__version__}")


class CompiledModel:
    """model(**batch) through torch.compile over static shapes, eager once compiling has failed.

    Compiling happens on the first call of each new shape (and, for training, its first
    backward), so run_epoch times those steps as compile seconds and calls fall_back() when one
    of them raises. Training mode, parameters and the weights stay the wrapped model's own.
    """

    def __init__(self, model: torch.nn.Module, *, on_gpu: bool, backend: str = "inductor"):
        import torch

        self.eager = model
        # reduce-overhead: CUDA graphs, replayed with one launch per step (issue 26's 6 ms step).
        # dynamic=False: one graph per shape, never a shape-generic one (CUDA graphs need fixed shapes).
        self.compiled = torch.compile(model, mode="reduce-overhead" if on_gpu else None, dynamic=False,
                                      backend=backend)
        self.on_gpu = on_gpu
        self.failed: str | None = None

    def __call__(self, **batch):
        if self.failed:
            return self.eager(**batch)
        if self.on_gpu:
            # Each step is a new CUDA-graph generation: the previous step's outputs are no longer read.
            import torch

            torch.compiler.cudagraph_mark_step_begin()
        return self.compiled(**batch)

    def fall_back(self, error: BaseException) -> None:
        """Run eager from now on, saying why in one line: the first line of the root cause (Dynamo
        wraps what the backend raised in a BackendCompilerFailed whose own text says little)."""
        while getattr(error, "inner_exception", None) or error.__cause__:
            error = getattr(error, "inner_exception", None) or error.__cause__
        first_line = (str(error).strip().splitlines() or [""])[0][:200]
        self.failed = f"{type(error).__name__}: {first_line}"
        log.warning(f"[train] torch.compile failed ({self.failed}); training continues eager")

    def train(self, mode: bool = True):
        self.eager.train(mode)
        return self

    def parameters(self):
        return self.eager.parameters()


def allow_recompiles(shapes: int) -> None:
    """Let Dynamo keep one graph per shape and mode: past its recompile limit (8) it would run
    the rest eager without a word."""
    import torch._dynamo.config

    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 2 * shapes + 4)
