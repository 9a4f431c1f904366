#!/usr/bin/env bash
# Makes sure Prometheus' promtool is available for the exposition-format test
# (test/cli/metrics.test.ts runs `promtool check metrics` on weir's /metrics).
# Prints its path on stdout.
#
# promtool ships in the Debian package `prometheus`, which also holds the server and starts
# it as a service on install. Only promtool is wanted, so the package is downloaded with
# `apt-get download` and promtool alone is unpacked into a cache dir: no daemon, no system
# user, no root needed (a static Go binary; it needs only libc).
#
#   scripts/promtool.sh              download if needed, print the path
#   WEIR_PROMTOOL=/path/to/promtool  overrides the lookup (the test reads it too)
#   WEIR_TOOLS_CACHE_DIR             where it is kept (default ~/.cache/weir/tools)
set -euo pipefail

log() { printf 'promtool.sh: %s\n' "$*" >&2; }

CACHE=${WEIR_TOOLS_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/weir/tools}

find_promtool() {
  local c
  for c in "${WEIR_PROMTOOL:-}" "$CACHE/promtool" /usr/bin/promtool; do
    [[ -n $c && -x $c ]] && { printf '%s' "$c"; return 0; }
  done
  return 1
}

if path=$(find_promtool); then
  printf '%s\n' "$path"
  exit 0
fi

mkdir -p "$CACHE"
work=$(mktemp -d /tmp/weir-promtool.XXXXXX)
trap 'rm -rf "$work"' EXIT
apt_log=$work/apt.log
download() { (cd "$work" && apt-get download -q prometheus); }
log "downloading the Debian package prometheus to unpack promtool into $CACHE"
if ! download >"$apt_log" 2>&1; then
  [[ $(id -u) == 0 ]] || { log "apt-get download failed and this is not root (no apt-get update): install the Debian package 'prometheus'"; tail -n 20 "$apt_log" >&2; exit 1; }
  log "apt-get download failed; running apt-get update and trying again"
  { apt-get update -q && download; } >>"$apt_log" 2>&1 || { log "could not download prometheus; the end of the log:"; tail -n 30 "$apt_log" >&2; exit 1; }
fi
deb=$(ls "$work"/prometheus_*.deb)
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$work" ./usr/bin/promtool
install -m 755 "$work/usr/bin/promtool" "$CACHE/promtool"
"$CACHE/promtool" --version 2>&1 | head -n 1 >&2
printf '%s\n' "$CACHE/promtool"
