"""Run the SDK's qnn-onnx-converter with the `matmul_to_fc` optimization disabled, without
editing the user's SDK: `python -m smolvla_build.toolchains.converter_patch <converter> ARGS...`.

The deployed card patched op_graph_optimizations.py by hand because QNN turns MatMul with a 2-D
constant into FullyConnected unconditionally (no flag). Here the method
`OptimizeMatmulTranslation.matmul_to_fc` is replaced by a no-op in this process only, then the
converter entry script runs unchanged (pipeline.yaml: precisions.<p>.converter.disable_matmul_to_fc).
"""

from __future__ import annotations

import runpy
import sys


def main() -> None:
    converter, args = sys.argv[1], sys.argv[2:]
    from qti.aisw.converters.common.converter_ir import op_graph_optimizations as opt   # from the SDK (PYTHONPATH)
    opt.OptimizeMatmulTranslation.matmul_to_fc = lambda self, *a, **k: None
    sys.argv = [converter, *args]
    runpy.run_path(converter, run_name="__main__")


if __name__ == "__main__":
    main()
