"""Reading and writing model files (ONNX with its external data, .npy tables, .npz archives,
safetensors weights): a file that cannot be read becomes one `ModelFileError` whose text names the
file and what is wrong with it, never a protobuf or numpy traceback. The CLI prints it as one line
and exits non-zero; a doit task fails with it (stages.guarded) and, writing atomically, leaves no
target. ONNX models over protobuf's 2 GB limit are saved with their weights beside them."""

from __future__ import annotations

import os
from pathlib import Path

from .fsutil import atomic_dir

# the runtime's readers (.npy tables, onnxruntime sessions) and its ModelFileError live in
# smolvla_runtime.files; this module adds what needs onnx or safetensors
from smolvla_runtime.files import ModelFileError
from smolvla_runtime.files import first_line as _first_line
from smolvla_runtime.files import require_file as _exists


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


TWO_GB = 2**31 - 1


def model_nbytes(model) -> int:
    """Size of an ONNX model's initializers (ByteSize() itself fails past 2 GB)."""
    return sum(len(t.raw_data) for t in model.graph.initializer) + 4096 * len(model.graph.node)


def save_onnx(model, path) -> None:
    """Save atomically; the weights go to `<name>.data` beside the model when it exceeds 2 GB."""
    import onnx
    path = Path(path)
    with atomic_dir(path.parent) as tmp:
        out = tmp / path.name
        if model_nbytes(model) > TWO_GB:
            onnx.save(model, str(out), save_as_external_data=True, all_tensors_to_one_file=True,
                      location=path.name + ".data", size_threshold=1024)
        else:
            onnx.save(model, str(out))
    stale = path.with_name(path.name + ".data")
    if model_nbytes(model) <= TWO_GB and stale.exists():
        os.unlink(stale)
