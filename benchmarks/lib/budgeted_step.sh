# Sourced by benchmarks/gpu_check.sh and benchmarks/gpu_quality.sh: one step of a device call,
# under the time budget the steps share (a lent machine has 15 minutes in all).
#
# run_step NAME LIMIT_S COMMAND...: runs COMMAND with its output in $out/logs/NAME.log (also left
# in $step_log) for at most LIMIT_S or what is left before $deadline, whichever is less; SIGINT
# first, so that Ray shuts its local cluster down. Prints a line before and one after; returns
# the command's status, or 1 without running it when under 45 s of the budget are left.
run_step() {
  local name=$1 limit=$2; shift 2
  local left=$((deadline - SECONDS)) started rc
  step_log="$out/logs/$name.log"
  rm -f "$step_log"  # a skipped step leaves no log, not an older run's
  if [ "$left" -lt 45 ]; then echo "== $name: skipped, ${left}s of the budget left"; return 1; fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "== $name (limit ${limit}s): $*"
  started=$SECONDS
  timeout -s INT -k 20 "$limit" "$@" > "$step_log" 2>&1
  rc=$?
  echo "== $name: rc $rc after $((SECONDS - started))s"
  return $rc
}
