#!/usr/bin/env bash
# Makes sure a headless Chromium is available for the dashboard's browser test
# (test/monitor/dashboard-browser.test.ts, playwright-core): the Debian `chromium` package,
# installed when missing. Prints the browser's path on stdout.
#
#   scripts/browser.sh            install if needed, print the path
#   WEIR_CHROMIUM=/path/to/chrome overrides the lookup (the test reads it too)
set -euo pipefail

log() { printf 'browser.sh: %s\n' "$*" >&2; }

find_chromium() {
  local c
  for c in "${WEIR_CHROMIUM:-}" /usr/bin/chromium /usr/bin/chromium-browser; do
    [[ -n $c && -x $c ]] && { printf '%s' "$c"; return 0; }
  done
  return 1
}

if path=$(find_chromium); then
  printf '%s\n' "$path"
  exit 0
fi

[[ $(id -u) == 0 ]] || { log "chromium is not installed and this is not root: install the Debian package 'chromium'"; exit 1; }
apt_log=$(mktemp /tmp/weir-browser-apt.XXXXXX)
install() {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    -o DPkg::Lock::Timeout=300 chromium fonts-dejavu-core
}
log "installing the Debian package chromium (log: $apt_log)"
if ! install >"$apt_log" 2>&1; then
  log "apt-get install failed; running apt-get update and trying again"
  { apt-get update -q && install; } >>"$apt_log" 2>&1 || { log "could not install chromium; the end of $apt_log:"; tail -n 30 "$apt_log" >&2; exit 1; }
fi
path=$(find_chromium) || { log "chromium installed but not found on the usual paths"; exit 1; }
"$path" --version >&2 || true
printf '%s\n' "$path"
