"""The policy at run time: preprocessing, the 3-stage rollout on each runtime, a LIBERO episode."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from smolvla_runtime.compare import compare
from smolvla_build.config import load_pipeline
from smolvla_build.export.checkpoint import random_model
from smolvla_build.runtime.artifacts import load_policy
from smolvla_runtime.model import PRESETS
from smolvla_runtime.preprocessing import Tokenizer, camera_to_pixels, quat2axisangle, resize_with_pad

from conftest import doit, traced_env


@pytest.fixture(scope="module")
def tiny_build(own_build):
    return load_pipeline(own_build.pipe)


def _policy(pipe, runtime):
    ev = pipe.section("evaluation")
    return load_policy(pipe.policy_source(pipe.layout(), runtime, precision=ev["precision"], n_action_steps=10, seed=0))


def _observation(seed=0):
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (256, 256, 3), dtype=np.uint8) for _ in range(2)]
    return images, rng.normal(0, 0.5, 8).astype(np.float32)


def test_resize_with_pad_matches_torch():
    img = np.random.default_rng(0).random((3, 200, 256)).astype(np.float32)
    got = resize_with_pad(img, 512, 512)
    t = torch.nn.functional.interpolate(torch.from_numpy(img)[None], size=(400, 512), mode="bilinear",
                                        align_corners=False)
    want = torch.nn.functional.pad(t, (0, 0, 112, 0), value=0.0)[0].numpy()   # pad on the top
    assert np.allclose(got, want, atol=1e-5)


def test_camera_is_rotated_and_scaled_to_minus_one_one():
    frame = np.zeros((256, 256, 3), dtype=np.uint8)
    frame[0, 0] = 255                                   # top-left corner of the raw (upside-down) frame
    px = camera_to_pixels(frame, 512)
    assert px.shape == (1, 3, 512, 512) and px.min() == -1.0
    assert px[0, 0, -1, -1] == pytest.approx(1.0) and px[0, 0, 0, 0] == -1.0   # now bottom-right


def test_quat2axisangle():
    half = np.pi / 4   # 90 degrees about z
    q = np.array([0, 0, np.sin(half), np.cos(half)])
    assert np.allclose(quat2axisangle(q), [0, 0, np.pi / 2])
    assert np.allclose(quat2axisangle(np.array([0, 0, 0, 1.0])), 0)


def test_tokenizer_appends_newline_and_pads_right(tiny_build):
    tok = Tokenizer(tiny_build.layout().export_dir / "tokenizer.json", PRESETS["tiny"].tokenizer_max_length)
    ids, mask = tok("put the bowl on the stove")
    ids2, _ = tok("put the bowl on the stove\n")
    assert np.array_equal(ids, ids2) and ids.shape == (1, 48)
    n = int(mask.sum())
    assert 0 < n < 48 and mask[0, :n].all() and not mask[0, n:].any()
    assert tok.tok.decode(ids[0, :n].tolist()).endswith("\n")


def test_reference_policy_matches_pytorch_sample_actions(tiny_build):
    """Preprocessed graphs + CPU embedding lookup + CPU timestep embedding == the PyTorch model."""
    policy = _policy(tiny_build, "reference")
    images, state = _observation()
    noise = np.random.default_rng(7).standard_normal((1, 50, 32)).astype(np.float32)
    got = policy.predict_chunk(images, state, "put the bowl on the stove", noise=noise.copy())
    torch_policy, _ = random_model(PRESETS["tiny"], 0)
    tokens, mask = policy.tokenizer("put the bowl on the stove")
    with torch.no_grad():
        want = torch_policy.sample_actions(
            [torch.from_numpy(camera_to_pixels(i, 512)) for i in images], torch.from_numpy(tokens),
            torch.from_numpy(mask).bool(), torch.from_numpy(policy.normalizer.state(state, 32)),
            torch.from_numpy(noise)).numpy()[0, :, :7]
    assert got.shape == (50, 7)
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


def test_ort_qnn_rollout_agrees_with_reference(tiny_build):
    images, state = _observation(1)
    noise = np.random.default_rng(3).standard_normal((1, 50, 32)).astype(np.float32)
    ref = _policy(tiny_build, "reference").predict_chunk(images, state, "open the drawer", noise=noise.copy())
    htp_policy = _policy(tiny_build, "ort-qnn")
    htp = htp_policy.predict_chunk(images, state, "open the drawer", noise=noise.copy())
    assert compare(ref, htp)["cosine"] > 0.999
    assert all(s.runner.session.get_providers()[0] == "QNNExecutionProvider" for s in htp_policy.stages.values())
    # persistent sessions: a second step reuses them (no reload)
    sessions = [id(s.runner.session) for s in htp_policy.stages.values()]
    htp_policy.predict_chunk(images, state, "open the drawer", noise=noise.copy())
    assert sessions == [id(s.runner.session) for s in htp_policy.stages.values()]


def test_action_chunking_replans_every_n_steps(tiny_build):
    policy = _policy(tiny_build, "reference")
    policy.n_action_steps = 3
    images, state = _observation()
    for _ in range(7):
        policy.select_action(images, state, "open the drawer")
    assert len(policy.timings) == 3        # steps 0, 3, 6 planned a chunk


def test_libero_episode_writes_every_file_and_reads_no_pipeline_file(tiny_build, tmp_path):
    """`doit infer:task0`, traced: its action gets what it needs in its spec (issue #34), and the log
    says where the episode's files went."""
    pytest.importorskip("libero", reason="LIBERO is installed by scripts/install_libero.sh (scripts/test.sh runs it)")
    from access_trace import accesses
    res = doit(tiny_build.path, "infer:task0", env=traced_env(tmp_path))
    assert "infer:task0" in res.ran
    assert [a for a in accesses(tmp_path / "access.txt") if a[0] == "infer:task0"]       # the trace saw the task
    assert not [a for a in accesses(tmp_path / "access.txt") if a[2] == str(tiny_build.path)]
    out = tiny_build.layout().episode_dir("libero_spatial", 0)
    assert f"infer: {out} (video.mp4" in res.stderr
    for f in ("eval_info.json", "video.mp4", "actions.json", "timings.json", "actions.png"):
        assert (out / f).stat().st_size > 0, f
    info = json.loads((out / "eval_info.json").read_text())
    assert {"per_task", "per_group", "overall"} <= set(info)
    assert {"pc_success", "n_episodes", "eval_ep_s", "video_paths"} <= set(info["overall"])
    assert info["meaningless_actions"] is True
    actions = json.loads((out / "actions.json").read_text())["actions"]
    assert len(actions) == 4 and all(len(a) == 7 for a in actions)
    import imageio.v2 as imageio
    frames = [f for f in imageio.get_reader(str(out / "video.mp4"), format="FFMPEG")]  # len() is inf
    assert len(frames) == 5 and frames[0].shape == (256, 256, 3)


def test_frames_nobody_reads_are_not_rendered_and_the_episode_is_the_same(tiny_build, monkeypatch):
    """Cameras render only for the observations the policy or the video reads, and a task's
    environment serves its next trials; the same seed gives the same actions, rewards and success as
    a fresh environment rendering both cameras on every step (issue #27)."""
    pytest.importorskip("libero", reason="LIBERO is installed by scripts/install_libero.sh (scripts/test.sh runs it)")
    from smolvla_build.evaluate import episode
    config = tiny_build.layout().libero_config
    rendered = []
    want = episode.Cameras.want

    def counting(self, policy_reads, video):
        want(self, policy_reads, video)
        rendered.append(sum(self.on.values()))           # the cameras that render during the next step

    def always(self, policy_reads, video):
        rendered.append(2)

    def episode_run(how, trial, frames, envs=None):
        rendered.clear()
        monkeypatch.setattr(episode.Cameras, "want", how)
        r = episode.simulate(_policy(tiny_build, "reference"), "libero_spatial", 0, trial, 12, config, frames=frames,
                             progress=False, envs=envs)
        return r, sum(rendered)

    runs = {"always": episode_run(always, 0, False)}            # a fresh environment, both cameras every step
    envs = episode.TaskEnvironments(config)                     # then one environment for task 0's next runs
    try:
        runs["trial 1"] = episode_run(counting, 1, False, envs)
        made = envs.made[0]
        runs["skipping"] = episode_run(counting, 0, False, envs)  # trial 0 in the environment trial 1 ran in
        runs["with video"] = episode_run(counting, 0, True, envs)
        assert envs.made[0] is made
    finally:
        envs.close()
    base, _ = runs["always"]
    for name in ("skipping", "with video"):
        r, _ = runs[name]
        assert (r["actions"], r["rewards"], r["success"]) == (base["actions"], base["rewards"], base["success"]), name
    # 10 waits + 12 steps, a plan every 10: both cameras for the last wait (plan 1) and step 9 (plan 2);
    # with the video, the agentview on the other 11 steps too
    assert runs["skipping"][1] == 2 * 2 and runs["with video"][1] == 2 * 2 + 11
    assert runs["always"][1] == 2 * (10 + 12)
