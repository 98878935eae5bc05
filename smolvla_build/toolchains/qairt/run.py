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
            proc = subprocess.run(argv(cmd), env=dict(os.environ, **(env or {})), cwd=cwd, capture_output=True,
                                  text=True)
        except OSError as e:              # the program itself is missing or not executable
            raise ToolFailed(f"cannot run {argv(cmd)[0]}: {e.strerror}: {cmd}") from None
    if check and proc.returncode != 0:
        raise ToolFailed(f"command failed ({proc.returncode}): {cmd}\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return proc
