"""Model quality: train `sentiment train` once per setting and tabulate what each one scores.

Each setting is a string of extra train flags ("" is the default command). Every run is the
real CLI in a subprocess, with its own output folder and run name; the table gives, per run,
the exact command, the best epoch's validation accuracy and macro-F1 (what settings may be
tuned on), test accuracy and macro-F1, per-class test F1, the test confusion matrix and the
wall time. Never pick settings by the test columns. Each accuracy carries one standard error,
sqrt(p(1-p)/n): with about 620 validation and 608 test rows it is about 1.9 points, so two
settings closer than about two of them are within noise.

    # the default command on all labeled data (about an hour per 3 epochs on 2 cores)
    python -m benchmarks.quality --data ../shared/data/labeled --workdir /tmp/quality \\
        --settings "" "--lr 5e-5 --warmup-fraction 0.1" --table quality.md
    # a smoke run on a subset
    python -m benchmarks.quality --data ../shared/data/labeled --limit 300 --settings "--epochs 1"
    # cross-domain: train on one scrape, also evaluate on the other (`sentiment evaluate`)
    python -m benchmarks.quality --data ../shared/data/labeled/gplay-2024.csv \\
        --evaluate-on ../shared/data/labeled/gplay-2020.csv --workdir /tmp/quality-2024

The other set first loses every row whose text is also in the training files
(`benchmarks.lib.cross_domain`); the table says how many rows that drops.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time

from benchmarks.lib.bow_baseline import tfidf_baseline
from benchmarks.lib.cross_domain import unseen_rows
from sentiment.data.labels import LABELS
from sentiment.train.metrics import standard_error


def run_setting(data: list[str], workdir: str, index: int, setting: str, limit: int | None,
                evaluate_on: list[str] | None = None) -> dict:
    """Train one setting through the CLI; returns its row (command, metrics, wall time).

    With evaluate_on, the trained model is also scored on those labeled files by `sentiment
    evaluate` (row key "other": its metrics and command)."""
    output = os.path.join(workdir, f"run-{index}")
    command = [sys.executable, "-m", "sentiment", "train", "--data", *data, "--output", output,
               "--run-name", f"quality-{index}-{time.strftime('%Y%m%d-%H%M%S')}", *shlex.split(setting)]
    if limit:
        command += ["--limit", str(limit)]
    # A base-size run takes over an hour on 2 cores: its epoch and step lines go to a log as they
    # come (`tail -f` it), and a failure shows that log's end.
    log_path = f"{output}.log"
    print(f"setting {setting or '(defaults)'!r}: training, progress in {log_path}", flush=True)
    started = time.time()
    with open(log_path, "w") as log:
        finished = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, text=True)
    wall = time.time() - started
    if finished.returncode != 0:
        with open(log_path) as log:
            tail = log.read()[-3000:]
        raise RuntimeError(f"setting {setting!r} failed ({finished.returncode}), log {log_path}:\n{tail}")
    with open(os.path.join(output, "metrics.json")) as f:
        metrics = json.load(f)
    best = metrics["history"][metrics["best_epoch"] - 1]
    shown = ["sentiment", *command[3:]]
    other = evaluate_other(output, unseen_rows(evaluate_on, data, output)) if evaluate_on else None
    return {"other": other, "setting": setting or "(defaults)", "command": shlex.join(shown), "wall_seconds": wall,
            "config": {k: metrics["config"].get(k) for k in ("model", "epochs", "batch_size", "lr", "warmup_fraction",
                                                             "label_smoothing", "select_metric", "limit")},
            "best_epoch": metrics["best_epoch"], "val_accuracy": best["val_accuracy"],
            "val_macro_f1": best["val_macro_f1"], "test": metrics["test"], "rows": metrics["rows"]}


def evaluate_other(model: str, other: dict) -> dict:
    """`sentiment evaluate` of a trained model on unseen_rows()'s file: its report, command and row counts."""
    report = os.path.join(model, "other-evaluation.json")
    command = [sys.executable, "-m", "sentiment", "evaluate", "--model", model, "--data", other["path"],
               "--report", report]
    finished = subprocess.run(command, capture_output=True, text=True)
    if finished.returncode != 0:
        raise RuntimeError(f"evaluating on {other['path']} failed ({finished.returncode}):\n{finished.stderr[-3000:]}")
    with open(report) as f:
        metrics = json.load(f)
    return {**other, "metrics": metrics, "command": shlex.join(["sentiment", *command[3:]])}


def baseline_row(data: list[str], limit: int | None) -> dict:
    """The TF-IDF + logistic regression reference on the same split, shaped like a setting's row."""
    started = time.time()
    result = tfidf_baseline(data, limit=limit)
    return {"other": None, "setting": "reference: TF-IDF word+char n-grams, logistic regression (no encoder)",
            "command": f"python -m benchmarks.quality --data {shlex.join(data)} --bow-baseline --settings"
                       + (f" --limit {limit}" if limit else ""),
            "wall_seconds": time.time() - started, "best_epoch": "-",
            "val_accuracy": result["validation"]["accuracy"], "val_macro_f1": result["validation"]["macro_f1"],
            "test": result["test"], "rows": result["rows"]}


def with_error(accuracy: float, n: int) -> str:
    """An accuracy and its standard error, e.g. "0.676 ± 0.019"."""
    return f"{accuracy:.3f} ± {standard_error(accuracy, n):.3f}"


def format_table(rows: list[dict]) -> str:
    head = ("| setting | best epoch | val acc ± SE | val macro-F1 | test acc ± SE | test macro-F1 | "
            + " | ".join(f"F1 {name}" for name in LABELS) + " | confusion (rows true) | wall s |")
    lines = [head, "|" + "---|" * (8 + len(LABELS))]
    for r in rows:
        test = r["test"]
        f1 = " | ".join(f"{test['per_class'][name]['f1']:.3f}" for name in LABELS)
        lines.append(f"| {r['setting']} | {r['best_epoch']} | {with_error(r['val_accuracy'], r['rows']['validation'])} | "
                     f"{r['val_macro_f1']:.3f} | {with_error(test['accuracy'], test['n'])} | {test['macro_f1']:.3f} | "
                     f"{f1} | {test['confusion_matrix']} | "
                     f"{r['wall_seconds']:.0f} |")
    lines += ["", "commands:"] + [f"- `{r['command']}`" for r in rows]
    others = [r for r in rows if r.get("other")]
    if others:
        lines += ["", "| setting | own test acc ± SE | own test macro-F1 | other set acc ± SE | other set macro-F1 | "
                  "accuracy change on the other set | other set rows (texts also in training, dropped) |", "|---|---|---|---|---|---|---|"]
        for r in others:
            own, other = r["test"], r["other"]["metrics"]
            lines.append(f"| {r['setting']} | {with_error(own['accuracy'], own['n'])} | {own['macro_f1']:.3f} | "
                         f"{with_error(other['accuracy'], other['n'])} | "
                         f"{other['macro_f1']:.3f} | {other['accuracy'] - own['accuracy']:+.3f} | {other['n']} ({r['other']['dropped']}) |")
        lines += ["", "evaluated with:"] + [f"- `{r['other']['command']}`" for r in others]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__.splitlines()[0],
                                     epilog=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", default=["../shared/data/labeled"], metavar="PATH")
    parser.add_argument("--workdir", default="quality-runs", help="one output folder per setting (default: %(default)s)")
    parser.add_argument("--settings", nargs="*", default=[""], metavar="FLAGS",
                        help='extra `sentiment train` flags per run, e.g. "" "--lr 5e-5 --warmup-fraction 0.1"')
    parser.add_argument("--limit", type=int, default=None, help="train each run on a seeded random sample of N rows")
    parser.add_argument("--table", default=None, help="also write the markdown table here")
    parser.add_argument("--bow-baseline", action="store_true",
                        help="add a row for a TF-IDF + logistic regression model on the same split (a minute "
                             "on 2 cores): what counting words alone scores")
    parser.add_argument("--evaluate-on", nargs="+", default=None, metavar="PATH",
                        help="also evaluate each trained model on these labeled files (e.g. another scrape)")
    args = parser.parse_args(argv)
    os.makedirs(args.workdir, exist_ok=True)
    rows = [baseline_row(args.data, args.limit)] if args.bow_baseline else []
    for index, setting in enumerate(args.settings):
        rows.append(run_setting(args.data, os.path.abspath(args.workdir), index, setting, args.limit,
                                args.evaluate_on))
        test = rows[-1]["test"]
        print(f"setting {setting or '(defaults)'!r}: test accuracy {with_error(test['accuracy'], test['n'])}, "
              f"macro-F1 {test['macro_f1']:.3f}", flush=True)
    table = format_table(rows)
    print(table)
    with open(os.path.join(args.workdir, "quality.json"), "w") as f:
        json.dump(rows, f, indent=2)
    if args.table:
        with open(args.table, "w") as f:
            f.write(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
