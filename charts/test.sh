#!/usr/bin/env bash
# Tests of charts/autoscaler:
#   1. helm (built from the Go module proxy, cached per version)
#   2. helm lint + helm template for the default values, a static-ASG shadow
#      install and charts/ci/realistic-values.yaml, with assertions on the output
#      and on the Grafana dashboard (charts/dashboards/autoscaler.json)
#   3. a real control plane (tests/e2e/controlplane.sh): server-side dry-run of
#      every rendered manifest, then a real `helm upgrade --install` (pods run
#      on KWOK nodes under the "restricted" Pod Security Standard), and RBAC
#      checked with `kubectl auth can-i --as` and real requests as the SA
# Last line: "N passed, M failed"; exit 0 only if M == 0.
#
# Env: HELM_VERSION (default below), HELM=path (skip the build),
#      AUTOSCALER_E2E_CACHE (default $HOME/.cache/autoscaler-e2e), KUBECTL,
#      CHART_TEST_SKIP_CLUSTER=1 (steps 1-2 only; counts as failure in CI=true),
#      CHART_TEST_IMAGE=REPO@sha256:... or REPO:TAG: render and install the chart with
#        that image (scripts/image/test.sh passes the one it built and pushed); with
#        CRANE=path, the registry must serve it,
#      CHART_TEST_SCRAPE=FILE, CHART_TEST_SCRAPE_TYPE=content type: a scrape of a running
#        controller's /metrics; every query of the dashboard and of the PrometheusRule
#        must name only metrics and labels it has (charts/tests/promql-check).
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
CHART="$HERE/autoscaler"
REALISTIC="$HERE/ci/realistic-values.yaml"
CP="$ROOT/tests/e2e/controlplane.sh"
CACHE="${AUTOSCALER_E2E_CACHE:-$HOME/.cache/autoscaler-e2e}"
HELM_VERSION="${HELM_VERSION:-v3.21.4}"
KUBECTL="${KUBECTL:-$(command -v kubectl || echo /usr/bin/kubectl)}"
NS=kube-system
RELEASE=autoscaler
SA="system:serviceaccount:$NS:autoscaler"

PASSED=0
FAILED=0
WORK="$(mktemp -d "${TMPDIR:-/tmp}/autoscaler-charts.XXXXXX")"
RUN_DIR=""
T0=$SECONDS

pass() { PASSED=$((PASSED + 1)); printf 'ok %d - %s\n' "$((PASSED + FAILED))" "$1"; }
fail() {
  FAILED=$((FAILED + 1))
  printf 'not ok %d - %s\n' "$((PASSED + FAILED))" "$1"
  [[ -n "${2:-}" ]] && printf '%s\n' "$2" | tail -n 30 | sed 's/^/    /'
  return 0
}
# check DESC CMD...: an assertion; the run goes on if it fails
check() {
  local desc="$1"; shift
  local out
  if out="$("$@" 2>&1)"; then pass "$desc"; else fail "$desc" "$out"; fi
}
# must DESC CMD...: a step later checks depend on; stop the run if it fails
must() {
  local desc="$1"; shift
  local out
  if out="$("$@" 2>&1)"; then pass "$desc"; else fail "$desc" "$out"; exit 1; fi
}
# refuse DESC CMD...: the command must fail (e.g. helm template on bad values)
refuse() {
  local desc="$1"; shift
  local out
  if out="$("$@" 2>&1)"; then fail "$desc" "unexpectedly succeeded: $out"; else pass "$desc"; fi
}
# pyassert SCRIPT ARGS...: the per-line results of a tests/*.py checker
pyassert() {
  local line before=$FAILED rc=
  while IFS= read -r line; do
    case "$line" in
      "ok - "*) pass "${line#ok - }" ;;
      "not ok - "*) fail "${line#not ok - }" ;;
      "exit="*) rc="${line#exit=}" ;;
      *) printf '%s\n' "$line" ;;
    esac
  done < <(python3 "$HERE/tests/$1" "${@:2}" 2>&1; echo "exit=$?")
  if [[ "$rc" != 0 && $FAILED == "$before" ]]; then fail "$* exited ${rc:-?} without a failed assertion"; fi
}

cleanup() {
  local rc=$?
  set +e
  if [[ -n "$RUN_DIR" ]]; then
    if ((FAILED > 0)) && [[ -d "$RUN_DIR/logs" ]]; then
      echo "--- kube-apiserver log (last lines), kept in $RUN_DIR/logs"
      tail -n 15 "$RUN_DIR/logs/kube-apiserver.log" 2>/dev/null
      "$CP" down "$RUN_DIR" >/dev/null 2>&1
    else
      "$CP" down "$RUN_DIR" >/dev/null 2>&1
      rm -rf "$RUN_DIR"
    fi
  fi
  ((FAILED > 0)) || rm -rf "$WORK"
  ((rc != 0 && FAILED == 0)) && FAILED=1
  echo "# charts/test.sh took $((SECONDS - T0)) s (helm $HELM_VERSION)"
  echo "$PASSED passed, $FAILED failed"
  ((FAILED > 0)) && exit 1
  exit 0
}
trap cleanup EXIT

# ------------------------------------------------------------------ 1. helm
# Built with the machine's Go from the Go module proxy, cached under
# $CACHE/helm-<version>/helm; built into a temp dir and renamed into place, so
# an interrupted build never leaves a half-filled cache entry.
install_helm() {
  local dir="$CACHE/helm-$HELM_VERSION"
  [[ -x "$dir/helm" ]] && return 0
  command -v go >/dev/null || { echo "go not found: cannot build helm"; return 1; }
  mkdir -p "$CACHE"
  (
    flock 9
    [[ -x "$dir/helm" ]] && exit 0
    local tmp
    tmp="$(mktemp -d "$CACHE/.helm-$HELM_VERSION.XXXXXX")"
    echo "building helm $HELM_VERSION (cold: several minutes on 2 cores)" >&2
    # helm's Makefile stamps the Kubernetes version of its client-go (+1 major,
    # as 0.x -> 1.x) as the default .Capabilities.KubeVersion; do the same
    local gomod kminor
    gomod="$(GOTOOLCHAIN=local GOFLAGS=-mod=mod go mod download -json "helm.sh/helm/v3@$HELM_VERSION" |
      sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')"
    kminor="$(sed -n 's/^[[:space:]]*k8s.io\/client-go v0\.\([0-9]*\)\..*/\1/p' "$gomod")"
    [[ -n "$kminor" ]] || { echo "cannot find the client-go version of helm $HELM_VERSION" >&2; exit 1; }
    GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod GOBIN="$tmp" \
      go install -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION
        -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$kminor
        -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$kminor" \
      "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2 || { rm -rf "$tmp"; exit 1; }
    chmod 755 "$tmp" && rm -rf "$dir" && mv "$tmp" "$dir"
  ) 9>"$CACHE/.helm.lock"
}
if [[ -n "${HELM:-}" ]]; then
  must "helm given by HELM=$HELM is executable" test -x "$HELM"
else
  must "helm $HELM_VERSION installed (or cache hit) from the Go module proxy" install_helm
  HELM="$CACHE/helm-$HELM_VERSION/helm"
fi
# is WANT CMD...: the command's output must be exactly WANT
is() {
  local want="$1" got; shift
  got="$("$@")" || return 1
  [[ "$got" == "$want" ]] || { echo "want '$want', got '$got'"; return 1; }
}
helm_version() { "$HELM" version --template '{{.Version}}'; }
check "helm version reports $HELM_VERSION" is "$HELM_VERSION" helm_version
export HELM_CACHE_HOME="$WORK/helm/cache" HELM_CONFIG_HOME="$WORK/helm/config" HELM_DATA_HOME="$WORK/helm/data"

# ------------------------------------------------------------------ 2. lint + template
must "required files exist (chart, realistic values, Dockerfile, docs)" \
  test -f "$CHART/Chart.yaml" -a -f "$CHART/values.yaml" -a -f "$CHART/values.schema.json" -a -f "$REALISTIC" \
  -a -f "$HERE/Dockerfile" -a -f "$HERE/dashboards/autoscaler.json" -a -f "$ROOT/docs/migration.md" -a -f "$ROOT/docs/runbook.md" -a -f "$ROOT/docs/architecture.md"
pyassert check_docs.py "$ROOT"
check "helm lint --strict (default values)" "$HELM" lint --strict "$CHART"
check "helm lint --strict (realistic values)" "$HELM" lint --strict "$CHART" -f "$REALISTIC"

# the image under test: every render and install below uses it
IMAGE_SET=()
if [[ -n "${CHART_TEST_IMAGE:-}" ]]; then
  case "$CHART_TEST_IMAGE" in
    *@sha256:*) IMAGE_SET=(--set "image.repository=${CHART_TEST_IMAGE%@*}" --set "image.digest=${CHART_TEST_IMAGE#*@}") ;;
    *:*) IMAGE_SET=(--set "image.repository=${CHART_TEST_IMAGE%:*}" --set "image.tag=${CHART_TEST_IMAGE##*:}") ;;
    *) fail "CHART_TEST_IMAGE=$CHART_TEST_IMAGE is REPO@sha256:... or REPO:TAG"; exit 1 ;;
  esac
  echo "# chart rendered and installed with image $CHART_TEST_IMAGE"
fi
tpl() { "$HELM" template "$RELEASE" "$CHART" --namespace "$NS" "${IMAGE_SET[@]}" "$@"; }
render() { local out="$1"; shift; tpl "$@" >"$WORK/$out"; }

must "helm template (default values)" render default.yaml
pyassert assert_render.py default "$WORK/default.yaml"

cat >"$WORK/asg-values.yaml" <<'EOF'
autoscalingGroups:
  - {name: spot-a, minSize: 1, maxSize: 10}
  - {name: od-a, minSize: 0, maxSize: 5}
dryRun: true
extraArgs:
  expander: null
EOF
must "helm template (static ASGs, shadow mode)" render asg.yaml -f "$WORK/asg-values.yaml"
pyassert assert_render.py asg "$WORK/asg.yaml"

must "helm template (realistic values)" render realistic.yaml -f "$REALISTIC"
pyassert assert_render.py realistic "$WORK/realistic.yaml"

refuse "helm template fails on an ASG without maxSize" tpl --set 'autoscalingGroups[0].name=a' --set 'autoscalingGroups[0].minSize=0'
refuse "helm template fails on a cloudProvider other than aws" tpl --set autoDiscovery.clusterName=x --set cloudProvider=gce
refuse "helm template fails on a misspelt top-level value" tpl --set autoDiscovery.clusterName=x --set autoscalingGroup=oops
refuse "helm template fails on overprovisioning in shadow mode (real pods)" tpl -f "$REALISTIC" --set dryRun=true
refuse "helm template fails on a malformed duration" tpl --set autoDiscovery.clusterName=x --set drainBack.after=2hours
refuse "helm template fails on an image digest that is not sha256:<64 hex>" tpl --set autoDiscovery.clusterName=x --set image.digest=latest

# ---------------------------------------------------------------- image reference
image_of() { # RENDERED.yaml: the autoscaler container's image
  python3 -c 'import sys, yaml
for d in yaml.safe_load_all(open(sys.argv[1])):
    if d and d["kind"] == "Deployment" and d["metadata"]["name"] == "autoscaler":
        print(d["spec"]["template"]["spec"]["containers"][0]["image"])' "$1"
}
pinned() {
  local digest="sha256:$(printf 'ab%.0s' {1..32})"
  "$HELM" template "$RELEASE" "$CHART" -n "$NS" -f "$REALISTIC" --set "image.digest=$digest" >"$WORK/pinned.yaml" &&
    is "123456789012.dkr.ecr.eu-west-1.amazonaws.com/spot-autoscaler@$digest" image_of "$WORK/pinned.yaml"
}
check "image.digest set: the pod pulls repository@digest" pinned
if [[ -n "${CHART_TEST_IMAGE:-}" ]]; then
  check "realistic render runs the image under test ($CHART_TEST_IMAGE)" is "$CHART_TEST_IMAGE" image_of "$WORK/realistic.yaml"
  if [[ -n "${CRANE:-}" ]]; then
    case "$CHART_TEST_IMAGE" in
      *@*) check "the registry serves $CHART_TEST_IMAGE (crane digest)" is "${CHART_TEST_IMAGE#*@}" "$CRANE" digest "$CHART_TEST_IMAGE" ;;
      *) check "the registry serves $CHART_TEST_IMAGE (crane digest)" "$CRANE" digest "$CHART_TEST_IMAGE" ;;
    esac
  fi
fi

# ---------------------------------------------------------------- Grafana dashboard
DASHBOARD="$HERE/dashboards/autoscaler.json"
if [[ -n "${CHART_TEST_SCRAPE:-}" ]]; then
  build_promql_check() {
    (cd "$HERE/tests/promql-check" && GOTOOLCHAIN=local GOFLAGS=-mod=readonly go build -o "$WORK/promql-check" .)
  }
  must "promql-check built (Prometheus' PromQL and scrape parsers, Go module proxy)" build_promql_check
  must "the scrape $CHART_TEST_SCRAPE is a file" test -s "$CHART_TEST_SCRAPE"
  pyassert check_dashboard.py "$DASHBOARD" "$CHART_TEST_SCRAPE" "${CHART_TEST_SCRAPE_TYPE:-application/openmetrics-text; version=1.0.0}" \
    "$WORK/promql-check" "$WORK/realistic.yaml"
else
  pyassert check_dashboard.py "$DASHBOARD"
fi

if [[ "${CHART_TEST_SKIP_CLUSTER:-}" == 1 ]]; then
  if [[ "${CI:-}" == true ]]; then fail "CHART_TEST_SKIP_CLUSTER=1 is not allowed in CI"; fi
  echo "# cluster steps skipped (CHART_TEST_SKIP_CLUSTER=1)"
  exit 0
fi

# ------------------------------------------------------------------ 3. real control plane
must "control plane build (or cache hit)" "$CP" build
RUN_DIR="$(mktemp -d "${TMPDIR:-/tmp}/autoscaler-charts-e2e.XXXXXX")"
must "control plane up" "$CP" up "$RUN_DIR"
export KUBECONFIG="$RUN_DIR/kubeconfig"
k() { "$KUBECTL" "$@"; }
as() { "$KUBECTL" --as="$SA" "$@"; }

# prometheus-operator CRDs, reduced to what the API server needs to accept the objects
crds() {
  local crd plural kind
  for crd in servicemonitors:ServiceMonitor prometheusrules:PrometheusRule; do
    plural="${crd%%:*}" kind="${crd##*:}"
    k apply -f - <<EOF || return 1
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: $plural.monitoring.coreos.com}
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {plural: $plural, kind: $kind, listKind: ${kind}List, singular: ${plural%s}}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
EOF
  done
  k wait --for=condition=Established --timeout=60s \
    crd/servicemonitors.monitoring.coreos.com crd/prometheusrules.monitoring.coreos.com
}
must "prometheus-operator CRDs (ServiceMonitor, PrometheusRule) established" crds
must "namespace monitoring" k create namespace monitoring
# every pod of the chart must pass the strictest Pod Security Standard
must "kube-system enforces Pod Security 'restricted'" k label --overwrite namespace "$NS" \
  pod-security.kubernetes.io/enforce=restricted pod-security.kubernetes.io/warn=restricted

check "kubectl apply --dry-run=server (default values)" k apply --dry-run=server -f "$WORK/default.yaml"
check "kubectl apply --dry-run=server (static ASGs, shadow mode)" k apply --dry-run=server -f "$WORK/asg.yaml"
if out="$(k apply --dry-run=server -f "$WORK/realistic.yaml" 2>&1)"; then
  pass "kubectl apply --dry-run=server (realistic values, $(grep -c 'created (server dry run)' <<<"$out") objects)"
else fail "kubectl apply --dry-run=server (realistic values)" "$out"; fi
if grep -qi warning <<<"$out"; then fail "no warnings from the server dry-run (Pod Security, deprecations)" "$(grep -i warning <<<"$out")"
else pass "no warnings from the server dry-run (Pod Security, deprecations)"; fi

# KWOK nodes: two on-demand system nodes in two zones, one spot node
node() { # name zone capacityType
  k apply -f - <<EOF
apiVersion: v1
kind: Node
metadata:
  name: $1
  annotations: {kwok.x-k8s.io/node: fake}
  labels:
    kubernetes.io/hostname: $1
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    topology.kubernetes.io/region: eu-west-1
    topology.kubernetes.io/zone: $2
    node.kubernetes.io/instance-type: m6i.xlarge
    eks.amazonaws.com/capacityType: $3
spec:
  providerID: aws:///$2/i-0$(printf '%016x' "$RANDOM")
status:
  allocatable: {cpu: "4", memory: 15Gi, pods: "58"}
  capacity: {cpu: "4", memory: 16Gi, pods: "58"}
EOF
}
nodes() { node sys-a eu-west-1a ON_DEMAND && node sys-b eu-west-1b ON_DEMAND && node spot-c eu-west-1c SPOT; }
must "KWOK nodes created (2 on-demand in 2 zones, 1 spot)" nodes

install_realistic() {
  local out
  out="$("$HELM" upgrade --install "$RELEASE" "$CHART" -n "$NS" -f "$REALISTIC" "${IMAGE_SET[@]}" --wait --timeout 120s 2>&1)" || { echo "$out"; return 1; }
  grep -q "^autoscaler is installed in namespace kube-system" <<<"$out" || { echo "NOTES missing: $out"; return 1; }
}
notes_default() {
  "$HELM" install notes "$CHART" -n default --dry-run=server 2>&1 | grep -q "^Nothing that autoscales was deployed"
}
check "helm install --dry-run=server (default values) explains that nothing autoscales" notes_default
must "helm upgrade --install (realistic values) --wait, NOTES printed" install_realistic
OP=app.kubernetes.io/name=autoscaler-overprovisioning
spread() { k -n "$NS" get pods -l app.kubernetes.io/name=autoscaler -o jsonpath='{range .items[*]}{.spec.nodeName}{"\n"}{end}' | sort -u | tr '\n' ' '; }
check "autoscaler Deployment: 2/2 replicas available" is 2 k -n "$NS" get deploy autoscaler -o jsonpath='{.status.availableReplicas}'
check "autoscaler replicas on the two on-demand nodes (anti-affinity, nodeSelector)" is "sys-a sys-b " spread
check "PDB allows exactly one disruption" is 1 k -n "$NS" get pdb autoscaler -o jsonpath='{.status.disruptionsAllowed}'
check "placeholder pod Ready" k -n "$NS" wait --for=condition=Ready pod -l "$OP" --timeout=60s
check "placeholder pod on the spot node" is spot-c k -n "$NS" get pods -l "$OP" -o jsonpath='{.items[*].spec.nodeName}'
if [[ -n "${CHART_TEST_IMAGE:-}" ]]; then
  check "installed Deployment runs the image under test" \
    is "$CHART_TEST_IMAGE" k -n "$NS" get deploy autoscaler -o jsonpath='{.spec.template.spec.containers[0].image}'
fi

# ---------------------------------------------------------------- RBAC: can-i
can() { # yes|no VERB RESOURCE [flags...]
  local want="$1" got; shift
  got="$(k auth can-i "$@" --as="$SA" 2>/dev/null)"
  if [[ "$got" == "$want" ]]; then pass "can-i $* -> $want"; else fail "can-i $* -> $want" "got: ${got:-error}"; fi
}
# what the binary does
for v in get list watch update patch delete; do can yes "$v" nodes; done
for v in get list watch; do can yes "$v" pods --all-namespaces; done
can yes create pods --subresource=eviction -n default
can yes patch pods -n default   # pod-deletion-cost annotations
can yes create events -n default
can yes patch events -n default
can yes create events.events.k8s.io -n default
for r in poddisruptionbudgets.policy daemonsets.apps replicasets.apps statefulsets.apps jobs.batch \
  replicationcontrollers persistentvolumeclaims persistentvolumes storageclasses.storage.k8s.io \
  csinodes.storage.k8s.io csidrivers.storage.k8s.io csistoragecapacities.storage.k8s.io; do
  can yes list "$r" --all-namespaces
  can yes watch "$r" --all-namespaces
done
can yes create leases.coordination.k8s.io -n "$NS"
for v in get update patch; do can yes "$v" leases.coordination.k8s.io/cluster-autoscaler -n "$NS"; done
can yes create configmaps -n "$NS"
for v in get update patch; do can yes "$v" configmaps/cluster-autoscaler-status -n "$NS"; done
for cm in cluster-autoscaler-priority-expander autoscaler-overprovisioning; do
  for v in get list watch; do can yes "$v" "configmaps/$cm" -n "$NS"; done
done
can yes get deployments.apps/autoscaler-overprovisioning -n "$NS"
can yes patch deployments.apps/autoscaler-overprovisioning --subresource=scale -n "$NS"
can yes update deployments.apps/autoscaler-overprovisioning --subresource=scale -n "$NS"
# what it must not do
for ns in "$NS" default; do
  for v in get list watch; do can no "$v" secrets -n "$ns"; done
done
can no list secrets --all-namespaces
can no delete deployments.apps -n "$NS"
can no delete deployments.apps/autoscaler-overprovisioning -n "$NS"
can no update deployments.apps/autoscaler-overprovisioning -n "$NS"
can no patch deployments.apps/coredns --subresource=scale -n "$NS"
can no patch deployments.apps/autoscaler-overprovisioning --subresource=scale -n default
can no list configmaps -n "$NS"
can no update configmaps/aws-auth -n "$NS"
can no update configmaps/cluster-autoscaler-priority-expander -n "$NS"
can no delete configmaps/cluster-autoscaler-status -n "$NS"
can no get configmaps/cluster-autoscaler-status -n default
can no update leases.coordination.k8s.io/kube-scheduler -n "$NS"
can no delete leases.coordination.k8s.io/cluster-autoscaler -n "$NS"
can no create nodes
can no create pods -n default
can no delete pods -n default
can no update pods -n default
can no create serviceaccounts --subresource=token -n "$NS"
can no impersonate serviceaccounts
can no escalate clusterroles.rbac.authorization.k8s.io
can no bind clusterroles.rbac.authorization.k8s.io
can no update clusterroles.rbac.authorization.k8s.io/autoscaler

# ---------------------------------------------------------------- RBAC: real requests as the SA
status_cm() {
  as -n "$NS" create configmap cluster-autoscaler-status --from-literal=status=init &&
    as -n "$NS" patch configmap cluster-autoscaler-status -p '{"data":{"status":"Cluster-autoscaler status"}}'
}
lease() {
  as -n "$NS" create -f - <<'EOF' &&
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {name: cluster-autoscaler}
spec: {holderIdentity: autoscaler-0, leaseDurationSeconds: 15}
EOF
    as -n "$NS" patch lease cluster-autoscaler --type=merge -p '{"spec":{"holderIdentity":"autoscaler-1"}}'
}
evict() {
  local pod
  pod="$(k -n "$NS" get pods -l "$OP" -o jsonpath='{.items[0].metadata.name}')" || return 1
  as create --raw "/api/v1/namespaces/$NS/pods/$pod/eviction" -f - <<EOF
{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"$pod","namespace":"$NS"}}
EOF
}
check "as SA: get the priority expander ConfigMap" as -n "$NS" get configmap cluster-autoscaler-priority-expander
check "as SA: list by name (fieldSelector metadata.name), as informers do" \
  is configmap/autoscaler-overprovisioning as -n "$NS" get configmaps --field-selector metadata.name=autoscaler-overprovisioning -o name
refuse "as SA: plain list of configmaps is forbidden" as -n "$NS" get configmaps
refuse "as SA: get secrets is forbidden" as -n "$NS" get secrets
check "as SA: create + update the status ConfigMap" status_cm
check "as SA: create + renew the leader Lease" lease
check "as SA: cordon (patch) a node" as cordon sys-b
check "as SA: uncordon it" as uncordon sys-b
check "as SA: scale the placeholder Deployment to 2" as -n "$NS" scale deployment autoscaler-overprovisioning --replicas=2
refuse "as SA: scale any other Deployment (its own)" as -n "$NS" scale deployment autoscaler --replicas=0
check "as SA: evict a placeholder pod (eviction API)" evict

# ---------------------------------------------------------------- upgrade keeps what the autoscaler owns
must "helm upgrade (second revision, same values) --wait" \
  "$HELM" upgrade "$RELEASE" "$CHART" -n "$NS" -f "$REALISTIC" "${IMAGE_SET[@]}" --wait --timeout 120s
check "helm upgrade leaves the placeholder replicas (2) alone" \
  is 2 k -n "$NS" get deploy autoscaler-overprovisioning -o jsonpath='{.spec.replicas}'
check "helm upgrade leaves the status ConfigMap written by the autoscaler alone" \
  k -n "$NS" get configmap cluster-autoscaler-status
check "as SA: delete a node (scale-down)" as delete node spot-c --wait=false
check "helm uninstall --wait" "$HELM" uninstall "$RELEASE" -n "$NS" --wait --timeout 60s
gone() { ! k -n "$NS" get deploy autoscaler 2>/dev/null && ! k get clusterrole autoscaler 2>/dev/null && ! k get priorityclass autoscaler-overprovisioning 2>/dev/null; }
check "nothing of the release left (Deployment, ClusterRole, PriorityClass)" gone
