"""The library-version conventions a SmolVLA checkpoint is exact only with (docs/lerobot-versions.md).

One so far: the vision encoder's patch position ids, which transformers 4 and 5 compute differently
(smolvla_build.export.model.vision_position_ids). The checkpoint folders LeRobot saves record no
library version, so the convention comes from the pipeline file (`source.vision_position_ids`),
else from what the checkpoint's files show (a tokenizer saved the way only LeRobot's main branch
saves it; the VLM folder's transformers_version), else the default: LeRobot 0.4.4's, the release
on PyPI.
"""

from __future__ import annotations

import json
from pathlib import Path

VISION_POSITION_IDS = ("transformers-4", "transformers-5")
DEFAULT_VISION_POSITION_IDS = "transformers-4"
SETTING = "source.vision_position_ids"
ASSUMED = "the default"          # how a `why` begins when nothing said which LeRobot made the checkpoint


def assumed(why: str) -> bool:
    """Whether a checkpoint's convention was assumed rather than read (the export warns)."""
    return why.startswith(ASSUMED + ":")


def _transformers_version(path: Path) -> str | None:
    """A `transformers_version` recorded anywhere in a JSON file (transformers' save_pretrained
    writes one at the top of config.json), or None."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    todo = [data]
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            version = node.get("transformers_version")
            if isinstance(version, str) and version[:1].isdigit():
                return version
            todo += list(node.values())
        elif isinstance(node, list):
            todo += node
    return None


def _tokenizer_step(ckpt: Path) -> dict:
    try:
        steps = json.loads((Path(ckpt) / "policy_preprocessor.json").read_text()).get("steps", [])
    except (OSError, ValueError, AttributeError):
        return {}
    return next((s for s in steps if isinstance(s, dict) and s.get("registry_name") == "tokenizer_processor"), {})


def evidence_files(ckpt: Path | None, vlm_dir: Path | None) -> list[Path]:
    """The files the convention is read from (docs/lerobot-versions.md): the checkpoint's
    policy_preprocessor.json, then the VLM folder's config.json."""
    return ([Path(ckpt) / "policy_preprocessor.json"] if ckpt is not None else []) + \
        ([Path(vlm_dir) / "config.json"] if vlm_dir is not None else [])


def vision_position_ids(configured: str | None, ckpt: Path | None, vlm_dir: Path | None) -> tuple[str, str]:
    """(convention, why) for a source: `configured` (the pipeline's setting) if given; else what the
    checkpoint's files show (docs/lerobot-versions.md); else the default (`assumed`)."""
    if configured is not None:
        return configured, f"{SETTING} in the pipeline file"
    if ckpt is None:
        return DEFAULT_VISION_POSITION_IDS, ("the default (random weights): LeRobot 0.4.4's, the PyPI release "
                                             "(transformers 4)")
    if "artifacts" in _tokenizer_step(ckpt):
        return "transformers-5", ("policy_preprocessor.json's tokenizer step saves its tokenizer as an artifact, "
                                  "which only LeRobot's main branch does (transformers 5)")
    if vlm_dir is not None:
        version = _transformers_version(Path(vlm_dir) / "config.json")
        major = version.split(".")[0] if version else None
        if f"transformers-{major}" in VISION_POSITION_IDS:
            return f"transformers-{major}", (f"the VLM folder's config.json ({Path(vlm_dir) / 'config.json'}) "
                                             f"records transformers {version}")
    return DEFAULT_VISION_POSITION_IDS, (
        f"{ASSUMED}: nothing beside {ckpt} records the transformers version it was made with, so "
        f"LeRobot 0.4.4's (the PyPI release, transformers 4) is assumed; a checkpoint of LeRobot's main "
        f"branch (transformers 5) needs `{SETTING}: transformers-5` in the pipeline file")
