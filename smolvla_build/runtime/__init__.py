"""Runners: one per engine behind one small interface (Polygraphy's shape).

activate() loads, infer(feeds) -> {name: array} runs and records the time of each call,
deactivate() frees; usable as a context manager.
"""

from .runners import OrtQnnRunner, QnnNetRunRunner, ReferenceRunner, Runner
from .stage import StageRunner

__all__ = ["OrtQnnRunner", "QnnNetRunRunner", "ReferenceRunner", "Runner", "StageRunner"]
# Policy (runtime.policy) is imported explicitly: it needs `tokenizers`.
