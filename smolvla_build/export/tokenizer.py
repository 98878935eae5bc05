"""Tokenizer for the exported policy.

A checkpoint's own `tokenizer.json` is used when present. For random weights there is no
SmolVLM2 tokenizer on this machine (no hub), so a small byte-level BPE is trained with
`tokenizers` on LIBERO-style task strings and written to the artifacts: it produces valid ids in
[0, vocab) with the real padding/truncation rules, nothing more. Its ids mean nothing to a real
checkpoint.
"""

from __future__ import annotations

import shutil
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


def build_random_tokenizer(vocab_size: int, out: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=min(vocab_size, 1024), special_tokens=["<pad>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS * 4, trainer)
    tok.save(str(out))


def write_tokenizer(ckpt: Path | None, vocab_size: int, out: Path) -> str:
    """Write tokenizer.json to `out`; return where it came from."""
    if ckpt is not None and (ckpt / "tokenizer.json").is_file():
        shutil.copyfile(ckpt / "tokenizer.json", out)
        return str(ckpt / "tokenizer.json")
    if ckpt is not None:
        raise FileNotFoundError(
            f"{ckpt}: no tokenizer.json. LeRobot checkpoints use the SmolVLM2 tokenizer "
            "(HuggingFaceTB/SmolVLM2-500M-Video-Instruct): copy its tokenizer.json into the checkpoint folder")
    build_random_tokenizer(vocab_size, out)
    return "random-weights BPE trained on LIBERO-style strings (ids are meaningless)"
