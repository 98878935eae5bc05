"""onnxruntime-qnn sessions on HTP contexts: the QNN execution provider registered once, provider
options from a precision's context settings, CPU fallback disabled (a node the HTP cannot take must
fail, not run silently on the CPU). Needs only onnxruntime and onnxruntime-qnn."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

EP_NAME = "QNNExecutionProvider"


@dataclasses.dataclass(frozen=True)
class Soc:
    """The Snapdragon an HTP context is compiled for (pipeline.yaml `soc:`, a manifest's `soc`)."""
    name: str
    soc_model: int          # QNN's SoC model number (60: Snapdragon X Elite)
    htp_arch: int           # the Hexagon architecture (73: v73)

    @classmethod
    def from_dict(cls, d: dict) -> "Soc":
        return cls(name=str(d.get("name", "")), soc_model=int(d["soc_model"]), htp_arch=int(d["htp_arch"]))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@functools.lru_cache(maxsize=None)
def register():
    import onnxruntime as ort
    import onnxruntime_qnn
    ort.register_execution_provider_library(EP_NAME, onnxruntime_qnn.get_library_path())
    devices = [d for d in ort.get_ep_devices() if d.ep_name == EP_NAME]
    if not devices:
        raise RuntimeError("onnxruntime-qnn registered no QNN device")
    return devices


def provider_options(soc: Soc, precision: dict) -> dict[str, str]:
    """QNN EP provider options for one precision's settings (the ort-qnn rendering of pipeline.yaml)."""
    ctx = precision["context"]
    return {
        "backend_type": "htp",
        "soc_model": str(soc.soc_model),
        "htp_arch": str(soc.htp_arch),
        "enable_htp_fp16_precision": "1" if ctx["fp16_relaxed_precision"] else "0",
        "vtcm_mb": str(ctx["vtcm_mb"]),
        "htp_graph_finalization_optimization_mode": str(ctx["optimization_level"]),
    }


def session_options(options: dict, ctx_path: Path | None = None):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    # a node the HTP cannot take must fail the build, not run silently on the CPU
    so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    if ctx_path is not None:
        so.add_session_config_entry("ep.context_enable", "1")
        so.add_session_config_entry("ep.context_file_path", str(ctx_path))
        so.add_session_config_entry("ep.context_embed_mode", "0")
    so.add_provider_for_devices(register(), options)
    return so


def load_session(ctx_onnx: Path, soc: Soc, precision: dict):
    """A persistent HTP session on an EPContext model; fails if any node would run on the CPU."""
    from .files import onnxruntime_session
    sess = onnxruntime_session(ctx_onnx, "HTP context model", sess_options=session_options(provider_options(soc, precision)))
    if sess.get_providers()[0] != EP_NAME:
        raise RuntimeError(f"{ctx_onnx}: active providers {sess.get_providers()}, expected {EP_NAME} first")
    return sess
