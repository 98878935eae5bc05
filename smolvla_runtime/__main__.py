"""`python -m smolvla_runtime [run|check|bench] BUNDLE [--runtime auto|reference|ort-qnn] [--soc-model N]`

  run    (the default) load the bundle (checked), run one synthetic observation (fixed seed: a frame
         per camera, a state, a LIBERO task) and print the action chunk and the per-stage timings as JSON
  check  replay validation's recorded inputs through each stage on this runtime and judge the outputs
         with the build's gates against the fp32 reference; a table, exit 0 only if every stage passes
  bench  per-stage latency and the control step (median, p95, warm-up left out) as JSON, and one line
         against the card's 8-10 s per step
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys

VERBS = ("run", "check", "bench")


@contextlib.contextmanager
def native_stdout_to_stderr():
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _run(args) -> str:
    import numpy as np

    from .bench import synthetic_observation
    from .policy import Policy
    policy = Policy.load(args.bundle, runtime=args.runtime, soc_model=args.soc_model, seed=args.seed)
    images, state, task = synthetic_observation(args.seed, policy.preset)
    noise = np.random.default_rng(args.seed + 1).standard_normal(policy.chunk_shape).astype(np.float32)
    actions = policy.predict_chunk(images, state, task, noise=noise)
    t = policy.timings[-1]
    return json.dumps({"bundle": args.bundle, "runtime": policy.runtime, "seed": args.seed, "task": task,
                       "actions": np.asarray(actions).round(6).tolist(),
                       "timings_s": {k: round(v, 4) for k, v in t.items() if k != "session_run_s"}}, indent=1)


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in VERBS + ("-h", "--help"):
        argv = ["run"] + argv                       # `python -m smolvla_runtime BUNDLE` runs it
    ap = argparse.ArgumentParser(prog="python -m smolvla_runtime", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="verb", required=True)
    for verb, what in (("run", "one synthetic observation: the action chunk and timings (JSON)"),
                       ("check", "does this runtime compute what the build validated (table; exit 1 if not)"),
                       ("bench", "per-stage latency and the control step (JSON)")):
        p = sub.add_parser(verb, help=what, description=what)
        p.add_argument("bundle", help="a bundle folder made by `doit bundle`")
        p.add_argument("--runtime", default="auto", choices=["auto", "reference", "ort-qnn"],
                       help="auto: the NPU where one is reachable, else the fp32 reference on the CPU")
        p.add_argument("--soc-model", type=int, help="refuse a bundle compiled for another SoC")
        if verb != "check":
            p.add_argument("--seed", type=int, default=0, help="the synthetic observation's and the noise's seed")
        if verb == "check":
            p.add_argument("--json", action="store_true", help="the whole result as JSON instead of the table")
        if verb == "bench":
            p.add_argument("--runs", type=int, default=10, help="timed runs of each (one warm-up run more)")
    args = ap.parse_args(argv)
    from .bundle import BundleError
    from .files import ModelFileError
    with native_stdout_to_stderr():          # the QNN backend prints to fd 1: keep stdout the result alone
        try:
            if args.verb == "run":
                out, code = _run(args), 0
            elif args.verb == "check":
                from .check import check_bundle, render
                result = check_bundle(args.bundle, args.runtime, args.soc_model)
                out, code = json.dumps(result, indent=1) if args.json else render(result), 0 if result["passed"] else 1
            else:
                from .bench import bench_bundle
                result = bench_bundle(args.bundle, args.runtime, args.runs, args.soc_model, args.seed)
                out, code = json.dumps(result, indent=1), 0
                logging.getLogger("smolvla_runtime").info("%s", result["summary"])
        except (BundleError, ModelFileError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    print(out)
    return code


if __name__ == "__main__":
    sys.exit(main())
