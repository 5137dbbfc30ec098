#!/usr/bin/env bash
# Builds and caches the arena's peers (sourced by run.sh; also runnable: build.sh [karpenter|ca|ours|all]).
#   Karpenter's KWOK provider v1.14.1 from the Go module proxy
#       -> $CACHE_ROOT/karpenter-kwok-v1.14.1/{karpenter-kwok,crds/}
#   cluster-autoscaler 1.33.6 with -tags kwok from the checkout in CA_SOURCE (a work tree or a
#   bare git dir that has the tag)      -> $CACHE_ROOT/cluster-autoscaler-kwok-1.33.6/cluster-autoscaler
#   our controller, release             -> $CARGO_TARGET_DIR/release/autoscaler
set -euo pipefail

KARPENTER_VERSION="v1.14.1"
CA_TAG="${CA_TAG:-cluster-autoscaler-1.33.6}"
CACHE_ROOT="${AUTOSCALER_E2E_CACHE:-$HOME/.cache/autoscaler-e2e}"
KARPENTER_DIR="$CACHE_ROOT/karpenter-kwok-$KARPENTER_VERSION"
CA_DIR="$CACHE_ROOT/cluster-autoscaler-kwok-${CA_TAG#cluster-autoscaler-}"
PEERS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$PEERS_DIR/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/spot-autoscaler-target}"
OURS_BIN="$CARGO_TARGET_DIR/release/autoscaler"

blog() { printf '[peers-build] %s\n' "$*" >&2; }
bdie() { printf '\n[peers-build] ERROR: %s\n' "$*" >&2; exit 1; }

karpenter_cached() { [[ -x "$KARPENTER_DIR/karpenter-kwok" && -d "$KARPENTER_DIR/crds" ]]; }
ca_cached() { [[ -x "$CA_DIR/cluster-autoscaler" ]]; }

build_karpenter() {
  if karpenter_cached; then blog "karpenter $KARPENTER_VERSION: cached in $KARPENTER_DIR"; return 0; fi
  command -v go >/dev/null || bdie "go not found in PATH (Karpenter's KWOK provider is built with go)"
  local tmp="$KARPENTER_DIR.tmp.$$" start=$SECONDS
  rm -rf "$tmp"; mkdir -p "$tmp/mod" "$tmp/crds"
  blog "karpenter $KARPENTER_VERSION: go build sigs.k8s.io/karpenter/kwok (~3.5 min on 2 cores) ..."
  # An empty module whose only purpose is to pin the version (the proxy serves sigs.k8s.io/karpenter).
  printf 'module peers/karpenter\n\ngo 1.26.6\n' >"$tmp/mod/go.mod"
  if ! (cd "$tmp/mod" && GOTOOLCHAIN=local CGO_ENABLED=0 go get -tool "sigs.k8s.io/karpenter/kwok@$KARPENTER_VERSION" \
      && GOTOOLCHAIN=local CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$tmp/karpenter-kwok" sigs.k8s.io/karpenter/kwok); then
    rm -rf "$tmp"; bdie "go build of sigs.k8s.io/karpenter/kwok@$KARPENTER_VERSION failed (needs the Go module proxy)"
  fi
  # CRDs ship in the module: NodePool/NodeClaim/NodeOverlay and KWOKNodeClass.
  local moddir
  moddir="$(cd "$tmp/mod" && GOTOOLCHAIN=local go list -m -f '{{.Dir}}' sigs.k8s.io/karpenter)"
  cp "$moddir"/kwok/charts/crds/karpenter.sh_*.yaml "$moddir"/kwok/apis/crds/*.yaml "$tmp/crds/" \
    || { rm -rf "$tmp"; bdie "CRDs not found under $moddir/kwok/{charts,apis}/crds"; }
  chmod -R u+w "$tmp/crds"
  rm -rf "$tmp/mod" "$KARPENTER_DIR"; mv "$tmp" "$KARPENTER_DIR"
  blog "karpenter $KARPENTER_VERSION: built in $((SECONDS - start))s -> $KARPENTER_DIR"
}

build_ca() {
  if ca_cached; then blog "cluster-autoscaler: cached in $CA_DIR"; return 0; fi
  [[ -n "${CA_SOURCE:-}" ]] || bdie "CA_SOURCE is not set: point it at a git checkout (or bare git dir) of github.com/kubernetes/autoscaler that has tag $CA_TAG"
  command -v go >/dev/null || bdie "go not found in PATH (cluster-autoscaler is built with go)"
  local gitdir
  if [[ -d "$CA_SOURCE/.git" ]]; then gitdir="$CA_SOURCE/.git"; else gitdir="$CA_SOURCE"; fi
  git --git-dir="$gitdir" rev-parse -q --verify "refs/tags/$CA_TAG" >/dev/null \
    || bdie "$CA_SOURCE has no tag $CA_TAG (tags there: $(git --git-dir="$gitdir" tag -l 'cluster-autoscaler-1.33*' | tr '\n' ' '); set CA_TAG=...)"
  local tmp="$CA_DIR.tmp.$$" start=$SECONDS
  rm -rf "$tmp"; mkdir -p "$tmp/src"
  blog "cluster-autoscaler: git archive $CA_TAG from $gitdir, go build -tags kwok (~4 min) ..."
  # aws-sdk-go is excluded: partial copies may lack a blob there and the kwok build does not use it.
  git --git-dir="$gitdir" archive "$CA_TAG" -- cluster-autoscaler ':(exclude)cluster-autoscaler/cloudprovider/aws/aws-sdk-go' \
    | tar -x -C "$tmp/src" || { rm -rf "$tmp"; bdie "git archive $CA_TAG failed"; }
  if ! (cd "$tmp/src/cluster-autoscaler" && GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod \
      go build -tags kwok -trimpath -ldflags '-s -w' -o "$tmp/cluster-autoscaler" .); then
    rm -rf "$tmp"; bdie "go build -tags kwok of $CA_TAG failed"
  fi
  rm -rf "$tmp/src" "$CA_DIR"; mv "$tmp" "$CA_DIR"
  blog "cluster-autoscaler: built in $((SECONDS - start))s -> $CA_DIR"
}

build_ours() {
  blog "ours: cargo build --release -p autoscaler-bin --bin autoscaler (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
  (cd "$REPO_ROOT" && CARGO_INCREMENTAL=0 cargo build --release --locked -p autoscaler-bin --bin autoscaler) \
    || bdie "cargo build --release of autoscaler-bin failed"
}

build_peers() {
  mkdir -p "$CACHE_ROOT"
  # Serialise concurrent builds of the same cache (as controlplane.sh does).
  exec 8>"$CACHE_ROOT/.peers-build.lock"
  flock 8
  case "${1:-all}" in
    karpenter) build_karpenter ;;
    ca) build_ca ;;
    ours) build_ours ;;
    all) build_karpenter; build_ca; build_ours ;;
    *) bdie "unknown build target '$1' (karpenter|ca|ours|all)" ;;
  esac
  exec 8>&-
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then build_peers "${1:-all}"; fi
