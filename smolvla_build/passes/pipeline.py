"""Run the passes in order, check the result and prove equivalence."""

from __future__ import annotations

import dataclasses
import gc
import time

import numpy as np
import onnx

from .activations import silu_through_tanh, tanh_gelu_half_first
from .bool_logic import eliminate_bool_logic
from .checker import census, check_htp_clean
from .cumsum import cumsum_to_matmul
from .embedding import EMBED_OUTPUT, embedding_on_cpu, embedding_table
from .equivalence import ORT_DTYPES, relative_error, seeded_inputs, session
from .fold import fold_constant_subgraphs
from .gemm import gemm_to_matmul
from .masks import bound_mask_constants
from .rmsnorm import rmsnorm_over_max
from .sinusoid import sinusoid_cpu_model, sinusoid_on_cpu


class PreprocessError(Exception):
    """The rewritten model is not clean or not equivalent; str() says which and by how much."""

    def __init__(self, message: str, report: dict):
        super().__init__(message)
        self.report = report


@dataclasses.dataclass
class PreprocessResult:
    model: onnx.ModelProto
    report: dict
    io_changes: dict
    embedding_table: np.ndarray | None
    cpu_model: onnx.ModelProto | None = None


def _signature(model: onnx.ModelProto, which: str) -> dict[str, int]:
    return {v.name: v.type.tensor_type.elem_type for v in getattr(model.graph, which)}


def io_changes(before: onnx.ModelProto, after: onnx.ModelProto, embed_tensor: str | None,
               cpu_model: onnx.ModelProto | None = None, cpu_model_file: str = "") -> dict:
    """What the runtime must feed differently (the sidecar the runtime reads)."""
    name = onnx.TensorProto.DataType.Name
    bi, ai = _signature(before, "input"), _signature(after, "input")
    bo, ao = _signature(before, "output"), _signature(after, "output")
    changes = {
        "inputs": {k: {"from": name(bi[k]).lower(), "to": name(ai[k]).lower()} for k in ai if k in bi and bi[k] != ai[k]},
        "outputs": {k: {"from": name(bo[k]).lower(), "to": name(ao[k]).lower()} for k in ao if k in bo and bo[k] != ao[k]},
        "removed_inputs": [k for k in bi if k not in ai],
        "added_inputs": {},
    }
    if embed_tensor and embed_tensor in ai and embed_tensor not in bi:
        ids = [k for k in changes["removed_inputs"]]
        changes["added_inputs"][embed_tensor] = {
            "lookup": "embed_tokens.npy", "ids_input": ids[0] if len(ids) == 1 else ids,
            "note": "raw rows of the embedding table; the sqrt(hidden) scale stays in the graph"}
    if cpu_model is not None:
        for out in cpu_model.graph.output:
            changes["added_inputs"][out.name] = {
                "cpu_model": cpu_model_file, "inputs": [i.name for i in cpu_model.graph.input],
                "note": "computed on the CPU by the sub-model cut out of this graph"}
    return changes


def _equivalence(before: onnx.ModelProto, after: onnx.ModelProto, table, cpu_model, changes: dict,
                 seed: int) -> dict:
    s0 = session(before)
    vocab = None if table is None else table.shape[0]
    feeds = seeded_inputs(s0, seed=seed, vocab=vocab)
    ref = dict(zip([o.name for o in s0.get_outputs()], s0.run(None, feeds)))
    del s0                           # one session at a time: each holds a copy of the weights
    s1 = session(after)
    feeds1 = {}
    cpu_out = {}
    if cpu_model is not None:      # one run of the CPU sub-model for every input it makes
        cpu = session(cpu_model)
        cpu_feeds = {c.name: feeds[c.name].astype(ORT_DTYPES.get(c.type, np.float32)) for c in cpu.get_inputs()}
        cpu_out = dict(zip([o.name for o in cpu.get_outputs()], cpu.run(None, cpu_feeds)))
    for i in s1.get_inputs():
        added = changes["added_inputs"].get(i.name)
        if i.name in feeds:
            feeds1[i.name] = feeds[i.name].astype(ORT_DTYPES.get(i.type, np.float32))
        elif added and "lookup" in added:
            feeds1[i.name] = table[feeds[added["ids_input"]]].astype(np.float32)
        elif added and "cpu_model" in added:
            feeds1[i.name] = cpu_out[i.name]
        else:
            raise KeyError(f"rewritten model has an input {i.name!r} the original lacks")
    got = dict(zip([o.name for o in s1.get_outputs()], s1.run(None, feeds1)))
    return {k: relative_error(ref[k], got[k]) for k in ref}


def preprocess(model: onnx.ModelProto, *, embedding_cpu: bool = False, sinusoid_cpu: bool = False,
               mask_bound: float = -1.0e4, rtol: float = 1.0e-5, seed: int = 0, check_equivalence: bool = True,
               cpu_model_file: str = "cpu.onnx", progress=None) -> PreprocessResult:
    """The passes in order, the converter-clean check and the equivalence proof. `progress(text)`,
    if given, is called after each pass and before the (slow) equivalence run.

    Raises PreprocessError (with the report attached) when the result is not clean or differs
    from the original beyond `rtol` (max abs error / max abs reference value, per output).
    """
    report: dict = {"passes": [], "census_before": census(model)}
    table = embedding_table(model) if embedding_cpu else None
    passes = [("fold_constant_subgraphs", fold_constant_subgraphs),
              ("cumsum_to_matmul", cumsum_to_matmul),
              ("eliminate_bool_logic", eliminate_bool_logic),
              ("gemm_to_matmul", gemm_to_matmul),
              ("rmsnorm_over_max", rmsnorm_over_max),
              ("tanh_gelu_half_first", tanh_gelu_half_first),
              ("silu_through_tanh", silu_through_tanh),
              ("bound_mask_constants", lambda m: bound_mask_constants(m, mask_bound))]
    if embedding_cpu:
        passes.append(("embedding_on_cpu", embedding_on_cpu))
    if sinusoid_cpu:
        passes.append(("sinusoid_on_cpu", sinusoid_on_cpu))
    passes.append(("fold_constant_subgraphs", fold_constant_subgraphs))
    current = model
    cpu_model = None
    before_counts = report["census_before"]
    say = progress or (lambda text: None)
    for i, (name, fn) in enumerate(passes, 1):
        t0 = time.time()
        if name == "sinusoid_on_cpu":
            cpu_model = sinusoid_cpu_model(current)
        current = fn(current)
        after_counts = census(current)
        # graphsurgeon graphs are reference cycles holding TensorProtos, and a TensorProto keeps its
        # whole model alive: without a collection every pass's copy of the weights stays in memory
        gc.collect()
        delta = {k: after_counts[k] - before_counts[k] for k in after_counts if after_counts[k] != before_counts[k]}
        report["passes"].append({"pass": name, "changed": delta, "seconds": round(time.time() - t0, 3)})
        say(f"pass {i}/{len(passes)} {name}: {time.time() - t0:.1f} s, {delta or 'no change'}")
        before_counts = after_counts
    report["census_after"] = before_counts
    changes = io_changes(model, current, EMBED_OUTPUT if embedding_cpu else None, cpu_model, cpu_model_file)
    report["io_changes"] = changes
    problems = check_htp_clean(current)
    report["checker"] = {"clean": not problems, "problems": problems}
    if check_equivalence:
        say("proving equivalence in onnxruntime (original vs rewritten) ...")
        errs = _equivalence(model, current, table, cpu_model, changes, seed)
        report["equivalence"] = {"rtol": rtol, "seed": seed, "relative_error": errs,
                                 "passed": all(e <= rtol for e in errs.values())}
    if problems:
        raise PreprocessError(f"not converter-clean: {problems[0]} ({len(problems)} problem(s))", report)
    if check_equivalence and not report["equivalence"]["passed"]:
        worst = max(report["equivalence"]["relative_error"].items(), key=lambda kv: kv[1])
        raise PreprocessError(f"rewritten model differs: output {worst[0]!r} relative error {worst[1]:.3g} > {rtol}", report)
    return PreprocessResult(current, report, changes, table, cpu_model)
