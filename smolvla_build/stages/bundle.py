"""bundle: the deployable unit for the laptop, zipped (`doit bundle`).

Not part of a bare `doit`; smolvla_build/packaging.py makes it."""

from __future__ import annotations

from smolvla_runtime.model import MODELS

from ..fsutil import tree_digest
from ..packaging import RUNTIME_DIR, BundleSpec
from ..precisions import PrecisionRequest
from ..toolchains.fingerprint import ort_qnn_fingerprint
from .keys import action, declare

FAMILY = "bundle"
DEFAULT = False                      # run by name: `doit bundle`
BUNDLE = action("packaging:bundle_task")


def gen_tasks(build):
    pipe, layout = build.pipe, build.layout
    wanted = (pipe.data.get("bundle") or {}).get("precision") or pipe.requested_precisions()
    label = PrecisionRequest(wanted).label
    tools = ort_qnn_fingerprint()
    spec = BundleSpec(label=label, wanted=wanted,
                      plan={m: {p: layout.bundle_files(m, p) for p in pipe.precisions} for m in MODELS},
                      precisions=pipe.precisions.settings(), toolchain=build.toolchain, soc=pipe.soc,
                      htp_performance=pipe.htp_performance,
                      preset=pipe.preset.to_dict(), n_action_steps=pipe.section("evaluation")["n_action_steps"],
                      export_dir=layout.export_dir, report_json=layout.report_json, out_dir=layout.bundle_dir(label),
                      zip_path=layout.bundle_zip(label), meta={"tools": tools, "source": dict(pipe.source)})
    deps = [layout.tokenizer, layout.tokenizer_config, layout.normalization]
    deps += [layout.report_json]
    for m in MODELS:
        deps += [layout.preprocessed(m), layout.reference_model(m), layout.reference_info(m), *layout.stage_cpu_files(m)]
        deps += [f for p in pipe.precisions
                 for f in layout.context_files(m, p) + [layout.validation(m, p), layout.validation_arrays(m, p)]]
    yield declare(FAMILY, BUNDLE, spec, file_dep=deps, targets=[spec.out_dir / "manifest.json", spec.zip_path],
                  owns=[spec.out_dir],
                  # the bundle ships the runtime's files as they are: their bytes, comments included
                  tools=dict(tools, runtime=tree_digest(RUNTIME_DIR)),
                  doc=f"device bundle of the {label} build: {spec.out_dir} and {spec.zip_path.name}")

