"""The three stages of a SmolVLA control step, declared once: name, I/O as the caller feeds it
(shapes from the model preset, dtypes, where each input comes from) and the parts that run on the
CPU beside the HTP graph.

The export names its graphs' I/O from here; preprocess checks an ONNX source against it and writes
it into each stage's I/O sidecar (`<model>.io.json`, key `stage`), and the bundle copies it into
manifest.json. Everything after the export (the runtime policy, validation, the bench) reads shapes
from the sidecar, not from here and not from the graphs: docs/architecture.md, "Stage declaration".
"""

from __future__ import annotations

import dataclasses

from .export.presets import Preset


@dataclasses.dataclass(frozen=True)
class Stage:
    name: str
    # preprocess moves these out of the HTP graph (docs/smolvla.md): the token-embedding lookup, and
    # the sinusoids of small inputs (RoPE tables; the action head's timestep embedding)
    embedding_on_cpu: bool = False
    sinusoids_on_cpu: bool = False


STAGES = {s.name: s for s in (Stage("vision_encoder"),
                              Stage("llm_backbone", embedding_on_cpu=True, sinusoids_on_cpu=True),
                              Stage("action_head", sinusoids_on_cpu=True))}
EMBEDDING_ON_CPU = {m for m, s in STAGES.items() if s.embedding_on_cpu}
SINUSOID_ON_CPU = {m for m, s in STAGES.items() if s.sinusoids_on_cpu}


def _tensor(shape, dtype: str, source: str) -> dict:
    return {"shape": [int(d) for d in shape], "dtype": dtype, "from": source}


def stage_io(p: Preset) -> dict[str, dict]:
    """Per stage, its inputs and outputs in call order: {"inputs": {name: {shape, dtype, from}},
    "outputs": {...}}. `from` names a camera, the tokenizer, the robot, the flow-matching loop, or
    another stage's output (`<stage>.<output>`)."""
    image_emb = [1, p.image_tokens, p.text_hidden]
    return {
        "vision_encoder": {
            "inputs": {"pixel_values": _tensor([1, 3, p.image_size, p.image_size], "float32",
                                               "a camera frame, resized and scaled to [-1, 1]")},
            "outputs": {"image_embeddings": _tensor(image_emb, "float32", "vision_encoder")}},
        "llm_backbone": {
            "inputs": {"img_emb0": _tensor(image_emb, "float32", "vision_encoder.image_embeddings"),
                       "img_emb1": _tensor(image_emb, "float32", "vision_encoder.image_embeddings"),
                       "lang_tokens": _tensor([1, p.tokenizer_max_length], "int64", "the tokenizer"),
                       "lang_mask": _tensor([1, p.tokenizer_max_length], "bool", "the tokenizer"),
                       "state": _tensor([1, p.max_state_dim], "float32",
                                        f"the robot's {p.state_dim} state values, normalized, zero-padded")},
            "outputs": {"kv": _tensor(p.kv_shape, "float32", "llm_backbone")}},
        "action_head": {
            "inputs": {"x_t": _tensor([1, p.chunk_size, p.max_action_dim], "float32", "the flow-matching loop"),
                       "timestep": _tensor([1], "float32", "the flow-matching loop"),
                       "kv": _tensor(p.kv_shape, "float32", "llm_backbone.kv"),
                       "prefix_pad_mask": _tensor([1, p.prefix_len], "bool",
                                                  "image tokens, the language mask, the state token")},
            "outputs": {"v_t": _tensor([1, p.chunk_size, p.max_action_dim], "float32", "action_head")}},
    }


def declaration(p: Preset, model: str) -> dict:
    """What the sidecar and the manifest record of one stage."""
    s = STAGES[model]
    return {"name": model, "preset": p.name, **stage_io(p)[model],
            "cpu_side": {"embedding": s.embedding_on_cpu, "sinusoids": s.sinusoids_on_cpu}}


def upstream(p: Preset, model: str) -> list[str]:
    """The stages whose outputs feed `model`, nearest last (the action head: vision_encoder,
    llm_backbone)."""
    found: list[str] = []
    for t in stage_io(p)[model]["inputs"].values():
        source = t["from"].split(".")[0]
        if source in STAGES and source not in found:
            found = [s for s in upstream(p, source) if s not in found] + found + [source]
    return found
