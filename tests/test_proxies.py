"""CPU proxies of the HTP precisions (smolvla_build/proxies.py) on the shared tiny build: what they
are measured on, their measured distance to the HTP emulation, and the proxy runtime's rule. The
closed-loop divergence report runs in test_eval.py."""

from __future__ import annotations

import json

import numpy as np
import pytest

from smolvla_runtime.model import MODELS
from smolvla_runtime.compare import compare
from smolvla_build.config import load_pipeline
from smolvla_runtime.files import load_npz
from smolvla_build.proxies import rms_distance
from smolvla_build.runtime.artifacts import ProxyError, proxy_model
from smolvla_runtime.stage import declared_input_shapes


@pytest.fixture(scope="module")
def built(own_build):
    """The shared tiny build with its proxies (`doit proxy`: not part of a bare `doit`)."""
    from conftest import doit
    assert doit(own_build.pipe, "proxy").ran == {f"proxy:{m}-{p}" for m in MODELS for p in ("fp16", "fp32")}
    pipe = load_pipeline(own_build.pipe)
    return pipe, pipe.layout()


def test_validation_records_the_arrays_its_verdict_is_computed_from(built):
    pipe, layout = built
    for m in MODELS:
        for p in pipe.precisions:
            arrays = load_npz(layout.validation_arrays(m, p))
            report = json.loads(layout.validation(m, p).read_text())
            got = compare(arrays["reference"], arrays["htp"])
            assert got["cosine"] == pytest.approx(report["metrics"]["cosine"], abs=1e-12)
            assert got["max_abs"] == pytest.approx(report["metrics"]["max_abs"], rel=1e-12)
            assert {k[3:] for k in arrays if k.startswith("in/")} == set(declared_input_shapes(layout.io_sidecar(m)))


def test_each_proxys_distance_to_a_fresh_htp_emulation_is_the_one_measured(built):
    """The vision encoder in each precision: its context run again in HTP emulation on validation's
    input, its proxy on the CPU: their distance is what the proxy task recorded."""
    from smolvla_build.runtime.contexts import htp_runner
    from smolvla_runtime.runners import ReferenceRunner
    from smolvla_runtime.stage import StageRunner
    pipe, layout = built
    m = "vision_encoder"
    for p, precision in pipe.precisions.items():
        arrays = load_npz(layout.validation_arrays(m, p))
        feeds = {"pixel_values": arrays["in/pixel_values"]}
        htp = StageRunner(htp_runner(layout, m, p, pipe.soc, precision.settings), layout.io_sidecar(m)).infer(feeds)
        proxy = StageRunner(ReferenceRunner(layout.proxy_model_file(m, p)), layout.io_sidecar(m)).infer(feeds)
        f = json.loads(layout.proxy_fidelity(m, p).read_text())
        assert f["kind"] == "fp16-rounded"                     # tiny.yaml: fp16, and fp32 with relaxed precision
        assert rms_distance(proxy["image_embeddings"], htp["image_embeddings"]) == pytest.approx(f["rms_proxy_to_htp"], rel=1e-6)
        assert f["ratio"] == pytest.approx(f["rms_proxy_to_htp"] / f["rms_htp_to_reference"])
        assert f["rms_htp_to_reference"] > 0


def test_the_proxy_runtime_runs_a_stage_only_within_proxy_max_ratio(built):
    pipe, layout = built
    f = json.loads(layout.proxy_fidelity("action_head", "fp16").read_text())
    assert proxy_model(layout, "action_head", "fp16", 2 * f["ratio"]) == layout.proxy_model_file("action_head", "fp16")
    with pytest.raises(ProxyError, match=r"action_head.fidelity.json: the fp16-rounded proxy of action_head in fp16 is "
                                         r"\d+% .* over evaluation.proxy_max_ratio"):
        proxy_model(layout, "action_head", "fp16", f["ratio"] / 2)


def test_a_shadowed_policy_acts_as_it_would_alone(built):
    """The fp32 shadow draws nothing from the acting policy's noise: the actions are the lone
    policy's, and a shadow identical to the acting policy differs by nothing."""
    from smolvla_build.evaluate.shadow import ShadowedPolicy
    from smolvla_build.runtime.artifacts import load_policy
    pipe, layout = built

    def policy():
        return load_policy(pipe.policy_source(layout, "reference", precision="fp16", n_action_steps=3, seed=5))
    rng = np.random.default_rng(0)
    images, state = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(2)], np.zeros(8, np.float32)
    alone, shadowed = policy(), ShadowedPolicy(policy(), policy())
    for p in (alone, shadowed):
        p.reset()
    got = [shadowed.select_action(images, state, "pick up the bowl") for _ in range(7)]
    want = [alone.select_action(images, state, "pick up the bowl") for _ in range(7)]
    assert np.array_equal(np.asarray(got), np.asarray(want))
    assert shadowed.diffs == [0.0] * 7                      # one per action taken
