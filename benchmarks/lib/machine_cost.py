"""What a run costs the whole machine: busy CPU seconds, and the Ray worker processes it started.

Counted machine-wide (from /proc/stat), so the processes Ray starts for a run are included; on a
machine doing nothing else, the difference across a run is that run's cost.
"""

import glob
import os


def machine_cpu_seconds() -> float:
    """Busy CPU seconds of the whole machine since boot (user+nice+system+irq+softirq)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:8]]
    return (fields[0] + fields[1] + fields[2] + fields[5] + fields[6]) / os.sysconf("SC_CLK_TCK")


def ray_workers_started() -> int:
    """Worker processes the connected Ray session has started so far (one log file each)."""
    import ray

    logs = ray._private.worker._global_node.get_logs_dir_path()
    return len(glob.glob(os.path.join(logs, "python-core-worker-*.log")))
