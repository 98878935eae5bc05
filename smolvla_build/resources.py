"""This machine's cores and available memory: how many build tasks or evaluation actors it runs at
a time."""

from __future__ import annotations

import os


def available_memory_gb(default: float = 8.0) -> float:
    """MemAvailable from /proc/meminfo (Linux); `default` where there is none."""
    try:
        with open("/proc/meminfo") as f:
            return int(next(line for line in f if line.startswith("MemAvailable")).split()[1]) / 2**20
    except (OSError, StopIteration, ValueError):
        return default


def at_a_time(per_unit_gb: float, limit: int | None = None) -> int:
    """As many units (tasks, actors) as the cores and the available memory allow, each needing
    `per_unit_gb`: at least 1, at most `limit`."""
    n = min(os.cpu_count() or 1, int(available_memory_gb() // per_unit_gb))
    return max(1, min(n, limit) if limit else n)
