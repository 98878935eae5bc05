"""Export of the three SmolVLA stages from LeRobot checkpoints (tiny preset)."""

from __future__ import annotations

import json
import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from safetensors.torch import save_file

from smolvla_build.export.checkpoint import CheckpointError, load_checkpoint, random_model
from smolvla_build.export.model import apply_rope, sinusoidal_time_embedding
from smolvla_build.export.onnx_export import example_inputs, export_all
from smolvla_runtime.model import PRESETS, prefix_pad_mask, stage_io

TINY = PRESETS["tiny"]
STAGES = ("vision_encoder", "llm_backbone", "action_head")


def write_checkpoint(folder, seed=3, drop=None, extra=None, with_stats=True):
    """A LeRobot-style SmolVLA checkpoint: model.safetensors (LeRobot key names), config.json,
    and the normalizer processor state."""
    model, _ = random_model(TINY, seed)
    sd = {k: v.clone().contiguous() for k, v in model.state_dict().items()}
    for k in drop or []:
        sd.pop(k)
    sd.update(extra or {})
    folder.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"type": "smolvla", "chunk_size": 50, "max_state_dim": 32,
                                                    "max_action_dim": 32, "num_vlm_layers": TINY.text_layers}))
    if with_stats:
        save_file({"observation.state.mean": torch.arange(8, dtype=torch.float32),
                   "observation.state.std": torch.full((8,), 2.0),
                   "action.mean": torch.full((7,), 0.5), "action.std": torch.full((7,), 3.0)},
                  str(folder / "policy_preprocessor_step_5_normalizer_processor.safetensors"))
    return model


@pytest.fixture(scope="module")
def checkpoint_export(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    reference = write_checkpoint(root / "ckpt")
    (root / "ckpt" / "tokenizer.json").write_text((_random_tokenizer(root)).read_text())
    info = export_all(root / "out", "tiny", "checkpoint", path=str(root / "ckpt"))
    return root, reference, info


def _random_tokenizer(root):
    from smolvla_build.export.tokenizer import build_random_tokenizer
    p = root / "tok.json"
    build_random_tokenizer(TINY.vocab_size, p)
    return p


def _run(path, inputs):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {i.name: np.asarray(t) for i, t in zip(sess.get_inputs(), inputs)})[0]


@pytest.mark.parametrize("stage", STAGES)
def test_each_onnx_matches_pytorch(checkpoint_export, stage):
    root, reference, _ = checkpoint_export
    loaded, _ = load_checkpoint(root / "ckpt", TINY)
    ex = example_inputs(TINY, seed=5)[stage]
    with torch.no_grad():
        want = getattr(loaded, stage)()(*ex).numpy()
        # loading really used the checkpoint's weights (not a fresh random init)
        assert np.allclose(getattr(reference, stage)()(*ex).numpy(), want)
    got = _run(root / "out" / f"{stage}.onnx", [t.numpy() for t in ex])
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


def test_onnx_io_is_the_deployed_cards(checkpoint_export):
    root, _, _ = checkpoint_export
    for stage, io in stage_io(TINY).items():
        m = onnx.load(str(root / "out" / f"{stage}.onnx"))
        got = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in list(m.graph.input) + list(m.graph.output)}
        assert got == {k: v["shape"] for side in io.values() for k, v in side.items()}
    llm = onnx.load(str(root / "out" / "llm_backbone.onnx"))
    assert "/embed_tokens/Gather_output_0" in {o for n in llm.graph.node for o in n.output}


def test_full_size_shapes_are_exact():
    io = stage_io(PRESETS["smolvla-libero"])
    assert io["vision_encoder"]["inputs"]["pixel_values"]["shape"] == [1, 3, 512, 512]
    assert io["vision_encoder"]["outputs"]["image_embeddings"]["shape"] == [1, 64, 960]
    assert io["llm_backbone"]["inputs"]["lang_tokens"]["shape"] == [1, 48]
    assert io["llm_backbone"]["inputs"]["lang_tokens"]["dtype"] == "int64"
    assert io["llm_backbone"]["outputs"]["kv"]["shape"] == [32, 1, 177, 5, 64]
    assert io["action_head"]["inputs"]["x_t"]["shape"] == [1, 50, 32]
    assert io["action_head"]["outputs"]["v_t"]["shape"] == [1, 50, 32]


def test_rollout_of_the_three_onnx_models_matches_sample_actions(checkpoint_export):
    root, _, _ = checkpoint_export
    policy, _ = load_checkpoint(root / "ckpt", TINY)
    g = torch.Generator().manual_seed(11)
    images = [torch.rand(1, 3, 512, 512, generator=g) * 2 - 1 for _ in range(2)]
    tokens = torch.randint(0, TINY.vocab_size, (1, 48), generator=g)
    mask = torch.zeros(1, 48, dtype=torch.bool)
    mask[:, :9] = True
    state = torch.zeros(1, 32)
    state[:, :8] = torch.randn(1, 8, generator=g)
    noise = torch.randn(1, 50, 32, generator=g)
    want = policy.sample_actions(images, tokens, mask, state, noise).numpy()

    out = root / "out"
    embs = [_run(out / "vision_encoder.onnx", [i.numpy()]) for i in images]
    kv = _run(out / "llm_backbone.onnx", [embs[0], embs[1], tokens.numpy(), mask.numpy(), state.numpy()])
    prefix = prefix_pad_mask(mask.numpy(), TINY.n_image_tokens).astype(bool)
    x = noise.numpy()
    for step in range(10):
        t = np.array([1.0 - 0.1 * step], dtype=np.float32)
        x = x - 0.1 * _run(out / "action_head.onnx", [x, t, kv, prefix])
    assert np.abs(x - want).max() <= 1e-4 * np.abs(want).max()


def test_missing_key_is_an_error_naming_it(tmp_path):
    write_checkpoint(tmp_path / "ckpt", drop=["model.state_proj.weight"])
    with pytest.raises(CheckpointError, match=r"missing keys \['model.state_proj.weight'\]"):
        load_checkpoint(tmp_path / "ckpt", TINY)


def test_unexpected_key_is_an_error_naming_it(tmp_path):
    write_checkpoint(tmp_path / "ckpt", extra={"model.bogus.weight": torch.zeros(2)})
    with pytest.raises(CheckpointError, match=r"unexpected keys \['model.bogus.weight'\]"):
        load_checkpoint(tmp_path / "ckpt", TINY)


def test_config_mismatch_is_an_error(tmp_path):
    write_checkpoint(tmp_path / "ckpt")
    cfg = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    cfg["chunk_size"] = 64
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="chunk_size is 64"):
        load_checkpoint(tmp_path / "ckpt", TINY)


def test_side_files(checkpoint_export, tmp_path):
    root, reference, info = checkpoint_export
    out = root / "out"
    # the token table travels inside the LLM graph (preprocess moves it to the CPU): exactly LeRobot's
    from smolvla_build import model_files
    from smolvla_build.passes.embedding import embedding_table
    table = embedding_table(model_files.load_onnx(out / "llm_backbone.onnx"))
    want = reference.model.vlm_with_expert.vlm.model.text_model.embed_tokens.weight.detach().numpy()
    assert np.array_equal(table, want) and not (out / "embed_tokens.npy").exists()
    stats = json.loads((out / "normalization.json").read_text())
    assert stats["observation.state"]["mean"] == list(range(8)) and stats["action"]["std"] == [3.0] * 7
    assert not stats["action"]["identity"]
    assert info["tokenizer"].startswith("checkpoint tokenizer.json: ") and not info["meaningless_actions"]
    rnd = export_all(tmp_path / "rnd", "tiny", "random", seed=1)
    assert rnd["meaningless_actions"]
    rstats = json.loads((tmp_path / "rnd" / "normalization.json").read_text())
    assert rstats["action"]["identity"] and rstats["action"]["std"] == [1.0] * 7
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(tmp_path / "rnd" / "tokenizer.json"))
    ids = tok.encode("pick up the black bowl\n").ids
    assert ids and max(ids) < TINY.vocab_size


def test_hub_offline_names_the_repo(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    from smolvla_build.export.checkpoint import hub_snapshot
    with pytest.raises(CheckpointError, match="lerobot/smolvla_base"):
        hub_snapshot("lerobot/smolvla_base")


# --- the ways a SmolVLA export goes silently wrong ----------------------------------------------

def test_time_embedding_sin_then_cos_with_two_pi():
    t = torch.tensor([0.3])
    emb = sinusoidal_time_embedding(t, 720, 4e-3, 4.0)[0].numpy()
    frac = np.linspace(0, 1, 360)
    w = 2 * math.pi / (4e-3 * (4.0 / 4e-3) ** frac)
    a = np.float64(np.float32(0.3)) * w            # in float64, as LeRobot computes it
    assert np.array_equal(emb[:360], np.sin(a).astype(np.float32))
    assert np.array_equal(emb[360:], np.cos(a).astype(np.float32))


def test_rope_uses_theta_10000_rotate_half():
    x = torch.randn(1, 3, 1, 64)
    pos = torch.tensor([[0, 1, 5]])
    got = apply_rope(x, pos).numpy()
    inv = 10000.0 ** (-np.arange(32) * 2 / 64)
    ang = pos.numpy()[..., None, None] * inv
    x1, x2 = x.numpy()[..., :32], x.numpy()[..., 32:]
    want = np.concatenate([x1 * np.cos(ang) - x2 * np.sin(ang), x2 * np.cos(ang) + x1 * np.sin(ang)], -1)
    assert np.allclose(got, want, atol=1e-5)


def test_image_embeddings_are_scaled_in_the_llm_and_state_is_not():
    policy, _ = random_model(TINY, 0)
    llm = policy.llm_backbone()
    ex = example_inputs(TINY)["llm_backbone"]
    with torch.no_grad():
        base = llm(*ex)
        # layer-0 K of the state token (last position) does not depend on images or language
        # except through attention, which K is not: only state_proj, unscaled, feeds it
        st = policy.model.state_proj(ex[4])
        layer0 = policy.model.vlm_with_expert.vlm.model.text_model.layers[0]
        k = layer0.self_attn.k_proj(layer0.input_layernorm(st))
        k_pos = apply_rope(k.view(1, 1, TINY.text_kv_heads, TINY.head_dim), torch.tensor([[128 + 13]]))
        assert torch.allclose(base[0, 0, -1], k_pos[0, 0], atol=1e-5)
        img = ex[0][:, :1] * math.sqrt(TINY.text_hidden)
        k_img = layer0.self_attn.k_proj(layer0.input_layernorm(img)).view(1, 1, TINY.text_kv_heads, TINY.head_dim)
        assert torch.allclose(base[0, 0, 0], apply_rope(k_img, torch.tensor([[0]]))[0, 0], atol=1e-5)


def test_onnx_source_skips_export_and_checks_io(tiny_export, tmp_path):
    """source.weights: onnx takes a folder of three exported models; a wrong I/O is one clear error."""
    import shutil

    from conftest import doit, write_pipeline
    src = tmp_path / "models"
    shutil.copytree(tiny_export, src)
    pipe = write_pipeline(tmp_path, source={"preset": "tiny", "weights": "onnx", "path": str(src)})
    listed = doit(pipe, "list", "--all").stdout
    names = [line.split()[0] for line in listed.splitlines() if line.strip()]
    assert "preprocess:llm_backbone" in names and not any(n.startswith("export") for n in names), names
    assert doit(pipe, "preprocess").ran == {f"preprocess:{m}" for m in STAGES}
    bad = onnx.load(str(src / "action_head.onnx"))
    bad.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 49
    onnx.save(bad, str(src / "action_head.onnx"))
    res = doit(pipe, "preprocess:action_head", check=False)
    assert res.returncode != 0
    assert f"{src / 'action_head.onnx'}: graph input 'x_t' is float32[1, 49, 32], expected float32[1, 50, 32]" in res.stdout
