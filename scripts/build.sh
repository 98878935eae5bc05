#!/usr/bin/env bash
# Install smolvla-build and run the main job on the embedded default (toolchain auto -> ort-qnn
# when no QAIRT SDK is installed): export -> preprocess -> HTP contexts -> validate -> report.
# Extra arguments go to doit, e.g. `scripts/build.sh pipeline=examples/tiny.yaml`.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check -e ".[export]"
python3 -m doit "$@"
