"""A task's own peak resident memory, for the build report.

ru_maxrss is the peak of the whole process, and of the largest child it ever waited for: in a `doit`
that built other tasks first it names the biggest task so far, not this one (the report once showed
188 and 532 MB for the same work). So a task resets the figures when it starts (`reset_peak`): on
Linux a process may reset its own peak (writing 5 to /proc/self/clear_refs resets VmHWM; Linux
proc(5)), and each tool the task runs reports its own peak (os.wait4, toolchains/qairt/run.py,
`tool_finished`). Where the reset is not possible (another OS, a kernel that refuses it) the figure
is unknown: None, which the report shows as "-".
"""

from __future__ import annotations

from pathlib import Path

_state = {"reset": False, "tools_kb": 0}


def reset_peak() -> None:
    """Start measuring a task: this process's peak and its tools' are forgotten."""
    _state["tools_kb"] = 0
    try:
        Path("/proc/self/clear_refs").write_text("5")
        _state["reset"] = True
    except OSError:
        _state["reset"] = False


def tool_finished(maxrss_kb: int) -> None:
    """A tool run for the task ended with this peak (its own rusage, KiB on Linux)."""
    _state["tools_kb"] = max(_state["tools_kb"], maxrss_kb)


def peak_rss_mb() -> float | None:
    """The task's peak since `reset_peak`: this process or any tool it ran, whichever was larger; None
    when it cannot be told."""
    if not _state["reset"]:
        return None
    try:
        own_kb = next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines()
                      if line.startswith("VmHWM:"))
    except (OSError, StopIteration, ValueError):
        return None
    return round(max(own_kb, _state["tools_kb"]) / 1024.0, 1)
