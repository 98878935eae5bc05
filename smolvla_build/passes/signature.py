"""Check a stage model's graph I/O against its declaration (smolvla_runtime.model.stage_io), for ONNX
sources."""

from __future__ import annotations

import onnx


class SignatureError(Exception):
    pass


def check_signature(model: onnx.ModelProto, expected: dict, where: str) -> None:
    """Raise SignatureError naming the file, the tensor and what was expected (`expected`: a stage
    declaration, {"inputs": {name: {shape, dtype}}, "outputs": ...})."""
    for side, values in (("inputs", model.graph.input), ("outputs", model.graph.output)):
        got = {v.name: ([d.dim_value if d.HasField("dim_value") else d.dim_param for d in v.type.tensor_type.shape.dim],
                        onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name)
               for v in values}
        want = expected[side]
        for name, tensor in want.items():
            shape, dtype = tensor["shape"], tensor["dtype"]
            if name not in got:
                raise SignatureError(f"{where}: graph {side[:-1]} {name!r} missing; expected {side} "
                                     f"{sorted(want)}, found {sorted(got)}")
            gshape, gdtype = got[name]
            if list(gshape) != list(shape) or gdtype != dtype:
                raise SignatureError(f"{where}: graph {side[:-1]} {name!r} is {gdtype}{list(gshape)}, "
                                     f"expected {dtype}{list(shape)}")
