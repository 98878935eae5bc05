"""Toolchains: what turns a preprocessed ONNX model into an HTP context binary.

`select_toolchain` resolves `toolchain.kind` (auto | qairt | ort-qnn) for a pipeline and says why.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger("smolvla_build.toolchain")


class ToolchainError(Exception):
    """A toolchain that cannot be used here; str() is one line saying what to install or set."""


def find_sdk(pipe) -> Path | None:
    root = pipe.toolchain.get("sdk_root")
    root = pipe.resolve(root) if root else os.environ.get("QNN_SDK_ROOT")
    if root and Path(root).is_dir():
        return Path(root)
    return None


def select_toolchain(pipe) -> str:
    kind = pipe.toolchain["kind"]
    sdk = find_sdk(pipe)
    if kind == "qairt" and sdk is None:
        raise ToolchainError(
            "toolchain 'qairt' needs the Qualcomm AI Runtime SDK (QAIRT "
            f"{pipe.toolchain['sdk_version']}): install it and set QNN_SDK_ROOT (or toolchain.sdk_root), "
            "or use toolchain.kind: ort-qnn")
    if kind == "auto":
        if sdk is not None:
            log.info("toolchain auto: QAIRT SDK at %s; using qairt", sdk)
            return "qairt"
        log.info("toolchain auto: no QAIRT SDK (QNN_SDK_ROOT unset); using ort-qnn (onnxruntime-qnn)")
        return "ort-qnn"
    return kind
