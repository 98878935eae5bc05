"""The SmolVLA model core, torch-free: what a SmolVLA policy is, written once.

Everything above it reads these facts from here (or, after the export, from the files that carry
them: each stage's I/O sidecar and the bundle's manifest.json):

- the presets: the network's widths and depths, and the fixed I/O geometry of the deployed card
  (image size, tokens, chunk, the number of flow-matching steps);
- the three stages of a control step (`MODELS`, in call order) and each one's declaration: its
  inputs and outputs as the caller feeds them, and what preprocess moves to the CPU;
- the flow-matching rollout (`euler_rollout`) and the prefix pad mask (`prefix_pad_mask`), the two
  pieces of LeRobot's `sample_actions` that run outside the graphs.

docs/smolvla.md gives the source of each fact. Needs numpy only, and imports it only when the mask
is made: task generation reads this module on every `doit`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

VISION_ENCODER, LLM_BACKBONE, ACTION_HEAD = "vision_encoder", "llm_backbone", "action_head"
MODELS = (VISION_ENCODER, LLM_BACKBONE, ACTION_HEAD)          # the stages, in call order

RANDOM_WEIGHTS_WARNING = ("RANDOM WEIGHTS: this build uses randomly initialised SmolVLA weights; its actions "
                          "are MEANINGLESS. Set source.weights to checkpoint or hub for a real policy.")


@dataclasses.dataclass(frozen=True)
class Preset:
    name: str
    # vision tower (SigLIP as in SmolVLM2)
    vision_hidden: int
    vision_intermediate: int
    vision_layers: int
    vision_heads: int
    # text model (SmolLM2, first num_vlm_layers layers)
    text_hidden: int
    text_intermediate: int
    text_layers: int
    text_heads: int
    text_kv_heads: int
    head_dim: int
    vocab_size: int
    # action expert
    expert_width_multiplier: float = 0.75
    self_attn_every_n_layers: int = 2
    # fixed I/O geometry (the deployed card's)
    image_size: int = 512
    patch_size: int = 16
    scale_factor: int = 4
    n_cameras: int = 2
    tokenizer_max_length: int = 48
    max_state_dim: int = 32
    max_action_dim: int = 32
    chunk_size: int = 50
    num_steps: int = 10     # flow-matching (Euler) steps per plan
    state_dim: int = 8      # LIBERO: eef pos(3) + axis-angle(3) + gripper qpos(2)
    action_dim: int = 7     # LIBERO: 6-D eef delta + gripper
    min_period: float = 4e-3
    max_period: float = 4.0
    rope_theta: float = 10_000.0   # SmolVLA's apply_rope hard-codes 10000 whatever the text config says
    rms_norm_eps: float = 1e-5
    layer_norm_eps: float = 1e-6

    @property
    def image_tokens(self) -> int:
        """Tokens per camera after the connector's pixel shuffle."""
        return (self.image_size // self.patch_size) ** 2 // self.scale_factor**2

    @property
    def n_image_tokens(self) -> int:
        """Image tokens of every camera: the start of the prefix."""
        return self.n_cameras * self.image_tokens

    @property
    def prefix_len(self) -> int:
        return self.n_image_tokens + self.tokenizer_max_length + 1     # + the state token

    @property
    def chunk_shape(self) -> tuple[int, int, int]:
        """x_t and v_t: the action chunk the head integrates, padded to max_action_dim."""
        return (1, self.chunk_size, self.max_action_dim)

    @property
    def expert_hidden(self) -> int:
        return int(self.text_hidden * self.expert_width_multiplier)

    @property
    def expert_intermediate(self) -> int:
        # lerobot smolvlm_with_expert.get_intermediate_size(hidden, ffn_dim_multiplier=4, multiple_of=256)
        hidden_dim = int(2 * (4 * self.expert_hidden) / 3)
        return 256 * math.ceil(hidden_dim / 256)

    @property
    def kv_dim(self) -> int:
        return self.text_kv_heads * self.head_dim

    @property
    def kv_shape(self) -> tuple[int, ...]:
        return (2 * self.text_layers, 1, self.prefix_len, self.text_kv_heads, self.head_dim)

    def to_dict(self) -> dict:
        """What a bundle's manifest records (Preset(**d) reads it back)."""
        return dataclasses.asdict(self)


PRESETS = {
    "smolvla-libero": Preset(
        name="smolvla-libero",
        vision_hidden=768, vision_intermediate=3072, vision_layers=12, vision_heads=12,
        text_hidden=960, text_intermediate=2560, text_layers=16, text_heads=15, text_kv_heads=5,
        head_dim=64, vocab_size=49280,
    ),
    # Same structure and I/O geometry, small widths and 2 layers: every graph pattern, shape and
    # runtime path of the real one, built in seconds (the tests, CI and quick demos).
    "tiny": Preset(
        name="tiny",
        vision_hidden=32, vision_intermediate=64, vision_layers=2, vision_heads=2,
        text_hidden=48, text_intermediate=96, text_layers=2, text_heads=3, text_kv_heads=1,
        head_dim=16, vocab_size=512,
    ),
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown model preset {name!r}; expected one of {sorted(PRESETS)}") from None


# --- the stages --------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Stage:
    name: str
    # preprocess moves these out of the HTP graph (docs/smolvla.md): the token-embedding lookup, and
    # the sinusoids of small inputs (RoPE tables; the action head's timestep embedding)
    embedding_on_cpu: bool = False
    sinusoids_on_cpu: bool = False
    # integrated by the flow-matching loop: called num_steps times per plan, judged on the rollout
    rolled_out: bool = False

    def calls_per_plan(self, p: Preset) -> int:
        """How often one control step (one plan) calls this stage."""
        if self.rolled_out:
            return p.num_steps
        return p.n_cameras if self.name == VISION_ENCODER else 1


STAGES = {s.name: s for s in (Stage(VISION_ENCODER),
                              Stage(LLM_BACKBONE, embedding_on_cpu=True, sinusoids_on_cpu=True),
                              Stage(ACTION_HEAD, sinusoids_on_cpu=True, rolled_out=True))}


def _tensor(shape, dtype: str, source: str) -> dict:
    return {"shape": [int(d) for d in shape], "dtype": dtype, "from": source}


def stage_io(p: Preset) -> dict[str, dict]:
    """Per stage, its inputs and outputs in call order: {"inputs": {name: {shape, dtype, from}},
    "outputs": {...}}. `from` names a camera, the tokenizer, the robot, the flow-matching loop, or
    another stage's output (`<stage>.<output>`)."""
    image_emb = [1, p.image_tokens, p.text_hidden]
    return {
        VISION_ENCODER: {
            "inputs": {"pixel_values": _tensor([1, 3, p.image_size, p.image_size], "float32",
                                               "a camera frame, resized and scaled to [-1, 1]")},
            "outputs": {"image_embeddings": _tensor(image_emb, "float32", VISION_ENCODER)}},
        LLM_BACKBONE: {
            "inputs": {**{f"img_emb{i}": _tensor(image_emb, "float32", f"{VISION_ENCODER}.image_embeddings")
                          for i in range(p.n_cameras)},
                       "lang_tokens": _tensor([1, p.tokenizer_max_length], "int64", "the tokenizer"),
                       "lang_mask": _tensor([1, p.tokenizer_max_length], "bool", "the tokenizer"),
                       "state": _tensor([1, p.max_state_dim], "float32",
                                        f"the robot's {p.state_dim} state values, normalized, zero-padded")},
            "outputs": {"kv": _tensor(p.kv_shape, "float32", LLM_BACKBONE)}},
        ACTION_HEAD: {
            "inputs": {"x_t": _tensor(p.chunk_shape, "float32", "the flow-matching loop"),
                       "timestep": _tensor([1], "float32", "the flow-matching loop"),
                       "kv": _tensor(p.kv_shape, "float32", f"{LLM_BACKBONE}.kv"),
                       "prefix_pad_mask": _tensor([1, p.prefix_len], "bool",
                                                  "image tokens, the language mask, the state token")},
            "outputs": {"v_t": _tensor(p.chunk_shape, "float32", ACTION_HEAD)}},
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


def camera_inputs(p: Preset) -> list[str]:
    """The LLM's image-embedding inputs, one per camera, in the policy's camera order."""
    return [f"img_emb{i}" for i in range(p.n_cameras)]


# --- outside the graphs: the prefix mask and the flow-matching rollout ------------------------------------

def prefix_pad_mask(lang_mask, n_image_tokens: int):
    """[1, prefix_len] float32 0/1 (LeRobot's embed_prefix pad mask): every image token valid, the
    language as the tokenizer's mask says, the state token valid."""
    import numpy as np
    lang = np.asarray(lang_mask, np.float32).reshape(1, -1)
    return np.concatenate([np.ones((1, n_image_tokens), np.float32), lang, np.ones((1, 1), np.float32)], axis=1)


def flow_matching_times(num_steps: int) -> list[float]:
    """The times LeRobot's sample_actions evaluates the velocity at: 1, 1 + dt, ..., -dt (dt = -1/n)."""
    dt = -1.0 / num_steps
    return [1.0 + step * dt for step in range(num_steps)]


def euler_rollout(velocity: Callable, noise, num_steps: int):
    """LeRobot's sample_actions loop: x = noise, then x <- x + dt * v(x, t) at each of the times
    above. `velocity(x, t)` gets x as the caller gave it (a numpy array or a torch tensor) and t as
    a Python float; x keeps its type and its float32 dtype (a Python float times a float32 array
    stays float32)."""
    dt = -1.0 / num_steps
    x = noise
    for t in flow_matching_times(num_steps):
        x = x + dt * velocity(x, t)
    return x
