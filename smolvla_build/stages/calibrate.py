"""calibrate: record the calibration sets of the integer precisions in LIBERO.

One task per sample count the pipeline's quantized precisions ask for; nothing when every precision
is float. The set depends on the reference models, the suite, its tasks, N and the seed
(smolvla_build/evaluate/calibration.py records it)."""

from __future__ import annotations

from smolvla_runtime.model import MODELS

from ..evaluate.calibration import CalibrateSpec
from ..evaluate.libero_env import SUITE_TASKS
from .keys import action, declare

FAMILY = "calibrate"
CALIBRATE = action("evaluate.calibration:calibrate_task")


def sample_counts(pipe) -> list[int]:
    return sorted({pipe.precisions[p].calibration_samples for p in pipe.precisions.quantized()})


def gen_tasks(build):
    pipe, layout = build.pipe, build.layout
    cal, suite = pipe.section("calibration"), pipe.calibration_suite()
    source = pipe.policy_source(layout, "reference", seed=cal["seed"])
    tasks = tuple(range(SUITE_TASKS[suite])) if cal["tasks"] == "all" else tuple(cal["tasks"])
    for n in sample_counts(pipe):
        spec = CalibrateSpec(policy=source, suite=suite, tasks=tasks, samples=n, seed=cal["seed"],
                             out_dir=layout.calibration_dir(suite, n), config_dir=layout.libero_config)
        yield declare(FAMILY, CALIBRATE, spec, name=spec.out_dir.name, file_dep=source.files(),
                      targets=[layout.calibration_set(suite, n, m) for m in MODELS] + [layout.calibration_info(suite, n)],
                      doc=f"record {n} calibration samples per graph from the fp32 policy in LIBERO {suite}")
