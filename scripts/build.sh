#!/usr/bin/env bash
# Install smolvla-build and LIBERO, then run the main job on the embedded default (toolchain auto ->
# ort-qnn when no QAIRT SDK is installed): export -> preprocess -> HTP contexts -> validate -> report,
# then a LIBERO episode of the built policy (`doit infer:task0`).
# Extra arguments go to doit, e.g. `scripts/build.sh pipeline=examples/tiny.yaml`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
$PIP -e ".[export]"
bash scripts/install_libero.sh
python3 -m doit "$@"
python3 -m doit "$@" infer
