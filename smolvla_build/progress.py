"""Progress lines for stages that take more than a few seconds, so a user can tell progress from a
hang: counted steps with elapsed time and an estimate of what is left, and a heartbeat during one
long call (an HTP-emulated vision-encoder call takes minutes on x86)."""

from __future__ import annotations

import contextlib
import threading
import time


class Steps:
    """`done()` after each of `total` steps logs `label i/total what (elapsed, ~left)`."""

    def __init__(self, label: str, total: int, log):
        self.label, self.total, self.log = label, total, log
        self.count = 0
        self.t0 = time.perf_counter()

    def done(self, what: str = "") -> None:
        self.count += 1
        elapsed = time.perf_counter() - self.t0
        left = elapsed / self.count * (self.total - self.count)
        tail = f", ~{left:.0f} s left" if self.count < self.total else ""
        self.log.info("%s %d/%d%s (%.1f s elapsed%s)", self.label, self.count, self.total,
                      f" {what}" if what else "", elapsed, tail)


@contextlib.contextmanager
def heartbeat(label: str, log, every: float = 30.0):
    """Log `label: still running (N s)` every `every` seconds while the block runs."""
    stop = threading.Event()
    t0 = time.perf_counter()

    def beat():
        while not stop.wait(every):
            log.info("%s: still running (%.0f s)", label, time.perf_counter() - t0)
    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


class Announced:
    """A runner whose every `infer` call is announced: a heartbeat while it runs, then a `Steps` line."""

    def __init__(self, runner, steps: Steps, every: float = 30.0):
        self.runner, self.steps, self.every = runner, steps, every

    def infer(self, feeds):
        with heartbeat(f"{self.steps.label} {self.steps.count + 1}/{self.steps.total}", self.steps.log, self.every):
            out = self.runner.infer(feeds)
        self.steps.done()
        return out

    def __getattr__(self, name):
        return getattr(self.runner, name)
