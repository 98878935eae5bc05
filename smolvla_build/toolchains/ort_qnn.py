"""The ort-qnn toolchain: onnxruntime-qnn's real QNN HTP backend, no SDK needed.

On a Linux x86_64 host it compiles a graph into a real HTP context binary for the SoC in
pipeline.yaml (offline prepare) and runs that binary in HTP emulation (slow: numeric checks
only). EPContext output: `<name>_ctx.onnx` wrapping `<name>_ctx_qnn.bin`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import shutil
import tempfile
from pathlib import Path

from smolvla_runtime.htp import Soc, provider_options, session_options     # the runtime's, one implementation

from ..precisions import Precision

log = logging.getLogger("smolvla_build.ort_qnn")


@dataclasses.dataclass(frozen=True)
class QuantizeSpec:
    model: str
    precision: str                      # an integer precision's name
    quantization: dict                  # its `quantization` settings: all the quantizer reads of it
    src: Path                           # the preprocessed fp32 model
    calibration: Path                   # its calibration set (.npz, smolvla_build/calibration_set.py)
    calibration_info: Path
    out: Path                           # the QDQ model
    info: Path


@dataclasses.dataclass(frozen=True)
class ContextSpec:
    model: str
    precision: Precision
    soc: Soc
    src: Path                           # the preprocessed model, or an integer precision's QDQ model
    quantized_info: Path | None         # that QDQ model's quantize info (its time and memory join the report's)
    out: Path                           # the EPContext model (its _qnn.bin beside it)
    info: Path


def to_float16(src: Path, dst: Path) -> None:
    """W16A16: weights and activations in float16, graph I/O kept float32 (the runtime feeds
    the same tensors for every precision)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from ..model_files import load_onnx
    model = load_onnx(src)
    model16 = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=False)
    onnx.save(model16, str(dst))


def quant_types(quantization: dict) -> dict:
    """onnxruntime QuantTypes and symmetry for a precision's `quantization` block. 16-bit weights are
    symmetric int16 (the HTP's 16-bit weight format; the QAIRT converter forces the same)."""
    from onnxruntime.quantization import QuantType
    w, a, sym = quantization["weights"], quantization["activations"], quantization["symmetric"]
    weight = {8: QuantType.QInt8 if sym else QuantType.QUInt8, 16: QuantType.QInt16}[w]
    return {"weight_type": weight, "activation_type": {8: QuantType.QUInt8, 16: QuantType.QUInt16}[a],
            "per_channel": quantization["per_channel"], "weight_symmetric": sym or w == 16,
            "activation_symmetric": False}


@contextlib.contextmanager
def quantizer_messages():
    """onnxruntime's quantizer warns on the root logger about what is expected here (a per-channel
    axis skipped for each 1-D weight, the opset raised to 21 for 16-bit types: "Please verify the
    quantized model"); the block collects its messages below ERROR instead of printing them: the
    quantize info JSON keeps them, and the log says how many and where."""
    messages: list[str] = []

    class Collect(logging.Filter):
        def filter(self, record):
            if record.levelno < logging.ERROR and "onnxruntime" in record.pathname and "quantization" in record.pathname:
                messages.append(record.getMessage())
                return False
            return True
    root, collect = logging.getLogger(), Collect()
    root.addFilter(collect)
    try:
        yield messages
    finally:
        root.removeFilter(collect)


@contextlib.contextmanager
def calibration_in_priority_order():
    """onnxruntime's calibrator appends a ReduceMin/ReduceMax pair per tensor at the end of the graph
    and runs it in the default execution order, which keeps every activation alive: 10.0 GB on the
    full vision encoder. Its session in PRIORITY_BASED order frees them as it goes (3.7 GB, same
    ranges: the order changes no value). `quantize` takes no session options, so the calibrator's
    session factory is swapped for the duration of the block."""
    import onnxruntime
    from onnxruntime.quantization import calibrate
    original = calibrate.CalibraterBase.create_inference_session

    def create_inference_session(self):
        so = onnxruntime.SessionOptions()
        so.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL   # as onnxruntime's own
        so.execution_order = onnxruntime.ExecutionOrder.PRIORITY_BASED
        self.infer_session = onnxruntime.InferenceSession(self.augmented_model_path, sess_options=so,
                                                          providers=self.execution_providers)
    calibrate.CalibraterBase.create_inference_session = create_inference_session
    try:
        yield
    finally:
        calibrate.CalibraterBase.create_inference_session = original


def quantize_qdq(src: Path, dst: Path, calibration: Path, quantization: dict) -> dict:
    """The preprocessed fp32 model -> a QDQ model (onnxruntime's QNN quantization tooling:
    qnn_preprocess_model, get_qnn_qdq_config, quantize), calibrated on the recorded inputs.
    Written atomically."""
    import time

    from onnxruntime.quantization import quantize
    from onnxruntime.quantization.execution_providers.qnn import get_qnn_qdq_config, qnn_preprocess_model

    from ..calibration_set import CalibrationSet
    from ..fsutil import atomic_path
    from ..model_files import load_onnx
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    cal = CalibrationSet(calibration)
    model = load_onnx(src, load_external_data=False)      # a readable model, and its input names
    inits = {t.name for t in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in inits]
    del model, inits                                      # onnxruntime's quantizer loads it again
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix=".qdq-", dir=dst.parent) as tmp:
        pre = Path(tmp) / "preprocessed.onnx"
        # fuses what QNN has single ops for (e.g. LayerNormalization, Gelu); False: nothing to change
        model_in = pre if qnn_preprocess_model(str(src), pre) else Path(src)
        types = quant_types(quantization)
        config = get_qnn_qdq_config(model_in, cal.reader(names), **types)
        with atomic_path(dst, suffix=".onnx") as out, calibration_in_priority_order(), quantizer_messages() as said:
            quantize(model_in, out, config)
    seconds = time.time() - t0
    return {"quantize_seconds": round(seconds, 3), "samples": len(cal), "calibration": str(calibration),
            "types": {k: str(v) for k, v in types.items()}, "qdq_bytes": dst.stat().st_size,
            "quantizer_messages": sorted(set(said))}


# onnxruntime's messages when the QNN EP leaves nodes to the CPU EP, which the build disables
UNSELECTED = ("fallback to CPU EP has been explicitly disabled", "was not selected by that EP")


def build_context(src: Path, ctx_out: Path, soc: Soc, precision: Precision) -> dict:
    """Compile `src` for the HTP into `ctx_out` (+ its `_qnn.bin`), written atomically."""
    import time
    ctx_out = Path(ctx_out)
    options = provider_options(soc, precision.settings)
    ctx_out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".ctx-", dir=ctx_out.parent) as tmp:
        tmp = Path(tmp)
        model = Path(src)
        if precision.float_bitwidth == 16:                           # an integer precision's src is its QDQ model
            model = tmp / "model_fp16.onnx"
            to_float16(Path(src), model)
        staged = tmp / ctx_out.name
        t0 = time.time()
        import onnxruntime as ort
        try:
            so = session_options(options, staged)
            # onnxruntime's own log of a node left to the CPU is one coloured line per node: the
            # exception carries its text, and the line below says what to change
            so.log_severity_level = 4
            sess = ort.InferenceSession(str(model), sess_options=so)
        except ort.capi.onnxruntime_pybind11_state.Fail as exc:
            if not any(s in str(exc) for s in UNSELECTED):
                raise
            from . import ToolchainError
            raise ToolchainError(
                f"onnxruntime-qnn's HTP backend took none or not all of {Path(src).name}'s nodes for soc.soc_model "
                f"{soc.soc_model} / soc.htp_arch {soc.htp_arch}, and the build allows no CPU fallback: is the "
                f"soc_model one onnxruntime-qnn knows? (60, Snapdragon X Elite, is; 59 and 61 are not: docs/runtimes.md, "
                f"\"SoC models\") onnxruntime: {str(exc).splitlines()[0][:200]}") from None
        del sess
        seconds = time.time() - t0
        bins = sorted(tmp.glob(staged.stem + "*.bin"))
        if not staged.is_file() or not bins:
            from . import ToolFailed
            raise ToolFailed(f"onnxruntime-qnn wrote no EPContext model for {src}")
        for b in bins:                     # the binary first: the _ctx.onnx appears last, complete
            shutil.move(str(b), ctx_out.parent / b.name)
        shutil.move(str(staged), ctx_out)
    return {"compile_seconds": round(seconds, 3), "binaries": [b.name for b in bins],
            "context_bytes": sum((ctx_out.parent / b.name).stat().st_size for b in bins), "options": options}


def context_binaries(ctx_onnx: Path) -> list[Path]:
    """The .bin files an EPContext model refers to (embed_mode 0)."""
    from ..model_files import load_onnx
    model = load_onnx(ctx_onnx, load_external_data=False)
    out = []
    for n in model.graph.node:
        if n.op_type == "EPContext":
            for a in n.attribute:
                if a.name == "ep_cache_context":
                    out.append(Path(ctx_onnx).parent / a.s.decode())
    return out


def load_session(ctx_onnx: Path, soc: Soc, precision: dict, performance=None):
    """smolvla_runtime.htp.load_session after checking the context binaries the model refers to
    (reading the EPContext node needs onnx, which the runtime does without)."""
    from smolvla_runtime.htp import load_session as open_session

    from smolvla_runtime.files import ModelFileError

    from ..model_files import load_onnx
    load_onnx(ctx_onnx, load_external_data=False)
    for b in context_binaries(ctx_onnx):
        if not b.is_file() or b.stat().st_size == 0:
            raise ModelFileError(f"{ctx_onnx}: its context binary {b.name} is missing or empty")
    return open_session(ctx_onnx, soc, precision, performance)


def context_task(spec: ContextSpec):
    """The ort-qnn `context` action: compile, then write the build's info (size, time, memory)."""
    import json
    import time

    from ..fsutil import write_json
    from ..progress import heartbeat
    from .rss import peak_rss_mb, reset_peak
    reset_peak()
    label = f"{spec.model}-{spec.precision.name}"
    t0 = time.time()
    log.info("context %s: compiling for soc_model %s / v%s ...", label, spec.soc.soc_model, spec.soc.htp_arch)
    with heartbeat(f"context {label}", log):
        info = build_context(Path(spec.src), Path(spec.out), spec.soc, spec.precision)
    info.update(model=spec.model, precision=spec.precision.name, seconds=round(time.time() - t0, 3),
                peak_rss_mb=peak_rss_mb(), toolchain="ort-qnn")
    if spec.quantized_info:          # the integer precision's build = quantize + compile
        q = json.loads(Path(spec.quantized_info).read_text())
        info.update(quantize_seconds=q["seconds"], calibration_seconds=q["calibration_seconds"],
                    peak_rss_mb=None if None in (info["peak_rss_mb"], q["peak_rss_mb"])
                    else max(info["peak_rss_mb"], q["peak_rss_mb"]), seconds=round(info["seconds"] + q["seconds"], 3))
    write_json(spec.info, info)
    log.info("context %s: %.1f s, %.1f MB binary", label, info["seconds"], info["context_bytes"] / 1e6)
    return True


def quantize_task(spec: QuantizeSpec):
    """The `quantize` action (ort-qnn): a calibrated QDQ model."""
    import json
    import time

    from ..fsutil import write_json
    from ..progress import heartbeat
    from .rss import peak_rss_mb, reset_peak
    reset_peak()
    label, q = f"{spec.model}-{spec.precision}", spec.quantization
    log.info("quantize %s: W%dA%d%s, calibrated on %s ...", label, q["weights"], q["activations"],
             " per channel" if q["per_channel"] else "", spec.calibration)
    t0 = time.time()
    with heartbeat(f"quantize {label}", log):
        info = quantize_qdq(spec.src, spec.out, spec.calibration, q)
    cal = json.loads(Path(spec.calibration_info).read_text())
    info.update(model=spec.model, precision=spec.precision, seconds=round(time.time() - t0, 3),
                peak_rss_mb=peak_rss_mb(), calibration_seconds=cal["seconds"], calibration_peak_rss_mb=cal["peak_rss_mb"])
    write_json(spec.info, info)
    log.info("quantize %s: %.1f s, QDQ model %.1f MB; onnxruntime's quantizer's %d message(s) are in %s", label,
             info["seconds"], info["qdq_bytes"] / 1e6, len(info["quantizer_messages"]), spec.info)
    return True
