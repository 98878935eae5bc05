"""LeRobot checkpoints exactly as saved: the tokenizer where LeRobot writes it, every problem of a
broken checkpoint found at once before any long work, and LeRobot's tokenizer behaviour."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from safetensors.torch import save_file

from smolvla_build.export.checkpoint import CheckpointError, inspect_checkpoint
from smolvla_build.export.onnx_export import check_source
from smolvla_runtime.model import PRESETS
from smolvla_build.export.tokenizer import DEFAULT_VLM, TokenizerNotFound, find_tokenizer
from smolvla_runtime.preprocessing import Tokenizer

from lerobot_parity import smolvlm_like_tokenizer

from conftest import doit, write_pipeline
from test_export import write_checkpoint

TINY = PRESETS["tiny"]


def lerobot_layout(folder, **kw):
    """A checkpoint folder as LeRobot's save_pretrained leaves it: model.safetensors, config.json,
    the processors' files and tokenizer/ (tokenizer.json, tokenizer_config.json)."""
    write_checkpoint(folder, **kw)
    smolvlm_like_tokenizer(folder / "tokenizer")
    return folder


def test_tokenizer_in_the_checkpoints_tokenizer_folder(tmp_path):
    ckpt = lerobot_layout(tmp_path / "ckpt")
    found = find_tokenizer(ckpt)
    assert found.json == ckpt / "tokenizer" / "tokenizer.json" and found.config == ckpt / "tokenizer" / "tokenizer_config.json"
    assert "checkpoint tokenizer/" in found.origin
    other = smolvlm_like_tokenizer(tmp_path / "mine")
    assert find_tokenizer(ckpt, other).json == other / "tokenizer.json"                    # source.tokenizer wins
    assert find_tokenizer(ckpt, other / "tokenizer.json").config == other / "tokenizer_config.json"
    with pytest.raises(TokenizerNotFound, match="source.tokenizer: .*nowhere"):
        find_tokenizer(ckpt, tmp_path / "nowhere")


FIND = """
import sys
from pathlib import Path
from smolvla_build.export.tokenizer import TokenizerNotFound, find_tokenizer
try:
    found = find_tokenizer(Path(sys.argv[1]))
    print(found.json, found.origin, sep="|")
except TokenizerNotFound as e:
    print("NOT FOUND|" + str(e))
"""


def test_tokenizer_from_the_vlms_hub_cache(tmp_path):
    """An older checkpoint with no tokenizer of its own: vlm_model_name's tokenizer from the local
    huggingface_hub cache (offline), found through huggingface_hub itself."""
    import os
    import subprocess
    import sys
    ckpt = tmp_path / "ckpt"
    write_checkpoint(ckpt)
    cache = tmp_path / "hub"
    repo = cache / f"models--{DEFAULT_VLM.replace('/', '--')}"
    snap = repo / "snapshots" / ("0" * 40)
    smolvlm_like_tokenizer(snap)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)

    def find(cache_dir, **env):
        out = subprocess.run([sys.executable, "-c", FIND, str(ckpt)], capture_output=True, text=True, check=True,
                             env=dict(os.environ, HF_HUB_CACHE=str(cache_dir), **env)).stdout.strip()
        return out.split("|", 1)
    path, origin = find(cache, HF_HUB_OFFLINE="1")
    assert Path(path).read_bytes() == (snap / "tokenizer.json").read_bytes()
    assert origin == f"hub {DEFAULT_VLM} (local cache)"
    status, message = find(tmp_path / "empty")        # not cached; no network here: no 20 s of retries
    assert status == "NOT FOUND" and str(ckpt / "tokenizer" / "tokenizer.json") in message
    assert f"hub {DEFAULT_VLM}" in message


def test_doit_builds_a_checkpoint_as_lerobot_saves_it(tmp_path):
    ckpt = lerobot_layout(tmp_path / "ckpt")
    pipe = write_pipeline(tmp_path, source={"preset": "tiny", "weights": "checkpoint", "path": str(ckpt)})
    res = doit(pipe, "export")
    assert "export" in res.ran and "tokenizer from checkpoint tokenizer/" in res.stderr
    export = tmp_path / "artifacts" / "export"
    assert (export / "tokenizer.json").read_bytes() == (ckpt / "tokenizer" / "tokenizer.json").read_bytes()
    assert json.loads((export / "tokenizer_config.json").read_text())["pad_token"] == "<|im_end|>"
    assert "checkpoint tokenizer/" in json.loads((export / "export_info.json").read_text())["tokenizer"]


def test_a_broken_checkpoint_lists_every_problem_before_any_work(tmp_path):
    ckpt = tmp_path / "ckpt"
    write_checkpoint(ckpt, drop=["model.state_proj.weight"], with_stats=False,
                     extra={"model.action_out_proj.weight": __import__("torch").zeros(3, 3)})
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg.update(chunk_size=20, input_features={"observation.images.a": {"type": "VISUAL", "shape": [3, 64, 64]},
                                              "observation.state": {"type": "STATE", "shape": [14]}},
               output_features={"action": {"type": "ACTION", "shape": [14]}})
    (ckpt / "config.json").write_text(json.dumps(cfg))
    problems = inspect_checkpoint(ckpt, TINY)
    text = "\n".join(problems)
    assert "config.json: chunk_size is 20" in text
    assert "model.safetensors: 1 weight(s) of the 'tiny' SmolVLA missing: ['model.state_proj.weight']" in text
    assert "model.action_out_proj.weight (3, 3)" in text and "wrong shape" in text
    assert "no observation.state.mean normalization statistic" in text
    pipe = write_pipeline(tmp_path, source={"preset": "tiny", "weights": "checkpoint", "path": str(ckpt)})
    res = doit(pipe, "export", check=False)
    out = res.stdout + res.stderr
    assert res.returncode != 0 and "Traceback" not in out and "cannot be built" in out
    assert "chunk_size is 20" in out and "state_proj" in out and "no tokenizer: tried" in out
    assert not (tmp_path / "artifacts" / "export").exists() or not list((tmp_path / "artifacts" / "export").glob("*.onnx"))


def test_a_checkpoint_for_another_robot_names_what_differs(tmp_path):
    ckpt = lerobot_layout(tmp_path / "ckpt")
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["input_features"] = {f"observation.images.cam{i}": {"type": "VISUAL", "shape": [3, 480, 640]} for i in range(3)}
    cfg["input_features"]["observation.state"] = {"type": "STATE", "shape": [14]}
    cfg["output_features"] = {"action": {"type": "ACTION", "shape": [14]}}
    (ckpt / "config.json").write_text(json.dumps(cfg))
    save_file({"observation.state.mean": __import__("torch").zeros(14), "observation.state.std": __import__("torch").ones(14),
               "action.mean": __import__("torch").zeros(14), "action.std": __import__("torch").ones(14)},
              str(ckpt / "policy_preprocessor_step_5_normalizer_processor.safetensors"))
    with pytest.raises(CheckpointError) as e:
        check_source("tiny", "checkpoint", path=str(ckpt))
    text = str(e.value)
    assert "input_features has 3 camera(s)" in text and "takes 2" in text
    assert "observation.state has shape [14], the 'tiny' preset takes [8]" in text
    assert "action has shape [14], the 'tiny' preset takes [7]" in text


@pytest.mark.parametrize("task", ["open the drawer", "pick up the black bowl next to the ramekin and place it on the plate",
                                  " ".join(["put the bowl on the stove"] * 12), "put the bowl on the stove\n", ""])
def test_tokenizer_matches_transformers_on_the_same_files(tmp_path, task):
    """ids and mask as LeRobot's TokenizerProcessorStep gets them from transformers (task + newline,
    max_length 48, truncation, right padding with the configured pad token)."""
    from transformers import AutoTokenizer
    folder = smolvlm_like_tokenizer(tmp_path / "tok")
    hf = AutoTokenizer.from_pretrained(str(folder))
    text = task if task.endswith("\n") else task + "\n"
    want = hf(text, max_length=48, truncation=True, padding="max_length", padding_side="right")
    ids, mask = Tokenizer(folder / "tokenizer.json", PRESETS["tiny"].tokenizer_max_length)(task)
    assert ids[0].tolist() == want["input_ids"] and mask[0].astype(int).tolist() == want["attention_mask"]
    assert ids[0, 0] == hf.convert_tokens_to_ids("<|im_start|>")                   # the post-processor's token
    if sum(want["attention_mask"]) < 48:
        assert ids[0, -1] == hf.pad_token_id == hf.convert_tokens_to_ids("<|im_end|>")


def test_checkpoint_with_a_folder_of_its_own_copied_elsewhere_builds_the_same(tmp_path):
    """What a user points at is the folder save_pretrained wrote; moving it changes nothing."""
    ckpt = lerobot_layout(tmp_path / "a" / "ckpt")
    shutil.copytree(ckpt, tmp_path / "b")
    a, ta = check_source("tiny", "checkpoint", path=str(ckpt))
    b, tb = check_source("tiny", "checkpoint", path=str(tmp_path / "b"))
    assert ta.json.read_bytes() == tb.json.read_bytes() and b == tmp_path / "b"
