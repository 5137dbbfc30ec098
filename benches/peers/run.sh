#!/usr/bin/env bash
# Peer arena (issue 16): cluster-autoscaler 1.33.6, Karpenter 1.14.1 and our controller, one at a
# time on a fresh e2e control plane (tests/e2e/controlplane.sh, client QPS raised), the same bursts.
#
#   run.sh --build                       build/cache the three peers and exit (CA needs CA_SOURCE)
#   run.sh [--runs N] [--scenarios a,b] [--peers x,y] [--out DIR] [--append]
#                                        the arena; JSON + Markdown in DIR (default benches/peers/results);
#                                        --append keeps DIR's other rows and replaces those re-run;
#                                        [--timeout S] bounds each run's wait for all Running (600)
#   run.sh --smoke                       100 pods, one run per peer; fails unless every peer bound
#                                        every pod and the JSON parses
#   run.sh --smoke-if-cached             the same when Karpenter and CA are cached, else prints
#                                        SKIPPED and exits 0 (what .ci/run runs)
#
# Scenarios: burst100 burst1000 arrive1000 scaledown100. Peers: floor ours ca ca-scan1s karpenter
# karpenter-fast. See README.md next to this file.
set -euo pipefail
PEERS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=build.sh
source "$PEERS_DIR/build.sh"

mode=run runs=5 scenarios="burst100,burst1000,scaledown100" peers="floor,ours,ca,ca-scan1s,karpenter,karpenter-fast"
out="$PEERS_DIR/results" qps=300 timeout=600 append=
cmdline="benches/peers/run.sh $*"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build) mode=build ;;
    --smoke) mode=smoke ;;
    --smoke-if-cached) mode=smoke-if-cached ;;
    --runs) runs="$2"; shift ;;
    --scenarios) scenarios="$2"; shift ;;
    --peers) peers="$2"; shift ;;
    --out) out="$2"; shift ;;
    --qps) qps="$2"; shift ;;
    --timeout) timeout="$2"; shift ;;
    --append) append=--append ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) bdie "unknown argument '$1' (see: $0 --help)" ;;
  esac
  shift
done
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || bdie "--runs must be a positive integer (got '$runs')"

if [[ "$mode" == smoke-if-cached ]]; then
  if ! karpenter_cached || ! ca_cached; then
    echo "peer arena smoke SKIPPED: not cached (run benches/peers/run.sh --build; CA needs CA_SOURCE)"
    exit 0
  fi
  mode=smoke
fi
bash "$REPO_ROOT/tests/e2e/controlplane.sh" build >/dev/null
if [[ "$mode" == build ]]; then build_peers all; exit 0; fi
if [[ "$mode" == smoke ]]; then
  karpenter_cached && ca_cached || bdie "Karpenter or cluster-autoscaler not cached (run benches/peers/run.sh --build)"
  runs=1 scenarios=burst100 peers="ours,ca-scan1s,karpenter-fast"
  out="$(mktemp -d "${TMPDIR:-/tmp}/peers-smoke.XXXXXX")"
fi
# Build (or find cached) only the peers this run needs: ours and the floor need no Go build.
[[ ",$peers," == *,karpenter* ]] && build_peers karpenter
[[ ",$peers," == *,ca* ]] && build_peers ca
[[ ",$peers," == *,ours,* ]] && build_peers ours

export CONTROLPLANE="$REPO_ROOT/tests/e2e/controlplane.sh" OURS_BIN KARPENTER_BIN="$KARPENTER_DIR/karpenter-kwok" \
  KARPENTER_CRDS="$KARPENTER_DIR/crds" CA_BIN="$CA_DIR/cluster-autoscaler"
python3 "$PEERS_DIR/arena.py" --runs "$runs" --scenarios "$scenarios" --peers "$peers" --out "$out" --qps "$qps" \
  --timeout "$timeout" --command "$cmdline" $append
cat "$out/results.md"

if [[ "$mode" == smoke ]]; then
  # Every peer bound every pod, and the JSON parses.
  python3 - "$out/results.json" <<'PY'
import json, sys
results = json.load(open(sys.argv[1]))
bad = [(sc["name"], p["peer"], r) for sc in results["scenarios"] for p in sc["peers"] for r in p["runs"]
       if r.get("pods_bound") != r.get("pods") or not r.get("all_running")]
peers = {p["peer"] for sc in results["scenarios"] for p in sc["peers"]}
if bad or len(peers) != 3:
    sys.exit(f"peer arena smoke FAILED: {bad or peers}")
print(f"peer arena smoke: {len(peers)} peers bound every pod")
PY
  rm -rf "$out"
fi
