"""Memory and CPU time of a whole process tree, read with psutil: `sentiment score` spreads its
work over a driver, Ray's raylet and GCS, and every worker, so the command's own process is
only a small part of what it costs.

RSS sums double-count pages that several processes map (Ray's object store, torch libraries);
PSS splits each shared page between the processes that map it, so its sum is the honest total.
"""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import dataclass

import psutil

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
    try:
        parent = psutil.Process(root)
        processes = [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0, 0, {}
    rss = pss = 0
    cpu: dict[int, float] = {}
    for process in processes:
        try:
            with process.oneshot():
                memory, times = process.memory_full_info(), process.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue  # exited between listing and reading
        rss, pss = rss + memory.rss, pss + memory.pss
        cpu[process.pid] = times.user + times.system
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
