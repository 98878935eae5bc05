#!/usr/bin/env bash
# Install smolvla-build and LIBERO, then run the main job on the embedded default (toolchain auto ->
# ort-qnn when no QAIRT SDK is installed): export -> preprocess -> HTP contexts -> validate -> report,
# then a LIBERO episode of the built policy (`doit infer:task0`).
# Extra arguments go to doit, e.g. `scripts/build.sh pipeline=examples/tiny.yaml`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
$PIP -e ".[export,eval]"          # the build, and `doit eval` on Ray
bash scripts/install_libero.sh
# two tasks at a time where the cores and the memory allow it (each stage stays under 6 GB; the
# gain on 2 cores is small: docs/incremental.md); a `-n` among the arguments overrides it
JOBS=$(python3 -m smolvla_build jobs --per-job-gb 6 --max 2 2>/dev/null || echo 1)
python3 -m doit -n "$JOBS" "$@"
python3 -m doit "$@" infer
