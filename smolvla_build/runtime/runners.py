"""Runner implementations: reference (onnxruntime CPU) and ort-qnn (HTP context binaries)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np


class Runner:
    name = "runner"

    def __init__(self):
        self.session = None
        self.inference_times: list[float] = []

    def activate(self):
        if self.session is None:
            self.session = self._load()
        return self

    def deactivate(self):
        self.session = None

    def __enter__(self):
        return self.activate()

    def __exit__(self, *exc):
        self.deactivate()

    def _load(self):  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self.activate().session.get_inputs()]

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self.activate().session.get_outputs()]

    def infer(self, feeds: dict[str, np.ndarray], outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        sess = self.activate().session
        names = outputs or self.output_names
        t0 = time.perf_counter()
        values = sess.run(names, feeds)
        self.inference_times.append(time.perf_counter() - t0)
        return dict(zip(names, values))


class ReferenceRunner(Runner):
    """onnxruntime CPU in fp32: the numeric ground truth."""

    name = "reference"

    def __init__(self, model: str | Path | bytes, threads: int = 0):
        super().__init__()
        self.model = model
        self.threads = threads

    def _load(self):
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.log_severity_level = 3
        if self.threads:
            so.intra_op_num_threads = self.threads
        src = self.model if isinstance(self.model, bytes) else str(self.model)
        return ort.InferenceSession(src, sess_options=so, providers=["CPUExecutionProvider"])


class OrtQnnRunner(Runner):
    """A persistent HTP session on an EPContext model (CPU fallback disabled, provider asserted).
    On x86_64 this is HTP emulation: right numbers, not device speed."""

    name = "ort-qnn"

    def __init__(self, ctx_onnx: str | Path, soc: dict, precision: dict):
        super().__init__()
        self.ctx_onnx = Path(ctx_onnx)
        self.soc = soc
        self.precision = precision

    def _load(self):
        from ..toolchains.ort_qnn import load_session
        return load_session(self.ctx_onnx, self.soc, self.precision)
