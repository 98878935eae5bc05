"""Packing the device bundle: the deployable unit for the laptop (`doit bundle`, stages/bundle.py;
smolvla_runtime.bundle reads one).

artifacts/bundle/<precision>/ and artifacts/bundle/smolvla-<precision>.zip hold, for each model at the
precision the report chose (fp16, or its fp32 fallback): the HTP context (EPContext model + binary of
either toolchain), the fp32 reference model (the runtime on a machine without the NPU), its I/O
sidecar and CPU sub-models, the embedding table, tokenizer and normalization stats; the runtime's
code (smolvla_runtime: numpy, onnxruntime(-qnn), tokenizers only), requirements.txt with the exact
pins, manifest.json (what, for which SoC, built by what, validated how, sha256 of every file) and a
README. `python -m smolvla_runtime <bundle>` runs it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

from smolvla_runtime.htp import HtpPerformance, Soc
from smolvla_runtime.model import MODELS

from .toolchains.fingerprint import package_version

log = logging.getLogger("smolvla_build.bundle")
RUNTIME_DIR = Path(__file__).resolve().parents[1] / "smolvla_runtime"
REQUIREMENTS = ["numpy", "onnxruntime", "onnxruntime-qnn", "tokenizers"]
README = """# SmolVLA device bundle ({precision}, {toolchain}, {soc_name})

Made by `doit bundle` (smolvla-build). Everything the policy needs is in this folder; manifest.json
lists each file with its sha256, the SoC the HTP contexts were compiled for (soc_model {soc_model},
v{htp_arch}), the tools that built them and the validation status of each stage.

## Run it

```
python -m venv venv                      # Windows: py -3.12 -m venv venv & venv\\Scripts\\activate
. venv/bin/activate
pip install -r requirements.txt          # numpy, onnxruntime, onnxruntime-qnn, tokenizers (exact pins)
python -m smolvla_runtime .              # one synthetic observation: the action chunk and timings as JSON
python -m smolvla_runtime . --soc-model {soc_model}   # also refuse to run if the SoC differs
```

In Python:

```python
from smolvla_runtime.policy import Policy
policy = Policy.load("path/to/this/folder")           # checks hashes, versions (and soc_model=...)
action = policy.select_action([agentview_rgb, wrist_rgb], state8, "open the drawer")   # 7-D, unnormalized
```

On the Windows ARM64 laptop use CPython 3.12, ARM64 or x64: pip resolves every requirement from wheels
there, and an x64 Python before 3.12 makes onnxruntime-qnn load its x64 libraries, which cannot reach
the NPU. `runtime="auto"` runs the HTP contexts on the Hexagon NPU of a Windows ARM64 machine (CPU
fallback disabled) when onnxruntime-qnn's HTP libraries load, and the fp32 reference models with
onnxruntime on the CPU elsewhere; the log says which and why; `runtime="ort-qnn"`
forces the contexts (HTP emulation off the device: slow). Images are the raw 256x256 LIBERO camera
frames (HWC uint8, turned 180 degrees inside, as LeRobot does); state is LIBERO's 8-D state.
"""


def requirements_txt(pins: dict | None = None) -> str:
    """The bundle's requirements.txt: the runtime's only dependencies, pinned to this environment's
    versions. On the laptop they resolve from wheels alone on CPython 3.12, ARM64 or x64 (docs/laptop.md:
    on win_arm64 CPython 3.11, tokenizers -> huggingface-hub -> pyyaml has no wheel)."""
    pins = pins or {p: package_version(p) for p in REQUIREMENTS}
    return ("# the runtime's only dependencies, at the versions this bundle was built and tested with;\n"
            "# on the Windows ARM64 laptop: CPython 3.12 (ARM64, or x64 under emulation), see README.md\n"
            f"numpy=={pins['numpy']}\nonnxruntime=={pins['onnxruntime']}\n"
            f"onnxruntime-qnn=={pins['onnxruntime-qnn']}; platform_machine == 'x86_64' or platform_machine == 'AMD64' "
            "or platform_machine == 'ARM64'\n"
            f"tokenizers=={pins['tokenizers']}\n")


@dataclasses.dataclass(frozen=True)
class BundleSpec:
    label: str                      # the bundle's name: the precision, or `fp16+w8a16` for a mapping
    wanted: str | dict              # bundle.precision, else evaluation.precision (a name, or {model: name})
    plan: dict                      # {model: {precision: Layout.bundle_files}}
    precisions: dict                # {precision: its settings}
    toolchain: str
    soc: Soc
    htp_performance: HtpPerformance # how the runtime's onnxruntime-qnn sessions run the contexts
    preset: dict                    # smolvla_runtime.model.Preset, as the manifest records it
    n_action_steps: int
    export_dir: Path
    report_json: Path
    out_dir: Path
    zip_path: Path
    meta: dict                      # tools (the versions the contexts were built with), source


def bundle_task(spec: BundleSpec):
    """The `bundle` action."""
    import os
    import shutil
    import tempfile

    from smolvla_runtime.bundle import FORMAT, sha256

    from .fsutil import atomic_path
    from .precisions import effective_precisions
    toolchain, wanted, meta, plan_all, soc = spec.toolchain, spec.wanted, spec.meta, spec.plan, spec.soc
    out_dir, zip_path = Path(spec.out_dir), Path(spec.zip_path)
    validations = {m: {p: json.loads(Path(e["validation"]).read_text()) for p, e in plan_all[m].items()} for m in MODELS}
    chosen = {m: e["precision"] for m, e in effective_precisions(validations, wanted).items()}
    plan = {m: plan_all[m][chosen[m]] for m in MODELS}
    positions = json.loads(Path(spec.report_json).read_text())["meta"]["vision_position_ids"]
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    os.chmod(tmp, 0o755)                   # mkdtemp makes it private; the bundle is to be copied and shared
    try:
        (tmp / "models").mkdir()
        (tmp / "validation").mkdir()
        models = {}
        for m, entry in plan.items():
            for src, name in entry["copies"].items():
                shutil.copyfile(src, tmp / "models" / name)
            data = Path(entry["reference_path"] + ".data")
            if data.exists():                      # a reference model over 2 GB: its weights beside it
                shutil.copyfile(data, tmp / "models" / (entry["reference"] + ".data"))
            names = None
            if entry["qairt"]:
                from .runtime.contexts import qairt_names
                names = qairt_names(entry["qairt"]["binary_info"], entry["qairt"]["net_json"], entry["preprocessed"])[1]
            v = validations[m][chosen[m]]
            # what `python -m smolvla_runtime check` replays: validation's inputs and judged outputs
            shutil.copyfile(entry["arrays"], tmp / "validation" / f"{m}.npz")
            stage = json.loads((tmp / "models" / entry["sidecar"]).read_text())["stage"]
            models[m] = {"precision": chosen[m], "stage": stage, "context": f"models/{entry['context']}",
                         "reference": f"models/{entry['reference']}", "sidecar": f"models/{entry['sidecar']}",
                         "names": names, "validation": {"status": v["status"], "metrics": {
                             k: v["metrics"][k] for k in ("cosine", "max_abs", "max_rel", "psnr_db")},
                             "reasons": v["reasons"], "gates": v["gates"], "judged_on": v["judged_on"],
                             "arrays": f"validation/{m}.npz"}}
        for name in ("tokenizer.json", "tokenizer_config.json", "normalization.json"):
            shutil.copyfile(Path(spec.export_dir) / name, tmp / name)
        shutil.copytree(RUNTIME_DIR, tmp / "smolvla_runtime", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        pins = {p: package_version(p) for p in REQUIREMENTS}
        (tmp / "requirements.txt").write_text(requirements_txt(pins))
        (tmp / "README.md").write_text(README.format(precision=spec.label, toolchain=toolchain, soc_name=soc.name,
                                                     soc_model=soc.soc_model, htp_arch=soc.htp_arch))
        files = {p.relative_to(tmp).as_posix(): sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        manifest = {"format": FORMAT, "precision": wanted, "toolchain": toolchain, "soc": soc.to_dict(),
                    "htp_performance": spec.htp_performance.to_dict(), "preset": spec.preset, "models": models,
                    "precisions": {p: spec.precisions[p] for p in sorted(set(chosen.values()))},
                    "tokenizer": "tokenizer.json", "normalization": "normalization.json",
                    "n_action_steps": spec.n_action_steps, "vision_position_ids": positions,
                    "requires": {p: pins[p] for p in ("onnxruntime", "onnxruntime-qnn")},
                    "built_with": meta["tools"], "source": meta["source"], "files": files}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        old = None
        if out_dir.exists():               # swap in the complete folder; the old one goes last
            old = out_dir.with_name(f".{out_dir.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    with atomic_path(zip_path, suffix=".zip") as tmp_zip:        # make_archive appends the .zip itself
        shutil.make_archive(str(tmp_zip.with_suffix("")), "zip", root_dir=out_dir.parent, base_dir=out_dir.name)
    size = sum(p.stat().st_size for p in out_dir.rglob("*") if p.is_file())
    log.info("bundle %s: %s (%.1f MB, %d files) and %s (%.1f MB); run it with: python -m smolvla_runtime %s",
             spec.label, out_dir, size / 1e6, len(files) + 1, zip_path, zip_path.stat().st_size / 1e6, out_dir)
    return True
