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
        if isinstance(self.model, bytes):
            return ort.InferenceSession(self.model, sess_options=so, providers=["CPUExecutionProvider"])
        from ..model_files import onnxruntime_session
        return onnxruntime_session(self.model, "ONNX model", sess_options=so, providers=["CPUExecutionProvider"])


class OrtQnnRunner(Runner):
    """A persistent HTP session on an EPContext model (CPU fallback disabled, provider asserted).
    On x86_64 this is HTP emulation: right numbers, not device speed.

    `names` maps the graph's I/O names to the context's, where they differ (a qairt context carries
    the converter's sanitized names and fp16 I/O): the runner is then fed and read with the graph's
    names, and float outputs come back as float32, like every other runner's."""

    name = "ort-qnn"

    def __init__(self, ctx_onnx: str | Path, soc: dict, precision: dict, names: dict[str, str] | None = None):
        super().__init__()
        self.ctx_onnx = Path(ctx_onnx)
        self.soc = soc
        self.precision = precision
        self.names = names

    def _load(self):
        from ..toolchains.ort_qnn import load_session
        sess = load_session(self.ctx_onnx, self.soc, self.precision)
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


class QnnNetRunRunner(Runner):
    """The card's way: one qnn-net-run process per call on a serialized context, inputs as headerless
    .raw files listed in input_list.txt (float32, or the native dtype for the tensors named in
    `--native_input_tensor_names graph:t1,t2`), outputs read back from <output_dir>/Result_0/<name>.raw
    (float32). The context's tensors carry the converter's sanitized names; the runner is fed and read
    with the graph's own names."""

    name = "qnn-net-run"

    def __init__(self, context_bin: str | Path, sdk, graph: str, inputs: list[tuple[str, str, list[int]]],
                 outputs: list[tuple[str, list[int]]]):
        super().__init__()
        self.context_bin = Path(context_bin)
        self.sdk = sdk
        self.graph = graph              # the QNN graph name inside the context
        self.inputs = inputs            # (graph name of the tensor, numpy dtype name, dims)
        self.outputs = outputs          # (graph name of the tensor, dims)

    def _load(self):
        return self                     # nothing persistent: every call is a new process

    @property
    def input_names(self) -> list[str]:
        return [n for n, _, _ in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [n for n, _ in self.outputs]

    def get_inputs(self):               # the session interface cast_feeds reads
        from types import SimpleNamespace
        return [SimpleNamespace(name=n, type=f"tensor({'float' if d == 'float32' else d})", shape=s)
                for n, d, s in self.inputs]

    def infer(self, feeds: dict[str, np.ndarray], outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        import tempfile

        from ..templates import render, render_command
        from ..toolchains.qairt import HOSTS, native_names_arg, run, sanitize
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="qnn-net-run-") as tmp:
            tmp = Path(tmp)
            line, native = [], []
            for name, dtype, dims in self.inputs:
                arr = np.asarray(feeds[name])
                is_float = np.issubdtype(np.dtype(dtype), np.floating)
                arr = arr.astype(np.float32 if is_float else np.dtype(dtype)).reshape(dims)
                path = tmp / f"{sanitize(name)}.raw"
                arr.tofile(path)
                line.append((sanitize(name), path.as_posix()))
                if not is_float:
                    native.append(sanitize(name))
            input_list = tmp / "input_list.txt"
            input_list.write_text(render("qairt/input_list.txt.j2", lines=[line]))
            cmd = render_command("qairt/qnn_net_run.j2", netrun=self.sdk.tool("qnn-net-run"), context=self.context_bin,
                                 backend=self.sdk.lib / HOSTS[self.sdk.host]["backend"], input_list=input_list,
                                 outdir=tmp / "out", native_inputs=native_names_arg(self.graph, native) if native else "")
            run(cmd, env=self.sdk.env())
            result = {}
            for name, dims in self.outputs:
                if outputs and name not in outputs:
                    continue
                raw = tmp / "out" / "Result_0" / f"{sanitize(name)}.raw"
                result[name] = np.fromfile(raw, dtype=np.float32).reshape(dims)
        self.inference_times.append(time.perf_counter() - t0)
        return result
