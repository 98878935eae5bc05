"""Running the SDK's tools and the host compilers: a rendered command line as its argument list,
without a shell (smolvla_build.templates), a failure shown with the command and its output."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess

from .. import ToolFailed

log = logging.getLogger("smolvla_build.qairt")
__all__ = ["ToolFailed", "run"]


def run(cmd: str, env: dict | None = None, cwd=None, check: bool = True, label: str | None = None) -> subprocess.CompletedProcess:
    """Run a rendered command line as its argument list (templates.argv), in this process's
    environment updated with `env`. With `label`, a heartbeat line while it runs (the converter
    takes minutes on the full LLM)."""
    from ...progress import heartbeat
    from ...templates import argv
    with heartbeat(label, log) if label else contextlib.nullcontext():
        try:
            proc = _run_measured(argv(cmd), dict(os.environ, **(env or {})), cwd)
        except OSError as e:              # the program itself is missing or not executable
            raise ToolFailed(f"cannot run {argv(cmd)[0]}: {e.strerror}: {cmd}") from None
    if check and proc.returncode != 0:
        raise ToolFailed(f"command failed ({proc.returncode}): {cmd}\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return proc


def _run_measured(args: list[str], env: dict, cwd) -> subprocess.CompletedProcess:
    """subprocess.run(args, capture_output=True, text=True), the tool's own peak memory told to the
    task's measurement (os.wait4's rusage; toolchains/rss.py) where the OS has wait4."""
    import threading

    from ..rss import tool_finished
    if not hasattr(os, "wait4"):
        return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True)
    proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = {}

    def drain(name, stream):
        out[name] = stream.read()
        stream.close()
    readers = [threading.Thread(target=drain, args=item) for item in (("stdout", proc.stdout), ("stderr", proc.stderr))]
    for t in readers:
        t.start()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)     # reaped here: Popen must not wait again
    for t in readers:
        t.join()
    tool_finished(usage.ru_maxrss)
    return subprocess.CompletedProcess(args, proc.returncode, out["stdout"], out["stderr"])
