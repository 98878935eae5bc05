"""bundle: the deployable unit for the laptop (`doit bundle`, not part of a bare `doit`;
smolvla_build/bundle.py makes it)."""

from __future__ import annotations

from .. import MODELS
from ..declaration import SINUSOID_ON_CPU
from ..precisions import PrecisionRequest
from ..toolchains.fingerprint import ort_qnn_fingerprint
from .keys import RUNTIME, action, code_digest, uptodate

FAMILY = "bundle"
DEFAULT = False                      # run by name: `doit bundle`
BUNDLE = action("bundle:bundle_task")


def gen_tasks(pipe, layout, toolchain):
    wanted = (pipe.data.get("bundle") or {}).get("precision") or pipe.requested_precisions()
    label = PrecisionRequest(wanted).label
    deps = [layout.export_dir / n for n in ("tokenizer.json", "tokenizer_config.json", "normalization.json")]
    deps += [layout.report_json]
    for m in MODELS:
        deps += [layout.preprocessed(m), layout.reference_model(m), layout.reference_info(m), layout.io_sidecar(m)]
        deps += [f for p in pipe.precisions for f in layout.context_files(m, p) + [layout.validation(m, p)]]
        deps += [layout.cpu_model(m)] if m in SINUSOID_ON_CPU else []
    deps += [layout.embed_table]
    out_dir = layout.root / "bundle" / label
    zip_path = layout.root / "bundle" / f"smolvla-{label}.zip"
    tools = ort_qnn_fingerprint(pipe.soc)
    meta = {"tools": tools, "source": dict(pipe.source)}
    plan = {m: {p: layout.bundle_files(m, p) for p in pipe.precisions} for m in MODELS}
    kw = {"out_dir": str(out_dir), "zip_path": str(zip_path), "plan": plan, "precisions": pipe.precisions.settings(),
          "export_dir": str(layout.export_dir), "report_json": str(layout.report_json),
          "wanted": wanted, "toolchain": toolchain, "soc": dict(pipe.soc), "meta": meta,
          "n_action_steps": pipe.section("evaluation")["n_action_steps"],
          "runtime": code_digest(RUNTIME), "code": BUNDLE.code()}
    yield {
        "basename": FAMILY,
        "doc": f"device bundle of the {label} build: artifacts/bundle/{label}/ and smolvla-{label}.zip",
        "actions": [(BUNDLE, [kw])],
        "file_dep": sorted({str(d) for d in deps}),
        "targets": [str(out_dir / "manifest.json"), str(zip_path)],
        "uptodate": uptodate(kw),
        "clean": True,
    }
