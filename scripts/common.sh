# Sourced by the install scripts: keep the user's screen for what the build says.
export PIP_ROOT_USER_ACTION=ignore            # pip's running-as-root warning (these machines run as root)
export PIP_DISABLE_PIP_VERSION_CHECK=1
export DEBIAN_FRONTEND=noninteractive         # apt/debconf: no prompts, no "delaying package configuration"
PIP="python3 -m pip install --quiet"

# quietly CMD...: run CMD with its output kept aside; shown (on stderr) only when it fails.
quietly() {
  local log status
  log=$(mktemp)
  "$@" >"$log" 2>&1 && status=0 || status=$?
  [ "$status" = 0 ] || { cat "$log" >&2; echo "failed ($status): $*" >&2; }
  rm -f "$log"
  return "$status"
}
