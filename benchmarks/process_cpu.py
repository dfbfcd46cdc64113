"""CPU seconds by kind of process while a command runs: Ray workers by the task or actor they ran,
Ray's own daemons, compilers, the command itself.

    python -m benchmarks.process_cpu --json OUT.json -- bash .ci/run
    python -m benchmarks.process_cpu -- python -m pytest -n 0 tests/train/test_resume.py

Ray Data and Ray Train start many short processes (actors, task workers, compile workers); a
machine-wide CPU total says what a run cost, this says who spent it. Every --interval seconds it
reads every process (psutil) and keeps, for each that started while the command ran, its last CPU
time and the titles it had: Ray renames a worker `ray::TASK` while it runs a task and `ray::IDLE`
between tasks, so a worker is counted under the first task or actor it ran, with the CPU of every
later task it ran in that process. A process that lives less than one interval may be missed,
and the CPU a process spends after its last sample is not counted.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field

import psutil

_RAY_TITLE = re.compile(r"ray::([\w.()\[\]>\-]+)")


@dataclass
class Seen:
    cpu_s: float
    titles: list[str] = field(default_factory=list)


def kind_of(titles: list[str]) -> str:
    """The row a process is counted in: its first Ray task or actor, else the program it runs
    (for Python, the module or script)."""
    for title in titles:
        match = _RAY_TITLE.search(title)
        if match and match.group(1) != "IDLE":
            return "ray::" + match.group(1).split(".")[0][:60]
    if not titles:
        return "(exited before it was read)"
    words = titles[0].split()
    program = words[0].rsplit("/", 1)[-1]
    if "default_worker.py" in titles[0]:
        return "ray worker that ran no task"
    if not program.startswith("python") or len(words) == 1:
        return program[:60]
    options = [w for w in words[1:] if w.startswith("-")]
    if "-m" in words:
        return f"python -m {words[words.index('-m') + 1]}"
    if "-c" in options:
        return "python -c"
    script = next((w for w in words[1:] if not w.startswith("-")), "")
    return f"python {script.rsplit('/', 1)[-1]}"[:60]


def watch(command: list[str], interval: float) -> tuple[int, float, dict[tuple[int, float], Seen]]:
    """Run command, sampling processes until it ends: (exit status, wall seconds, processes seen)."""
    before = {(p.pid, p.info["create_time"]) for p in psutil.process_iter(["create_time"])}
    seen: dict[tuple[int, float], Seen] = {}
    started = time.perf_counter()
    proc = subprocess.Popen(command)
    while True:
        done = proc.poll() is not None
        for process in psutil.process_iter(["create_time", "cmdline", "cpu_times"]):
            key = (process.pid, process.info["create_time"])
            times, cmdline = process.info["cpu_times"], process.info["cmdline"]
            if key in before or times is None:  # older than the command, or gone while read
                continue
            entry = seen.setdefault(key, Seen(0.0))
            entry.cpu_s = times.user + times.system
            title = " ".join(cmdline or [])
            if title and title not in entry.titles:
                entry.titles.append(title)
        if done:
            return proc.returncode, time.perf_counter() - started, seen
        time.sleep(interval)


def by_kind(seen: dict[tuple[int, float], Seen]) -> list[dict]:
    """Rows of {kind, processes, cpu_s}, most CPU first."""
    totals: dict[str, list] = defaultdict(lambda: [0, 0.0])
    for entry in seen.values():
        row = totals[kind_of(entry.titles)]
        row[0] += 1
        row[1] += entry.cpu_s
    return [{"kind": kind, "processes": n, "cpu_s": round(cpu_s, 1)}
            for kind, (n, cpu_s) in sorted(totals.items(), key=lambda item: -item[1][1])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--interval", type=float, default=0.3, help="seconds between samples (default: 0.3)")
    parser.add_argument("--rows", type=int, default=30, help="rows of the table to print (default: 30)")
    parser.add_argument("--json", help="also write every row to this file")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to watch after --")
    status, wall_s, seen = watch(command, args.interval)
    rows = by_kind(seen)
    total = sum(row["cpu_s"] for row in rows)
    print(f"\n{total:.0f} CPU s in {wall_s:.0f} s of wall time ({total / wall_s:.2f} cores busy on average), "
          f"{len(seen)} processes started; exit status {status}")
    print(f"{'CPU s':>8} {'share':>6} {'procs':>6}  kind")
    for row in rows[:args.rows]:
        print(f"{row['cpu_s']:8.1f} {row['cpu_s'] / max(total, 1e-9):6.1%} {row['processes']:6d}  {row['kind']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"command": command, "wall_s": round(wall_s, 1), "exit_status": status, "rows": rows}, f, indent=1)
    return status


if __name__ == "__main__":
    sys.exit(main())
