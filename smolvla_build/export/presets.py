"""Model presets: the real SmolVLA-LIBERO dimensions and a tiny one of the same structure.

Both keep the deployed card's token counts (64 image tokens per camera, 48 language slots, one
state token: prefix 177) and I/O shapes except the widths, so the tiny preset exercises every
graph pattern, shape and runtime path of the real one in seconds.
"""

from __future__ import annotations

import dataclasses
import math


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
    num_steps: int = 10
    state_dim: int = 8      # LIBERO: eef pos(3) + axis-angle(3) + gripper qpos(2)
    action_dim: int = 7     # LIBERO: 6-D eef delta + gripper
    min_period: float = 4e-3
    max_period: float = 4.0
    rope_theta: float = 10_000.0   # SmolVLA's apply_rope hard-codes 10000 whatever the text config says
    rms_norm_eps: float = 1e-5
    layer_norm_eps: float = 1e-6

    @property
    def image_tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2 // self.scale_factor**2

    @property
    def prefix_len(self) -> int:
        return self.n_cameras * self.image_tokens + self.tokenizer_max_length + 1

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


PRESETS = {
    "smolvla-libero": Preset(
        name="smolvla-libero",
        vision_hidden=768, vision_intermediate=3072, vision_layers=12, vision_heads=12,
        text_hidden=960, text_intermediate=2560, text_layers=16, text_heads=15, text_kv_heads=5,
        head_dim=64, vocab_size=49280,
    ),
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
