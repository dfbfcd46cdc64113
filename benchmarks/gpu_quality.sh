#!/usr/bin/env bash
# Issue 23's last lever on a lent GPU, in one device call: all-mpnet-base-v2 adapted to reviews by
# masked-language training over the whole unlabeled corpus (218,001 distinct texts; about 17 hours
# on 2 CPU cores), then fine-tuned with mpnet's recipe (one epoch) on all labeled data, two seeds,
# against the same backbone fine-tuned without adaptation on the same card.
#
# The weights do not fit a call: carry them first in parts (benchmarks/backbone_parts.py), in
# calls one right after the other (a machine idle for 30 s is given back with what it held):
#   here, once:  ../shared/tools/gpu-kit && python -m benchmarks.backbone_parts split --model mpnet
#   calls:       carry [".gpukit"]                            command: source .gpukit/setup.sh
#                carry [".carry/mpnet/part-000"]              command: ls -l .carry/mpnet
#                carry [".carry/mpnet/part-001"]              command: ls -l .carry/mpnet
#                carry [".carry/mpnet/part-002"]              command: ls -l .carry/mpnet
#                carry [".carry/mpnet/part-003", ".carry/mpnet/manifest.json"]
#                    command: source .gpukit/setup.sh && bash benchmarks/gpu_quality.sh   (timeout_s 600)
# (.gpukit is about 34 MiB and a part 60: each travels in a call of its own.)
# On CPU (a dry run of the same steps with a tiny backbone and a few hundred rows):
#   GPU_QUALITY_CPU=1 PARTS=DIR OUT=/tmp/gpu-quality bash benchmarks/gpu_quality.sh
#   (DIR: `python -m benchmarks.backbone_parts split --model TINY_FOLDER --out DIR --part-mib 0.5`)
#
# Each step has a limit inside one budget (GPU_QUALITY_BUDGET_S, default 540 s); metrics.json of
# each fine-tune comes back under $OUT, and the table at the end compares them.
set -u
out=${OUT:?set OUT to the folder for logs and JSON}
parts=${PARTS:-.carry/mpnet}
work=${GPU_QUALITY_WORK:-/tmp/gpu-quality}
data=../shared/data
mkdir -p "$out/logs" "$work"
if [ "${GPU_QUALITY_CPU:-0}" = 1 ]; then
  device=() adapt_size=(--limit 400 --batch-size 16) train_size=(--limit 300 --val-fraction 0.2 --test-fraction 0.2)
  budget=${GPU_QUALITY_BUDGET_S:-900}
else
  # Batch 128 at twice adapt's rate: a GPU step costs about the same at 32 and 128 rows (issue 26).
  device=(--gpu) adapt_size=(--batch-size 128 --lr 1e-4 ${GPU_QUALITY_ADAPT_LIMIT:+--limit $GPU_QUALITY_ADAPT_LIMIT})
  train_size=()
  budget=${GPU_QUALITY_BUDGET_S:-540}
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
fi
deadline=$((SECONDS + budget))

# step NAME LIMIT_S COMMAND...: run_step (benchmarks/lib/budgeted_step.sh), then the log's result
# lines, and its last lines on failure; returns the command's status.
source "$(dirname "$0")/lib/budgeted_step.sh"
step() {
  local rc
  run_step "$@"; rc=$?
  [ -f "$step_log" ] || return 1  # skipped: the budget ran out
  grep -E '\[adapt\] epoch [0-9]+/[0-9]+:|^adapted encoder|^test accuracy' "$step_log" | sed 's/^.*\[adapt\]/[adapt]/' \
    | cut -c1-300 | tail -n 4
  [ "$rc" -ne 0 ] && tail -n 8 "$step_log"
  return $rc
}

# Fine-tune BACKBONE with mpnet's recipe (the reference rate, one epoch) and keep its metrics.
fine_tune() {
  local name=$1 backbone=$2 seed=$3
  step "$name" 150 python -m sentiment train --model "$backbone" --data "$data/labeled" --output "$work/$name" \
    --run-name "$name" --epochs 1 --seed "$seed" "${device[@]}" "${train_size[@]}" \
    && cp "$work/$name/metrics.json" "$out/$name.json"
}

step join 60 python -m benchmarks.backbone_parts join --parts "$parts" --to "$work/backbone" || exit 1
if step adapt 300 python -m sentiment adapt --model "$work/backbone" --data "$data/unlabeled" \
    --text-column "Review Text" Text --leave-out "$data/labeled" --output "$work/adapted" "${device[@]}" \
    "${adapt_size[@]}"; then
  cp "$work/adapted/metrics.json" "$out/adapt.json"
  fine_tune adapted-42 "$work/adapted" 42
  fine_tune adapted-43 "$work/adapted" 43
fi
fine_tune plain-42 "$work/backbone" 42
python3 - "$out" <<'EOF'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
print(f"{'run':<12} {'val acc':>8} {'test acc':>9} {'test F1':>8} {'neutral F1':>11} {'train s':>8}")
for path in sorted(out.glob("*-4[0-9].json")):
    m = json.loads(path.read_text())
    t = m["test"]
    print(f"{path.stem:<12} {m['validation']['accuracy']:>8.3f} "
          f"{t['accuracy']:>9.3f} {t['macro_f1']:>8.3f} {t['per_class']['neutral']['f1']:>11.3f} "
          f"{m.get('wall_seconds', {}).get('training', float('nan')):>8.0f}")
adapt = out / "adapt.json"
if adapt.exists():
    m = json.loads(adapt.read_text())
    print(f"adapt: held-out loss {m['held_out_loss']:.3f}, {m['corpus']['train']} texts, "
          f"{m['wall_seconds']['training']:.0f} s of training")
EOF
tar czf "$out/logs.tar.gz" -C "$out" logs && rm -rf "$out/logs"
echo "== done, $SECONDS s in all"
