"""Reading the runtime's files (.npy tables, .npz archives, ONNX models through onnxruntime): a file
that cannot be read becomes one `ModelFileError` whose text names the file and what is wrong with
it. Needs only numpy and onnxruntime (smolvla_build.model_files adds ONNX with external data and
safetensors)."""

from __future__ import annotations

from pathlib import Path


class ModelFileError(Exception):
    """A model file that cannot be read; str() is one line: the file and what is wrong with it."""


def first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def require_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise ModelFileError(f"{path}: no such file (expected {what})")
    if path.stat().st_size == 0:
        raise ModelFileError(f"{path}: empty file (expected {what})")


def load_npy(path, mmap_mode: str | None = None):
    import numpy as np
    path = Path(path)
    require_file(path, "a .npy array")
    try:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ModelFileError(f"{path}: not a .npy array, or truncated ({first_line(e)})") from None


def load_npz(path) -> dict:
    """A .npz archive as {name: array}, read into memory."""
    import zipfile

    import numpy as np
    path = Path(path)
    require_file(path, "a .npz archive")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise ModelFileError(f"{path}: not a .npz archive, or truncated ({first_line(e)})") from None


def onnxruntime_session(path, what: str, **kwargs):
    """onnxruntime.InferenceSession on a model file, a load failure named after the file."""
    import onnxruntime as ort
    path = Path(path)
    require_file(path, what)
    try:
        return ort.InferenceSession(str(path), **kwargs)
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own unrelated exception types
        raise ModelFileError(f"{path}: onnxruntime cannot load this {what} ({first_line(e)})") from None
