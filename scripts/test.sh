#!/usr/bin/env bash
# Install smolvla-build with the export and dev extras and LIBERO, then run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check -e ".[export,dev]"
bash scripts/install_libero.sh          # the LIBERO smoke episode runs in the suite
set +e
python3 -m pytest -q "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit "$status"
