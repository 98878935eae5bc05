"""Runners, one per engine behind one small interface (Polygraphy's shape): reference (onnxruntime
CPU, fp32) and ort-qnn (HTP context binaries in persistent onnxruntime-qnn sessions).

activate() loads, infer(feeds) -> {name: array} runs and records the time of each call,
deactivate() frees; usable as a context manager."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .htp import HtpPerformance, Soc


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

    def __init__(self, model: str | Path | bytes, threads: int = 0, priority_order: bool = False):
        """`priority_order`: onnxruntime's PRIORITY_BASED execution order, which frees activations
        early in graphs with many outputs (validation's range probes: 1.2 GB instead of 5 GB)."""
        super().__init__()
        self.model = model
        self.threads = threads
        self.priority_order = priority_order

    def _load(self):
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.log_severity_level = 3
        if self.threads:
            so.intra_op_num_threads = self.threads
        if self.priority_order:
            so.execution_order = ort.ExecutionOrder.PRIORITY_BASED
        if isinstance(self.model, bytes):
            return ort.InferenceSession(self.model, sess_options=so, providers=["CPUExecutionProvider"])
        from .files import onnxruntime_session
        return onnxruntime_session(self.model, "ONNX model", sess_options=so, providers=["CPUExecutionProvider"])


class OrtQnnRunner(Runner):
    """A persistent HTP session on an EPContext model (CPU fallback disabled, provider asserted).
    On x86_64 this is HTP emulation: right numbers, not device speed.

    `names` maps the graph's I/O names to the context's, where they differ (a qairt context carries
    the converter's sanitized names and fp16 I/O): the runner is then fed and read with the graph's
    names, and float outputs come back as float32, like every other runner's."""

    name = "ort-qnn"

    def __init__(self, ctx_onnx: str | Path, soc: Soc, precision: dict, names: dict[str, str] | None = None,
                 loader=None, performance: HtpPerformance | None = None):
        """`precision`: the precision's settings (its `context` options become provider options);
        `performance`: how the NPU runs it (the EP's defaults if None)."""
        super().__init__()
        self.ctx_onnx = Path(ctx_onnx)
        self.soc = soc
        self.precision = precision
        self.names = names
        self.loader = loader          # the build passes one that also checks the context binaries
        self.performance = performance

    def _load(self):
        from .htp import load_session
        sess = (self.loader or load_session)(self.ctx_onnx, self.soc, self.precision, self.performance)
        return RenamedSession(sess, self.names, self.ctx_onnx) if self.names else sess


class RenamedSession:
    """An onnxruntime session seen under other I/O names, float outputs as float32."""

    def __init__(self, sess, names: dict[str, str], where: Path):
        self.sess = sess
        self.to_ctx = dict(names)
        self.from_ctx = {v: k for k, v in names.items()}
        for arg in list(sess.get_inputs()) + list(sess.get_outputs()):
            if arg.name not in self.from_ctx:
                raise ValueError(f"{where}: context tensor {arg.name!r} matches no tensor of the graph it was built "
                                 f"from (expected one of {sorted(self.from_ctx)})")

    def _renamed(self, args):
        from types import SimpleNamespace
        return [SimpleNamespace(name=self.from_ctx[a.name], type=a.type, shape=a.shape) for a in args]

    def get_inputs(self):
        return self._renamed(self.sess.get_inputs())

    def get_outputs(self):
        return self._renamed(self.sess.get_outputs())

    def get_providers(self):
        return self.sess.get_providers()

    def run(self, names, feeds):
        values = self.sess.run([self.to_ctx[n] for n in names], {self.to_ctx[k]: v for k, v in feeds.items()})
        return [v.astype(np.float32) if v.dtype == np.float16 else v for v in values]


