"""Run the SDK's qnn-onnx-converter with its MATMUL_TO_FC optimization disabled, without editing the
user's SDK: `<SDK python> converter_patch.py <qnn-onnx-converter> ARGS...`
(pipeline.yaml: precisions.<p>.converter.disable_matmul_to_fc).

QNN turns every MatMul with a 2-D constant into FullyConnected (no flag; the deployed card patched
op_graph_optimizations.py by hand). Replacing `OptimizeMatmulTranslation.matmul_to_fc` on the class
changes nothing: `@register_layer_optimization` instantiates the class at import time and its
`__init__` stores the *bound* method in `indexed_methods` (`register_method(MATMUL_TO_FC,
self.matmul_to_fc)`), which `apply_method` calls (2.25: op_graph_optimizations.py, translation.py).
So the registered instance's table entry is replaced, then the entry script runs unchanged in this
process, where it finds the patched module already imported.

This file runs under the SDK's own Python (3.10 for QAIRT 2.25), not the project's: it imports
nothing from smolvla_build and keeps to syntax that Python 3.6 reads.
"""

import runpy
import sys


def disable_matmul_to_fc():
    from qti.aisw.converters.common.converter_ir import op_adapter
    from qti.aisw.converters.common.converter_ir import op_graph_optimizations as opt
    key = op_adapter.MatMulOp.TRANSLATION_KEY
    try:
        table = opt.OptimizationTranslations.translations[key].indexed_methods
    except (AttributeError, KeyError):
        sys.exit("converter_patch: this SDK registers no optimization translation for MatMul (%r): "
                 "cannot disable MATMUL_TO_FC" % (key,))
    if opt.MATMUL_TO_FC not in table:
        sys.exit("converter_patch: the MatMul translation of this SDK has no %s method" % opt.MATMUL_TO_FC)
    skipped = []

    def keep_matmul(graph, *args, **kwargs):    # apply_method_to_graph(MATMUL_TO_FC, graph) calls this
        skipped.append(1)

    table[opt.MATMUL_TO_FC] = keep_matmul
    return skipped


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: converter_patch.py <qnn-onnx-converter> ARGS...")
    converter, args = sys.argv[1], sys.argv[2:]
    skipped = disable_matmul_to_fc()
    sys.argv = [converter] + args
    try:
        runpy.run_path(converter, run_name="__main__")
    finally:
        sys.stderr.write("converter_patch: MATMUL_TO_FC disabled (%d call(s) skipped)\n" % len(skipped))


if __name__ == "__main__":
    main()
