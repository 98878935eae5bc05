"""QNN tensor I/O as the SDK's tools exchange it: the converter's tensor names, headerless .raw
files, input lists (`name:=path`, space-separated; docs/qairt-sdk.md, "qnn-net-run")."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from .. import ToolchainError


def sanitize(name: str) -> str:
    """qnn-onnx-converter's tensor-name rule (2.25 ir_to_qnn.py::sanitize_name): every run of non-word
    characters becomes `_`, then `_` is prefixed unless the first character is a letter:
    `output.1` -> `output_1`, `/Concat_output_0` -> `__Concat_output_0`, `1a` -> `_1a`, `_x` -> `__x`."""
    s = re.sub(r"\W+", "_", name)
    return s if s[:1].isalpha() else "_" + s


def space_free_folder(preferred: Path, what: str, prefix: str) -> Path:
    """A folder for files an input list names: `preferred` (created) when its absolute path has no
    white space, else a new temporary folder (the caller removes it); one line when both have some.
    Input-list entries are separated by spaces, so a path with one would be read as two entries."""
    preferred = Path(preferred).resolve()
    if not any(c.isspace() for c in str(preferred)):
        preferred.mkdir(parents=True, exist_ok=True)
        return preferred
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    if any(c.isspace() for c in str(tmp)):
        tmp.rmdir()
        raise ToolchainError(f"{what}: input lists cannot name paths with spaces, and both {preferred} and the temporary "
                             f"folder {tmp.parent} have one: set TMPDIR (TEMP on Windows) to a folder without spaces")
    return tmp


def write_raw_inputs(feeds: dict, inputs: list[tuple[str, str, list[int]]], folder: Path,
                     prefix: str = "", all_float32: bool = False) -> tuple[list[tuple[str, str]], list[str]]:
    """One input-list line of headerless .raw files (qnn-net-run's and the converter quantizer's
    format): float inputs as float32, the others in their own dtype, in the graph's dims (the
    converter runs with `--preserve_io`, which keeps the ONNX layout and datatypes of the graph I/O).
    Returns ([(context tensor name, path)], [names of the integer inputs, for
    --native_input_tensor_names]). `all_float32`: integer inputs too (the converter's quantizer reads
    every file as float32 without --use_native_input_files)."""
    import numpy as np
    line, native = [], []
    for name, dtype, dims in inputs:
        is_float = all_float32 or np.issubdtype(np.dtype(dtype), np.floating)
        arr = np.asarray(feeds[name]).astype(np.float32 if is_float else np.dtype(dtype)).reshape(dims)
        path = (Path(folder) / f"{prefix}{sanitize(name)}.raw").resolve()
        arr.tofile(path)
        line.append((sanitize(name), path.as_posix()))
        if not is_float:
            native.append(sanitize(name))
    return line, native


def write_calibration_raw(calibration, inputs: list[tuple[str, str, list[int]]], folder: Path) -> list[list[tuple[str, str]]]:
    """A calibration set (smolvla_build.calibration_set.CalibrationSet) as .raw files for the
    converter's quantizer, all float32 (its default reading), and the lines of its input list, one
    per sample."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return [write_raw_inputs(calibration[i], inputs, folder, prefix=f"{i:04d}_", all_float32=True)[0]
            for i in range(len(calibration))]


def native_names_arg(graph: str, names: list[str]) -> str:
    """qnn-net-run --native_input_tensor_names: `graphName:t1,t2` (several graphs: `;`-separated)."""
    return f"{graph}:{','.join(names)}"
