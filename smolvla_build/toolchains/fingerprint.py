"""Tool fingerprints: the versions and target settings every built artifact depends on.

They are part of each stage's up-to-date key, so upgrading a tool (torch, onnxruntime-qnn and
its QNN) rebuilds exactly what that tool made (the SoC is in each spec). Read from package metadata, not
by importing the packages: `doit` must stay fast when nothing is to be done.
"""

from __future__ import annotations

import functools
from importlib import metadata


@functools.lru_cache(maxsize=None)
def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not-installed"


@functools.lru_cache(maxsize=None)
def qnn_version() -> str:
    try:
        from onnxruntime_qnn import build_and_package_info as info
        return getattr(info, "qnn_version", "unknown")
    except ImportError:
        return "not-installed"


def export_fingerprint() -> dict:
    return {p: package_version(p) for p in ("torch", "transformers", "onnx", "tokenizers", "safetensors")}


def passes_fingerprint() -> dict:
    return {p: package_version(p) for p in ("onnx", "onnx-graphsurgeon", "onnxruntime")}


def ort_qnn_fingerprint() -> dict:
    return {"onnxruntime": package_version("onnxruntime"), "onnxruntime-qnn": package_version("onnxruntime-qnn"),
            "qnn": qnn_version()}
