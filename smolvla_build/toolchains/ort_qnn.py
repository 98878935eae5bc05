"""The ort-qnn toolchain: onnxruntime-qnn's real QNN HTP backend, no SDK needed.

On a Linux x86_64 host it compiles a graph into a real HTP context binary for the SoC in
pipeline.yaml (offline prepare) and runs that binary in HTP emulation (slow: numeric checks
only). EPContext output: `<name>_ctx.onnx` wrapping `<name>_ctx_qnn.bin`.
"""

from __future__ import annotations

import functools
import logging
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger("smolvla_build.ort_qnn")

EP_NAME = "QNNExecutionProvider"


@functools.lru_cache(maxsize=None)
def _register():
    import onnxruntime as ort
    import onnxruntime_qnn
    ort.register_execution_provider_library(EP_NAME, onnxruntime_qnn.get_library_path())
    devices = [d for d in ort.get_ep_devices() if d.ep_name == EP_NAME]
    if not devices:
        raise RuntimeError("onnxruntime-qnn registered no QNN device")
    return devices


def provider_options(soc: dict, precision: dict) -> dict[str, str]:
    """QNN EP provider options for one precision (the ort-qnn rendering of pipeline.yaml)."""
    ctx = precision["context"]
    return {
        "backend_type": "htp",
        "soc_model": str(soc["soc_model"]),
        "htp_arch": str(soc["htp_arch"]),
        "enable_htp_fp16_precision": "1" if ctx["fp16_relaxed_precision"] else "0",
        "vtcm_mb": str(ctx["vtcm_mb"]),
        "htp_graph_finalization_optimization_mode": str(ctx["optimization_level"]),
    }


def _session_options(options: dict, ctx_path: Path | None = None):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    # a node the HTP cannot take must fail the build, not run silently on the CPU
    so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    if ctx_path is not None:
        so.add_session_config_entry("ep.context_enable", "1")
        so.add_session_config_entry("ep.context_file_path", str(ctx_path))
        so.add_session_config_entry("ep.context_embed_mode", "0")
    so.add_provider_for_devices(_register(), options)
    return so


def to_float16(src: Path, dst: Path) -> None:
    """W16A16: weights and activations in float16, graph I/O kept float32 (the runtime feeds
    the same tensors for every precision)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from ..onnx_io import load
    model = load(src)
    model16 = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=False)
    onnx.save(model16, str(dst))


def build_context(src: Path, ctx_out: Path, soc: dict, precision: dict) -> dict:
    """Compile `src` for the HTP into `ctx_out` (+ its `_qnn.bin`), written atomically."""
    import time
    ctx_out = Path(ctx_out)
    options = provider_options(soc, precision)
    ctx_out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".ctx-", dir=ctx_out.parent) as tmp:
        tmp = Path(tmp)
        model = Path(src)
        if precision["converter"]["float_bitwidth"] == 16:
            model = tmp / "model_fp16.onnx"
            to_float16(Path(src), model)
        staged = tmp / ctx_out.name
        t0 = time.time()
        import onnxruntime as ort
        sess = ort.InferenceSession(str(model), sess_options=_session_options(options, staged))
        del sess
        seconds = time.time() - t0
        bins = sorted(tmp.glob(staged.stem + "*.bin"))
        if not staged.is_file() or not bins:
            raise RuntimeError(f"onnxruntime-qnn wrote no EPContext model for {src}")
        for b in bins:                     # the binary first: the _ctx.onnx appears last, complete
            shutil.move(str(b), ctx_out.parent / b.name)
        shutil.move(str(staged), ctx_out)
    return {"compile_seconds": round(seconds, 3), "binaries": [b.name for b in bins],
            "context_bytes": sum((ctx_out.parent / b.name).stat().st_size for b in bins), "options": options}


def context_binaries(ctx_onnx: Path) -> list[Path]:
    """The .bin files an EPContext model refers to (embed_mode 0)."""
    from ..onnx_io import load
    model = load(ctx_onnx, load_external_data=False)
    out = []
    for n in model.graph.node:
        if n.op_type == "EPContext":
            for a in n.attribute:
                if a.name == "ep_cache_context":
                    out.append(Path(ctx_onnx).parent / a.s.decode())
    return out


def load_session(ctx_onnx: Path, soc: dict, precision: dict):
    """A persistent HTP session on a context binary; fails if any node would run on the CPU."""
    from ..model_files import ModelFileError, load_onnx, onnxruntime_session
    load_onnx(ctx_onnx, load_external_data=False)
    for b in context_binaries(ctx_onnx):
        if not b.is_file() or b.stat().st_size == 0:
            raise ModelFileError(f"{ctx_onnx}: its context binary {b.name} is missing or empty")
    sess = onnxruntime_session(ctx_onnx, "HTP context model",
                               sess_options=_session_options(provider_options(soc, precision)))
    if sess.get_providers()[0] != EP_NAME:
        raise RuntimeError(f"{ctx_onnx}: active providers {sess.get_providers()}, expected {EP_NAME} first")
    return sess
