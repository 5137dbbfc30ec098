#!/usr/bin/env bash
# A burst of PODS pending pods into a cluster of NODES full nodes in GROUPS ASGs (moto),
# the controller with --cloud-provider=aws against both: pending -> SetDesiredCapacity,
# pending -> TriggeredScaleUp Event and pending -> Running (p50/p95/p99), and the
# controller's CPU during the burst.
# Usage: autoscaler-bin/bench/burst_at_scale.sh [NODES] [GROUPS] [PODS]   (defaults 5000 10 1000)
# Needs moto_server (pip install 'moto[server]'), python3 with boto3 and PyYAML, and the e2e
# control plane (tests/e2e/controlplane.sh builds it). Stops everything it started.
#   BURST_TIMEOUT=600  seconds to wait for every burst pod to run
#   RAW_OUT=FILE       per-pod timestamps and the calls, as JSON
#   KEEP_LOGS=FILE     copy of the controller's log
#   E2E_CLIENT_QPS=200 kube-scheduler/controller-manager client QPS
#   EXTRA_FLAGS=...    more controller flags (the AWS timeouts are raised: moto answers a
#                      describe of 5,000 instances in seconds to minutes on a loaded 2-core box)
# Figures and how to read them: autoscaler-bin/README.md, "Benchmarks at scale".
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
nodes=${1:-5000}
groups=${2:-10}
pods=${3:-1000}
target=${CARGO_TARGET_DIR:-$HOME/.cache/spot-autoscaler-target}
bin=${AUTOSCALER_BIN:-$target/release/autoscaler}
[ -x "$bin" ] || (cd "$root" && cargo build --release -p autoscaler-bin --bin autoscaler)
command -v moto_server >/dev/null || { echo "moto_server not found: pip install 'moto[server]'"; exit 1; }
python3 -c 'import boto3, yaml' || { echo "python3 needs boto3 and PyYAML: pip install boto3 pyyaml"; exit 1; }
dir=$(mktemp -d)
cleanup() {
  [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null || true
  [ -n "${moto_pid:-}" ] && kill "$moto_pid" 2>/dev/null || true
  "$root/tests/e2e/controlplane.sh" down "$dir" >/dev/null 2>&1 || true
  [ -n "${KEEP_LOGS:-}" ] && cp "$dir/autoscaler.log" "$KEEP_LOGS" 2>/dev/null || true
  rm -rf "$dir" # etcd data and logs: hundreds of MB at this scale
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

"$root/tests/e2e/controlplane.sh" build >/dev/null
# The scheduler binds 1,000 pods at once: lift its client QPS (default 50) as operators of
# clusters this size do.
E2E_CLIENT_QPS=${E2E_CLIENT_QPS:-200} "$root/tests/e2e/controlplane.sh" up "$dir" >/dev/null
export KUBECONFIG=$dir/kubeconfig WORK=$dir
moto_port=$(free_port)
moto_server -H 127.0.0.1 -p "$moto_port" >"$dir/moto.log" 2>&1 &
moto_pid=$!
export MOTO=http://127.0.0.1:$moto_port
for _ in $(seq 1 100); do curl -fsS "$MOTO/moto-api/" >/dev/null 2>&1 && break; sleep 0.2; done
curl -fsS "$MOTO/moto-api/" >/dev/null || { echo "moto_server did not answer on $MOTO"; exit 1; }

start=$SECONDS
python3 "$root/autoscaler-bin/bench/burst_driver.py" setup "$nodes" "$groups"
echo "setup took $(( SECONDS - start )) s"

port=$(free_port)
AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_EC2_METADATA_DISABLED=true \
AWS_CONFIG_FILE=/nonexistent AWS_SHARED_CREDENTIALS_FILE=/nonexistent \
"$bin" --cloud-provider=aws --aws-endpoint-url="$MOTO" --aws-region=us-east-1 \
  --node-group-auto-discovery=asg:tag=k8s.io/cluster-autoscaler/enabled,k8s.io/cluster-autoscaler/burst-bench \
  --expander=priority --namespace=kube-system --leader-elect=false \
  --aws-attempt-timeout=300s --aws-call-timeout=600s \
  --metrics-address="127.0.0.1:$port" --kubeconfig="$KUBECONFIG" ${EXTRA_FLAGS:-} \
  >"$dir/autoscaler.log" 2>&1 &
pid=$!
# Settled: the caches hold every object and a round has run over them.
for _ in $(seq 1 600); do
  m=$(curl -fsS "http://127.0.0.1:$port/metrics" 2>/dev/null || true)
  seen=$(awk '/^autoscaler_watch_objects\{state="nodes"\}/ {print $2}' <<<"$m" | head -1)
  rounds=$(awk '/^autoscaler_decision_round_seconds_count/ {print $2}' <<<"$m" | head -1)
  [ "${seen%.*}" = "$nodes" ] && [ "${rounds%.*}" -ge 2 ] 2>/dev/null && break
  kill -0 "$pid" || { tail -20 "$dir/autoscaler.log"; exit 1; }
  sleep 1
done
[ "${seen%.*}" = "$nodes" ] && [ "${rounds%.*}" -ge 2 ] 2>/dev/null \
  || { echo "the controller did not settle: $seen of $nodes nodes cached, ${rounds:-0} rounds run"; tail -20 "$dir/autoscaler.log"; exit 1; }
grep -E '^VmRSS' "/proc/$pid/status"
python3 "$root/autoscaler-bin/bench/burst_driver.py" burst "$pods" "$dir/autoscaler.log" "$pid" \
  "http://127.0.0.1:$port/metrics" || status=$?
grep -E '^(VmRSS|VmHWM)' "/proc/$pid/status"
# Where a round's time goes against moto: the adapter's AWS calls (mean seconds per action).
curl -fsS "http://127.0.0.1:$port/metrics" | awk '
  /^autoscaler_aws_api_call_seconds_total/ { match($0, /action="[^"]*"/); a = substr($0, RSTART + 8, RLENGTH - 9); sum[a] = $2 }
  /^autoscaler_aws_api_calls_total/ { match($0, /action="[^"]*"/); a = substr($0, RSTART + 8, RLENGTH - 9); n[a] = $2 }
  END { for (a in n) if (n[a] > 0) printf "aws %s: %d calls, mean %.3f s\n", a, n[a], sum[a] / n[a] }'
exit "${status:-0}"
