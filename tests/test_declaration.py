"""The stage declaration (smolvla_runtime/model.py, the model core): written once, read everywhere
after the export from the I/O sidecar (issue #23, item 4) or the bundle's manifest."""

from __future__ import annotations

import json

import onnx
import pytest

from smolvla_build.config import load_pipeline
from smolvla_runtime.files import ModelFileError
from smolvla_runtime.model import MODELS, PRESETS, declaration, upstream
from smolvla_runtime.runners import ReferenceRunner
from smolvla_runtime.stage import StageRunner

TINY = PRESETS["tiny"]


def test_upstream_follows_the_declared_inputs():
    assert upstream(TINY, "vision_encoder") == []
    assert upstream(TINY, "llm_backbone") == ["vision_encoder"]
    assert upstream(TINY, "action_head") == ["vision_encoder", "llm_backbone"]


def test_each_sidecar_holds_its_stage_declaration_and_the_graphs_agree(shared_build):
    """preprocess writes the declaration into `<model>.io.json`; the raw export's graph I/O is
    exactly what it declares, and the runtime's shapes come from it."""
    layout = load_pipeline(shared_build.pipe).layout()
    for m in MODELS:
        declared = json.loads(layout.io_sidecar(m).read_text())["stage"]
        assert declared == declaration(TINY, m)
        raw = onnx.load(str(layout.source_onnx(m)), load_external_data=False)
        got = {v.name: ([d.dim_value for d in v.type.tensor_type.shape.dim],
                        onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name)
               for v in list(raw.graph.input) + list(raw.graph.output)}
        assert got == {k: (t["shape"], t["dtype"]) for side in ("inputs", "outputs") for k, t in declared[side].items()}
        stage = StageRunner(ReferenceRunner(layout.reference_model(m)), layout.io_sidecar(m))
        assert all(stage.input_shape(k) == t["shape"] for k, t in declared["inputs"].items())
        assert stage.runner.session is None          # the shapes are read without loading the graph


def test_a_sidecar_without_a_declaration_is_refused_in_one_line(shared_build, tmp_path):
    layout = load_pipeline(shared_build.pipe).layout()
    old = json.loads(layout.io_sidecar("action_head").read_text())
    del old["stage"]
    (tmp_path / "action_head.io.json").write_text(json.dumps(old))
    with pytest.raises(ModelFileError, match=r"action_head.io.json: no stage declaration .*rebuild"):
        StageRunner(ReferenceRunner(layout.reference_model("action_head")), tmp_path / "action_head.io.json")
