"""The calibration-set file format: what each HTP graph receives in LIBERO, recorded for the integer
precisions' quantizers (docs/integer-precisions.md).

One `.npz` per model, each graph input stacked over the samples on a first axis, exactly as the
graph receives it (after the CPU side: embedding rows, sinusoid tables, int32 masks). Who records it
(the fp32 policy in LIBERO episodes) is smolvla_build.evaluate.calibration; who reads it are the
quantizers (toolchains/ort_qnn.py, the qairt converter's input list) and the saturation census.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .fsutil import save_npz


def write_set(path: str | Path, samples: list[dict[str, np.ndarray]]) -> dict[str, list[int]]:
    """The recorded graph feeds of one model, stacked per input, written atomically; returns each
    input's shape (without the sample axis)."""
    stacked = {k: np.stack([s[k] for s in samples]) for k in samples[0]}
    save_npz(path, stacked)
    return {k: list(v.shape[1:]) for k, v in stacked.items()}


class CalibrationSet:
    """The recorded graph inputs of one model: `len()`, `[i]` -> {input name: array}, and
    `reader()` for onnxruntime's quantizer (a CalibrationDataReader)."""

    def __init__(self, npz: str | Path):
        from smolvla_runtime.files import load_npz
        self.path = Path(npz)
        self.arrays = load_npz(self.path)

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values())))

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        return {k: v[i] for k, v in self.arrays.items()}

    def reader(self, input_names: list[str]):
        from onnxruntime.quantization import CalibrationDataReader
        missing = sorted(set(input_names) - set(self.arrays))
        if missing:
            raise ValueError(f"{self.path}: no recorded input for {missing} (it holds {sorted(self.arrays)}): "
                             "rebuild it with `doit calibrate`")
        data = self

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.i = 0

            def get_next(self):
                if self.i >= len(data):
                    return None
                self.i += 1
                return {k: data[self.i - 1][k] for k in input_names}

            def rewind(self):
                self.i = 0
        return Reader()
