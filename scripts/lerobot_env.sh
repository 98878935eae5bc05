#!/usr/bin/env bash
# LeRobot's own SmolVLA, for the parity test (tests/test_lerobot_parity.py) and the benchmark: a
# separate virtual environment, because LeRobot 0.4.4 (the newest release on PyPI) pins torch<2.11
# and, through its GR00T policy, needs transformers<5, while the project pins torch 2.13 and
# transformers 5.23. LeRobot itself comes from PyPI unchanged; only the few packages its SmolVLA
# import chain needs are installed beside it (its full dependency list pulls robot drivers, wandb, ...).
# torch 2.14.1 is the newest this machine kind allows and lies on its disk; LeRobot's own pin is
# ignored for it (--no-deps), which the parity test then checks numerically.
# Usage: bash scripts/lerobot_env.sh [VENV]   (default .venv-lerobot; prints the venv's python)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
VENV=${1:-.venv-lerobot}
PY="$VENV/bin/python"
check='import lerobot.policies.smolvla.modeling_smolvla, lerobot.policies.smolvla.processor_smolvla, num2words'
if [ ! -x "$PY" ] || ! "$PY" -c "$check" >/dev/null 2>&1; then
  echo "creating the LeRobot environment in $VENV (torch, transformers 4.57, lerobot 0.4.4) ..." >&2
  python3 -m venv "$VENV"
  P="$PY -m pip install --quiet"
  quietly $P "torch==2.14.1" "torchvision==0.29.1"
  quietly $P "transformers==4.57.1" "tokenizers>=0.22,<0.23" "huggingface_hub>=0.34.2,<0.36" "safetensors>=0.4"
  quietly $P --no-deps "lerobot==0.4.4"
  quietly $P "draccus==0.10.0" "einops>=0.8,<0.9" "datasets==4.1.1" "accelerate>=1.10,<2" "diffusers>=0.27.2,<0.36" \
             "deepdiff>=7.0.1,<9" "av>=15,<16" "pyserial>=3.5,<4" "jsonlines>=4,<5" "termcolor>=2.4,<4" \
             "imageio[ffmpeg]>=2.34,<3" "gymnasium>=1.1.1,<2" "packaging>=24.2,<26" "numpy<2.4" "num2words>=0.5,<0.6"
  "$PY" -c "$check"
fi
echo "$PY"
