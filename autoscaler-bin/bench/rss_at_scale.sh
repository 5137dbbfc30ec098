#!/usr/bin/env bash
# Memory of the controller with NODES nodes and PODS pods in a real API server.
# Usage: autoscaler-bin/bench/rss_at_scale.sh [NODES] [PODS]   (defaults 5000 100000)
# Starts the e2e control plane (tests/e2e/controlplane.sh), creates the objects, runs the
# `autoscaler` binary in dry-run against it until its watch caches hold every object, and
# prints its RSS. Stops everything it started.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
nodes=${1:-5000}
pods=${2:-100000}
target=${CARGO_TARGET_DIR:-$HOME/.cache/spot-autoscaler-target}
bin=${AUTOSCALER_BIN:-$target/release/autoscaler}
[ -x "$bin" ] || (cd "$root" && cargo build --release -p autoscaler-bin)
dir=$(mktemp -d)
cleanup() {
  [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null || true
  "$root/tests/e2e/controlplane.sh" down "$dir" >/dev/null 2>&1 || true
}
trap cleanup EXIT
"$root/tests/e2e/controlplane.sh" build >/dev/null
"$root/tests/e2e/controlplane.sh" up "$dir" >/dev/null
export KUBECONFIG=$dir/kubeconfig
kubectl create namespace scale >/dev/null

gen() { # kind first count
  python3 - "$@" <<'PY'
import json, sys
kind, first, count, per_node, nodes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
items = []
for i in range(first, first + count):
    if kind == "node":
        z = "us-east-1" + "abc"[i % 3]
        items.append({"apiVersion": "v1", "kind": "Node", "metadata": {"name": f"n{i:05d}",
            "labels": {"topology.kubernetes.io/zone": z, "node.kubernetes.io/instance-type": "m5.4xlarge",
                       "kubernetes.io/hostname": f"n{i:05d}"}},
            "spec": {"providerID": f"aws:///{z}/i-{i:017x}"}})
    else:
        node = f"n{(i // per_node) % nodes:05d}"
        items.append({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"p{i:06d}", "namespace": "scale",
            "labels": {"app": f"svc-{i % 300}"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"svc-{i % 300}",
                                 "uid": "00000000-0000-0000-0000-000000000001"}]},
            "spec": {"nodeName": node, "automountServiceAccountToken": False,
                     "containers": [{"name": "c", "image": "registry.invalid/app:1",
                                     "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]}})
print(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
PY
}
per_node=$(( (pods + nodes - 1) / nodes ))
start=$SECONDS
for ((i = 0; i < nodes; i += 1000)); do
  gen node "$i" $(( nodes - i < 1000 ? nodes - i : 1000 )) "$per_node" "$nodes" | kubectl create -f - >/dev/null
done
for ((i = 0; i < pods; i += 2000)); do
  gen pod "$i" $(( pods - i < 2000 ? pods - i : 2000 )) "$per_node" "$nodes" | kubectl create -f - >/dev/null &
  (( (i / 2000) % 4 == 3 )) && wait
done
wait
echo "created $nodes nodes and $pods pods in $(( SECONDS - start )) s"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" --cloud-provider=static --nodes=0:10:static-spot --dry-run=true --leader-elect=false \
  --namespace=kube-system --metrics-address="127.0.0.1:$port" --kubeconfig="$KUBECONFIG" \
  >"$dir/autoscaler.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  seen=$(curl -fsS "http://127.0.0.1:$port/metrics" 2>/dev/null \
    | awk '/^autoscaler_watch_objects\{state="pods"\}/ {print $2}' | head -1 || true)
  [ "${seen%.*}" = "$pods" ] && break
  kill -0 "$pid" || { tail -20 "$dir/autoscaler.log"; exit 1; }
  sleep 1
done
[ "${seen%.*}" = "$pods" ] || { echo "caches never reached $pods pods (last: ${seen:-none})"; tail -20 "$dir/autoscaler.log"; exit 1; }
sleep 15 # a few decision rounds over the full caches
grep -E '^(VmRSS|VmHWM)' "/proc/$pid/status"
curl -fsS "http://127.0.0.1:$port/metrics" | grep -E '^autoscaler_watch_objects|^autoscaler_decide_seconds_(sum|count)'
