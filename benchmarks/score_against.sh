#!/usr/bin/env bash
# `sentiment score` on CPU, this checkout against an older commit, in turns on the same machine:
# a tiny classifier (random weights: speed does not depend on them) and ROWS real reviews in 4
# Parquet shards. Prints each run's whole-process and _summary.json wall time, then the medians
# and their ratio. Both run on this checkout's virtual environment; the older commit runs from a
# temporary git worktree, with PYTHONPATH so that Ray's workers import its code too.
#
#   bash benchmarks/score_against.sh REF [ROWS] [RUNS]     e.g. REF=13f5bd1, ROWS=40000, RUNS=3
set -euo pipefail
ref=${1:?usage: benchmarks/score_against.sh REF [ROWS] [RUNS]}
rows=${2:-40000}
runs=${3:-3}
here=$(git rev-parse --show-toplevel)
work=$(mktemp -d /tmp/score-against-XXXXXX)
trap 'git -C "$here" worktree remove --force "$work/ref" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
git -C "$here" worktree add -q --detach "$work/ref" "$ref"
python - "$work" "$rows" <<'EOF'
import sys
from benchmarks.lib.gpu_benchmark import save_model, write_replicated_shards
from benchmarks.tokenizing import DEFAULT_DATA, real_reviews
work, rows = sys.argv[1], int(sys.argv[2])
save_model(f"{work}/model", "tiny", None)
write_replicated_shards(real_reviews(str(DEFAULT_DATA), 4000)["content"].to_pylist(), rows, f"{work}/shards", 4)
EOF
declare -A process summary
for i in $(seq "$runs"); do
  for side in ref here; do
    root=$here; [ "$side" = ref ] && root=$work/ref
    rm -rf "$work/out"
    started=$(date +%s.%N)
    (cd "$root" && PYTHONPATH=$root python -m sentiment score --model "$work/model" --input "$work/shards" \
      --output "$work/out" --text-column "Review Text" > "$work/$side.log" 2>&1) || { tail -5 "$work/$side.log"; exit 1; }
    ended=$(date +%s.%N)
    seconds=$(python3 -c "print(f'{$ended - $started:.1f}')")
    summary_seconds=$(python3 -c "import json; print(json.load(open('$work/out/_summary.json'))['wall_s'])")
    process[$side]+="$seconds "
    summary[$side]+="$summary_seconds "
    echo "run $i, $side: ${seconds} s whole process, ${summary_seconds} s in _summary.json"
  done
done
python3 - "${process[ref]}" "${process[here]}" "${summary[ref]}" "${summary[here]}" "$ref" <<'EOF'
import statistics, sys
p_ref, p_here, s_ref, s_here = ([float(x) for x in a.split()] for a in sys.argv[1:5])
m = statistics.median
print(f"whole process, s: {sys.argv[5]} {p_ref} -> median {m(p_ref):.1f}; this checkout {p_here} -> median {m(p_here):.1f}; "
      f"ratio {m(p_here) / m(p_ref):.2f}x")
print(f"_summary.json wall, s: median {m(s_ref):.1f} -> {m(s_here):.1f}; ratio {m(s_here) / m(s_ref):.2f}x")
EOF
