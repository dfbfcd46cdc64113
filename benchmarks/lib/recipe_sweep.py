"""Recipe sweep: many short trainings of one backbone on fixed splits, several seeds each, in
parallel processes on one device, so that a recipe choice rests on means over seeds rather
than on one noisy run.

Each trial trains with the very step `sentiment train` uses (sentiment.train.step: the same
length-bucketed batches, AdamW, schedule, clipping, autocast and loss), without Ray, on
splits written once by `sentiment train`'s own prepare_splits (write_splits). Every epoch is
scored on validation and test; the summary picks each trial's best epoch by validation alone,
with the project's selection rule, and only then reads its test numbers.
"""

from __future__ import annotations

import json
import math
import os
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, fields
from multiprocessing import get_context

import numpy as np

from sentiment.data.labels import LABELS
from sentiment.model.classifier import DEFAULT_BACKBONE, HEAD_DROPOUT
from sentiment.model.readable_text import SPELLING_KEY
from sentiment.model.recipes import RECIPES, recipe_for
from sentiment.train.metrics import per_class_f1
from sentiment.train.stats import selection_score

SPLITS = ("train", "validation", "test")
EVAL_BATCH_SIZE = 64


_RECIPE = RECIPES[DEFAULT_BACKBONE]


@dataclass(frozen=True)
class Trial:
    """One training run: a recipe (by default the default backbone's own) and a seed."""

    lr: float = _RECIPE.lr
    warmup_fraction: float = _RECIPE.warmup_fraction
    epochs: int = _RECIPE.epochs
    batch_size: int = _RECIPE.batch_size
    label_smoothing: float = _RECIPE.label_smoothing
    layer_decay: float = 1.0
    dropout: float = HEAD_DROPOUT
    pooling: str = "head"  # "head": the architecture's own; "mean": benchmarks.lib.mean_pooling
    spelling: bool = True  # symbols the tokenizer cannot read spelled, as `sentiment train` does
    seed: int = 0

    @property
    def setting(self) -> str:
        """What this trial changes from the default backbone's recipe, as flags ("recipe": nothing)."""
        changed = [f"--{f.name.replace('_', '-')} {getattr(self, f.name)}" for f in fields(self)
                   if f.name != "seed" and getattr(self, f.name) != f.default]
        return " ".join(changed) or "recipe"


# The settings compared for the default backbone (issue 13), each a change from its recipe.
# BENCHMARKS.md's table ran this grid at commit c56da6a, when the recipe's batch was 16.
SETTINGS = {
    "recipe": {},
    "reference": {"lr": 2e-5, "warmup_fraction": 0.0, "batch_size": 16},
    "lr 5e-5": {"lr": 5e-5},
    "lr 2e-4": {"lr": 2e-4},
    "batch 16": {"batch_size": 16},
    "batch 16, lr 5e-5": {"batch_size": 16, "lr": 5e-5},
    "label smoothing 0.1": {"label_smoothing": 0.1},
    "layer decay 0.8, lr 2e-4": {"layer_decay": 0.8, "lr": 2e-4},
    "layer decay 0.9": {"layer_decay": 0.9},
    "head dropout 0.1": {"dropout": 0.1},
    "5 epochs": {"epochs": 5},
}


def grid(seeds: int, settings: dict[str, dict] = SETTINGS) -> list[Trial]:
    """Every setting with seeds 0..seeds-1, seed-major: a sweep cut off early has every setting
    at some seeds rather than some settings at all."""
    return [Trial(**changes, seed=seed) for seed in range(seeds) for changes in settings.values()]


def recipe_trials(backbone: str, seeds: list[int], field: str, values) -> list[Trial]:
    """The backbone's own recipe with each of `values` for one Trial field, seed by seed: a
    seed's trials are adjacent, so a sweep cut short keeps whole comparisons."""
    _, recipe = recipe_for(backbone)
    return [Trial(**{**asdict(recipe), field: value, "seed": seed}) for seed in seeds for value in values]


def add_comparison_arguments(parser, *, backbone: str, results: str) -> None:
    """The flags of a benchmark that trains the backbone's recipe with and without one change:
    --splits, --backbone, --seeds, --processes, --threads, --results."""
    parser.add_argument("--splits", required=True, help="the folder `benchmarks.recipes --write-splits` wrote")
    parser.add_argument("--backbone", default=backbone, help="backbone name or folder; its recipe is used "
                                                            "(default: %(default)s)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 43], help="seeds (default: %(default)s)")
    parser.add_argument("--processes", type=int, default=2, help="trials run at once (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (default: %(default)s)")
    parser.add_argument("--results", default=results, help="JSON lines, appended per trial (default: %(default)s)")


def export_backbone_fp16(backbone: str, directory: str) -> None:
    """The backbone's encoder folder with its weights stored as fp16 (half the bytes), to carry
    to a machine without the package. run_trial trains it in fp32 again, as from the original."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from sentiment.model.classifier import resolve_backbone

    source = resolve_backbone(backbone)
    AutoModel.from_pretrained(source).to(torch.float16).save_pretrained(directory)
    AutoTokenizer.from_pretrained(source).save_pretrained(directory)
    # Say float32 in the config, so from_pretrained upcasts on load and the new head is
    # initialised in fp32, as it is from the original.
    config_path = os.path.join(directory, "config.json")
    with open(config_path) as f:
        config = json.load(f)
    with open(config_path, "w") as f:
        json.dump({**config, "dtype": "float32"}, f, indent=2)


def write_splits(paths: list[str], directory: str, *, seed: int = 42, val_fraction: float = 0.05,
                 test_fraction: float = 0.05, text_column: str = "content", score_column: str = "score") -> dict:
    """The train/validation/test splits `sentiment train` makes of these files (defaults: its
    own), as directory/<split>.parquet with columns text and label. Needs Ray; returns counts."""
    from sentiment.data.labeled import prepare_splits
    from sentiment.cluster.connect import ensure_connected

    ensure_connected()
    splits = prepare_splits(paths, text_column, score_column, seed=seed, val_fraction=val_fraction,
                            test_fraction=test_fraction)
    os.makedirs(directory, exist_ok=True)
    for name in SPLITS:
        getattr(splits, name).to_pandas()[["text", "label"]].to_parquet(os.path.join(directory, f"{name}.parquet"))
    return splits.counts


def split_batches(tokenizer, frame, batch_size: int, seed: int, pad_multiple: int | None, pin: bool) -> list[dict]:
    """Length-bucketed batches of a split (columns text, label), made as `sentiment train` makes them."""
    from sentiment.model.classifier import DEFAULT_MAX_LENGTH
    from sentiment.train.step import BUCKET_WINDOW_BATCHES, length_bucketed_batches

    window = batch_size * BUCKET_WINDOW_BATCHES
    batches = []
    for start in range(0, len(frame), window):
        part = frame.iloc[start:start + window]
        batches += length_bucketed_batches(tokenizer, part["text"].tolist(), part["label"].to_numpy(),
                                           max_length=DEFAULT_MAX_LENGTH, batch_size=batch_size,
                                           pad_to_multiple_of=pad_multiple, seed=seed, pin=pin)
    return batches


def run_trial(trial: Trial, splits_dir: str, backbone: str, threads: int = 1, extra_held_out: tuple[str, ...] = ()) -> dict:
    """Train one trial; returns its settings and per-epoch train/validation/test numbers, and the
    same for each NAME.parquet of splits_dir named in extra_held_out (a subset to watch), as NAME_*."""
    import pandas as pd
    import torch

    from sentiment.model.classifier import build_classifier
    from sentiment.train.step import GPU_PAD_MULTIPLE, autocast_dtype, optimizer_and_schedule, run_epoch

    torch.set_num_threads(threads)
    started = time.time()
    frames = {name: pd.read_parquet(os.path.join(splits_dir, f"{name}.parquet")) for name in SPLITS + extra_held_out}
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(trial.seed)
    model, tokenizer = build_classifier(backbone, dropout=trial.dropout)
    if not trial.spelling:  # emoji read as the unknown token, as before sentiment.model.readable_text
        tokenizer.init_kwargs.pop(SPELLING_KEY)
    if trial.pooling == "mean":
        from benchmarks.lib.mean_pooling import MeanPooledClassifier

        model = MeanPooledClassifier(model, trial.dropout)
    model = model.float().to(device)  # weights may travel as fp16; train as `sentiment train` does, in fp32
    amp_dtype = autocast_dtype(device)
    on_gpu = device.type == "cuda"
    pad_multiple = GPU_PAD_MULTIPLE if on_gpu else None
    steps_per_epoch = math.ceil(len(frames["train"]) / trial.batch_size)
    optimizer, scheduler = optimizer_and_schedule(
        model, lr=trial.lr, layer_decay=trial.layer_decay, warmup_fraction=trial.warmup_fraction,
        total_steps=steps_per_epoch * trial.epochs, device=device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    held_out = {name: split_batches(tokenizer, frames[name], EVAL_BATCH_SIZE, 0, pad_multiple, on_gpu)
                for name in ("validation", "test", *extra_held_out)}
    history = []
    for epoch in range(trial.epochs):
        order = np.random.default_rng([trial.seed, epoch]).permutation(len(frames["train"]))
        batches = split_batches(tokenizer, frames["train"].iloc[order], trial.batch_size, trial.seed + epoch,
                           pad_multiple, on_gpu)
        train = run_epoch(model, batches, device, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                          amp_dtype=amp_dtype, label_smoothing=trial.label_smoothing)
        scored = {name: run_epoch(model, held_out[name], device, amp_dtype=amp_dtype) for name in held_out}
        history.append({"epoch": epoch + 1, "train_loss": train["loss"], "train_accuracy": train["accuracy"],
                        **{f"{prefix}_{key}": scored[name][key]
                           for name, prefix in (("validation", "val"), ("test", "test"), *((n, n) for n in extra_held_out))
                           for key in ("loss", "accuracy", "macro_f1", "confusion_matrix")}})
    return {"trial": asdict(trial), "setting": trial.setting, "history": history,
            "seconds": time.time() - started, "device": torch.cuda.get_device_name(0) if on_gpu else "cpu"}


def run_sweep(trials: list[Trial], splits_dir: str, backbone: str, processes: int, results_path: str,
              threads_per_process: int = 1, deadline_seconds: float | None = None,
              extra_held_out: tuple[str, ...] = ()) -> list[dict]:
    """Run trials in `processes` parallel processes (one device, shared); each result is appended
    to results_path as one JSON line as soon as it is done, so a cut-off sweep keeps what finished.
    After deadline_seconds no new trial starts (the running ones finish): a lent machine's time
    is fixed, and a table of fewer seeds beats none."""
    started = time.time()
    results, queue = [], list(trials)
    with ProcessPoolExecutor(max_workers=processes, mp_context=get_context("spawn")) as pool, \
            open(results_path, "a") as out:
        # At most `processes` submitted at a time, so that a trial not yet started is still ours to skip.
        running = {pool.submit(run_trial, queue.pop(0), splits_dir, backbone, threads_per_process, extra_held_out)
                   for _ in range(min(processes, len(queue)))}
        while running:
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                try:
                    result = future.result()
                except Exception as error:  # one broken trial (say, out of memory) must not lose the rest
                    print(f"[sweep] a trial failed: {type(error).__name__}: {error}", flush=True)
                    continue
                out.write(json.dumps(result) + "\n")
                out.flush()
                results.append(result)
                best = best_epoch(result["history"], "accuracy")
                print(f"[sweep] {result['setting']} seed {result['trial']['seed']}: best epoch {best['epoch']} "
                      f"val {best['val_accuracy']:.3f} test {best['test_accuracy']:.3f} ({result['seconds']:.0f}s, "
                      f"{len(results)} done at {time.time() - started:.0f}s)", flush=True)
            if deadline_seconds and time.time() - started > deadline_seconds and queue:
                print(f"[sweep] past the {deadline_seconds:.0f}s deadline: {len(queue)} trial(s) not started", flush=True)
                queue.clear()
            while queue and len(running) < processes:
                running.add(pool.submit(run_trial, queue.pop(0), splits_dir, backbone, threads_per_process,
                                        extra_held_out))
    return results


def best_epoch(history: list[dict], select_metric: str) -> dict:
    """The epoch `sentiment train` would keep: best validation metric, ties by lower loss."""
    return max(history, key=lambda m: selection_score(m, select_metric))


def summarize_sweep(results: list[dict], select_metric: str = "accuracy") -> list[dict]:
    """One row per setting: seeds, and the mean and standard deviation over seeds of the best
    epoch's validation and test numbers (best chosen on validation only)."""
    by_setting: dict[str, list[dict]] = {}
    for result in results:
        by_setting.setdefault(result["setting"], []).append(result)
    rows = []
    for setting, runs in by_setting.items():
        chosen = [best_epoch(run["history"], select_metric) for run in runs]
        test_f1 = [per_class_f1(m["test_confusion_matrix"]) for m in chosen]
        columns = {**{key: [m[key] for m in chosen] for key in ("val_accuracy", "val_macro_f1", "test_accuracy",
                                                                "test_macro_f1")},
                   **{f"test_f1_{label}": [f1[i] for f1 in test_f1] for i, label in enumerate(LABELS)},
                   "best_epoch": [m["epoch"] for m in chosen], "seconds": [run["seconds"] for run in runs]}
        rows.append({"setting": setting, "seeds": len(runs),
                     **{k: (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0) for k, v in columns.items()}})
    return sorted(rows, key=lambda row: -row["val_accuracy"][0])


def trial_table(results: list[dict], field: str, extra_held_out: tuple[str, ...] = ()) -> str:
    """One row per trial at the epoch validation chose, by the Trial field compared and the seed,
    with the accuracy on each extra held-out set run_trial scored (sweep_table gives the means
    over seeds)."""
    extra_header = "".join(f" {name} acc |" for name in extra_held_out)
    rows = [f"| {field} | seed | chosen epoch | val acc | val macro-F1 | test acc | test macro-F1 | "
            f"test F1 neg / neu / pos |{extra_header}",
            "|---|---|---|---|---|---|---|---|" + "---|" * len(extra_held_out)]
    for result in sorted(results, key=lambda r: (str(r["trial"][field]), r["trial"]["seed"])):
        best = best_epoch(result["history"], "accuracy")
        per_class = " / ".join(f"{f1:.3f}" for f1 in per_class_f1(best["test_confusion_matrix"]))
        extra = "".join(f" {best[f'{name}_accuracy']:.3f} |" for name in extra_held_out)
        rows.append(f"| {result['trial'][field]} | {result['trial']['seed']} | {best['epoch']} | "
                    f"{best['val_accuracy']:.3f} | {best['val_macro_f1']:.3f} | {best['test_accuracy']:.3f} | "
                    f"{best['test_macro_f1']:.3f} | {per_class} |{extra}")
    return "\n".join(rows)


def sweep_table(rows: list[dict]) -> str:
    """Markdown: one line per setting, mean ± sd over seeds, sorted by validation accuracy."""
    def cell(pair, digits=3):
        return f"{pair[0]:.{digits}f} ± {pair[1]:.{digits}f}"

    lines = ["| setting | seeds | val acc | val macro-F1 | test acc | test macro-F1 | test F1 neg / neu / pos | best epoch | s per run |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        f1 = " / ".join(f"{row[f'test_f1_{label}'][0]:.3f}" for label in LABELS)
        lines.append(f"| `{row['setting']}` | {row['seeds']} | {cell(row['val_accuracy'])} | {cell(row['val_macro_f1'])} | "
                     f"{cell(row['test_accuracy'])} | {cell(row['test_macro_f1'])} | {f1} | "
                     f"{row['best_epoch'][0]:.1f} | {row['seconds'][0]:.0f} |")
    return "\n".join(lines)
