"""A PyTorch SmolVLA with LeRobot's parameter names, split into the three deployed stages.

The module tree mirrors lerobot's `SmolVLAPolicy` so `state_dict()` keys are exactly the
checkpoint's (`model.vlm_with_expert.vlm.model.vision_model...`, `model.state_proj.weight`, ...),
and strict loading catches a weight that would otherwise stay at random init. The vision tower,
connector and the text/expert decoder layers are transformers' own SmolVLM and Llama modules,
built from a local config (no hub call); the attention, masks, RoPE and the flow-matching pieces
follow lerobot's smolvlm_with_expert.py / modeling_smolvla.py (see docs/smolvla.md).

Stage boundaries (the deployed card's I/O):
  vision_encoder: pixel_values [1,3,512,512] in [-1,1] -> image_embeddings [1,64,960], UNSCALED.
      The sqrt(hidden) image scale belongs to the llm_backbone side (as in lerobot's embed_prefix).
  llm_backbone: img_emb0, img_emb1, lang_tokens (int64, feeds /embed_tokens/Gather), lang_mask
      (bool), state [1,32] (normalized, zero-padded) -> kv [2*layers,1,177,kv_heads,64]
      (index 2*layer + {0: K after RoPE, 1: V}).
  action_head: x_t [1,50,32], timestep [1], kv, prefix_pad_mask [1,177] (bool) -> v_t [1,50,32].
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import LlamaConfig, LlamaModel
from transformers.models.smolvlm.configuration_smolvlm import SmolVLMConfig, SmolVLMVisionConfig
from transformers.models.smolvlm.modeling_smolvlm import SmolVLMConnector, SmolVLMVisionTransformer

from smolvla_runtime.model import Preset, euler_rollout, prefix_pad_mask


def _vision_config(p: Preset) -> SmolVLMVisionConfig:
    cfg = SmolVLMVisionConfig(
        hidden_size=p.vision_hidden, intermediate_size=p.vision_intermediate,
        num_hidden_layers=p.vision_layers, num_attention_heads=p.vision_heads,
        image_size=p.image_size, patch_size=p.patch_size, num_channels=3,
        hidden_act="gelu_pytorch_tanh", layer_norm_eps=p.layer_norm_eps,
    )
    cfg._attn_implementation = "eager"
    return cfg


def _text_config(p: Preset, hidden: int, intermediate: int) -> LlamaConfig:
    cfg = LlamaConfig(
        hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=p.text_layers,
        num_attention_heads=p.text_heads, num_key_value_heads=p.text_kv_heads, head_dim=p.head_dim,
        vocab_size=p.vocab_size, rms_norm_eps=p.rms_norm_eps, attention_bias=False, mlp_bias=False,
        # SmolLM2's config says 100000; SmolVLA never uses it (apply_rope hard-codes 10000).
        rope_theta=100_000.0, tie_word_embeddings=False,
    )
    cfg._attn_implementation = "eager"
    return cfg


class _VLMInner(nn.Module):
    def __init__(self, p: Preset):
        super().__init__()
        vcfg = _vision_config(p)
        self.vision_model = SmolVLMVisionTransformer(vcfg)
        tcfg = _text_config(p, p.text_hidden, p.text_intermediate)
        self.connector = SmolVLMConnector(SmolVLMConfig(vision_config=vcfg.to_dict(), text_config=tcfg.to_dict(),
                                                        scale_factor=p.scale_factor))
        self.text_model = LlamaModel(tcfg)


class _VLM(nn.Module):
    def __init__(self, p: Preset):
        super().__init__()
        self.model = _VLMInner(p)
        self.lm_head = nn.Linear(p.text_hidden, p.vocab_size, bias=False)  # unused at inference, in the checkpoint


class _VLMWithExpert(nn.Module):
    def __init__(self, p: Preset):
        super().__init__()
        self.vlm = _VLM(p)
        self.lm_expert = LlamaModel(_text_config(p, p.expert_hidden, p.expert_intermediate))
        self.lm_expert.embed_tokens = None
        for i, layer in enumerate(self.lm_expert.layers):
            if i % p.self_attn_every_n_layers != 0:
                # cross-attention layers re-project the cached VLM K/V (kv_dim -> kv_dim)
                layer.self_attn.k_proj = nn.Linear(p.kv_dim, p.kv_dim, bias=False)
                layer.self_attn.v_proj = nn.Linear(p.kv_dim, p.kv_dim, bias=False)


class VLAFlowMatching(nn.Module):
    def __init__(self, p: Preset):
        super().__init__()
        self.preset = p
        self.vlm_with_expert = _VLMWithExpert(p)
        eh = p.expert_hidden
        self.state_proj = nn.Linear(p.max_state_dim, p.text_hidden)
        self.action_in_proj = nn.Linear(p.max_action_dim, eh)
        self.action_out_proj = nn.Linear(eh, p.max_action_dim)
        self.action_time_mlp_in = nn.Linear(2 * eh, eh)
        self.action_time_mlp_out = nn.Linear(eh, eh)


class SmolVLA(nn.Module):
    """Parameter container with LeRobot's key names (`model.` prefix) and the three stages."""

    def __init__(self, p: Preset, vision_position_ids: str = "transformers-4"):
        super().__init__()
        self.preset = p
        self.vision_position_ids = vision_position_ids    # the convention its vision encoder follows
        self.model = VLAFlowMatching(p)

    # -- stage modules (share parameters with self) -------------------------------------------
    def vision_encoder(self) -> nn.Module:
        return VisionEncoderStage(self)

    def llm_backbone(self) -> nn.Module:
        return LLMBackboneStage(self)

    def action_head(self) -> nn.Module:
        return ActionHeadStage(self)

    @torch.no_grad()
    def sample_actions(self, images, lang_tokens, lang_mask, state, noise):
        """lerobot's VLAFlowMatching.sample_actions over the three stages: the preset's Euler steps
        (smolvla_runtime.model.euler_rollout, the loop the runtime runs)."""
        p = self.preset
        ve, llm, head = self.vision_encoder(), self.llm_backbone(), self.action_head()
        embs = [ve(img) for img in images]
        kv = llm(*embs, lang_tokens, lang_mask, state)
        prefix_pad = torch.from_numpy(prefix_pad_mask(lang_mask.numpy(), p.n_image_tokens)).bool()
        return euler_rollout(lambda x, t: head(x, torch.tensor([t], dtype=torch.float32), kv, prefix_pad), noise,
                             p.num_steps)


# --- lerobot math ------------------------------------------------------------------------------

def apply_rope(x: torch.Tensor, positions: torch.Tensor, max_wavelength: float = 10_000.0) -> torch.Tensor:
    """RoPE on x [B,L,H,D] at positions [B,L] (rotate-half, fp32), as lerobot's apply_rope.

    lerobot writes the halves into `empty_like(x)` by index (ScatterND in ONNX); Concat gives the
    same values and a graph HTP runs.
    """
    d_half = x.shape[-1] // 2
    x = x.to(torch.float32)
    freq_exponents = (2.0 / x.shape[-1]) * torch.arange(d_half, dtype=torch.float32)
    timescale = max_wavelength ** freq_exponents
    radians = positions[..., None].to(torch.float32) / timescale[None, None, :]
    radians = radians[..., None, :]
    sin, cos = torch.sin(radians), torch.cos(radians)
    x1, x2 = x.split(d_half, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


def make_att_2d_masks(pad_masks: torch.Tensor, att_masks: torch.Tensor) -> torch.Tensor:
    """lerobot vla_utils.make_att_2d_masks: CumSum over autoregressive flags + bool logic.

    `.long()` before CumSum: torch sums bools as int64, but its ONNX export keeps a BOOL CumSum,
    which is invalid ONNX (onnxruntime rejects it). Same values.
    """
    cumsum = torch.cumsum(att_masks.long(), dim=1)
    att_2d = cumsum[:, None, :] <= cumsum[:, :, None]
    pad_2d = pad_masks[:, None, :] * pad_masks[:, :, None]
    return att_2d & pad_2d


def eager_attention(q, k, v, mask, n_heads: int, n_kv_heads: int, head_dim: int):
    """lerobot SmolVLMWithExpertModel.eager_attention_forward: GQA by expand, fp32 softmax,
    masked logits set to finfo(float32).min."""
    b, s = k.shape[0], k.shape[1]
    groups = n_heads // n_kv_heads
    k = k[:, :, :, None, :].expand(b, s, n_kv_heads, groups, head_dim).reshape(b, s, n_heads, head_dim)
    v = v[:, :, :, None, :].expand(b, s, n_kv_heads, groups, head_dim).reshape(b, s, n_heads, head_dim)
    q = q.to(torch.float32).transpose(1, 2)
    k = k.to(torch.float32).transpose(1, 2)
    att = torch.matmul(q, k.transpose(2, 3)) * head_dim ** -0.5
    big_neg = torch.finfo(torch.float32).min
    att = torch.where(mask[:, None, :, :], att, big_neg)
    probs = nn.functional.softmax(att, dim=-1)
    out = torch.matmul(probs, v.permute(0, 2, 1, 3))
    return out.permute(0, 2, 1, 3).reshape(b, -1, n_heads * head_dim)


def sinusoidal_time_embedding(time: torch.Tensor, dim: int, min_period: float, max_period: float) -> torch.Tensor:
    """lerobot create_sinusoidal_pos_embedding: [sin(t*w), cos(t*w)] with w = 2*pi/period, in float64
    as LeRobot computes it (docs/lerobot-versions.md), then float32. The HTP never sees the float64
    part: preprocess moves the embedding to the CPU (passes/sinusoid.py), whose onnxruntime runs
    float64 Sin and Cos."""
    fraction = torch.linspace(0.0, 1.0, dim // 2, dtype=torch.float64)
    period = min_period * (max_period / min_period) ** fraction
    scaling = 1.0 / period * 2 * math.pi
    sin_input = scaling[None, :] * time[:, None].to(torch.float64)
    return torch.cat([torch.sin(sin_input), torch.cos(sin_input)], dim=1).to(torch.float32)


def _layer_qkv(layer, x, n_heads, n_kv, hd):
    b, l_ = x.shape[0], x.shape[1]
    q = layer.self_attn.q_proj(x).view(b, l_, n_heads, hd)
    k = layer.self_attn.k_proj(x).view(b, l_, n_kv, hd)
    v = layer.self_attn.v_proj(x).view(b, l_, n_kv, hd)
    return q, k, v


def _finish_layer(layer, h, att):
    h = h + layer.self_attn.o_proj(att)
    return h + layer.mlp(layer.post_attention_layernorm(h))


# --- stages ------------------------------------------------------------------------------------

def vision_position_ids(n_side: int, convention: str) -> torch.Tensor:
    """Position ids of a full-resolution image's patches, as each transformers computes them in
    SmolVLMVisionEmbeddings (docs/lerobot-versions.md), in float32 like both:
    - transformers-4 (LeRobot 0.4.4 on PyPI): buckets `i / n * (1 - 1e-6)`, just below each
      boundary i/n, so each axis maps to 0, 0, 1, ..., n-2 (the table's last row is never used);
    - transformers-5 (LeRobot's main branch): buckets `min(i * (1 / n), 1 - 1e-6)`: 0, 1, ..., n-1."""
    boundaries = torch.arange(1 / n_side, 1.0, 1 / n_side)
    index = torch.arange(n_side, dtype=torch.float32)
    if convention == "transformers-4":
        coords = index / n_side * (1 - 1e-6)
    elif convention == "transformers-5":
        coords = torch.clamp(index * (1.0 / torch.tensor(n_side)), max=1.0 - 1e-6)
    else:
        raise ValueError(f"vision position ids: unknown convention {convention!r}")
    buckets = torch.bucketize(coords, boundaries, right=True)
    return (buckets[:, None] * n_side + buckets[None, :]).flatten()


class VisionEncoderStage(nn.Module):
    """SigLIP + pixel-shuffle connector; output NOT multiplied by sqrt(hidden)."""

    def __init__(self, policy: SmolVLA):
        super().__init__()
        inner = policy.model.vlm_with_expert.vlm.model
        self.vision_model = inner.vision_model
        self.connector = inner.connector
        self.position_ids_convention = policy.vision_position_ids

    def forward(self, pixel_values):
        emb = self.vision_model.embeddings
        x = emb.patch_embedding(pixel_values).flatten(2).transpose(1, 2)
        # Every patch is valid at full resolution, so the position ids are a constant: a constant
        # Gather of the table (folded at export), not bucketize + ScatterND.
        ids = vision_position_ids(emb.num_patches_per_side, self.position_ids_convention)
        x = x + emb.position_embedding.weight[ids][None]
        for layer in self.vision_model.encoder.layers:
            x = layer(x, attention_mask=None)
        x = self.vision_model.post_layernorm(x)
        return self.connector(x)


class LLMBackboneStage(nn.Module):
    """Prefix pass of the first `text_layers` SmolLM2 layers -> stacked post-RoPE K and V."""

    def __init__(self, policy: SmolVLA):
        super().__init__()
        p = policy.preset
        self.p = p
        vlm = policy.model.vlm_with_expert.vlm.model
        # attribute name chosen so the torch export names the lookup /embed_tokens/Gather_output_0
        self.embed_tokens = vlm.text_model.embed_tokens
        self.layers = vlm.text_model.layers
        self.state_proj = policy.model.state_proj

    def forward(self, img_emb0, img_emb1, lang_tokens, lang_mask, state):
        p = self.p
        scale = math.sqrt(p.text_hidden)
        img = torch.cat([img_emb0, img_emb1], dim=1) * scale
        lang = self.embed_tokens(lang_tokens) * scale
        st = self.state_proj(state)[:, None, :]            # the state token is NOT scaled
        h = torch.cat([img, lang, st], dim=1)
        # the prefix pad mask inside the graph (LeRobot's embed_prefix; smolvla_runtime.model.prefix_pad_mask
        # is the same mask outside it, for the action head's input)
        pad = torch.cat([torch.ones(1, p.n_image_tokens, dtype=torch.bool), lang_mask,
                         torch.ones(1, 1, dtype=torch.bool)], dim=1)
        att = torch.zeros(1, p.prefix_len, dtype=torch.bool)
        att[:, -1] = True                                   # state token: autoregressive flag 1
        mask = make_att_2d_masks(pad, att)
        positions = torch.cumsum(pad.long(), dim=1) - 1
        kv = []
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer.input_layernorm(h)
            q, k, v = _layer_qkv(layer, x, p.text_heads, p.text_kv_heads, p.head_dim)
            k = apply_rope(k, positions, p.rope_theta)
            kv += [k, v]
            if i == last:
                break                                       # only K/V of the last layer are used
            q = apply_rope(q, positions, p.rope_theta)
            h = _finish_layer(layer, h, eager_attention(q, k, v, mask, p.text_heads, p.text_kv_heads, p.head_dim))
        return torch.stack(kv, dim=0)


class ActionHeadStage(nn.Module):
    """One denoising step of the action expert: velocity for x_t at time t."""

    def __init__(self, policy: SmolVLA):
        super().__init__()
        p = policy.preset
        self.p = p
        m = policy.model
        self.layers = m.vlm_with_expert.lm_expert.layers
        self.norm = m.vlm_with_expert.lm_expert.norm
        self.action_in_proj = m.action_in_proj
        self.action_out_proj = m.action_out_proj
        self.action_time_mlp_in = m.action_time_mlp_in
        self.action_time_mlp_out = m.action_time_mlp_out

    def forward(self, x_t, timestep, kv, prefix_pad_mask):
        p = self.p
        n = p.chunk_size
        a = self.action_in_proj(x_t)
        temb = sinusoidal_time_embedding(timestep, p.expert_hidden, p.min_period, p.max_period)
        temb = temb[:, None, :].expand_as(a)
        h = self.action_time_mlp_out(nn.functional.silu(self.action_time_mlp_in(torch.cat([a, temb], dim=2))))

        suffix_pad = torch.ones(1, n, dtype=torch.bool)
        suffix_att = torch.ones(1, n, dtype=torch.bool)     # actions attend causally
        suffix_2d = make_att_2d_masks(suffix_pad, suffix_att)
        prefix_2d = prefix_pad_mask[:, None, :].expand(1, n, p.prefix_len)
        full_mask = torch.cat([prefix_2d, suffix_2d], dim=2)
        prefix_offsets = torch.sum(prefix_pad_mask.long(), dim=-1)[:, None]
        positions = prefix_offsets + torch.cumsum(suffix_pad.long(), dim=1) - 1
        for i, layer in enumerate(self.layers):
            x = layer.input_layernorm(h)
            k_cache, v_cache = kv[2 * i], kv[2 * i + 1]
            if i % p.self_attn_every_n_layers == 0:
                q, k, v = _layer_qkv(layer, x, p.text_heads, p.text_kv_heads, p.head_dim)
                q = apply_rope(q, positions, p.rope_theta)
                k = apply_rope(k, positions, p.rope_theta)
                k = torch.cat([k_cache, k], dim=1)
                v = torch.cat([v_cache, v], dim=1)
                mask = full_mask
            else:
                q = layer.self_attn.q_proj(x).view(1, n, p.text_heads, p.head_dim)
                # cross-attention: queries start at position 0, keys are re-projected cache (no new RoPE)
                q = apply_rope(q, positions - torch.min(positions, dim=1, keepdim=True).values, p.rope_theta)
                k = layer.self_attn.k_proj(k_cache.reshape(1, p.prefix_len, p.kv_dim)).view(
                    1, p.prefix_len, p.text_kv_heads, p.head_dim)
                v = layer.self_attn.v_proj(v_cache.reshape(1, p.prefix_len, p.kv_dim)).view(
                    1, p.prefix_len, p.text_kv_heads, p.head_dim)
                mask = full_mask[:, :, : p.prefix_len]
            h = _finish_layer(layer, h, eager_attention(q, k, v, mask, p.text_heads, p.text_kv_heads, p.head_dim))
        return self.action_out_proj(self.norm(h))
