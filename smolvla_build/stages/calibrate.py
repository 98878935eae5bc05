"""calibrate: record the calibration set of the integer precisions (smolvla_build.calibration).

One task per sample count the pipeline's quantized precisions ask for; nothing when every precision
is float. The set depends on the reference models, the suite, its tasks, N and the seed."""

from __future__ import annotations

from .. import MODELS
from .keys import action, uptodate

FAMILY = "calibrate"
CALIBRATE = action("calibration:calibrate_task")


def sample_counts(pipe) -> list[int]:
    return sorted({pipe.precisions[p].calibration_samples for p in pipe.quantized_precisions()})


def gen_tasks(pipe, layout, toolchain):
    cal, ev = pipe.section("calibration"), pipe.section("evaluation")
    for n in sample_counts(pipe):
        kw = {"pipeline_path": str(pipe.path), "suite": pipe.calibration_suite(), "tasks": cal["tasks"],
              "seed": cal["seed"], "samples": n, "n_action_steps": ev["n_action_steps"],
              "code": CALIBRATE.code()}
        yield {
            "basename": FAMILY,
            "name": layout.calibration_dir(n).name,
            "doc": f"record {n} calibration samples per graph from the fp32 policy in LIBERO {pipe.calibration_suite()}",
            "actions": [(CALIBRATE, [kw])],
            "file_dep": [str(f) for f in layout.runtime_files("reference")],
            "targets": [str(layout.calibration_set(n, m)) for m in MODELS]
                       + [str(layout.calibration_info(n))],
            "uptodate": uptodate(kw),
            "clean": True,
        }
