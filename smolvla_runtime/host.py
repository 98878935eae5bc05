"""Which runtime this host runs by default: a question for the platform, answered without importing
numpy or onnxruntime (task generation asks it on every `doit`)."""

from __future__ import annotations

import logging
import platform

log = logging.getLogger("smolvla_runtime.policy")


def has_device_htp() -> bool:
    """A real Hexagon NPU is reachable only on Windows ARM64 (Snapdragon X Elite)."""
    return platform.system() == "Windows" and platform.machine().upper() in ("ARM64", "AARCH64")


def resolve_runtime(kind: str) -> str:
    if kind != "auto":
        return kind
    if has_device_htp():
        log.info("runtime auto: ort-qnn (Windows ARM64 with the Hexagon NPU)")
        return "ort-qnn"
    log.info("runtime auto: reference (onnxruntime CPU, fp32): no Hexagon NPU on this %s host, and HTP "
             "emulation is for numeric checks, far too slow for episodes", platform.machine())
    return "reference"
