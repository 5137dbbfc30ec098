#!/usr/bin/env bash
# Memory of the controller with NODES nodes and PODS pods in a real API server.
# Usage: autoscaler-bin/bench/rss_at_scale.sh [NODES] [PODS]   (defaults 5000 100000)
# Starts the e2e control plane (tests/e2e/controlplane.sh), creates the objects, runs the
# `autoscaler` binary in dry-run against it until its watch caches hold every object, and
# prints its RSS and CPU time (at cache fill, then over WINDOW seconds of rounds).
# Stops everything it started.
#   LABELS=10 ANNOTATIONS=5  labels/annotations per pod (default 10 and 5, what real pods
#                            carry: app.kubernetes.io/*, pod-template-hash, checksums, ...)
#   RECORD=1                 also runs a second controller with --record-dir beside the
#                            first, at the same time against the same objects, and prints
#                            both (recording overhead, issue 13)
#   WINDOW=60                seconds of steady rounds measured after the caches filled
#   EXTRA_FLAGS=...          more flags for the controller(s), e.g. --scan-interval=1s
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
nodes=${1:-5000}
pods=${2:-100000}
labels=${LABELS:-10}
annotations=${ANNOTATIONS:-5}
window=${WINDOW:-60}
target=${CARGO_TARGET_DIR:-$HOME/.cache/spot-autoscaler-target}
bin=${AUTOSCALER_BIN:-$target/release/autoscaler}
[ -x "$bin" ] || (cd "$root" && cargo build --release -p autoscaler-bin)
dir=$(mktemp -d)
cleanup() {
  [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null || true
  [ -n "${rec_pid:-}" ] && kill "$rec_pid" 2>/dev/null || true
  "$root/tests/e2e/controlplane.sh" down "$dir" >/dev/null 2>&1 || true
  rm -rf "$dir" # etcd data and logs: hundreds of MB at this scale
}
trap cleanup EXIT
"$root/tests/e2e/controlplane.sh" build >/dev/null
"$root/tests/e2e/controlplane.sh" up "$dir" >/dev/null
export KUBECONFIG=$dir/kubeconfig
kubectl create namespace scale >/dev/null
# Real, empty ReplicaSets own the pods (the garbage collector deletes pods whose owner does
# not exist); their selectors match no pod, so they never adopt or delete one.
python3 - <<'PY' | kubectl create -f - >/dev/null
import json
print(json.dumps({"apiVersion": "v1", "kind": "List", "items": [
    {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": f"svc-{s}", "namespace": "scale"},
     "spec": {"replicas": 0, "selector": {"matchLabels": {"bench-holder": f"svc-{s}"}},
              "template": {"metadata": {"labels": {"bench-holder": f"svc-{s}"}},
                           "spec": {"containers": [{"name": "c", "image": "registry.invalid/x:1"}]}}}}
    for s in range(300)]}))
PY
kubectl get replicasets -n scale -o json \
  | python3 -c 'import json,sys; print(json.dumps({r["metadata"]["name"]: r["metadata"]["uid"] for r in json.load(sys.stdin)["items"]}))' \
  >"$dir/owners.json"
export OWNERS=$dir/owners.json

gen() { # kind first count
  python3 - "$@" "$labels" "$annotations" <<'PY'
import hashlib, json, os, sys
kind, first, count, per_node, nodes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
n_labels, n_annotations = int(sys.argv[6]), int(sys.argv[7])
owners = json.load(open(os.environ["OWNERS"]))

def pod_labels(svc):
    # What Helm charts and Deployments put on pods; values shared by a workload's pods.
    h = hashlib.sha256(svc.encode()).hexdigest()
    full = {"app": svc, "app.kubernetes.io/name": svc, "app.kubernetes.io/instance": f"{svc}-prod",
            "app.kubernetes.io/version": "1.24.3", "app.kubernetes.io/component": "server",
            "app.kubernetes.io/part-of": f"shop-{svc[-1]}", "app.kubernetes.io/managed-by": "Helm",
            "helm.sh/chart": f"{svc}-3.12.0", "pod-template-hash": h[:10], "team": f"team-{h[10:14]}"}
    extra = {f"example.com/label-{i}": f"value-{h[i % 50:i % 50 + 8]}" for i in range(10, n_labels)}
    return dict(list(full.items())[:n_labels] + list(extra.items()))

def pod_annotations(svc):
    h = hashlib.sha256(svc.encode()).hexdigest()
    full = {"checksum/config": h, "checksum/secret": h[::-1], "prometheus.io/scrape": "true",
            "prometheus.io/port": "9090", "kubectl.kubernetes.io/restartedAt": "2026-11-30T08:12:44Z"}
    extra = {f"example.com/annotation-{i}": h for i in range(5, n_annotations)}
    return dict(list(full.items())[:n_annotations] + list(extra.items()))
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
            "labels": pod_labels(f"svc-{i % 300}"), "annotations": pod_annotations(f"svc-{i % 300}"),
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"svc-{i % 300}",
                                 "uid": owners[f"svc-{i % 300}"]}]},
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

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"; } # utime + stime
start_controller() { # port namespace log extra-flags...
  local port=$1 ns=$2 log=$3
  shift 3
  kubectl get namespace "$ns" >/dev/null 2>&1 || kubectl create namespace "$ns" >/dev/null
  "$bin" --cloud-provider=static --nodes=0:10:static-spot --dry-run=true --leader-elect=false \
    --namespace="$ns" --metrics-address="127.0.0.1:$port" --kubeconfig="$KUBECONFIG" \
    ${EXTRA_FLAGS:-} "$@" >"$log" 2>&1 &
}
wait_filled() { # pid port log
  local seen=""
  for _ in $(seq 1 900); do
    seen=$(curl -fsS "http://127.0.0.1:$2/metrics" 2>/dev/null \
      | awk '/^autoscaler_watch_objects\{state="pods"\}/ {print $2}' | head -1 || true)
    [ "${seen%.*}" = "$pods" ] && return 0
    kill -0 "$1" || { tail -20 "$3"; exit 1; }
    sleep 1
  done
  echo "caches never reached $pods pods (last: ${seen:-none})"; tail -20 "$3"; exit 1
}
report() { # label pid port cpu_at_fill cpu_window
  echo "== $1: $(grep -E '^(VmRSS|VmHWM)' "/proc/$2/status" | tr -s ' \t' ' ' | tr '\n' ' ')"
  echo "   CPU: $4 s to fill the caches, $5 s over ${window} s of rounds"
  curl -fsS "http://127.0.0.1:$3/metrics" \
    | grep -E '^autoscaler_decide_seconds_(sum|count)|^autoscaler_decision_round_seconds_(sum|count)' \
    | tr '\n' ' '; echo
}
port=$(free_port)
start_controller "$port" kube-system "$dir/autoscaler.log"
pid=$!
if [ -n "${RECORD:-}" ]; then
  rec_port=$(free_port)
  start_controller "$rec_port" recording "$dir/autoscaler-rec.log" --record-dir="$dir/recording"
  rec_pid=$!
fi
wait_filled "$pid" "$port" "$dir/autoscaler.log"
[ -n "${RECORD:-}" ] && wait_filled "$rec_pid" "$rec_port" "$dir/autoscaler-rec.log"
sleep 15 # a few decision rounds over the full caches
cpu_fill=$(cpu_s "$pid")
[ -n "${RECORD:-}" ] && rec_cpu_fill=$(cpu_s "$rec_pid")
sleep "$window"
cpu_win=$(awk -v a="$(cpu_s "$pid")" -v b="$cpu_fill" 'BEGIN {print a - b}')
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
report "without recording" "$pid" "$port" "$cpu_fill" "$cpu_win"
if [ -n "${RECORD:-}" ]; then
  rec_cpu_win=$(awk -v a="$(cpu_s "$rec_pid")" -v b="$rec_cpu_fill" 'BEGIN {print a - b}')
  report "with --record-dir" "$rec_pid" "$rec_port" "$rec_cpu_fill" "$rec_cpu_win"
  echo "   recording: $(du -sh "$dir/recording" | cut -f1) in $(ls "$dir/recording" | wc -l) file(s)"
fi
