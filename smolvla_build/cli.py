"""`python -m smolvla_build <verb>`: the project's tools beside `doit`, each a thin layer over the
library.

  preprocess IN.onnx OUT.onnx [--embedding-on-cpu] [--sinusoid-on-cpu] [--mask-bound -1e4] [--rtol 1e-5]
      run the HTP passes, the converter-clean check and the equivalence proof on any ONNX model;
      prints the report and writes OUT.onnx, OUT.report.json and OUT.io.json.
  check IN.onnx
      the converter-clean check alone (exit 1 when not clean).
  cpu-copy IN.onnx OUT.onnx [--max-relative-error 1e-5] [--seed 0]
      the reference runtime's CPU copy of a model (`doit reference`): onnxruntime's fused CPU ops
      where a pattern matches, checked against IN; writes OUT.onnx only if the check passes
      (exit 1 when it fails, 0 with nothing written when no pattern matched) and prints the report.
  export OUT_DIR [--preset tiny|smolvla-libero] [--weights random|checkpoint|hub] [--path P] [--repo-id R]
      export the three stage ONNX models and the runtime side files.
  census MODEL.onnx SAMPLES.npz [--limit N] [--json OUT.json]
      the saturation census: max |x| of every float intermediate of MODEL over recorded inputs (a
      calibration set's `<model>.npz`: what the graph sees in LIBERO); exit 1 if any is beyond fp16.
  libero-install
      install hf-libero (LeRobot's pin) without its training dependencies, and on Windows put mujoco's
      DLL where robosuite 1.4.0 loads it; then check. After `pip install -e .[libero]` (docs/libero.md).
  libero-check [--config-dir DIR]
      check the LIBERO install: import, build a task, render one frame offscreen.
  doctor [--host aarch64-windows-msvc|x86_64-linux-clang] [--pipeline pipeline.yaml] [--json]
      what the qairt chain and the runtimes would use on a host (SDK root and version, each tool, the
      environment, the converter's Python, compilers, MSVC folders, HTP libraries, onnxruntime-qnn,
      what `runtime: auto` picks); exit 0 only if the chain can run.
  prune [--pipeline pipeline.yaml] [--yes]
      list what no task of the pipeline makes any more (a removed precision's files); remove it with --yes.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from smolvla_runtime.model import PRESETS

from .export.conventions import VISION_POSITION_IDS
from .toolchains.qairt.sdk import HOSTS


def _preprocess(args) -> int:
    import numpy as np

    from .model_files import load_onnx, save_onnx
    from .fsutil import save_npy, write_json
    from .passes.pipeline import PreprocessError, preprocess

    src, out = Path(args.input), Path(args.output)
    if not src.is_file():
        print(f"error: {src}: no such file", file=sys.stderr)
        return 2
    try:
        result = preprocess(load_onnx(src), embedding_cpu=args.embedding_on_cpu, sinusoid_cpu=args.sinusoid_on_cpu,
                            mask_bound=args.mask_bound, rtol=args.rtol, seed=args.seed,
                            cpu_model_file=out.with_suffix(".cpu.onnx").name,
                            progress=lambda text: print(f"{src.name}: {text}", file=sys.stderr))
    except PreprocessError as exc:
        print(json.dumps(exc.report, indent=2, default=str))
        print(f"error: {src}: {exc}", file=sys.stderr)
        return 1
    save_onnx(result.model, out)
    if result.embedding_table is not None:
        save_npy(out.with_suffix(".embed_tokens.npy"), result.embedding_table.astype(np.float32))
        result.io_changes["added_inputs"] = {
            k: dict(v, lookup=out.with_suffix(".embed_tokens.npy").name) if "lookup" in v else v
            for k, v in result.io_changes["added_inputs"].items()}
    if result.cpu_model is not None:
        save_onnx(result.cpu_model, out.with_suffix(".cpu.onnx"))
    write_json(out.with_suffix(".report.json"), result.report)
    write_json(out.with_suffix(".io.json"), result.io_changes)
    print(json.dumps(result.report, indent=2, default=str))
    print(f"wrote {out} (converter-clean, equivalent within {args.rtol})", file=sys.stderr)
    return 0


def _check(args) -> int:
    from .model_files import load_onnx
    from .passes.checker import check_htp_clean
    problems = check_htp_clean(load_onnx(args.input))
    for p in problems:
        print(p)
    print(f"{args.input}: {'clean' if not problems else f'{len(problems)} problem(s)'}", file=sys.stderr)
    return 0 if not problems else 1


def _cpu_copy(args) -> int:
    from .model_files import load_onnx, save_onnx
    from .cpu_passes.cpu_copy import cpu_copy
    result = cpu_copy(load_onnx(args.input), args.max_relative_error, args.seed)
    print(json.dumps(result.report, indent=2, default=str))
    if result.model is None:
        failed = result.report["reason"].startswith("fused copy")
        print(f"{'error' if failed else 'note'}: {args.input}: {result.report['reason']}; {args.output} not written",
              file=sys.stderr)
        return 1 if failed else 0
    save_onnx(result.model, args.output)
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


def _export(args) -> int:
    needs = {"checkpoint": ("path", "--path FOLDER (a LeRobot checkpoint folder)"),
             "hub": ("repo_id", "--repo-id REPO (a Hugging Face repository in the local cache)")}
    if args.weights in needs and not getattr(args, needs[args.weights][0]):
        print(f"error: --weights {args.weights} needs {needs[args.weights][1]}", file=sys.stderr)
        return 2
    from .export.checkpoint import CheckpointError         # torch: imported once the arguments are known good
    from .export.onnx_export import export_all
    try:
        info = export_all(Path(args.out_dir), args.preset, args.weights, args.seed, args.path, args.repo_id, args.revision,
                          tokenizer=args.tokenizer, vision_position_ids=args.vision_position_ids)
    except (CheckpointError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(info, indent=2))
    return 0


def _census(args) -> int:
    from .fsutil import write_json
    from smolvla_runtime.files import ModelFileError, load_npz

    from .validation.measure import census
    try:
        samples = load_npz(args.samples)
        result = census(args.model, samples, args.limit,
                        progress=lambda i, n: print(f"census {Path(args.model).name}: sample {i}/{n}", file=sys.stderr))
    except ModelFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = {"model": str(args.model), "samples_file": str(args.samples), **result}
    if args.json:
        write_json(args.json, result)
    print(json.dumps(dict(result, beyond_fp16=result["beyond_fp16"][:10]), indent=2))
    return 1 if result["beyond_fp16"] else 0


def _libero_check(args) -> int:
    from .evaluate.libero_env import LiberoError, check
    try:
        print(check(Path(args.config_dir)))
    except LiberoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _libero_install(args) -> int:
    import subprocess

    from .evaluate.libero_env import install
    try:
        for line in install():
            print(line)
    except subprocess.CalledProcessError as exc:
        print(f"{exc.stdout or ''}{exc.stderr or ''}error: {' '.join(map(str, exc.cmd))} failed ({exc.returncode})",
              file=sys.stderr)
        return 1
    return _libero_check(args)            # then what libero-check says: the config and one rendered frame


def _doctor(args) -> int:
    from .config import ConfigError, load_pipeline
    from .toolchains import ToolchainError
    from .toolchains.qairt.doctor import render_text, report
    try:
        r = report(load_pipeline(args.pipeline), args.host)
    except (ConfigError, ToolchainError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(r, indent=2) if args.json else render_text(r))
    return 0 if not r["problems"] else 1


def _prune(args) -> int:
    from .leftovers import prune
    from .lock import Busy
    try:
        lines, status = prune(args.pipeline, args.yes)
    except Busy as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return status


def _jobs(args) -> int:
    from .resources import at_a_time
    print(at_a_time(args.per_job_gb, args.max))
    return 0


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    ap = argparse.ArgumentParser(prog="python -m smolvla_build", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("preprocess", help="HTP passes + check + equivalence on any ONNX model")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--embedding-on-cpu", action="store_true", help="cut /embed_tokens/Gather_output_0 out")
    p.add_argument("--sinusoid-on-cpu", action="store_true", help="move sinusoids of small inputs (timestep embeddings, RoPE tables) to the CPU")
    p.add_argument("--mask-bound", type=float, default=-1.0e4)
    p.add_argument("--rtol", type=float, default=1.0e-5)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=_preprocess)
    c = sub.add_parser("check", help="converter-clean check only")
    c.add_argument("input")
    c.set_defaults(fn=_check)
    cc = sub.add_parser("cpu-copy", help="onnxruntime's fused CPU ops where they match, checked against the input")
    cc.add_argument("input")
    cc.add_argument("output")
    cc.add_argument("--max-relative-error", type=float, default=1.0e-5)
    cc.add_argument("--seed", type=int, default=0)
    cc.set_defaults(fn=_cpu_copy)
    e = sub.add_parser("export", help="export the three SmolVLA stage models")
    e.add_argument("out_dir")
    e.add_argument("--preset", default="tiny", choices=list(PRESETS))
    e.add_argument("--weights", default="random", choices=["random", "checkpoint", "hub"])
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--path")
    e.add_argument("--repo-id")
    e.add_argument("--revision")
    e.add_argument("--tokenizer", help="a folder holding tokenizer.json, or the file (default: the checkpoint's)")
    e.add_argument("--vision-position-ids", choices=VISION_POSITION_IDS, default=None,
                   help="the transformers convention the checkpoint was trained with (default: read from the files "
                        "beside it, else transformers-4: docs/lerobot-versions.md)")
    e.set_defaults(fn=_export)
    cs = sub.add_parser("census", help="max |x| of every intermediate over recorded inputs, against fp16")
    cs.add_argument("model")
    cs.add_argument("samples")
    cs.add_argument("--limit", type=int, default=None, help="the first N samples only")
    cs.add_argument("--json", type=Path, default=None, help="also write the whole census here")
    cs.set_defaults(fn=_census)
    li = sub.add_parser("libero-install", help="hf-libero without its training dependencies, then libero-check")
    li.add_argument("--config-dir", default="artifacts/libero-config")
    li.set_defaults(fn=_libero_install)
    lc = sub.add_parser("libero-check", help="import LIBERO, build a task, render one frame offscreen")
    lc.add_argument("--config-dir", default="artifacts/libero-config")
    lc.set_defaults(fn=_libero_check)
    j = sub.add_parser("jobs", help="how many tasks at a time the cores and the available memory allow")
    j.add_argument("--per-job-gb", type=float, required=True, help="the memory one task needs")
    j.add_argument("--max", type=int, default=None, help="at most this many")
    j.set_defaults(fn=_jobs)
    d = sub.add_parser("doctor", help="what the qairt chain and the runtimes would use on a host, checked")
    d.add_argument("--host", choices=list(HOSTS),
                   help="the SDK host layout to check (default: toolchain.host, else this machine's)")
    d.add_argument("--pipeline", default="pipeline.yaml", help="the pipeline whose toolchain and soc are checked")
    d.add_argument("--json", action="store_true", help="one JSON object")
    d.set_defaults(fn=_doctor)
    pr = sub.add_parser("prune", help="what no task of the pipeline makes any more (a removed precision's files)")
    pr.add_argument("--pipeline", default="pipeline.yaml", help="the pipeline whose tasks are kept")
    pr.add_argument("--yes", action="store_true", help="remove them (without it: list them)")
    pr.set_defaults(fn=_prune)
    args = ap.parse_args(argv)
    from smolvla_runtime.files import ModelFileError
    try:
        return args.fn(args)
    except ModelFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
