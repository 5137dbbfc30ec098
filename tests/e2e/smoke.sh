#!/usr/bin/env bash
# Smoke test of the e2e control plane: build (cached), up, a KWOK fake node,
# a Deployment scheduled onto it by the real kube-scheduler, an unschedulable
# pod, RBAC, down. Prints "N passed, 0 failed" as its last line on success.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CP="$SCRIPT_DIR/controlplane.sh"
KUBECTL="${KUBECTL:-$(command -v kubectl || echo /usr/bin/kubectl)}"
WAIT="${SMOKE_WAIT:-90s}"

PASSED=0
FAILED=0
RUN_DIR=""

pass() { PASSED=$((PASSED + 1)); printf 'ok %d - %s\n' "$PASSED" "$1"; }
fail() {
  FAILED=$((FAILED + 1))
  printf 'not ok - %s\n' "$1"
  [[ -n "${2:-}" ]] && printf '%s\n' "$2" | sed 's/^/    /'
  exit 1   # later checks depend on earlier ones: stop here (trap reports)
}
# check DESCRIPTION COMMAND... : one assertion
check() {
  local desc="$1"; shift
  local out
  if out="$("$@" 2>&1)"; then pass "$desc"; else fail "$desc" "$out"; fi
}

cleanup() {
  local rc=$?
  set +e
  if [[ -n "$RUN_DIR" ]]; then
    if ((rc != 0)) && [[ -d "$RUN_DIR/logs" ]]; then
      echo "--- control plane logs kept in $RUN_DIR/logs; last lines of each:"
      for f in "$RUN_DIR"/logs/*.log; do
        echo "--- $f"; tail -n 15 "$f"
      done
      "$CP" down "$RUN_DIR" >/dev/null 2>&1
    else
      "$CP" down "$RUN_DIR" >/dev/null 2>&1
      rm -rf "$RUN_DIR"
    fi
  fi
  if ((rc != 0 && FAILED == 0)); then FAILED=1; fi
  echo "$PASSED passed, $FAILED failed"
  exit "$rc"
}
trap cleanup EXIT

k() { "$KUBECTL" --kubeconfig "$RUN_DIR/kubeconfig" "$@"; }

# ---------------------------------------------------------------- control plane
check "build (or cache hit) of etcd, kube-apiserver, kube-scheduler, kube-controller-manager, kwok" "$CP" build
RUN_DIR="$(mktemp -d "${TMPDIR:-/tmp}/autoscaler-e2e-smoke.XXXXXX")"
check "controlplane.sh up" "$CP" up "$RUN_DIR"
check "kubeconfig and pids written" test -s "$RUN_DIR/kubeconfig" -a -s "$RUN_DIR/pids"
check "apiserver /readyz is ok" bash -c "[[ \"\$('$KUBECTL' --kubeconfig '$RUN_DIR/kubeconfig' get --raw /readyz)\" == ok ]]"
check "apiserver listens on 127.0.0.1" grep -q '^APISERVER_URL=https://127.0.0.1:[0-9]*$' "$RUN_DIR/env"
check "server version is v1.33.13" bash -c "'$KUBECTL' --kubeconfig '$RUN_DIR/kubeconfig' get --raw /version | grep -q '\"gitVersion\": *\"v1.33.13\"'"
check "default ServiceAccount exists" k -n default get serviceaccount default

# ---------------------------------------------------------------- RBAC
check "RBAC: admin (system:masters) can create nodes" bash -c "[[ \"\$('$KUBECTL' --kubeconfig '$RUN_DIR/kubeconfig' auth can-i create nodes)\" == yes ]]"
check "RBAC: default ServiceAccount cannot list nodes" bash -c "[[ \"\$('$KUBECTL' --kubeconfig '$RUN_DIR/kubeconfig' auth can-i list nodes --as=system:serviceaccount:default:default || true)\" == no ]]"

# ---------------------------------------------------------------- KWOK fake node
k apply -f - >/dev/null <<'EOF'
apiVersion: v1
kind: Node
metadata:
  name: ip-10-0-1-23.ec2.internal
  annotations:
    kwok.x-k8s.io/node: fake
  labels:
    kubernetes.io/hostname: ip-10-0-1-23.ec2.internal
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    type: kwok
    topology.kubernetes.io/region: us-east-1
    topology.kubernetes.io/zone: us-east-1a
    node.kubernetes.io/instance-type: m5.large
    karpenter.sh/capacity-type: spot
spec:
  providerID: aws:///us-east-1a/i-0123456789abcdef0
status:
  allocatable:
    cpu: "2"
    memory: 7Gi
    pods: "110"
  capacity:
    cpu: "2"
    memory: 8Gi
    pods: "110"
  nodeInfo:
    architecture: amd64
    operatingSystem: linux
    kubeletVersion: fake
EOF
check "fake node becomes Ready (KWOK)" k wait --for=condition=Ready node/ip-10-0-1-23.ec2.internal --timeout="$WAIT"
check "node keeps providerID aws:///us-east-1a/i-0123456789abcdef0" bash -c \
  "[[ \"\$('$KUBECTL' --kubeconfig '$RUN_DIR/kubeconfig' get node ip-10-0-1-23.ec2.internal -o jsonpath='{.spec.providerID}')\" == aws:///us-east-1a/i-0123456789abcdef0 ]]"
check "node has zone and instance-type labels" bash -c \
  "[[ \"\$('$KUBECTL' --kubeconfig '$RUN_DIR/kubeconfig' get nodes -l topology.kubernetes.io/zone=us-east-1a,node.kubernetes.io/instance-type=m5.large -o name)\" == node/ip-10-0-1-23.ec2.internal ]]"
check "node allocatable cpu is 2" bash -c \
  "[[ \"\$('$KUBECTL' --kubeconfig '$RUN_DIR/kubeconfig' get node ip-10-0-1-23.ec2.internal -o jsonpath='{.status.allocatable.cpu}')\" == 2 ]]"

# ---------------------------------------------------------------- Deployment
k apply -f - >/dev/null <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: registry.k8s.io/pause:3.10
        resources:
          requests: {cpu: 100m, memory: 64Mi}
EOF
check "Deployment web rolls out 3/3 (controller-manager + scheduler + KWOK)" \
  k -n default rollout status deployment/web --timeout="$WAIT"
check "3 pods Running" bash -c \
  "[[ \"\$('$KUBECTL' --kubeconfig '$RUN_DIR/kubeconfig' -n default get pods -l app=web --field-selector=status.phase=Running -o name | wc -l)\" -eq 3 ]]"
check "all 3 pods were scheduled onto the fake node" bash -c \
  "[[ \"\$('$KUBECTL' --kubeconfig '$RUN_DIR/kubeconfig' -n default get pods -l app=web -o jsonpath='{range .items[*]}{.spec.nodeName}{\"\\n\"}{end}' | sort -u)\" == ip-10-0-1-23.ec2.internal ]]"

# ---------------------------------------------------------------- unschedulable
k apply -f - >/dev/null <<'EOF'
apiVersion: v1
kind: Pod
metadata:
  name: too-big
  namespace: default
spec:
  containers:
  - name: big
    image: registry.k8s.io/pause:3.10
    resources:
      requests: {cpu: "64"}
EOF
check "pod requesting 64 CPUs gets PodScheduled=False reason Unschedulable" \
  k -n default wait pod/too-big --for='jsonpath={.status.conditions[?(@.type=="PodScheduled")].reason}=Unschedulable' --timeout="$WAIT"
check "pod requesting 64 CPUs stays Pending" bash -c \
  "sleep 2; [[ \"\$('$KUBECTL' --kubeconfig '$RUN_DIR/kubeconfig' -n default get pod too-big -o jsonpath='{.status.phase}')\" == Pending ]]"
check "scheduler reports Insufficient cpu" bash -c \
  "'$KUBECTL' --kubeconfig '$RUN_DIR/kubeconfig' -n default get pod too-big -o jsonpath='{.status.conditions[?(@.type==\"PodScheduled\")].message}' | grep -q 'Insufficient cpu'"

# ---------------------------------------------------------------- down
PIDS="$(awk '{print $2}' "$RUN_DIR/pids" | tr '\n' ' ')"
check "controlplane.sh down" "$CP" down "$RUN_DIR"
check "all control-plane processes are gone" bash -c "for p in $PIDS; do [[ -n \"\$(tr -d '\\0' </proc/\$p/cmdline 2>/dev/null)\" ]] && exit 1; done; exit 0"
check "down is idempotent" "$CP" down "$RUN_DIR"
