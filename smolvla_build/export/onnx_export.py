"""Export the three SmolVLA stages to ONNX.

Exporter: torch's TorchScript-based `torch.onnx.export(dynamo=False)`, opset 17. It names nodes
by module path (`/embed_tokens/Gather_output_0`), the names the deployed card's scripts and our
`embedding_on_cpu` pass cut at; its constant folding is left on, as in public SmolVLA exports,
so the graphs keep the patterns a real export has (dynamic CumSum, bool And/Where masks, Pow in
RMSNorm). Opset 17 has LayerNormalization as one op, which the QNN converter maps natively.
Shapes are static (batch 1), as the HTP requires.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from pathlib import Path

import torch
from smolvla_runtime.model import (ACTION_HEAD, LLM_BACKBONE, MODELS, RANDOM_WEIGHTS_WARNING, VISION_ENCODER, Preset,
                                   get_preset, prefix_pad_mask, stage_io)

from ..fsutil import atomic_dir
from ..progress import heartbeat
from . import conventions
from .checkpoint import CheckpointError, hub_snapshot, inspect_checkpoint, load_checkpoint, random_model
from .model import SmolVLA
from .tokenizer import TokenizerNotFound, find_tokenizer, local_vlm_folder, write_tokenizer

log = logging.getLogger("smolvla_build.export")

OPSET = 17


def example_inputs(p: Preset, seed: int = 0) -> dict[str, tuple]:
    """Seeded, realistic example inputs per stage (masks with real padding)."""
    g = torch.Generator().manual_seed(seed)
    n_valid = min(13, p.tokenizer_max_length)
    lang_mask = torch.zeros(1, p.tokenizer_max_length, dtype=torch.bool)
    lang_mask[:, :n_valid] = True
    prefix = torch.from_numpy(prefix_pad_mask(lang_mask.numpy(), p.n_image_tokens)).bool()
    return {
        VISION_ENCODER: (torch.rand(1, 3, p.image_size, p.image_size, generator=g) * 2 - 1,),
        LLM_BACKBONE: (*(torch.randn(1, p.image_tokens, p.text_hidden, generator=g) for _ in range(p.n_cameras)),
                       torch.randint(0, p.vocab_size, (1, p.tokenizer_max_length), generator=g),
                       lang_mask, torch.randn(1, p.max_state_dim, generator=g)),
        ACTION_HEAD: (torch.randn(*p.chunk_shape, generator=g),
                      torch.tensor([0.7]), torch.randn(*p.kv_shape, generator=g), prefix),
    }


def export_stage(policy: SmolVLA, stage: str, out: Path) -> None:
    p = policy.preset
    module = getattr(policy, stage)().eval()
    io = stage_io(p)[stage]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, example_inputs(p)[stage], str(out), dynamo=False, opset_version=OPSET,
                          input_names=list(io["inputs"]), output_names=list(io["outputs"]),
                          do_constant_folding=True)


def check_source(preset_name: str, weights: str, path: str | None = None, repo_id: str | None = None,
                 revision: str | None = None, tokenizer: str | None = None):
    """(checkpoint folder or None, tokenizer source or None) after checking everything the export
    will read; every problem at once, in seconds, before any model is built (CheckpointError)."""
    if weights == "random":
        return None, None
    preset = get_preset(preset_name)
    ckpt = hub_snapshot(repo_id, revision) if weights == "hub" else Path(path)
    problems = inspect_checkpoint(ckpt, preset)
    tok = None
    try:
        tok = find_tokenizer(ckpt, Path(tokenizer) if tokenizer else None)
    except TokenizerNotFound as e:
        problems.append(str(e))
    if problems:
        raise CheckpointError(f"{ckpt}: cannot be built, {len(problems)} problem(s):\n  - " + "\n  - ".join(problems))
    log.info("checkpoint %s: config, %s weights, normalization stats and tokenizer checked (tokenizer: %s)",
             ckpt, preset.name, tok.origin)
    return ckpt, tok


def load_policy(preset_name: str, weights: str, seed: int = 0, ckpt: Path | None = None):
    """Returns (policy, norm stats) from a checked checkpoint folder, or random weights."""
    preset = get_preset(preset_name)
    if weights == "random":
        log.warning(RANDOM_WEIGHTS_WARNING)
        return random_model(preset, seed)
    return load_checkpoint(ckpt, preset)


def export_all(out_dir: Path, preset_name: str, weights: str, seed: int = 0, path: str | None = None,
               repo_id: str | None = None, revision: str | None = None, stages=None, tokenizer: str | None = None,
               vision_position_ids: str | None = None) -> dict:
    """Export the stage ONNX models and the runtime side files into out_dir (atomically).
    vision_position_ids: the convention (conventions.VISION_POSITION_IDS); None: from the
    checkpoint's files, else the default."""
    t0 = time.time()
    ckpt, tok = check_source(preset_name, weights, path, repo_id, revision, tokenizer)
    convention, why = conventions.vision_position_ids(vision_position_ids, ckpt,
                                                      local_vlm_folder(ckpt) if ckpt is not None else None)
    # the one choice a user cannot see in the outputs: always said
    (log.warning if conventions.assumed(why) else log.info)("export: vision position ids %s, %s", convention, why)
    policy, stats = load_policy(preset_name, weights, seed, ckpt)
    policy.vision_position_ids = convention
    p = policy.preset
    stages = list(stages or MODELS)
    info = {"preset": p.name, "weights": weights, "seed": seed if weights == "random" else None,
            "checkpoint": str(ckpt) if ckpt else None, "opset": OPSET, "torch": torch.__version__,
            "meaningless_actions": weights == "random", "image_embedding_scale": "applied in llm_backbone",
            "vision_position_ids": {"convention": convention, "why": why}, "stages": {}}
    with atomic_dir(out_dir) as tmp:
        for stage in stages:
            ts = time.time()
            log.info("export %s (%s preset)", stage, p.name)
            with heartbeat(f"export {stage}", log):
                export_stage(policy, stage, tmp / f"{stage}.onnx")
            info["stages"][stage] = {"seconds": round(time.time() - ts, 2)}
            log.info("export %s: %.1f s (%d/%d)", stage, time.time() - ts, len(info["stages"]), len(stages))
        (tmp / "normalization.json").write_text(json.dumps(stats, indent=2) + "\n")
        info["tokenizer"] = write_tokenizer(tok, p.vocab_size, tmp)
        log.info("export: tokenizer from %s", info["tokenizer"])
        info["seconds"] = round(time.time() - t0, 2)
        (tmp / "export_info.json").write_text(json.dumps(info, indent=2) + "\n")
    return info
