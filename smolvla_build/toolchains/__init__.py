"""Toolchains: what turns a preprocessed ONNX model into an HTP context binary.

`select_toolchain` resolves `toolchain.kind` (auto | qairt | ort-qnn) for a pipeline and says why.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger("smolvla_build.toolchain")

# where the SDK root is named, first found wins: pipeline.yaml, then the variable qairt-dev and newer
# SDKs set, then the one envsetup.ps1/envsetup.sh set (docs/qairt-sdk.md, "SDK root")
SDK_ROOT_VARIABLES = ("QAIRT_SDK_ROOT", "QNN_SDK_ROOT")


class ToolchainError(Exception):
    """A toolchain that cannot be used here; str() is one line saying what to install or set."""


class ToolFailed(ToolchainError, RuntimeError):
    """An external tool (the SDK's, a compiler, onnxruntime-qnn) failed or wrote nothing: str() is the
    command and the end of its output, which the task shows instead of a traceback."""


def find_sdk(pipe, environ=None) -> tuple[Path, str] | None:
    """(SDK root, where it was named) from toolchain.sdk_root, $QAIRT_SDK_ROOT or $QNN_SDK_ROOT."""
    environ = os.environ if environ is None else environ
    if pipe.toolchain.get("sdk_root"):
        candidates = [(pipe.resolve(pipe.toolchain["sdk_root"]), "toolchain.sdk_root")]
    else:
        candidates = [(Path(environ[v]), v) for v in SDK_ROOT_VARIABLES if environ.get(v)]
    for root, how in candidates:
        if Path(root).is_dir():
            return Path(root), how
    return None


def select_toolchain(pipe) -> str:
    kind = pipe.toolchain["kind"]
    sdk = find_sdk(pipe)
    if kind == "qairt" and sdk is None:
        raise ToolchainError(
            "toolchain 'qairt' needs the Qualcomm AI Runtime SDK (QAIRT "
            f"{pipe.toolchain['sdk_version']}): install it and set QAIRT_SDK_ROOT (or QNN_SDK_ROOT, or "
            "toolchain.sdk_root), or use toolchain.kind: ort-qnn")
    if kind == "auto":
        if sdk is not None:
            log.info("toolchain auto: QAIRT SDK at %s (%s); using qairt", *sdk)
            return "qairt"
        log.info("toolchain auto: no QAIRT SDK (toolchain.sdk_root, QAIRT_SDK_ROOT and QNN_SDK_ROOT unset); "
                 "using ort-qnn (onnxruntime-qnn)")
        return "ort-qnn"
    return kind
