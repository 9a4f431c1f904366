#!/usr/bin/env bash
# Makes sure helm (v3) is available for the chart test (test/deploy/helm.test.ts runs
# `helm lint` and `helm template` on deploy/helm/weir). Prints its path on stdout.
#
# helm is built from its Go module (helm.sh/helm/v3, served by the Go module proxy) with the
# machine's Go, like scripts/services.sh builds versitygw: no release tarball to trust by
# hand, no root, and the module and build caches are Go's own, so a rebuild is quick. The
# binary is kept per version, so bumping HELM_VERSION builds the new one beside the old.
#
#   scripts/helm.sh              build if needed, print the path
#   WEIR_HELM=/path/to/helm      overrides the lookup (the test reads it too)
#   WEIR_CACHE_DIR               where it is kept (default ~/.cache/weir; the binary goes in
#                                helm-<version>/helm under it)
set -euo pipefail

HELM_VERSION=v3.22.0

log() { printf 'helm.sh: %s\n' "$*" >&2; }

CACHE=${WEIR_CACHE_DIR:-${HOME:-/root}/.cache/weir}/helm-$HELM_VERSION

if [[ -n ${WEIR_HELM:-} ]]; then
  [[ -x $WEIR_HELM ]] || { log "WEIR_HELM=$WEIR_HELM is not an executable"; exit 1; }
  printf '%s\n' "$WEIR_HELM"
  exit 0
fi
if [[ -x $CACHE/helm ]]; then
  printf '%s\n' "$CACHE/helm"
  exit 0
fi

# A root shell's PATH may lack /usr/local/go/bin, where the official archive puts Go.
if command -v go >/dev/null; then go=$(command -v go)
elif [[ -x /usr/local/go/bin/go ]]; then go=/usr/local/go/bin/go
else log "Go is needed to build helm $HELM_VERSION (install Go 1.21 or newer; it fetches the toolchain helm asks for)"; exit 1
fi

mkdir -p "$CACHE"
# Built into a fresh dir and moved in whole, so an interrupted build never leaves a
# half-written binary at the cached path.
tmp=$(mktemp -d "$CACHE/bin.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
build_log=$tmp/build.log
log "building helm $HELM_VERSION with $("$go" env GOVERSION) into $CACHE (a few minutes from a clean module cache)"
t0=$SECONDS
if ! GOBIN=$tmp GOFLAGS=-modcacherw "$go" install -trimpath -ldflags='-s -w' \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >"$build_log" 2>&1 || [[ ! -x $tmp/helm ]]; then
  log "building helm failed; the end of the log:"
  tail -n 30 "$build_log" >&2
  exit 1
fi
mv "$tmp/helm" "$CACHE/helm"
log "built helm in $((SECONDS - t0)) s: $("$CACHE/helm" version --short 2>/dev/null || echo '?')"
printf '%s\n' "$CACHE/helm"
