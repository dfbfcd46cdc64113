#!/usr/bin/env bash
# The GPU measurements of issues 25 (scoring) and 26 (training) in one device call of at most
# 10 minutes: a lent machine has 15 minutes in all, its start included, so the steps share a
# budget (GPU_CHECK_BUDGET_S, default 540 s) and each has its own limit, in the order of what the
# issues need most. A step cut off by its limit leaves its log; the training benchmark writes its
# JSON after each batch size, so the batch sizes that finished are kept.
#
# Here, once:   ../shared/tools/gpu-kit && python -m benchmarks.gpu --save-tokenizer .gpukit/tokenizer
# The call:     run(command="source .gpukit/setup.sh && bash benchmarks/gpu_check.sh", carry=[".gpukit"])
# On CPU (a dry run of the same steps with a tiny model and small inputs, a few minutes on 2 cores):
#               GPU_CHECK_CPU=1 OUT=/tmp/gpu-check bash benchmarks/gpu_check.sh
#
# Steps: the training step phase by phase without Ray (benchmarks/train_step.py, eager and
# compiled, with a profiler table); one scoring actor call phase by phase without Ray
# (benchmarks/actor_call.py, tiny and bert-base); `sentiment score --gpu` on 2,000,000 rows
# with the tiny model (the pipeline's ceiling) and with bert-base, each printing Ray Data's
# per-stage table first; one epoch of bert-base training on all labeled data at batch 32, eager
# and compiled, and at batch 128 compiled.
# Everything lands under $OUT: one JSON per step and the logs as one archive.
set -u
out=${OUT:?set OUT to the folder for logs and JSON}
mkdir -p "$out"
tokenizer=.gpukit/tokenizer
data=../shared/data
if [ "${GPU_CHECK_CPU:-0}" = 1 ]; then
  score=(--device cpu --rows 4000 --shards 2 --peak-size 256)
  bert_size=(--model-size tiny)
  train=(--size tiny --limit 300)
  train_step_size=tiny train_step_device=cpu bert_actor_size=tiny
  actor_rows=(--rows 8192 --repeats 2)
  budget=${GPU_CHECK_BUDGET_S:-900}
  if [ ! -d "$tokenizer" ]; then  # no gpu-kit here: the packaged MiniLM's tokenizer, saved once
    tokenizer=.bench-tokenizer
    [ -d "$tokenizer" ] || python -m benchmarks.gpu --save-tokenizer "$tokenizer" || exit 1
  fi
else
  score=()
  bert_size=()
  train=(--size bert-base --gpu)
  train_step_size=bert-base train_step_device=cuda bert_actor_size=bert-base
  actor_rows=()
  budget=${GPU_CHECK_BUDGET_S:-540}
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv,noheader
fi
deadline=$((SECONDS + budget))

# step NAME LIMIT_S COMMAND...: run_step (benchmarks/lib/budgeted_step.sh), then what the reply's
# tail should carry of its log: the tables and the epoch lines, not Ray's chatter.
mkdir -p "$out/logs"
source "$(dirname "$0")/lib/budgeted_step.sh"
# GPU_CHECK_STEPS picks which steps run (default: all); they run in the order below.
steps=${GPU_CHECK_STEPS:-train-step actor-call-tiny actor-call-bert-base score-tiny train-eager-32 train-compiled-32 score-bert-base train-compiled-128}
step() {
  local name=$1 rc log
  case " $steps " in *" $name "*) ;; *) return ;; esac
  run_step "$@"; rc=$?
  log=$step_log
  [ -f "$log" ] || return  # skipped: the budget ran out
  { sed -n '/^(d) per stage/,$p' "$log"
    grep -E 'epoch [0-9]|^training|^\| ([0-9]|on |off )|batches of real reviews|per call|scoring actor on' "$log" | sed 's/^.*scoring actor on/scoring actor on/'
    grep -iE 'failed|Error|Traceback|timed out|skipping cudagraphs' "$log" | tail -n 5
    [ "$rc" -ne 0 ] && tail -n 8 "$log"; } | grep -v '^|---' | cut -c1-400 | awk '!seen[$0]++' | tail -n 40
}

# The order is what the issues need most first: the training step phase by phase (issue 26's
# 28 ms outside the graph), the scoring actor's call phase by phase (issue 25's 20 µs per row
# with a model that computes nothing), the pipeline's ceiling, the eager and the compiled step at the
# recipe's batch size, bert-base end to end, batch 128 compiled.
step train-step 200 python -m benchmarks.train_step --size "${train_step_size}" --tokenizer "$tokenizer" \
  --device "$train_step_device" --steps 100 --profile --json "$out/train-step.json"
step actor-call-tiny 60 python -m benchmarks.actor_call --model-size tiny --tokenizer "$tokenizer" \
  --device "$train_step_device" ${actor_rows[@]+"${actor_rows[@]}"}
step actor-call-bert-base 60 python -m benchmarks.actor_call --model-size "$bert_actor_size" --tokenizer "$tokenizer" \
  --device "$train_step_device" ${actor_rows[@]+"${actor_rows[@]}"}
step score-tiny 100 python -m benchmarks.gpu --tokenizer "$tokenizer" --end-to-end-only --model-size tiny \
  "${score[@]}" --json "$out/score-tiny.json"
step train-eager-32 80 python -m benchmarks.training --data "$data/labeled" --tokenizer "$tokenizer" "${train[@]}" \
  --batch-sizes 32 --compile off --json "$out/train-eager-32.json"
step train-compiled-32 280 python -m benchmarks.training --data "$data/labeled" --tokenizer "$tokenizer" "${train[@]}" \
  --batch-sizes 32 --compile on --json "$out/train-compiled-32.json"
step score-bert-base 150 python -m benchmarks.gpu --tokenizer "$tokenizer" --end-to-end-only "${bert_size[@]}" \
  "${score[@]}" --json "$out/score-bert-base.json"
step train-compiled-128 300 python -m benchmarks.training --data "$data/labeled" --tokenizer "$tokenizer" "${train[@]}" \
  --batch-sizes 128 --compile on --json "$out/train-compiled-128.json"
# At most 8 files come back from a device call: the logs travel as one archive.
tar czf "$out/logs.tar.gz" -C "$out" logs && rm -rf "$out/logs"
echo "== done, $SECONDS s in all"
