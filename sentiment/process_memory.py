"""Memory and CPU time of a whole process tree, read from /proc: `sentiment score` spreads its
work over a driver, Ray's raylet and GCS, and every worker, so the command's own process is
only a small part of what it costs.

RSS sums double-count pages that several processes map (Ray's object store, torch libraries);
PSS splits each shared page between the processes that map it, so its sum is the honest total.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class SampledRun:
    """A finished command, with the peaks and CPU time of its process tree while it ran."""
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    peak_rss_bytes: int
    peak_pss_bytes: int
    cpu_seconds: float  # user+system of every process seen, up to its last sample


def tree_usage(root: int) -> tuple[int, int, dict[int, float]]:
    """Sum of RSS and of PSS (bytes), and CPU seconds per pid, over `root` and its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    rss = pss = 0
    cpu: dict[int, float] = {}
    stack = [root]
    while stack:
        pid = stack.pop()
        stack.extend(children.get(pid, ()))
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            cpu[pid] = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime + stime
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith(("Rss:", "Pss:")):
                        kib = int(line.split()[1]) * 1024
                        rss, pss = (rss + kib, pss) if line[0] == "R" else (rss, pss + kib)
        except OSError:
            continue  # exited between listing and reading
    return rss, pss, cpu


def run_sampled(command: list[str], poll_s: float = 0.25) -> SampledRun:
    """Run `command` to the end, sampling its process tree every `poll_s` seconds.

    A process that lives shorter than `poll_s` may be missed, so keep `poll_s` well under the
    lifetime of the processes that matter.
    """
    peak = {"rss": 0, "pss": 0}
    cpu: dict[int, float] = {}
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done = threading.Event()

    def sample():
        while not done.is_set():
            rss, pss, seen = tree_usage(proc.pid)
            peak["rss"], peak["pss"] = max(peak["rss"], rss), max(peak["pss"], pss)
            cpu.update(seen)  # cumulative per process; the last sample before each exit counts
            done.wait(poll_s)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate()
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    return SampledRun(proc.returncode, stdout, stderr, seconds, peak["rss"], peak["pss"], sum(cpu.values()))
