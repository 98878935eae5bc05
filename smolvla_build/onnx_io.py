"""Load and save ONNX models, with external data for models over protobuf's 2 GB limit."""

from __future__ import annotations

import os
from pathlib import Path

import onnx

from .fsutil import atomic_dir

TWO_GB = 2**31 - 1


def load(path: str | Path, load_external_data: bool = True) -> onnx.ModelProto:
    """The model at `path`; an unreadable file is one ModelFileError naming it."""
    from .model_files import load_onnx
    return load_onnx(path, load_external_data)


def model_nbytes(model: onnx.ModelProto) -> int:
    """Size of the initializers (ByteSize() itself fails past 2 GB)."""
    return sum(len(t.raw_data) for t in model.graph.initializer) + 4096 * len(model.graph.node)


def save(model: onnx.ModelProto, path: str | Path) -> None:
    """Save atomically; weights go to `<name>.data` beside the model when it exceeds 2 GB."""
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
