#!/usr/bin/env bash
# The container image, built and run without a container engine (CI's step "container
# image"):
#   1. crane (go-containerregistry) from the Go module proxy, cached per version; the
#      Dockerfile's checks (scripts/image/check_dockerfile.py)
#   2. the release binary; a local registry (`crane registry serve`)
#   3. the image built twice from scratch (scripts/image/rootfs.sh + build.sh), pushed,
#      and the two digests compared (reproducible)
#   4. pulled back by digest, validated, unpacked; its contents and size listed
#   5. its entrypoint run in a chroot as the nonroot user (65532): --version, --help, a
#      bad flag, then a start against the e2e control plane (tests/e2e/controlplane.sh)
#      and a moto server in --dry-run until it reports a round (status ConfigMap,
#      /metrics, /healthz), and a clean stop on SIGTERM
#   6. charts/test.sh with that image (CHART_TEST_IMAGE: the chart renders and installs
#      the reference just pushed) and that controller's /metrics (CHART_TEST_SCRAPE: the
#      Grafana dashboard and the alert rules name only metrics that exist)
# Last line: "N passed, M failed"; exit 0 only if M == 0. Needs root (chroot).
#
# Env: CRANE_VERSION (default below), CRANE=path (skip the build), IMAGE_MAX_BYTES
#      (compressed size budget, default 40 MB), AUTOSCALER_E2E_CACHE (default
#      $HOME/.cache/autoscaler-e2e), CARGO_TARGET_DIR, KEEP=1 (keep the work dir).
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CP="$ROOT/tests/e2e/controlplane.sh"
CACHE="${AUTOSCALER_E2E_CACHE:-$HOME/.cache/autoscaler-e2e}"
CRANE_VERSION="${CRANE_VERSION:-v0.22.1}"
IMAGE_MAX_BYTES="${IMAGE_MAX_BYTES:-40000000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/spot-autoscaler-target}"
KUBECTL="${KUBECTL:-$(command -v kubectl || echo /usr/bin/kubectl)}"
REPO_NAME=spot-autoscaler
NS=image-test

PASSED=0
FAILED=0
WORK="$(mktemp -d "${TMPDIR:-/tmp}/autoscaler-image.XXXXXX")"
RUN_DIR=""
PIDS=()
T0=$SECONDS

pass() { PASSED=$((PASSED + 1)); printf 'ok %d - %s\n' "$((PASSED + FAILED))" "$1"; }
fail() {
  FAILED=$((FAILED + 1))
  printf 'not ok %d - %s\n' "$((PASSED + FAILED))" "$1"
  [[ -n "${2:-}" ]] && printf '%s\n' "$2" | tail -n 30 | sed 's/^/    /'
  return 0
}
check() {
  local desc="$1"; shift
  local out
  if out="$("$@" 2>&1)"; then pass "$desc"; else fail "$desc" "$out"; fi
}
must() {
  local desc="$1"; shift
  local out
  if out="$("$@" 2>&1)"; then pass "$desc"; else fail "$desc" "$out"; exit 1; fi
}
is() { # WANT CMD...: the command's output must be exactly WANT
  local want="$1" got; shift
  got="$("$@")" || return 1
  [[ "$got" == "$want" ]] || { echo "want '$want', got '$got'"; return 1; }
}

cleanup() {
  local rc=$? pid
  set +e
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
  if [[ -n "$RUN_DIR" ]]; then "$CP" down "$RUN_DIR" >/dev/null 2>&1; fi
  if ((FAILED > 0)); then
    for f in "$WORK/controller.log" "$WORK/registry.log"; do
      [[ -s "$f" ]] && { echo "--- $f (last lines)"; tail -n 20 "$f"; }
    done
  fi
  if ((FAILED > 0)) || [[ "${KEEP:-}" == 1 ]]; then echo "# work dir kept: $WORK"
  else rm -rf "$WORK" "$RUN_DIR"; fi
  ((rc != 0 && FAILED == 0)) && FAILED=1
  echo "# scripts/image/test.sh took $((SECONDS - T0)) s (crane $CRANE_VERSION)"
  echo "$PASSED passed, $FAILED failed"
  ((FAILED > 0)) && exit 1
  exit 0
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_until() { # SECONDS CMD...: retry CMD every second
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 1
  done
}

# ------------------------------------------------------------------ 1. tools, Dockerfile
[[ $EUID == 0 ]] || { fail "runs as root (chroot needs it)" "uid $EUID: run as root"; exit 1; }
# crane, built with the machine's Go from the Go module proxy into
# $CACHE/crane-<version>/crane (temp dir renamed into place: no half-filled entry)
install_crane() {
  local dir="$CACHE/crane-$CRANE_VERSION"
  [[ -x "$dir/crane" ]] && return 0
  command -v go >/dev/null || { echo "go not found: cannot build crane"; return 1; }
  mkdir -p "$CACHE"
  (
    flock 9
    [[ -x "$dir/crane" ]] && exit 0
    tmp="$(mktemp -d "$CACHE/.crane-$CRANE_VERSION.XXXXXX")"
    GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod GOBIN="$tmp" \
      go install -trimpath -ldflags '-s -w' \
      "github.com/google/go-containerregistry/cmd/crane@$CRANE_VERSION" || { rm -rf "$tmp"; exit 1; }
    chmod 755 "$tmp" && rm -rf "$dir" && mv "$tmp" "$dir"
  ) 9>"$CACHE/.crane.lock"
}
if [[ -n "${CRANE:-}" ]]; then
  must "crane given by CRANE=$CRANE is executable" test -x "$CRANE"
else
  must "crane $CRANE_VERSION installed (or cache hit) from the Go module proxy" install_crane
  CRANE="$CACHE/crane-$CRANE_VERSION/crane"
fi
export CRANE
check "crane version reports $CRANE_VERSION" is "$CRANE_VERSION" "$CRANE" version
for tool in apt-get dpkg-deb readelf objdump objcopy chroot curl python3 tar; do
  must "$tool is installed" command -v "$tool"
done

# Rust version, one recipe (rootfs.sh), same config; and the check itself fails on a
# Dockerfile whose Rust is older than the workspace's rust-version
pyout="$(python3 "$HERE/check_dockerfile.py" "$ROOT/charts/Dockerfile" 2>&1)"
while IFS= read -r line; do
  case "$line" in "ok - "*) pass "${line#ok - }" ;; "not ok - "*) fail "${line#not ok - }" ;; *) [[ -n "$line" ]] && echo "    $line" ;; esac
done <<<"$pyout"
old_rust() {
  sed 's/^ARG RUST_VERSION=.*/ARG RUST_VERSION=1.85/' "$ROOT/charts/Dockerfile" >"$WORK/Dockerfile.old"
  local out
  out="$(python3 "$HERE/check_dockerfile.py" "$WORK/Dockerfile.old")" && { echo "passed: $out"; return 1; }
  grep '^not ok - .*rust-version' <<<"$out"
}
check "check_dockerfile.py fails a Dockerfile pinning Rust 1.85 (below the workspace's rust-version)" old_rust

# ------------------------------------------------------------------ 2. binary, registry
VERSION="$(python3 -c 'import tomllib,sys; print(tomllib.load(open(sys.argv[1], "rb"))["workspace"]["package"]["version"])' "$ROOT/Cargo.toml")"
COMMIT="$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
export SOURCE_DATE_EPOCH="$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || echo 0)"
BIN="$CARGO_TARGET_DIR/release/autoscaler"
# Without SOURCE_DATE_EPOCH: the cc crate reruns C build scripts (aws-lc-sys, ring) when it
# changes, and it changes with every commit, so the whole AWS/TLS stack would be rebuilt
# in release each time (and again by any later release build without it). The image's
# timestamps take it from build.sh below; the binary does not embed it.
build_release() { (cd "$ROOT" && env -u SOURCE_DATE_EPOCH cargo build --release -p autoscaler-bin --bin autoscaler --locked); }
t=$SECONDS
must "cargo build --release -p autoscaler-bin --bin autoscaler --locked" build_release
echo "# release build: $((SECONDS - t)) s, $(du -m "$BIN" | cut -f1) MB"
if ldd "$BIN" | grep -q '=>'; then
  echo "# the binary links dynamically: $(ldd "$BIN" | awk '/=>/{print $1}' | tr '\n' ' ')"
fi

REG_PORT="$(free_port)"
REG="127.0.0.1:$REG_PORT"
mkdir -p "$WORK/registry"
"$CRANE" registry serve --address "$REG" --disk "$WORK/registry" >"$WORK/registry.log" 2>&1 &
PIDS+=($!)
must "local registry (crane registry serve) answers on $REG" wait_until 30 curl -fsS "http://$REG/v2/"

# ------------------------------------------------------------------ 3. build twice
LABELS=(org.opencontainers.image.title=spot-autoscaler "org.opencontainers.image.version=$VERSION"
  "org.opencontainers.image.revision=$COMMIT" org.opencontainers.image.licenses=Apache-2.0
  "org.opencontainers.image.created=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)")
build() { # N TAG: rootfs N from scratch, image pushed as TAG; digest in $WORK/digest-N
  local n="$1" tag="$2" out
  out="$(bash "$HERE/rootfs.sh" "$BIN" "$WORK/rootfs-$n")" || { echo "$out"; return 1; }
  [[ "$n" == 1 ]] && echo "$out" >"$WORK/rootfs.txt"
  out="$(bash "$HERE/build.sh" "$WORK/rootfs-$n" "$REG/$REPO_NAME:$tag" "${LABELS[@]}")" || { echo "$out"; return 1; }
  tail -n 1 <<<"$out" >"$WORK/digest-$n"
  grep -qE '^sha256:[0-9a-f]{64}$' "$WORK/digest-$n" || { echo "no digest in: $out"; return 1; }
}
t=$SECONDS
must "image built (rootfs.sh + build.sh) and pushed as $REG/$REPO_NAME:$VERSION" build 1 "$VERSION"
t_build=$((SECONDS - t))
sed 's/^/    /' "$WORK/rootfs.txt"
must "image built a second time from scratch, pushed as $REG/$REPO_NAME:rebuild" build 2 rebuild
DIGEST="$(cat "$WORK/digest-1")"
check "both builds have the same digest (reproducible)" is "$DIGEST" cat "$WORK/digest-2"
REF="$REG/$REPO_NAME@$DIGEST"
echo "# image: $REG/$REPO_NAME:$VERSION = $REF (one build: $t_build s)"

# ------------------------------------------------------------------ 4. pull, unpack
check "the tag resolves to the digest" is "$DIGEST" "$CRANE" digest "$REG/$REPO_NAME:$VERSION"
check "crane validate --remote (every blob matches its digest)" "$CRANE" validate --remote "$REF"
must "pulled back by digest and unpacked (crane export | tar -x)" \
  bash -c "mkdir -p '$WORK/image' && '$CRANE' export '$REF' '$WORK/image.tar' && tar -xpf '$WORK/image.tar' --numeric-owner -C '$WORK/image'"
"$CRANE" manifest "$REF" >"$WORK/manifest.json"
"$CRANE" config "$REF" >"$WORK/config.json"
echo "# contents (tar -tv of the image's filesystem; $(grep -c . <(tar -tf "$WORK/image.tar")) entries; the CA certificates and the glibc libraries are listed whole):"
tar -tvf "$WORK/image.tar" --numeric-owner | awk '{printf "    %s %s %10s %s%s%s\n", $1, $2, $3, $6, ($7 ? " " $7 : ""), ($8 ? " " $8 : "")}' | sort -k4
sizes="$(python3 - "$WORK/manifest.json" "$WORK/image" <<'EOF'
import json, os, sys
m = json.load(open(sys.argv[1]))
compressed = m["config"]["size"] + sum(l["size"] for l in m["layers"])
raw = sum(os.lstat(os.path.join(d, f)).st_size for d, _, fs in os.walk(sys.argv[2]) for f in fs)
print(compressed, raw, len(m["layers"]))
EOF
)"
read -r COMPRESSED RAW LAYERS <<<"$sizes"
echo "# size: $COMPRESSED bytes compressed ($((COMPRESSED / 1000000)) MB, $LAYERS layer), $RAW bytes unpacked ($((RAW / 1000000)) MB)"
check "compressed size $COMPRESSED bytes <= $IMAGE_MAX_BYTES" test "$COMPRESSED" -le "$IMAGE_MAX_BYTES"
config_is() { python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); print(json.dumps([c["config"].get("Entrypoint"), c["config"].get("User"), sorted(c["config"].get("ExposedPorts", {})), c["os"], c["architecture"]]))' "$WORK/config.json"; }
# shellcheck source=scripts/image/config
source "$HERE/config"
check "image config: entrypoint $IMAGE_ENTRYPOINT, user $IMAGE_USER, port $IMAGE_PORT, linux" \
  is "[[\"$IMAGE_ENTRYPOINT\"], \"$IMAGE_USER\", [\"$IMAGE_PORT\"], \"linux\", \"$(dpkg --print-architecture)\"]" config_is
only_expected() { # nothing but the binary, libraries, certificates, users, licences, dpkg records
  tar -tf "$WORK/image.tar" | sed 's,^\./,,; s,/$,,' | grep -vE '^(autoscaler|etc(/(passwd|group|nsswitch\.conf|os-release|ssl(/certs(/ca-certificates\.crt)?)?))?|lib(64)?(/.*)?|usr(/lib(/.*)?|/share(/doc(/[^/]+(/copyright)?)?)?)?|var(/lib(/dpkg(/status\.d(/[^/]+)?)?)?)?|tmp|root|home(/nonroot)?)$' && return 1
  ! tar -tvf "$WORK/image.tar" --numeric-owner | awk '$2 != "0/0"' | grep . # all root-owned
}
check "the image holds only the binary, libraries, CA bundle, users, licences, dpkg records; all owned by 0:0" only_expected
check "no shell in the image" bash -c "! ls '$WORK/image/bin/sh' '$WORK/image/usr/bin/sh' 2>/dev/null | grep ."

# ------------------------------------------------------------------ 5. run it
IMG="$WORK/image"
CHROOT="$(command -v chroot)"
as_nonroot() { env -i PATH=/ HOME=/home/nonroot "$CHROOT" --userspec=65532:65532 "$IMG" "$@"; }
check "chroot as 65532: /autoscaler --version = 'autoscaler $VERSION (commit $COMMIT)'" \
  is "autoscaler $VERSION (commit $COMMIT)" as_nonroot /autoscaler --version
help_ok() { local out; out="$(as_nonroot /autoscaler --help)" || return 1; grep -q -- '--cloud-provider' <<<"$out" && grep -q -- '--dry-run' <<<"$out" || { echo "$out" | head; return 1; }; }
check "chroot as 65532: /autoscaler --help lists --cloud-provider and --dry-run" help_ok
bad_flag() { local out rc=0; out="$(as_nonroot /autoscaler --no-such-flag 2>&1)" || rc=$?; [[ $rc == 2 ]] && grep -q -- '--no-such-flag' <<<"$out" || { echo "exit $rc: $out"; return 1; }; }
check "chroot as 65532: an unknown flag exits 2 and names it" bad_flag
ca_bundle() { python3 -c 'import ssl,sys; c=ssl.create_default_context(cafile=sys.argv[1]); n=len(c.get_ca_certs()); print(n); sys.exit(n < 100)' "$IMG/etc/ssl/certs/ca-certificates.crt"; }
check "the image's CA bundle loads (over 100 roots)" ca_bundle

must "control plane build (or cache hit)" "$CP" build
RUN_DIR="$(mktemp -d "${TMPDIR:-/tmp}/autoscaler-image-e2e.XXXXXX")"
must "control plane up" "$CP" up "$RUN_DIR"
export KUBECONFIG="$RUN_DIR/kubeconfig"
k() { "$KUBECTL" "$@"; }
command -v moto_server >/dev/null || { fail "moto_server on PATH" "install it: pip install 'moto[server]'"; exit 1; }
MOTO_PORT="$(free_port)"
moto_server -H 127.0.0.1 -p "$MOTO_PORT" >"$WORK/moto.log" 2>&1 &
MOTO_PID=$!
PIDS+=("$MOTO_PID")
MOTO="http://127.0.0.1:$MOTO_PORT"
must "moto server answers on $MOTO" wait_until 60 curl -fsS "$MOTO/moto-api/"
read -r QUEUE INSTANCE < <(python3 "$HERE/moto_world.py" setup "$MOTO" image-test)
must "moto: two spot ASGs (us-east-1a with one instance, us-east-1b) with the auto-discovery tags, an SQS queue" \
  test -n "$QUEUE" -a -n "${INSTANCE:-}"
NODE=ip-10-0-1-10.ec2.internal
world() { # the instance of image-test-a as an idle KWOK Node; a pod only us-east-1b can take
  k create namespace "$NS" && k apply -f - <<EOF && k -n "$NS" create -f - <<'EOF2'
apiVersion: v1
kind: Node
metadata:
  name: $NODE
  annotations: {kwok.x-k8s.io/node: fake}
  labels:
    kubernetes.io/hostname: $NODE
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    topology.kubernetes.io/region: us-east-1
    topology.kubernetes.io/zone: us-east-1a
    node.kubernetes.io/instance-type: m5.large
spec:
  providerID: aws:///us-east-1a/$INSTANCE
status:
  allocatable: {cpu: "2", memory: 7Gi, pods: "110"}
  capacity: {cpu: "2", memory: 8Gi, pods: "110"}
EOF
apiVersion: v1
kind: Pod
metadata: {name: pending}
spec:
  nodeSelector: {topology.kubernetes.io/zone: us-east-1b}
  containers:
    - name: app
      image: registry.k8s.io/pause:3.10
      resources: {requests: {cpu: "1", memory: 1Gi}}
EOF2
}
must "namespace $NS, the idle node of image-test-a, a pod only a us-east-1b node can take" world

# The kubeconfig (client certificate and CA inside) goes into the image's /tmp, readable
# by the nonroot user; the control plane and moto are on 127.0.0.1 (same network).
install -m 0644 "$KUBECONFIG" "$IMG/tmp/kubeconfig"
METRICS_PORT="$(free_port)"
env -i PATH=/ HOME=/home/nonroot AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
  AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/nonexistent AWS_SHARED_CREDENTIALS_FILE=/nonexistent \
  "$CHROOT" --userspec=65532:65532 "$IMG" /autoscaler \
  --kubeconfig=/tmp/kubeconfig --cloud-provider=aws --aws-region=us-east-1 \
  "--aws-endpoint-url=$MOTO" --node-group-auto-discovery=asg:tag=k8s.io/cluster-autoscaler/enabled,k8s.io/cluster-autoscaler/image-test \
  "--event-queue-url=$QUEUE" --dry-run "--namespace=$NS" --leader-elect=false --scan-interval=2s \
  --scale-down-unneeded-time=1s --scale-down-delay-after-add=0s \
  "--metrics-address=127.0.0.1:$METRICS_PORT" >"$WORK/controller.log" 2>&1 &
CONTROLLER=$!
PIDS+=("$CONTROLLER")
METRICS="http://127.0.0.1:$METRICS_PORT"
metric() { curl -fsS "$METRICS/metrics" | awk -v n="$1" '$1 == n {print $2}'; }
rounds_done() { local n; n="$(metric autoscaler_decision_round_seconds_count)"; [[ -n "$n" && "${n%.*}" -ge 2 ]]; }
status_written() { k -n "$NS" get configmap cluster-autoscaler-status -o jsonpath='{.data.status}' | grep -q autoscalerStatus; }
if wait_until 90 rounds_done && wait_until 30 status_written; then
  pass "the image's controller (dry-run, AWS via moto) went round: status ConfigMap written, 2+ rounds on /metrics"
else
  fail "the image's controller (dry-run, AWS via moto) went round: status ConfigMap written, 2+ rounds on /metrics" "$(tail -n 20 "$WORK/controller.log")"
fi
check "the controller process runs as uid/gid 65532" \
  is "65532 65532" bash -c "awk '/^Uid:/{u=\$2} /^Gid:/{g=\$2} END{print u, g}' /proc/$CONTROLLER/status"
check "/healthz answers 200" curl -fsS "$METRICS/healthz"
check "no failed round (autoscaler_round_failures_total absent)" bash -c "! curl -fsS '$METRICS/metrics' | grep '^autoscaler_round_failures_total'"
check "both ASGs discovered (cluster_autoscaler_node_groups_count 2)" is 2 metric cluster_autoscaler_node_groups_count
reported() { wait_until 30 bash -c "curl -fsS '$METRICS/metrics' | grep -qF '$1'"; }
check "the pending pod led to a (dry-run) scale-up decision" reported 'autoscaler_decisions_total{reason="scale_up"}'
check "the idle node led to a (dry-run) scale-down decision" reported 'cluster_autoscaler_scaled_down_nodes_total{reason="underutilized"}'
check "the two groups form a zone-balance set (autoscaler_zone_skew)" reported 'autoscaler_zone_skew{'
desired_both() { echo "$(python3 "$HERE/moto_world.py" desired "$MOTO" image-test-a) $(python3 "$HERE/moto_world.py" desired "$MOTO" image-test-b)"; }
check "dry-run changed nothing in AWS (desired capacities still 1 and 0)" is "1 0" desired_both
check "dry-run left the idle node alone (not cordoned, not tainted)" \
  is "|" k get node "$NODE" -o jsonpath='{.spec.unschedulable}|{.spec.taints}'
status_text() { k -n "$NS" get configmap cluster-autoscaler-status -o jsonpath='{.data.status}'; }
echo "# status ConfigMap written by the image's controller (first lines):"
status_text 2>&1 | head -n 8 | sed 's/^/    /'
# AWS goes away: rounds fail on the cloud provider's side and say so, the process stays up
# (and healthy within its stall window). The scrape then also has the failure families.
kill "$MOTO_PID" && wait "$MOTO_PID" 2>/dev/null
check "AWS unreachable: failed rounds counted (autoscaler_round_failures_total{reason=\"cloud_provider\"})" \
  reported 'autoscaler_round_failures_total{reason="cloud_provider"}'
check "AWS unreachable: the error's kind and action counted (autoscaler_cloud_provider_errors_total)" \
  reported 'autoscaler_cloud_provider_errors_total{kind="transport",action="autoscaling:DescribeAutoScalingGroups"}'
check "AWS unreachable: /healthz still 200 within the stall window" curl -fsS "$METRICS/healthz"
curl -fsS -D "$WORK/metrics.headers" "$METRICS/metrics" >"$WORK/metrics.txt"
CONTENT_TYPE="$(sed -n 's/^[Cc]ontent-[Tt]ype: *//p' "$WORK/metrics.headers" | tr -d '\r')"
check "/metrics scraped ($(grep -c '^# TYPE' "$WORK/metrics.txt") families, $CONTENT_TYPE)" grep -q '^autoscaler_aws_api_calls_total' "$WORK/metrics.txt"
stop() {
  kill -TERM "$CONTROLLER" || return 1
  local i
  for i in $(seq 1 20); do
    kill -0 "$CONTROLLER" 2>/dev/null || break
    sleep 0.5
  done
  kill -0 "$CONTROLLER" 2>/dev/null && { echo "still running 10 s after SIGTERM"; return 1; }
  wait "$CONTROLLER"
}
# not through check: `wait` needs the controller to be this shell's child
if stop >"$WORK/stop.out" 2>&1; then pass "SIGTERM: the controller exits 0 within 10 s"
else fail "SIGTERM: the controller exits 0 within 10 s" "$(cat "$WORK/stop.out")"; fi

# charts/test.sh starts its own control plane: this one goes first (memory)
"$CP" down "$RUN_DIR" >/dev/null 2>&1

# ------------------------------------------------------------------ 6. the chart, with this image
chart() {
  CHART_TEST_IMAGE="$REF" CHART_TEST_SCRAPE="$WORK/metrics.txt" CHART_TEST_SCRAPE_TYPE="$CONTENT_TYPE" \
    CRANE="$CRANE" bash "$ROOT/charts/test.sh"
}
chart_out="$(chart 2>&1)"
chart_rc=$?
echo "$chart_out" | grep -E '^(not ok|# )' | sed 's/^/    /'
tail -n 1 <<<"$chart_out" | sed 's/^/    charts\/test.sh: /'
if ((chart_rc == 0)); then pass "charts/test.sh with CHART_TEST_IMAGE=$REF and the scrape: $(tail -n 1 <<<"$chart_out")"
else fail "charts/test.sh with CHART_TEST_IMAGE=$REF and the scrape" "$(grep -A3 '^not ok' <<<"$chart_out")"; fi
echo "# image $REF: $COMPRESSED bytes compressed, built twice with the same digest"
