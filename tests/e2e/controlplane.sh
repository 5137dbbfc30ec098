#!/usr/bin/env bash
# Real Kubernetes control plane on loopback for end-to-end tests.
#
#   controlplane.sh build      build + cache etcd, kube-apiserver, kube-scheduler,
#                              kube-controller-manager and kwok (skips cached ones)
#   controlplane.sh up DIR     start everything on free 127.0.0.1 ports; writes
#                              DIR/kubeconfig, DIR/env, DIR/pids, DIR/logs/
#   controlplane.sh down DIR   stop what `up DIR` started (idempotent)
#   controlplane.sh status DIR show the processes of DIR and whether they run
#   controlplane.sh paths      print the cached binary paths
#
# See README.md next to this file for details.
set -euo pipefail

# ---------------------------------------------------------------- versions --
K8S_VERSION="v1.33.13"          # k8s.io/kubernetes, see k8s-wrapper/go.mod
KWOK_VERSION="v0.7.0"           # sigs.k8s.io/kwok/cmd/kwok
ETCD_PACKAGE="etcd-server"      # Debian bookworm package providing /usr/bin/etcd
ETCD_DEB_VERSION="3.4.23-4+b4"  # pinned Debian version of $ETCD_PACKAGE

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WRAPPER_DIR="$SCRIPT_DIR/k8s-wrapper"
CACHE_ROOT="${AUTOSCALER_E2E_CACHE:-$HOME/.cache/autoscaler-e2e}"
K8S_DIR="$CACHE_ROOT/kubernetes-$K8S_VERSION"
KWOK_DIR="$CACHE_ROOT/kwok-$KWOK_VERSION"
ETCD_DIR="$CACHE_ROOT/etcd-$ETCD_DEB_VERSION"
KUBECTL="${KUBECTL:-$(command -v kubectl || echo /usr/bin/kubectl)}"
# Seconds each component may take to become healthy during `up`.
E2E_TIMEOUT="${E2E_TIMEOUT:-90}"
# Opt-in: client QPS of kube-controller-manager and kube-scheduler (burst = 2 x QPS), so
# that creating and binding thousands of pods is not throttled client-side (benches/peers).
# Unset = the components' defaults (20 QPS / 30 burst for the controller-manager, 50/100
# for the scheduler).
E2E_CLIENT_QPS="${E2E_CLIENT_QPS:-}"

log() { printf '[controlplane] %s\n' "$*" >&2; }
die() {
  printf '\n[controlplane] ERROR: %s\n' "$*" >&2
  exit 1
}

# ------------------------------------------------------------------- build --
fmt_secs() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

go_env() {
  # GOTOOLCHAIN=local: never download another toolchain, use the installed Go.
  # CGO_ENABLED=0: static binaries, no C toolchain needed (as upstream builds).
  env GOTOOLCHAIN=local CGO_ENABLED=0 "$@"
}

build_kubernetes() {
  if [[ -x "$K8S_DIR/kube-apiserver" && -x "$K8S_DIR/kube-scheduler" && -x "$K8S_DIR/kube-controller-manager" ]]; then
    log "kubernetes $K8S_VERSION: cached in $K8S_DIR"
    return 0
  fi
  [[ -f "$WRAPPER_DIR/go.mod" ]] || die "missing $WRAPPER_DIR/go.mod"
  local minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  local pkgver="k8s.io/component-base/version" cgver="k8s.io/client-go/pkg/version"
  local ldflags="-s -w"
  local p
  for p in "$pkgver" "$cgver"; do
    ldflags+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  local tmp="$K8S_DIR.tmp.$$"
  rm -rf "$tmp"; mkdir -p "$tmp"
  local start=$SECONDS
  log "kubernetes $K8S_VERSION: go build kube-apiserver kube-controller-manager kube-scheduler (this is the slow part) ..."
  if ! (cd "$WRAPPER_DIR" && go_env go build -mod=readonly -trimpath -ldflags "$ldflags" -o "$tmp/" \
      k8s.io/kubernetes/cmd/kube-apiserver \
      k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler); then
    rm -rf "$tmp"
    die "go build of kubernetes $K8S_VERSION failed (wrapper module: $WRAPPER_DIR)"
  fi
  "$tmp/kube-apiserver" --version >/dev/null 2>&1 || { rm -rf "$tmp"; die "built kube-apiserver does not run"; }
  rm -rf "$K8S_DIR"; mv "$tmp" "$K8S_DIR"
  log "kubernetes $K8S_VERSION: built in $(fmt_secs $((SECONDS - start))) -> $K8S_DIR ($("$K8S_DIR/kube-apiserver" --version))"
}

build_kwok() {
  if [[ -x "$KWOK_DIR/kwok" ]]; then
    log "kwok $KWOK_VERSION: cached in $KWOK_DIR"
    return 0
  fi
  local tmp="$KWOK_DIR.tmp.$$"
  rm -rf "$tmp"; mkdir -p "$tmp"
  local start=$SECONDS
  log "kwok $KWOK_VERSION: go install sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION ..."
  # Run outside any module so kwok's own go.mod decides its dependencies.
  if ! (cd "$tmp" && go_env GOBIN="$tmp" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"); then
    rm -rf "$tmp"
    die "go install of sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION failed"
  fi
  rm -rf "$KWOK_DIR"; mv "$tmp" "$KWOK_DIR"
  log "kwok $KWOK_VERSION: built in $(fmt_secs $((SECONDS - start))) -> $KWOK_DIR"
}

build_etcd() {
  if [[ -x "$ETCD_DIR/etcd" ]]; then
    log "etcd $ETCD_DEB_VERSION: cached in $ETCD_DIR"
    return 0
  fi
  command -v apt-get >/dev/null || die "apt-get not found: etcd comes from the Debian package $ETCD_PACKAGE"
  local tmp="$ETCD_DIR.tmp.$$"
  rm -rf "$tmp"; mkdir -p "$tmp"
  chmod 755 "$tmp"   # let apt's sandbox user write the .deb here
  local start=$SECONDS
  log "etcd: apt-get download $ETCD_PACKAGE=$ETCD_DEB_VERSION (extracted, not installed: no service is started) ..."
  if ! (cd "$tmp" && apt-get download -q "$ETCD_PACKAGE=$ETCD_DEB_VERSION" >download.log 2>&1); then
    log "etcd: download failed, running apt-get update and retrying"
    apt-get update -q >/dev/null 2>&1 || log "etcd: apt-get update failed (continuing)"
    if ! (cd "$tmp" && apt-get download -q "$ETCD_PACKAGE=$ETCD_DEB_VERSION" >download.log 2>&1); then
      cat "$tmp/download.log" >&2 || true
      rm -rf "$tmp"
      die "cannot download Debian package $ETCD_PACKAGE=$ETCD_DEB_VERSION (update ETCD_DEB_VERSION in $0 to what 'apt-cache policy $ETCD_PACKAGE' offers)"
    fi
  fi
  local deb
  deb="$(ls "$tmp"/*.deb 2>/dev/null | head -n1)"
  [[ -n "$deb" ]] || { rm -rf "$tmp"; die "apt-get download produced no .deb"; }
  mkdir -p "$tmp/x"
  dpkg-deb -x "$deb" "$tmp/x" || { rm -rf "$tmp"; die "dpkg-deb -x $deb failed"; }
  [[ -x "$tmp/x/usr/bin/etcd" ]] || { rm -rf "$tmp"; die "$deb has no usr/bin/etcd"; }
  mv "$tmp/x/usr/bin/etcd" "$tmp/etcd"
  rm -rf "$tmp/x" "$deb" "$tmp/download.log"
  "$tmp/etcd" --version >/dev/null 2>&1 || { rm -rf "$tmp"; die "extracted etcd does not run"; }
  rm -rf "$ETCD_DIR"; mv "$tmp" "$ETCD_DIR"
  log "etcd $ETCD_DEB_VERSION: fetched in $(fmt_secs $((SECONDS - start))) -> $ETCD_DIR ($("$ETCD_DIR/etcd" --version | head -n1))"
}

cmd_build() {
  command -v go >/dev/null || die "go not found in PATH"
  mkdir -p "$CACHE_ROOT"
  # Serialise concurrent builds (same cache directory).
  exec 9>"$CACHE_ROOT/.build.lock"
  flock 9
  local start=$SECONDS
  log "using $(GOTOOLCHAIN=local go version), cache $CACHE_ROOT"
  build_etcd
  build_kwok
  build_kubernetes
  log "build done in $(fmt_secs $((SECONDS - start)))"
  cmd_paths
}

cmd_paths() {
  echo "ETCD=$ETCD_DIR/etcd"
  echo "KUBE_APISERVER=$K8S_DIR/kube-apiserver"
  echo "KUBE_CONTROLLER_MANAGER=$K8S_DIR/kube-controller-manager"
  echo "KUBE_SCHEDULER=$K8S_DIR/kube-scheduler"
  echo "KWOK=$KWOK_DIR/kwok"
}

# ------------------------------------------------------------------- ports --
# Ports are picked at random in 20000-32767 (below Linux's ephemeral range, so
# the kernel never hands them out as source ports), skipping any port that
# appears in /proc/net/tcp{,6}. A port is "claimed" with an atomic mkdir in a
# shared directory so that concurrent `up`s never pick the same port; claims
# expire after 10 minutes (by then the owner listens on it or is dead).
PORT_CLAIMS="${TMPDIR:-/tmp}/autoscaler-e2e-ports"

port_in_use() {
  local hex
  hex="$(printf ':%04X ' "$1")"
  cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | awk '{print $2" "}' | grep -qF "$hex"
}

expire_port_claims() {
  mkdir -p "$PORT_CLAIMS" 2>/dev/null || true
  find "$PORT_CLAIMS" -mindepth 1 -maxdepth 1 -mmin +10 -exec rm -rf {} + 2>/dev/null || true
}

claim_port() {
  local i port c
  for i in $(seq 1 500); do
    port=$((20000 + (RANDOM * 32768 + RANDOM) % 12768))
    port_in_use "$port" && continue
    c="$PORT_CLAIMS/$port"
    if [[ -d "$c" ]] && [[ -n "$(find "$c" -maxdepth 0 -mmin +10 2>/dev/null)" ]]; then
      rm -rf "$c" 2>/dev/null || true
    fi
    mkdir "$c" 2>/dev/null || continue
    echo "$port"
    return 0
  done
  die "could not find a free TCP port"
}

# --------------------------------------------------------------------- pki --
gen_pki() {
  local pki="$1"
  mkdir -p "$pki"
  (
    cd "$pki"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 \
      -subj "/CN=autoscaler-e2e-ca" \
      -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
    # service-account token signing key pair
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    # name CN O extendedKeyUsage subjectAltName
    local name cn o eku san
    while IFS='|' read -r name cn o eku san; do
      [[ -n "$name" ]] || continue
      local subj="/CN=$cn"
      [[ -n "$o" ]] && subj="/O=$o/CN=$cn"
      {
        echo "basicConstraints=critical,CA:FALSE"
        echo "keyUsage=critical,digitalSignature,keyEncipherment"
        echo "extendedKeyUsage=$eku"
        [[ -n "$san" ]] && echo "subjectAltName=$san"
      } > "$name.ext"
      openssl req -new -newkey rsa:2048 -nodes -keyout "$name.key" -out "$name.csr" -subj "$subj" 2>/dev/null
      openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
        -out "$name.crt" -days 3650 -extfile "$name.ext" 2>/dev/null
      rm -f "$name.csr" "$name.ext"
    done <<EOF
apiserver|kube-apiserver||serverAuth|IP:127.0.0.1,DNS:localhost,IP:10.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
admin|admin|system:masters|clientAuth|
controller-manager|system:kube-controller-manager||clientAuth|
scheduler|system:kube-scheduler||clientAuth|
kwok|kwok|system:masters|clientAuth|
EOF
    # front-proxy (aggregation layer) CA + client cert: configures the
    # requestheader authenticator that controller-manager/scheduler expect.
    openssl req -x509 -newkey rsa:2048 -nodes -keyout front-proxy-ca.key -out front-proxy-ca.crt -days 3650 \
      -subj "/CN=autoscaler-e2e-front-proxy-ca" \
      -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
    printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' >front-proxy-client.ext
    openssl req -new -newkey rsa:2048 -nodes -keyout front-proxy-client.key -out front-proxy-client.csr \
      -subj "/CN=front-proxy-client" 2>/dev/null
    openssl x509 -req -in front-proxy-client.csr -CA front-proxy-ca.crt -CAkey front-proxy-ca.key -CAcreateserial \
      -out front-proxy-client.crt -days 3650 -extfile front-proxy-client.ext 2>/dev/null
    rm -f front-proxy-client.csr front-proxy-client.ext ca.srl front-proxy-ca.srl
  ) || die "certificate generation with openssl failed (in $pki)"
}

write_kubeconfig() {
  local file="$1" server="$2" pki="$3" user="$4"
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: $server
    certificate-authority-data: $(base64 -w0 <"$pki/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 <"$pki/$user.crt")
    client-key-data: $(base64 -w0 <"$pki/$user.key")
contexts:
- name: e2e
  context:
    cluster: e2e
    user: $user
current-context: e2e
EOF
  chmod 600 "$file"
}

# -------------------------------------------------------------- processes --
start_proc() {
  # start_proc NAME BINARY ARGS... : background process, logs to DIR/logs/NAME.log
  local name="$1"; shift
  "$@" </dev/null >"$RUN_DIR/logs/$name.log" 2>&1 &
  local pid=$!
  echo "$name $pid" >>"$RUN_DIR/pids"
  eval "PID_${name//-/_}=$pid"
}

fail_component() {
  local name="$1" why="$2"
  {
    printf '\n[controlplane] ERROR: %s %s\n' "$name" "$why"
    printf '[controlplane] last 40 lines of %s:\n' "$RUN_DIR/logs/$name.log"
    tail -n 40 "$RUN_DIR/logs/$name.log" 2>/dev/null | sed 's/^/    /'
  } >&2
  cmd_down "$RUN_DIR" >/dev/null 2>&1 || true
  exit 1
}

wait_for() {
  # wait_for NAME DESCRIPTION COMMAND... : poll COMMAND until it succeeds
  local name="$1" what="$2"; shift 2
  local pidvar="PID_${name//-/_}"
  local pid="${!pidvar}"
  local deadline=$((SECONDS + E2E_TIMEOUT))
  while ! "$@" >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || fail_component "$name" "exited before $what"
    ((SECONDS < deadline)) || fail_component "$name" "not $what after ${E2E_TIMEOUT}s"
    sleep 0.25
  done
}

https_ok() { # https_ok URL : body must be "ok"
  [[ "$(curl -sk --max-time 2 "$1")" == "ok" ]]
}

cmd_up() {
  [[ $# -eq 1 ]] || die "usage: $0 up DIR"
  mkdir -p "$1"
  RUN_DIR="$(cd "$1" && pwd)"
  if [[ -s "$RUN_DIR/pids" ]] && any_alive "$RUN_DIR"; then
    die "$RUN_DIR already has running processes (run '$0 down $RUN_DIR' first)"
  fi
  local b
  for b in "$ETCD_DIR/etcd" "$K8S_DIR/kube-apiserver" "$K8S_DIR/kube-controller-manager" \
           "$K8S_DIR/kube-scheduler" "$KWOK_DIR/kwok"; do
    [[ -x "$b" ]] || die "$b not built: run '$0 build' first"
  done
  [[ -x "$KUBECTL" ]] || die "kubectl not found (set KUBECTL=/path/to/kubectl)"
  command -v curl >/dev/null || die "curl not found"
  command -v openssl >/dev/null || die "openssl not found"

  local -a client_qps=()
  if [[ -n "$E2E_CLIENT_QPS" ]]; then
    [[ "$E2E_CLIENT_QPS" =~ ^[1-9][0-9]*$ ]] || die "E2E_CLIENT_QPS must be a positive integer (got '$E2E_CLIENT_QPS'); unset it for the defaults"
    client_qps=(--kube-api-qps="$E2E_CLIENT_QPS" --kube-api-burst="$((2 * E2E_CLIENT_QPS))")
  fi

  local start=$SECONDS
  rm -rf "$RUN_DIR/logs" "$RUN_DIR/pki" "$RUN_DIR/etcd-data" "$RUN_DIR/pids" "$RUN_DIR/env"
  mkdir -p "$RUN_DIR/logs"
  : >"$RUN_DIR/pids"

  local pki="$RUN_DIR/pki"
  gen_pki "$pki"

  local etcd_port etcd_peer_port api_port kcm_port sched_port kwok_port
  expire_port_claims
  etcd_port="$(claim_port)"; etcd_peer_port="$(claim_port)"; api_port="$(claim_port)"
  kcm_port="$(claim_port)"; sched_port="$(claim_port)"; kwok_port="$(claim_port)"
  local server="https://127.0.0.1:$api_port"

  write_kubeconfig "$RUN_DIR/kubeconfig" "$server" "$pki" admin
  write_kubeconfig "$RUN_DIR/controller-manager.kubeconfig" "$server" "$pki" controller-manager
  write_kubeconfig "$RUN_DIR/scheduler.kubeconfig" "$server" "$pki" scheduler
  write_kubeconfig "$RUN_DIR/kwok.kubeconfig" "$server" "$pki" kwok

  cat >"$RUN_DIR/env" <<EOF
KUBECONFIG=$RUN_DIR/kubeconfig
APISERVER_URL=$server
ETCD_URL=http://127.0.0.1:$etcd_port
CONTROLLER_MANAGER_URL=https://127.0.0.1:$kcm_port
SCHEDULER_URL=https://127.0.0.1:$sched_port
KWOK_URL=http://127.0.0.1:$kwok_port
KWOK_NODE_ANNOTATION=kwok.x-k8s.io/node=fake
KUBERNETES_VERSION=$K8S_VERSION
KWOK_VERSION=$KWOK_VERSION
EOF

  # --- etcd
  start_proc etcd "$ETCD_DIR/etcd" \
    --name e2e \
    --data-dir "$RUN_DIR/etcd-data" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" \
    --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster "e2e=http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster-state new \
    --quota-backend-bytes 2147483648 \
    --logger zap --log-outputs stderr
  wait_for etcd "healthy" bash -c "curl -s --max-time 2 http://127.0.0.1:$etcd_port/health | grep -q '\"health\":\"true\"'"

  # --- kube-apiserver
  start_proc kube-apiserver "$K8S_DIR/kube-apiserver" \
    --bind-address=127.0.0.1 \
    --advertise-address=127.0.0.1 \
    --secure-port="$api_port" \
    --etcd-servers="http://127.0.0.1:$etcd_port" \
    --tls-cert-file="$pki/apiserver.crt" \
    --tls-private-key-file="$pki/apiserver.key" \
    --client-ca-file="$pki/ca.crt" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$pki/sa.pub" \
    --service-account-signing-key-file="$pki/sa.key" \
    --service-cluster-ip-range=10.0.0.0/24 \
    --authorization-mode=RBAC \
    --requestheader-client-ca-file="$pki/front-proxy-ca.crt" \
    --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User \
    --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$pki/front-proxy-client.crt" \
    --proxy-client-key-file="$pki/front-proxy-client.key" \
    --allow-privileged=true \
    --endpoint-reconciler-type=none \
    --profiling=false \
    --v=1
  wait_for kube-apiserver "ready (/readyz)" \
    bash -c "[[ \"\$('$KUBECTL' --kubeconfig '$RUN_DIR/kubeconfig' get --raw /readyz 2>/dev/null)\" == ok ]]"

  # --- kube-controller-manager
  start_proc kube-controller-manager "$K8S_DIR/kube-controller-manager" \
    --kubeconfig="$RUN_DIR/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$RUN_DIR/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$RUN_DIR/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 \
    --secure-port="$kcm_port" \
    --service-account-private-key-file="$pki/sa.key" \
    --root-ca-file="$pki/ca.crt" \
    --cluster-signing-cert-file="$pki/ca.crt" \
    --cluster-signing-key-file="$pki/ca.key" \
    --use-service-account-credentials=true \
    --service-cluster-ip-range=10.0.0.0/24 \
    --cluster-name=autoscaler-e2e \
    --leader-elect=false \
    --profiling=false \
    ${client_qps[@]+"${client_qps[@]}"} \
    --v=1

  # --- kube-scheduler
  start_proc kube-scheduler "$K8S_DIR/kube-scheduler" \
    --kubeconfig="$RUN_DIR/scheduler.kubeconfig" \
    --authentication-kubeconfig="$RUN_DIR/scheduler.kubeconfig" \
    --authorization-kubeconfig="$RUN_DIR/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 \
    --secure-port="$sched_port" \
    --leader-elect=false \
    --profiling=false \
    ${client_qps[@]+"${client_qps[@]}"} \
    --v=1

  # --- kwok: only manages nodes annotated kwok.x-k8s.io/node=fake (and their pods).
  # HOME is redirected so that a developer's ~/.kwok/kwok.yaml is never loaded.
  mkdir -p "$RUN_DIR/kwok-home"
  start_proc kwok env HOME="$RUN_DIR/kwok-home" "$KWOK_DIR/kwok" \
    --kubeconfig="$RUN_DIR/kwok.kubeconfig" \
    --manage-all-nodes=false \
    --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --node-ip=127.0.0.1 \
    --cidr=10.244.0.0/16 \
    --node-lease-duration-seconds=40 \
    --server-address="127.0.0.1:$kwok_port" \
    --v=INFO

  wait_for kube-controller-manager "healthy (/healthz)" https_ok "https://127.0.0.1:$kcm_port/healthz"
  wait_for kube-scheduler "healthy (/healthz)" https_ok "https://127.0.0.1:$sched_port/healthz"
  wait_for kwok "healthy (/healthz)" bash -c "curl -s --max-time 2 http://127.0.0.1:$kwok_port/healthz | grep -qi ok"
  wait_for kube-controller-manager "creating the default ServiceAccount" \
    "$KUBECTL" --kubeconfig "$RUN_DIR/kubeconfig" -n default get serviceaccount default

  log "control plane up in $(fmt_secs $((SECONDS - start))): $server (kubeconfig $RUN_DIR/kubeconfig)"
  echo "KUBECONFIG=$RUN_DIR/kubeconfig"
}

any_alive() {
  local name pid
  while read -r name pid; do
    [[ -n "${pid:-}" ]] && kill -0 "$pid" 2>/dev/null && return 0
  done <"$1/pids"
  return 1
}

# is_ours PID DIR: PID is alive and its command line mentions DIR (guards
# against killing an unrelated process that reused a recorded pid).
is_ours() {
  [[ -r "/proc/$1/cmdline" ]] && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF "$2"
}

cmd_down() {
  [[ $# -eq 1 ]] || die "usage: $0 down DIR"
  [[ -f "$1/pids" ]] || return 0
  local dir
  dir="$(cd "$1" && pwd)"
  local -a pids=() names=()
  local name pid
  while read -r name pid; do
    [[ -n "${pid:-}" ]] || continue
    is_ours "$pid" "$dir" || continue
    names=("$name" "${names[@]}"); pids=("$pid" "${pids[@]}")   # reverse order
  done <"$dir/pids"
  local i
  for i in "${!pids[@]}"; do
    kill -TERM "${pids[$i]}" 2>/dev/null || true
  done
  local deadline=$((SECONDS + 15))
  for i in "${!pids[@]}"; do
    # (is_ours, not kill -0: a zombie has an empty cmdline and counts as gone)
    while is_ours "${pids[$i]}" "$dir" && ((SECONDS < deadline)); do sleep 0.1; done
    if is_ours "${pids[$i]}" "$dir"; then
      log "${names[$i]} (pid ${pids[$i]}) did not stop on SIGTERM, sending SIGKILL"
      kill -KILL "${pids[$i]}" 2>/dev/null || true
    fi
  done
  rm -f "$dir/pids"
  log "stopped control plane in $dir"
}

cmd_status() {
  [[ $# -eq 1 ]] || die "usage: $0 status DIR"
  [[ -f "$1/pids" ]] || { echo "not running (no $1/pids)"; return 1; }
  local name pid rc=0
  while read -r name pid; do
    if kill -0 "$pid" 2>/dev/null; then echo "$name $pid running"; else echo "$name $pid dead"; rc=1; fi
  done <"$1/pids"
  return $rc
}

case "${1:-}" in
  build) shift; cmd_build "$@" ;;
  up) shift; cmd_up "$@" ;;
  down) shift; cmd_down "$@" ;;
  status) shift; cmd_status "$@" ;;
  paths) shift; cmd_paths ;;
  *) echo "usage: $0 {build|up DIR|down DIR|status DIR|paths}" >&2; exit 2 ;;
esac
