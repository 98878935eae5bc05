"""Ctrl-C during a build: one line, a stop at once, nothing half-written in place.

Every output is renamed into place only when whole (fsutil.atomic_path, atomic_dir) and doit records
a task only after it succeeds, so stopping at once loses only the running tasks' work, which the next
`doit` redoes. Python runs a signal handler only between bytecodes of its main thread, and that thread
can sit for minutes in one onnxruntime call (an HTP-emulated context) with the interpreter lock
released; so the signal also wakes a thread of its own (signal.set_wakeup_fd), which stops the process
from there. The worker processes of `doit -n N` are stopped with it (docs/incremental.md); the local
Ray instance of `doit eval` ends with its driver by Ray's own fate sharing (docs/evaluation.md).
"""

from __future__ import annotations

import os
import signal
import socket
import threading

MESSAGE = ("interrupted: the build stopped; what finished is kept and nothing half-written is in place "
           "(run doit again to resume)")
_owner: int | None = None                # the pid that installed the handler: it alone speaks
_sockets: tuple = ()                     # kept open for the process's life: the wakeup fd is only a number


def stop_now() -> None:
    """End this process at once with status 130 (128 + SIGINT), its doit workers first; one line."""
    if os.getpid() == _owner:
        import multiprocessing
        for child in multiprocessing.active_children():
            child.kill()
        os.write(2, ("\n" + MESSAGE + "\n").encode())
    os._exit(130)


def stop_on_interrupt() -> None:
    """Make SIGINT (Ctrl-C) end the building doit at once (stop_now), whatever its main thread is doing."""
    global _owner, _sockets
    if _owner is not None or threading.current_thread() is not threading.main_thread():
        return
    _owner = os.getpid()
    wake, signalled = _sockets = socket.socketpair()
    signalled.setblocking(False)
    signal.set_wakeup_fd(signalled.fileno(), warn_on_full_buffer=False)
    signal.signal(signal.SIGINT, lambda signum, frame: stop_now())

    def watch() -> None:
        while True:
            if signal.SIGINT in wake.recv(64):
                stop_now()
    threading.Thread(target=watch, name="stop-on-interrupt", daemon=True).start()
