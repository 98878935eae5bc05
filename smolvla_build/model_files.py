"""Reading model files (ONNX with its external data, .npy tables, safetensors weights, context
binaries): a file that cannot be read becomes one `ModelFileError` whose text names the file and
what is wrong with it, never a protobuf or numpy traceback. The CLI prints it as one line and exits
non-zero; a doit task fails with it (stages.guarded) and, writing atomically, leaves no target."""

from __future__ import annotations

from pathlib import Path


class ModelFileError(Exception):
    """A model file that cannot be read; str() is one line: the file and what is wrong with it."""


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _exists(path: Path, what: str) -> None:
    if not path.is_file():
        raise ModelFileError(f"{path}: no such file (expected {what})")
    if path.stat().st_size == 0:
        raise ModelFileError(f"{path}: empty file (expected {what})")


def load_onnx(path, load_external_data: bool = True):
    import onnx
    from google.protobuf.message import DecodeError
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data
    path = Path(path)
    _exists(path, "an ONNX model")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, RuntimeWarning, ValueError, OSError) as e:
        raise ModelFileError(f"{path}: not an ONNX model, or truncated ({path.stat().st_size} bytes; {_first_line(e)})") from None
    if model.ir_version == 0 or not (model.graph.node or model.graph.output):
        raise ModelFileError(f"{path}: not an ONNX model (no IR version or graph in its {path.stat().st_size} bytes)")
    if load_external_data:
        for t in model.graph.initializer:
            if not uses_external_data(t):
                continue
            info = ExternalDataInfo(t)
            data = path.parent / info.location
            if not data.is_file():
                raise ModelFileError(f"{path}: external data file {info.location} missing (expected beside the model, "
                                     f"holding tensor {t.name})")
            end = (info.offset or 0) + (info.length or 0)
            if info.length and data.stat().st_size < end:
                raise ModelFileError(f"{path}: external data file {info.location} is truncated ({data.stat().st_size} "
                                     f"bytes, tensor {t.name} ends at byte {end})")
        try:
            onnx.external_data_helper.load_external_data_for_model(model, str(path.parent))
        except (OSError, ValueError) as e:
            raise ModelFileError(f"{path}: its external data cannot be read ({_first_line(e)})") from None
    return model


def load_npy(path, mmap_mode: str | None = None):
    import numpy as np
    path = Path(path)
    _exists(path, "a .npy array")
    try:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ModelFileError(f"{path}: not a .npy array, or truncated ({_first_line(e)})") from None


def load_safetensors(path) -> dict:
    """A safetensors file as {name: torch tensor}."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    path = Path(path)
    _exists(path, "a safetensors file")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ModelFileError(f"{path}: not a safetensors file, or truncated ({_first_line(e)})") from None


def onnxruntime_session(path, what: str, **kwargs):
    """onnxruntime.InferenceSession on a model file, a load failure named after the file."""
    import onnxruntime as ort
    path = Path(path)
    _exists(path, what)
    try:
        return ort.InferenceSession(str(path), **kwargs)
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own unrelated exception types
        raise ModelFileError(f"{path}: onnxruntime cannot load this {what} ({_first_line(e)})") from None
