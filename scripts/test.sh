#!/usr/bin/env bash
# Install smolvla-build with the export and dev extras and LIBERO, then run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
$PIP -e ".[export,eval,dev]"
bash scripts/install_libero.sh          # the LIBERO smoke episode runs in the suite
# the qairt chain's real tools (the SDK itself is a test double): clang-cl/lld-link for the ARM64 DLL,
# clang++/make/objcopy for the lib generator's host library, llvm-readobj to inspect the DLL, and
# llvm-dlltool/llvm-lib/gcc to build the test doubles' libraries (tests/fixtures/make_fake_sdk.py)
missing=0
for t in clang-16 clang++-16 lld-link-16 llvm-readobj-16 llvm-dlltool-16 llvm-lib-16 make objcopy gcc; do
  command -v "$t" >/dev/null || missing=1
done
if [ "$missing" = 1 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    quietly apt-get update -qq
    quietly apt-get install -y -qq clang-16 lld-16 llvm-16 make binutils gcc
  else
    echo "warning: clang-16/lld-16/llvm-16 missing and cannot be installed: the qairt tests will be skipped" >&2
  fi
fi
set +e
python3 -m pytest -q "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit "$status"
