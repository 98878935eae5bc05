"""One building `doit` at a time on an artifacts folder.

A second `doit` that would run tasks on the same folder while one is running stops at once with one
line instead of racing it (two processes writing the same targets, one sqlite dependency file). The
lock is an OS file lock on `<artifacts>/.doit.lock`, which the kernel releases when its process ends,
however it ends: a killed build leaves no stale lock. The file records the holder's pid, so that the
worker processes of `doit -n 2` (children of the holder) pass, and the refusal can name it. Read-only
doit commands (list, info, help, dumpdb) do not take it.
"""

from __future__ import annotations

import os
from pathlib import Path

READ_ONLY = {"list", "info", "help", "dumpdb", "tabcompletion"}
_held = None          # the open lock file of this process: kept open for the process's life


class Busy(Exception):
    """Another process builds in this artifacts folder; str() is the one line to show."""


def _try_lock(f) -> bool:
    try:
        import fcntl
    except ImportError:                                  # Windows
        import msvcrt
        try:
            f.seek(0)
            msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def hold(root: Path, argv: list[str]) -> None:
    """Take the artifacts folder's lock for this process, unless the doit command in `argv` only
    reads; raise Busy naming the holder when another process has it."""
    global _held
    if READ_ONLY & set(argv) or _held is not None:
        return
    path = Path(root) / ".doit.lock"
    f = open(path, "a+")
    if _try_lock(f):
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        _held = f
        return
    f.seek(0)
    holder = f.read().strip()
    f.close()
    if holder == str(os.getppid()):                      # a worker of the holder (doit -n N)
        return
    raise Busy(f"another doit (pid {holder or '?'}) is building in {root}: wait for it to finish or stop it "
               f"(the lock is {path}; it goes with that process)")
