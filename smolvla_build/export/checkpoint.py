"""Weights for the PyTorch SmolVLA: a LeRobot checkpoint folder, a hub repo, or random.

LeRobot SmolVLA checkpoints hold `model.safetensors` (LeRobot key names, bf16/fp32) and
`config.json` (`"type": "smolvla"`). Normalization statistics live either in the policy
preprocessor/postprocessor state files (`*normalizer_processor.safetensors`, LeRobot >= 0.4) or,
in older checkpoints, as `normalize_inputs.*` / `unnormalize_outputs.*` buffers inside
model.safetensors. Loading is strict: a missing or unexpected weight is an error listing the keys
(a weight silently left at random init, e.g. state_proj, is the classic broken export).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from smolvla_runtime.model import Preset

from .model import SmolVLA

NORM_PREFIXES = ("normalize_inputs.", "normalize_targets.", "unnormalize_outputs.")
CHECKED_CONFIG_FIELDS = {"chunk_size": "chunk_size", "max_state_dim": "max_state_dim",
                         "max_action_dim": "max_action_dim", "num_vlm_layers": "text_layers",
                         "tokenizer_max_length": "tokenizer_max_length", "num_steps": "num_steps"}


class CheckpointError(Exception):
    pass


def hub_snapshot(repo_id: str, revision: str | None = None) -> Path:
    """Download (or reuse from the local cache) a hub checkpoint with huggingface_hub."""
    from huggingface_hub import snapshot_download
    try:
        return Path(snapshot_download(repo_id, revision=revision,
                                      allow_patterns=["*.json", "*.safetensors", "tokenizer*"]))
    except Exception as exc:  # offline, unknown repo, auth: one clear line naming the repo
        raise CheckpointError(
            f"cannot fetch hub repo {repo_id!r} (revision {revision or 'main'}): {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}. Without network, download it elsewhere and set "
            f"source.weights: checkpoint with source.path: <folder>") from None


def check_config(ckpt: Path, preset: Preset) -> dict:
    cfg_path = ckpt / "config.json"
    if not cfg_path.is_file():
        raise CheckpointError(f"{cfg_path}: missing (expected a LeRobot SmolVLA config.json)")
    cfg = json.loads(cfg_path.read_text())
    if cfg.get("type", "smolvla") != "smolvla":
        raise CheckpointError(f"{cfg_path}: type is {cfg.get('type')!r}, expected 'smolvla'")
    for key, attr in CHECKED_CONFIG_FIELDS.items():
        if key in cfg and cfg[key] not in (None, -1, 0) and cfg[key] != getattr(preset, attr):
            raise CheckpointError(f"{cfg_path}: {key} is {cfg[key]}, the {preset.name!r} preset expects "
                                  f"{getattr(preset, attr)}")
    return cfg


def expected_weights(preset: Preset) -> dict[str, tuple]:
    """Every weight of the preset's SmolVLA and its shape, without allocating it (meta device)."""
    with torch.device("meta"):
        model = SmolVLA(preset)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _safetensors_shapes(path: Path) -> dict[str, tuple]:
    """Names and shapes from a safetensors header alone (no tensor is read)."""
    from safetensors import SafetensorError, safe_open
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: not a safetensors file, or truncated ({e})") from None


def _features(cfg: dict, preset: Preset, cfg_path: Path) -> list[str]:
    """The robot the checkpoint was trained for against what the preset's stage graphs take."""
    problems = []
    inputs, outputs = cfg.get("input_features") or {}, cfg.get("output_features") or {}
    cams = sorted(k for k, v in inputs.items() if str(v.get("type", "")).upper().endswith("VISUAL"))
    if inputs and len(cams) != preset.n_cameras:
        problems.append(f"{cfg_path}: input_features has {len(cams)} camera(s) {cams}, the {preset.name!r} preset "
                        f"takes {preset.n_cameras} (LIBERO: image, wrist_image)")
    for feats, key, want in ((inputs, "observation.state", preset.state_dim), (outputs, "action", preset.action_dim)):
        shape = (feats.get(key) or {}).get("shape")
        if shape is not None and list(shape) != [want]:
            problems.append(f"{cfg_path}: {key} has shape {list(shape)}, the {preset.name!r} preset takes [{want}]")
    return problems


def inspect_checkpoint(ckpt: Path, preset: Preset) -> list[str]:
    """Every problem the export would meet in a LeRobot checkpoint folder, each naming its file,
    found in seconds (config and safetensors headers only) before any long work."""
    ckpt = Path(ckpt)
    if not ckpt.is_dir():
        return [f"{ckpt}: not a folder (expected a LeRobot SmolVLA checkpoint saved by save_pretrained)"]
    problems = []
    cfg_path = ckpt / "config.json"
    try:
        check_config(ckpt, preset)
        problems += _features(json.loads(cfg_path.read_text()), preset, cfg_path)
    except CheckpointError as e:
        problems.append(str(e))
    except ValueError as e:
        problems.append(f"{cfg_path}: not valid JSON ({e})")
    weights = ckpt / "model.safetensors"
    if not weights.is_file():
        problems.append(f"{weights}: missing (expected the LeRobot policy weights)")
        norm_buffers = {}
    else:
        try:
            have = _safetensors_shapes(weights)
        except CheckpointError as e:
            problems.append(str(e))
            have = None
        norm_buffers = {k: s for k, s in (have or {}).items() if k.startswith(NORM_PREFIXES)}
        if have is not None:
            have = {k: s for k, s in have.items() if k not in norm_buffers}
            want = expected_weights(preset)
            missing, unexpected = sorted(set(want) - set(have)), sorted(set(have) - set(want))
            if missing:
                problems.append(f"{weights}: {len(missing)} weight(s) of the {preset.name!r} SmolVLA missing: "
                                f"{missing[:10]}{' ...' if len(missing) > 10 else ''}")
            if unexpected:
                problems.append(f"{weights}: {len(unexpected)} unexpected weight(s): "
                                f"{unexpected[:10]}{' ...' if len(unexpected) > 10 else ''}")
            bad = [f"{k} {have[k]} (expected {want[k]})" for k in sorted(set(have) & set(want)) if have[k] != want[k]]
            if bad:
                problems.append(f"{weights}: {len(bad)} weight(s) of the wrong shape: {bad[:5]}{' ...' if len(bad) > 5 else ''}")
    problems += _stats_problems(ckpt, norm_buffers, preset)
    return problems


def _stats_problems(ckpt: Path, norm_buffers: dict, preset: Preset) -> list[str]:
    files = sorted(ckpt.glob("*normalizer_processor*.safetensors"))
    found = {}
    for f in files:
        try:
            found.update(_safetensors_shapes(f))
        except CheckpointError as e:
            return [str(e)]
    for k, s in norm_buffers.items():   # old layout: normalize_inputs.buffer_observation_state.mean
        found[k.split(".", 1)[1].replace("buffer_", "").replace("observation_state", "observation.state")] = s
    problems = []
    where = ", ".join(f.name for f in files) or "no *normalizer_processor*.safetensors"
    for key, dim in (("observation.state", preset.state_dim), ("action", preset.action_dim)):
        for stat in ("mean", "std"):
            shape = found.get(f"{key}.{stat}")
            if shape is None:
                problems.append(f"{ckpt}: no {key}.{stat} normalization statistic ({where}; LeRobot saves them in "
                                "policy_preprocessor/postprocessor_step_*_normalizer_processor.safetensors)")
            elif int(torch.Size(shape).numel()) != dim:
                problems.append(f"{ckpt}: {key}.{stat} has {torch.Size(shape).numel()} values, the {preset.name!r} "
                                f"preset takes {dim}")
    return problems


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from ..model_files import load_safetensors
    return load_safetensors(path)


def load_checkpoint(ckpt: Path, preset: Preset) -> tuple[SmolVLA, dict]:
    """Build SmolVLA for `preset` and load the checkpoint strictly. Returns (model, norm stats)."""
    ckpt = Path(ckpt)
    check_config(ckpt, preset)
    weights = ckpt / "model.safetensors"
    if not weights.is_file():
        raise CheckpointError(f"{weights}: missing (expected the LeRobot policy weights)")
    sd = _read_safetensors(weights)
    norm_buffers = {k: v for k, v in sd.items() if k.startswith(NORM_PREFIXES)}
    sd = {k: v.to(torch.float32) for k, v in sd.items() if k not in norm_buffers}
    model = SmolVLA(preset)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{weights}: does not match the {preset.name!r} SmolVLA: "
            f"missing keys {missing[:20]}{' ...' if len(missing) > 20 else ''} ({len(missing)}), "
            f"unexpected keys {unexpected[:20]}{' ...' if len(unexpected) > 20 else ''} ({len(unexpected)})")
    bad = [f"{k}: {tuple(v.shape)} != {tuple(expected[k].shape)}" for k, v in sd.items() if v.shape != expected[k].shape]
    if bad:
        raise CheckpointError(f"{weights}: shape mismatch: {bad[:10]}")
    model.load_state_dict(sd, strict=True)
    return model.eval(), read_norm_stats(ckpt, norm_buffers, preset)


def read_norm_stats(ckpt: Path, norm_buffers: dict, preset: Preset) -> dict:
    """MEAN_STD statistics for observation.state and action; identity where absent (say so)."""
    found: dict[str, np.ndarray] = {}
    for f in sorted(ckpt.glob("*normalizer_processor*.safetensors")):
        for k, v in _read_safetensors(f).items():
            found[k] = v.to(torch.float64).numpy()
    for k, v in norm_buffers.items():   # old layout: normalize_inputs.buffer_observation_state.mean
        name = k.split(".", 1)[1].replace("buffer_", "").replace("observation_state", "observation.state")
        found[name] = v.to(torch.float64).numpy()
    return norm_stats_from(found, preset, origin=str(ckpt))


def norm_stats_from(found: dict, preset: Preset, origin: str) -> dict:
    out = {"origin": origin}
    for key, dim in (("observation.state", preset.state_dim), ("action", preset.action_dim)):
        mean, std = found.get(f"{key}.mean"), found.get(f"{key}.std")
        if mean is None or std is None:
            out[key] = {"mean": [0.0] * dim, "std": [1.0] * dim, "identity": True}
        else:
            out[key] = {"mean": np.asarray(mean, dtype=np.float64).ravel().tolist(),
                        "std": np.asarray(std, dtype=np.float64).ravel().tolist(), "identity": False}
    return out


INITIALIZER_RANGE = 0.02   # transformers' initializer_range for SmolVLM/Llama configs


@torch.no_grad()
def random_model(preset: Preset, seed: int) -> tuple[SmolVLA, dict]:
    """SmolVLA with every weight drawn the way transformers initialises an untrained model:
    Linear/Conv/Embedding ~ N(0, 0.02), biases 0, norm scales 1, seeded. One rule for all
    modules (torch's default init of the projection heads would differ from the rest)."""
    torch.manual_seed(seed)
    model = SmolVLA(preset).eval()
    for name, param in model.named_parameters():
        if "norm" in name.rsplit(".", 2)[-2] and name.endswith("weight"):
            param.fill_(1.0)
        elif name.endswith("bias"):
            param.zero_()
        else:
            param.normal_(0.0, INITIALIZER_RANGE)
    return model, norm_stats_from({}, preset, origin=f"random(seed={seed})")
