"""The tokenizer of the exported policy: where it comes from, and a stand-in for random weights.

Where a LeRobot checkpoint says its tokenizer is: LeRobot 0.4.4's `save_pretrained` of the policy
preprocessor records the tokenizer processor step's `tokenizer_name` (the VLM's hub repo or local
folder) in `policy_preprocessor.json` and saves no tokenizer file; a checkpoint may also carry the
files in `<checkpoint>/tokenizer/` (tokenizer.json + tokenizer_config.json, which names the pad
token). `find_tokenizer` looks, in order, at `source.tokenizer` (a folder or a tokenizer.json), at
`<checkpoint>/tokenizer/`, at `<checkpoint>/tokenizer.json`, at the preprocessor's `tokenizer_name`,
and at the config's `vlm_model_name`; a name that is not a local folder goes through huggingface_hub
(the local cache first, then a download where a network exists). The export copies tokenizer.json and tokenizer_config.json beside the models and records
which one it used.

For random weights there is no SmolVLM2 tokenizer on this machine (no hub), so a small byte-level
BPE is trained with `tokenizers` on LIBERO-style task strings: valid ids in [0, vocab) with the real
padding/truncation rules, nothing more. Its ids mean nothing to a real checkpoint.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

CORPUS = [
    "pick up the black bowl between the plate and the ramekin and place it on the plate",
    "pick up the black bowl next to the ramekin and place it on the plate",
    "pick up the alphabet soup and place it in the basket",
    "open the middle drawer of the cabinet",
    "put the bowl on the stove",
    "put the wine bottle on top of the cabinet",
    "turn on the stove and put the moka pot on it",
    "put both the cream cheese box and the butter in the basket",
    "put the black bowl in the bottom drawer of the cabinet and close it",
    "pick up the book and place it in the back compartment of the caddy",
]
DEFAULT_VLM = "HuggingFaceTB/SmolVLM2-500M-Video-Instruct"


class TokenizerNotFound(Exception):
    """No tokenizer where one was looked for; str() lists every place tried."""


@dataclass(frozen=True)
class TokenizerSource:
    json: Path                   # tokenizer.json
    config: Path | None          # tokenizer_config.json beside it (pad token), if any
    origin: str                  # what the log and export_info.json say


def _in_folder(folder: Path, origin: str) -> TokenizerSource | None:
    if (folder / "tokenizer.json").is_file():
        cfg = folder / "tokenizer_config.json"
        return TokenizerSource(folder / "tokenizer.json", cfg if cfg.is_file() else None, origin)
    return None


def _hub_reachable() -> bool:
    """Whether the hub's host resolves: without a network huggingface_hub retries for ~20 s first."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants
    if constants.HF_HUB_OFFLINE:
        return False
    try:
        socket.getaddrinfo(urlparse(constants.ENDPOINT).hostname, 443)
        return True
    except OSError:
        return False


def _from_hub(repo: str) -> TokenizerSource | None:
    """tokenizer.json (+ tokenizer_config.json) of a hub repo: the local cache, then a download."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        return None
    for local_only in (True, False):
        if not local_only and not _hub_reachable():
            break
        try:
            path = Path(hf_hub_download(repo, "tokenizer.json", local_files_only=local_only))
        except Exception:  # noqa: BLE001 - not cached / offline / unknown repo: try the next way
            continue
        try:
            cfg = Path(hf_hub_download(repo, "tokenizer_config.json", local_files_only=local_only))
        except Exception:  # noqa: BLE001 - optional
            cfg = None
        return TokenizerSource(path, cfg, f"hub {repo} ({'local cache' if local_only else 'downloaded'})")
    return None


def find_tokenizer(ckpt: Path | None, configured: Path | None = None) -> TokenizerSource:
    tried = []
    if configured is not None:
        configured = Path(configured)
        found = (_in_folder(configured, f"source.tokenizer {configured}") if configured.is_dir() else
                 TokenizerSource(configured, configured.with_name("tokenizer_config.json")
                                 if configured.with_name("tokenizer_config.json").is_file() else None,
                                 f"source.tokenizer {configured}") if configured.is_file() else None)
        if found:
            return found
        raise TokenizerNotFound(f"source.tokenizer: {configured} is neither a tokenizer.json nor a folder holding one")
    if ckpt is not None:
        for folder, origin in ((ckpt / "tokenizer", "checkpoint tokenizer/ (LeRobot's tokenizer processor step)"),
                               (ckpt, "checkpoint tokenizer.json")):
            found = _in_folder(folder, f"{origin}: {folder}")
            if found:
                return found
            tried.append(str(folder / "tokenizer.json"))
        for name, where in ((preprocessor_tokenizer_name(ckpt), "policy_preprocessor.json tokenizer_name"),
                            (vlm_model_name(ckpt), "config.json vlm_model_name")):
            if not name or any(name in t for t in tried):
                continue
            if Path(name).is_dir():
                found = _in_folder(Path(name), f"{where}: {name}")
                if found:
                    return found
                tried.append(f"{Path(name) / 'tokenizer.json'} ({where})")
                continue
            found = _from_hub(name)
            if found:
                return found
            tried.append(f"hub {name} ({where}; not in the local cache, no network)")
    raise TokenizerNotFound("no tokenizer: tried " + ", ".join(tried) +
                            "; set source.tokenizer to a folder holding the SmolVLM2 tokenizer.json")


def preprocessor_tokenizer_name(ckpt: Path) -> str | None:
    """The tokenizer_name LeRobot's policy preprocessor recorded for its tokenizer processor step."""
    try:
        steps = json.loads((ckpt / "policy_preprocessor.json").read_text()).get("steps", [])
    except (OSError, ValueError):
        return None
    for step in steps:
        if step.get("registry_name") == "tokenizer_processor":
            return (step.get("config") or {}).get("tokenizer_name")
    return None


def local_vlm_folder(ckpt: Path) -> Path | None:
    """The VLM's folder on this machine, if the preprocessor's tokenizer_name or the config's
    vlm_model_name names one (a hub repo name is not a folder)."""
    for name in (preprocessor_tokenizer_name(ckpt), vlm_model_name(ckpt)):
        if name and Path(name).is_dir():
            return Path(name)
    return None


def vlm_model_name(ckpt: Path) -> str:
    try:
        return json.loads((ckpt / "config.json").read_text()).get("vlm_model_name") or DEFAULT_VLM
    except (OSError, ValueError):
        return DEFAULT_VLM


def build_random_tokenizer(vocab_size: int, out: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=min(vocab_size, 1024), special_tokens=["<pad>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS * 4, trainer)
    tok.save(str(out))


def write_tokenizer(source: TokenizerSource | None, vocab_size: int, out_dir: Path) -> str:
    """tokenizer.json and tokenizer_config.json into out_dir; returns where they came from."""
    config = out_dir / "tokenizer_config.json"
    if source is None:
        build_random_tokenizer(vocab_size, out_dir / "tokenizer.json")
        config.write_text(json.dumps({"pad_token": "<pad>", "padding_side": "right"}, indent=2) + "\n")
        return "random-weights BPE trained on LIBERO-style strings (ids are meaningless)"
    shutil.copyfile(source.json, out_dir / "tokenizer.json")
    if source.config is not None:
        shutil.copyfile(source.config, config)
    else:
        config.write_text("{}\n")
    return source.origin
