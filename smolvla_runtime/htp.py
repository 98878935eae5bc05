"""onnxruntime-qnn sessions on HTP contexts: the QNN execution provider registered once, provider
options from a precision's context settings and the runtime's performance settings, CPU fallback
disabled (a node the HTP cannot take must fail, not run silently on the CPU). Needs only onnxruntime
and onnxruntime-qnn. The option names and values, and what the EP does with a wrong one, are in
docs/runtimes.md, "HTP performance settings"."""

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


# onnxruntime-qnn 2.7.0's htp_performance_mode values, and the QNN context priorities its docs list
PERFORMANCE_MODES = ("burst", "sustained_high_performance", "high_performance", "balanced", "low_balanced", "default",
                     "power_saver", "low_power_saver", "high_power_saver", "extreme_power_saver")
CONTEXT_PRIORITIES = ("low", "normal", "normal_high", "high")


@dataclasses.dataclass(frozen=True)
class HtpPerformance:
    """How the NPU runs a context: the HTP performance mode, the RPC control latency and the QNN
    context priority (pipeline.yaml `evaluation.ort_qnn`, a manifest's `htp_performance`). Checked
    here: the EP ignores an unknown mode silently and aborts the process on a latency it cannot read."""
    mode: str = "burst"
    rpc_control_latency_us: int = 100
    context_priority: str = "normal"

    def __post_init__(self):
        if self.mode not in PERFORMANCE_MODES:
            raise ValueError(f"htp performance mode {self.mode!r}: expected one of {list(PERFORMANCE_MODES)}")
        if not (isinstance(self.rpc_control_latency_us, int) and 0 <= self.rpc_control_latency_us < 2**32):
            raise ValueError(f"rpc control latency {self.rpc_control_latency_us!r}: expected microseconds, 0 to 2^32-1")
        if self.context_priority not in CONTEXT_PRIORITIES:
            raise ValueError(f"context priority {self.context_priority!r}: expected one of {list(CONTEXT_PRIORITIES)}")

    @classmethod
    def from_dict(cls, d: dict) -> "HtpPerformance":
        return cls(**d)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def options(self) -> dict[str, str]:
        """The QNN EP's provider options (0 latency: not set, the EP's default)."""
        out = {"htp_performance_mode": self.mode, "qnn_context_priority": self.context_priority}
        if self.rpc_control_latency_us:
            out["rpc_control_latency"] = str(self.rpc_control_latency_us)
        return out


@functools.lru_cache(maxsize=None)
def register():
    import onnxruntime as ort
    import onnxruntime_qnn
    ort.register_execution_provider_library(EP_NAME, onnxruntime_qnn.get_library_path())
    devices = [d for d in ort.get_ep_devices() if d.ep_name == EP_NAME]
    if not devices:
        raise RuntimeError("onnxruntime-qnn registered no QNN device")
    return devices


def provider_options(soc: Soc, precision: dict, performance: HtpPerformance | None = None) -> dict[str, str]:
    """QNN EP provider options for one precision's settings (the ort-qnn rendering of pipeline.yaml),
    and the performance settings of the sessions that run (not those that only compile)."""
    ctx = precision["context"]
    return {**(performance.options() if performance else {}),
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


def load_session(ctx_onnx: Path, soc: Soc, precision: dict, performance: HtpPerformance | None = None):
    """A persistent HTP session on an EPContext model; fails if any node would run on the CPU."""
    from .files import onnxruntime_session
    options = provider_options(soc, precision, performance)
    sess = onnxruntime_session(ctx_onnx, "HTP context model", sess_options=session_options(options))
    if sess.get_providers()[0] != EP_NAME:
        raise RuntimeError(f"{ctx_onnx}: active providers {sess.get_providers()}, expected {EP_NAME} first")
    return sess
