#!/usr/bin/env python3
"""Peer arena: one autoscaler at a time on a fresh e2e control plane, the same burst of pods,
measured from the API server's watch streams (arrival times taken here, not the objects'
1-second timestamps) and from /proc of the autoscaler's process.

Driven by run.sh, which builds the binaries and passes their paths in the environment:
KARPENTER_BIN, KARPENTER_CRDS, CA_BIN, OURS_BIN, CONTROLPLANE (tests/e2e/controlplane.sh).
"""

import argparse
import atexit
import datetime
import http.client
import json
import math
import os
import shlex
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

NS = "arena"
POD_CPU_M = 500
ZONES = ["us-east-1a", "us-east-1b", "us-east-1c"]
INSTANCE_TYPE = "m5.large"
# Same 2-CPU shape for every peer; allocatable CPU is what each peer's node says it is
# (ours 1930m, CA's template 1930m, Karpenter's KWOK provider 2 CPU - 100m kube-reserved).
NODE_CPU, NODE_MEM = "2", "8Gi"
SCALE_DOWN_AFTER_S = 30  # CA/ours --scale-down-unneeded-time, Karpenter consolidateAfter
BURST_LABEL = {"app": "burst"}


class ArenaError(Exception):
    """A run could not be carried out (the message names what and where)."""


def log(msg):
    print(f"[arena {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ API client --
class Api:
    """A minimal client of the e2e API server (admin client certificate from the run dir)."""

    def __init__(self, run_dir):
        env = dict(line.split("=", 1) for line in open(os.path.join(run_dir, "env")).read().split())
        url = urllib.parse.urlparse(env["APISERVER_URL"])
        self.host, self.port = url.hostname, url.port
        pki = os.path.join(run_dir, "pki")
        self.ctx = ssl.create_default_context(cafile=os.path.join(pki, "ca.crt"))
        self.ctx.load_cert_chain(os.path.join(pki, "admin.crt"), os.path.join(pki, "admin.key"))
        self.local = threading.local()

    def _conn(self):
        c = getattr(self.local, "conn", None)
        if c is None:
            c = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=60)
            self.local.conn = c
        return c

    def request(self, method, path, body=None, content_type="application/json", ok=(200, 201, 202)):
        data = None if body is None else json.dumps(body).encode()
        for attempt in range(3):
            conn = self._conn()
            try:
                conn.request(method, path, body=data, headers={"Content-Type": content_type})
                resp = conn.getresponse()
                raw = resp.read()
            except (http.client.HTTPException, OSError):
                self.local.conn = None
                if attempt == 2:
                    raise
                continue
            if resp.status in ok:
                return json.loads(raw) if raw else None
            if resp.status == 429 and attempt < 2:
                time.sleep(0.5)
                continue
            raise ArenaError(f"{method} {path}: HTTP {resp.status}: {raw[:300].decode(errors='replace')}")
        raise ArenaError(f"{method} {path}: gave up")

    def get(self, path):
        return self.request("GET", path)

    def create(self, path, obj):
        return self.request("POST", path, obj, ok=(200, 201, 202, 409))

    def patch(self, path, patch):
        return self.request("PATCH", path, patch, content_type="application/merge-patch+json")

    def delete(self, path):
        return self.request("DELETE", path, ok=(200, 202, 404))

    def watch(self, path, on_event, stop):
        """Streams watch events of `path` to on_event(type, obj, t) until stop is set."""

        def loop():
            rv = self.get(path)["metadata"]["resourceVersion"]
            while not stop.is_set():
                c = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=5)
                try:
                    sep = "&" if "?" in path else "?"
                    c.request("GET", f"{path}{sep}watch=1&allowWatchBookmarks=true&resourceVersion={rv}")
                    resp = c.getresponse()
                    while not stop.is_set():
                        line = resp.readline()
                        if not line:
                            break
                        ev = json.loads(line)
                        obj = ev["object"]
                        rv = obj.get("metadata", {}).get("resourceVersion", rv)
                        if ev["type"] in ("ADDED", "MODIFIED", "DELETED"):
                            on_event(ev["type"], obj, time.monotonic())
                except (socket.timeout, TimeoutError, OSError, http.client.HTTPException, ValueError):
                    pass  # idle 5 s or a closed stream: re-watch from the last resourceVersion
                finally:
                    c.close()

        t = threading.Thread(target=loop, daemon=True)
        t.start()
        return t


def cpu_millis(q):
    q = str(q)
    if q.endswith("m"):
        return int(q[:-1])
    return int(float(q) * 1000)


# ------------------------------------------------------------------ processes --
def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_usage(pid):
    """(cpu seconds user+system, peak RSS in MB) of a live process from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / tick
    hwm = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
    return cpu, hwm


class ControlPlane:
    def __init__(self, script, qps, keep_dir=None):
        self.script, self.qps = script, qps
        self.dir = tempfile.mkdtemp(prefix="peers-arena.", dir=keep_dir)

    def __enter__(self):
        env = dict(os.environ, E2E_CLIENT_QPS=str(self.qps))
        r = subprocess.run(["bash", self.script, "up", self.dir], env=env, capture_output=True, text=True)
        if r.returncode != 0:
            raise ArenaError(f"controlplane.sh up {self.dir} failed:\n{r.stderr[-3000:]}")
        self.api = Api(self.dir)
        self.kubeconfig = os.path.join(self.dir, "kubeconfig")
        return self

    def __exit__(self, *exc):
        subprocess.run(["bash", self.script, "down", self.dir], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


# ------------------------------------------------------------------ peers --
def node_template(name, zone, labels=None, annotations=None, alloc_cpu="1930m", taints=None):
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake", **(annotations or {})},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "topology.kubernetes.io/zone": zone,
                "node.kubernetes.io/instance-type": INSTANCE_TYPE,
                **(labels or {}),
            },
        },
        "spec": {"taints": taints} if taints else {},
        "status": {
            "allocatable": {"cpu": alloc_cpu, "memory": "7Gi", "pods": "110"},
            "capacity": {"cpu": NODE_CPU, "memory": NODE_MEM, "pods": "110"},
            "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux", "kubeletVersion": "fake"},
        },
    }


class Peer:
    """One autoscaler configuration of the arena."""

    name = "?"

    def setup(self, cp, out_dir):
        """Creates what the peer needs in the cluster (CRDs, ConfigMaps, ...)."""

    def command(self, cp):
        raise NotImplementedError

    def wait_ready(self, cp, proc, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise ArenaError(f"{self.name} exited with {proc.returncode} before it was ready (log: {self.log_path})")
            if self.ready(cp):
                return
            time.sleep(0.25)
        raise ArenaError(f"{self.name} not ready after {timeout}s (log: {self.log_path})")

    def ready(self, cp):
        # ours and CA write cluster-autoscaler-status after their first loop
        try:
            cp.api.get("/api/v1/namespaces/kube-system/configmaps/cluster-autoscaler-status")
            return True
        except ArenaError:
            return False

    def start(self, cp, out_dir):
        self.setup(cp, out_dir)
        argv, env = self.command(cp)
        self.log_path = os.path.join(out_dir, f"{slug(self.name)}.log")
        logf = open(self.log_path, "w")
        proc = subprocess.Popen(argv, env=env, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
        self.wait_ready(cp, proc)
        return proc


class Floor(Peer):
    """No autoscaler: the nodes exist before the pods (what binding alone costs)."""

    name = "floor (pre-created nodes)"

    def start(self, cp, out_dir):
        return None


class Ours(Peer):
    def __init__(self, binary):
        self.binary = binary
        # OURS_EXTRA_FLAGS: more controller flags for an experiment; they name the row.
        self.extra = shlex.split(os.environ.get("OURS_EXTRA_FLAGS", ""))
        self.name = "ours (release)" + (f" {' '.join(self.extra)}" if self.extra else "")

    def command(self, cp):
        self.metrics_port = free_port()
        argv = [
            self.binary,
            "--cloud-provider=static",
            "--nodes=0:2000:arena-spot",
            f"--static-zones={','.join(ZONES)}",
            f"--static-instance-type={INSTANCE_TYPE}:2:8192:0.096",
            "--static-create-kwok-nodes",
            f"--kubeconfig={cp.kubeconfig}",
            "--namespace=kube-system",
            "--leader-elect=false",
            f"--metrics-address=127.0.0.1:{self.metrics_port}",
            f"--scale-down-unneeded-time={SCALE_DOWN_AFTER_S}s",
            "--scale-down-delay-after-add=0s",
            "--max-graceful-termination-sec=5",
        ] + self.extra
        env = dict(os.environ, RUST_LOG="info")
        env.pop("KUBECONFIG", None)
        return argv, env


class ClusterAutoscaler(Peer):
    def __init__(self, binary, scan_interval=None):
        self.binary, self.scan_interval = binary, scan_interval
        self.name = "CA 1.33.6 " + (f"--scan-interval={scan_interval}" if scan_interval else "defaults")

    def setup(self, cp, out_dir):
        # One node group per zone (as one ASG per AZ), grouped by a label; skipTaint so the
        # burst pods need no toleration.
        config = {
            "apiVersion": "v1alpha1",
            "readNodesFrom": "configmap",
            "nodegroups": {"fromNodeLabelKey": "arena.peers/group"},
            "nodes": {"skipTaint": True},
            "configmap": {"name": "kwok-provider-templates"},
        }
        templates = {
            "apiVersion": "v1",
            "kind": "List",
            "items": [
                node_template(
                    f"arena-spot-{z[-1]}",
                    z,
                    labels={"arena.peers/group": f"arena-spot-{z[-1]}", "karpenter.sh/capacity-type": "spot"},
                    annotations={"cluster-autoscaler.kwok.nodegroup/max-count": "1000"},
                )
                for z in ZONES
            ],
        }
        import_yaml = json.dumps  # JSON is YAML
        for name, key, value in (
            ("kwok-provider-config", "config", import_yaml(config)),
            ("kwok-provider-templates", "templates", import_yaml(templates)),
        ):
            cp.api.create(
                "/api/v1/namespaces/kube-system/configmaps",
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {key: value}},
            )

    def command(self, cp):
        argv = [
            self.binary,
            "--cloud-provider=kwok",
            f"--kubeconfig={cp.kubeconfig}",
            "--namespace=kube-system",
            "--leader-elect=false",
            f"--address=127.0.0.1:{free_port()}",
            f"--scale-down-unneeded-time={SCALE_DOWN_AFTER_S}s",
            "--scale-down-delay-after-add=0s",
            "--max-graceful-termination-sec=5",
            "--v=2",
        ]
        if self.scan_interval:
            argv.append(f"--scan-interval={self.scan_interval}")
        # the kwok provider builds its own client from $KUBECONFIG (not from --kubeconfig)
        env = dict(os.environ, KWOK_PROVIDER_MODE="local", POD_NAMESPACE="kube-system", KUBECONFIG=cp.kubeconfig)
        return argv, env


class Karpenter(Peer):
    def __init__(self, binary, crds_dir, low_latency=False):
        self.binary, self.crds_dir, self.low_latency = binary, crds_dir, low_latency
        # Karpenter's docs: lower BATCH_IDLE_DURATION/BATCH_MAX_DURATION for latency.
        self.name = "Karpenter 1.14.1 " + ("batch 100ms/1s" if low_latency else "defaults (batch 1s/10s)")

    def setup(self, cp, out_dir):
        crds = sorted(f for f in os.listdir(self.crds_dir) if f.endswith(".yaml") and "capacitybuffers" not in f)
        r = subprocess.run(
            ["kubectl", "--kubeconfig", cp.kubeconfig, "apply", "--server-side"]
            + sum((["-f", os.path.join(self.crds_dir, f)] for f in crds), []),
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            raise ArenaError(f"applying Karpenter's CRDs from {self.crds_dir} failed: {r.stderr[-2000:]}")
        for crd in ("nodepools.karpenter.sh", "nodeclaims.karpenter.sh", "kwoknodeclasses.karpenter.kwok.sh"):
            subprocess.run(
                ["kubectl", "--kubeconfig", cp.kubeconfig, "wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s"],
                check=True,
                capture_output=True,
            )
        self.types_file = os.path.join(out_dir, "karpenter-instance-types.json")
        offerings = [
            {
                "Price": 0.0288,
                "Available": True,
                "Requirements": [
                    {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot"]},
                    {"key": "topology.kubernetes.io/zone", "operator": "In", "values": [z]},
                ],
            }
            for z in ZONES
        ]
        with open(self.types_file, "w") as f:
            json.dump(
                [
                    {
                        "name": INSTANCE_TYPE,
                        "offerings": offerings,
                        "architecture": "amd64",
                        "operatingSystems": ["linux"],
                        "resources": {"cpu": NODE_CPU, "memory": NODE_MEM, "pods": "110", "ephemeral-storage": "20Gi"},
                    }
                ],
                f,
            )
        cp.api.create(
            "/apis/karpenter.kwok.sh/v1alpha1/kwoknodeclasses",
            {"apiVersion": "karpenter.kwok.sh/v1alpha1", "kind": "KWOKNodeClass", "metadata": {"name": "default"}},
        )
        cp.api.create(
            "/apis/karpenter.sh/v1/nodepools",
            {
                "apiVersion": "karpenter.sh/v1",
                "kind": "NodePool",
                "metadata": {"name": "arena"},
                "spec": {
                    "template": {
                        "spec": {
                            "requirements": [
                                {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot"]},
                                {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ZONES},
                                {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": [INSTANCE_TYPE]},
                            ],
                            "nodeClassRef": {"group": "karpenter.kwok.sh", "kind": "KWOKNodeClass", "name": "default"},
                            "expireAfter": "720h",
                        }
                    },
                    "limits": {"cpu": "10000"},
                    "disruption": {
                        "consolidationPolicy": "WhenEmptyOrUnderutilized",
                        "consolidateAfter": f"{SCALE_DOWN_AFTER_S}s",
                    },
                },
            },
        )

    def command(self, cp):
        self.health_port = free_port()
        env = dict(
            os.environ,
            KUBECONFIG=cp.kubeconfig,
            DISABLE_LEADER_ELECTION="true",
            METRICS_PORT=str(free_port()),
            HEALTH_PROBE_PORT=str(self.health_port),
            INSTANCE_TYPES_FILE_PATH=self.types_file,
            SYSTEM_NAMESPACE="kube-system",
            LOG_LEVEL="info",
        )
        if self.low_latency:
            env.update(BATCH_IDLE_DURATION="100ms", BATCH_MAX_DURATION="1s")
        return [self.binary], env

    def ready(self, cp):
        try:
            c = http.client.HTTPConnection("127.0.0.1", self.health_port, timeout=1)
            c.request("GET", "/readyz")
            ok = c.getresponse().status == 200
            c.close()
            return ok
        except OSError:
            return False


# ------------------------------------------------------------------ one run --
class Recorder:
    """Arrival times (monotonic) of pod and node state changes, from two watches."""

    def __init__(self):
        self.lock = threading.Lock()
        self.pods = {}  # name -> {created, bound, running, node, cpu_m}
        self.nodes = {}  # name -> {added, deleted, alloc_m}
        self.evictions = 0

    def on_pod(self, kind, pod, t):
        name = pod["metadata"]["name"]
        with self.lock:
            p = self.pods.setdefault(name, {"created": t, "bound": None, "running": None, "node": None, "deleted": None})
            node = pod.get("spec", {}).get("nodeName")
            if node and p["bound"] is None:
                p["bound"], p["node"] = t, node
            if pod.get("status", {}).get("phase") == "Running" and p["running"] is None:
                p["running"] = t
            if kind == "DELETED":
                p["deleted"] = t

    def on_node(self, kind, node, t):
        name = node["metadata"]["name"]
        with self.lock:
            n = self.nodes.setdefault(
                name,
                {"added": t, "deleted": None, "alloc_m": cpu_millis(node.get("status", {}).get("allocatable", {}).get("cpu", "0"))},
            )
            alloc = node.get("status", {}).get("allocatable", {}).get("cpu")
            if alloc:
                n["alloc_m"] = cpu_millis(alloc)
            if kind == "DELETED" and n["deleted"] is None:
                n["deleted"] = t

    def on_event(self, kind, ev, t):
        if kind == "ADDED" and "evict" in (ev.get("reason", "") + ev.get("message", "")).lower():
            with self.lock:
                self.evictions += 1


def deployment(replicas):
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "burst", "namespace": NS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": BURST_LABEL},
            "template": {
                "metadata": {"labels": BURST_LABEL},
                "spec": {
                    "terminationGracePeriodSeconds": 0,
                    "containers": [
                        {
                            "name": "pause",
                            "image": "registry.k8s.io/pause:3.10",
                            "resources": {"requests": {"cpu": f"{POD_CPU_M}m", "memory": "64Mi"}},
                        }
                    ],
                },
            },
        },
    }


def create_nodes(api, nodes, threads=8):
    """Creates Node objects in parallel (pre-existing cluster, the floor's nodes)."""
    errors = []

    def worker(chunk):
        try:
            for n in chunk:
                api.create("/api/v1/nodes", n)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    chunks = [nodes[i::threads] for i in range(threads)]
    ts = [threading.Thread(target=worker, args=(c,)) for c in chunks]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise ArenaError(f"creating {len(nodes)} nodes failed: {errors[0]}")


def wait_until(what, pred, timeout, proc=None, peer=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        if proc is not None and proc.poll() is not None:
            raise ArenaError(f"{peer.name} exited with {proc.returncode} while waiting for {what} (log: {peer.log_path})")
        time.sleep(0.2)
    return False


def one_run(args, peer, scenario, run_index, out_dir):
    """Runs one scenario once for one peer on a fresh control plane; returns its figures."""
    pods = scenario["pods"]
    run_dir = os.path.join(out_dir, "logs", f"{slug(peer.name)}-{scenario['name']}-{run_index}")
    os.makedirs(run_dir, exist_ok=True)
    with ControlPlane(args.controlplane, args.qps) as cp:
        api = cp.api
        api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        if scenario.get("existing_nodes"):
            n = scenario["existing_nodes"]
            log(f"  creating {n} pre-existing nodes (tainted: other teams' workloads)")
            taint = [{"key": "arena.peers/occupied", "value": "true", "effect": "NoSchedule"}]
            create_nodes(api, [node_template(f"existing-{i:05d}", ZONES[i % 3], taints=taint) for i in range(n)])
            wait_until("existing nodes Ready", lambda: ready_nodes(api) >= n, 300) or _raise(f"{n} existing nodes not Ready in 300 s")
        if isinstance(peer, Floor):
            need = math.ceil(pods / (1930 // POD_CPU_M))
            create_nodes(api, [node_template(f"floor-{i:05d}", ZONES[i % 3]) for i in range(need)])
            wait_until("floor nodes Ready", lambda: ready_nodes(api) >= need + scenario.get("existing_nodes", 0), 300) or _raise(
                "floor nodes not Ready in 300 s"
            )
        proc = peer.start(cp, run_dir)
        # Pods arrive at any point of a loop-driven peer's scan interval: spread the start
        # over 10 s (CA's default scan) so that runs sample every phase, not just the
        # worst one right after the first loop (which is when a peer turns ready).
        time.sleep(10.0 * (run_index + 0.5) / args.runs if proc is not None else 0)
        try:
            return measure(args, api, peer, proc, scenario)
        finally:
            if proc is not None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


def _raise(msg):
    raise ArenaError(msg)


def ready_nodes(api):
    items = api.get("/api/v1/nodes")["items"]
    return sum(
        1 for n in items if any(c["type"] == "Ready" and c["status"] == "True" for c in n.get("status", {}).get("conditions", []))
    )


def measure(args, api, peer, proc, scenario):
    pods = scenario["pods"]
    rec = Recorder()
    stop = threading.Event()
    existing = {n["metadata"]["name"] for n in api.get("/api/v1/nodes")["items"]}
    api.watch(f"/api/v1/namespaces/{NS}/pods", rec.on_pod, stop)
    api.watch("/api/v1/nodes", rec.on_node, stop)
    api.watch("/api/v1/events", rec.on_event, stop)
    time.sleep(0.5)  # let the watches open
    cpu0 = proc_usage(proc.pid)[0] if proc else 0.0
    load0 = os.getloadavg()[0]  # the machine is shared: a busy one slows every peer
    t0 = time.monotonic()
    arrival = scenario.get("arrival_s", 0)
    if arrival:
        steps = 10
        api.create(f"/apis/apps/v1/namespaces/{NS}/deployments", deployment(0))
        for i in range(1, steps + 1):
            api.patch(f"/apis/apps/v1/namespaces/{NS}/deployments/burst", {"spec": {"replicas": pods * i // steps}})
            if i < steps:
                time.sleep(arrival / steps)
    else:
        api.create(f"/apis/apps/v1/namespaces/{NS}/deployments", deployment(pods))

    def all_running():
        with rec.lock:
            return sum(1 for p in rec.pods.values() if p["running"] is not None and p["deleted"] is None) >= pods

    done = wait_until("all pods Running", all_running, args.timeout, proc, peer)
    with rec.lock:
        live = [p for p in rec.pods.values() if p["deleted"] is None]
        bound = sorted(p["bound"] - t0 for p in live if p["bound"] is not None)
        running = sorted(p["running"] - t0 for p in live if p["running"] is not None)
        new_nodes = {k: v for k, v in rec.nodes.items() if k not in existing and v["deleted"] is None}
        first_node = min((v["added"] - t0 for v in new_nodes.values()), default=None)
        used_m = sum(POD_CPU_M for p in live if p["node"] in new_nodes)
        alloc_m = sum(v["alloc_m"] for v in new_nodes.values())
    cpu1, rss = proc_usage(proc.pid) if proc else (0.0, 0.0)
    result = {
        "load_avg_1m_at_start": load0,
        "pods": pods,
        "all_running": done,
        "pods_bound": len(bound),
        "first_node_s": first_node,
        "all_bound_s": bound[-1] if len(bound) >= pods else None,
        "all_running_s": running[-1] if len(running) >= pods else None,
        "nodes_launched": len(new_nodes),
        "binpacking": (used_m / alloc_m) if alloc_m else None,
        "cpu_s": round(cpu1 - cpu0, 2) if proc else None,
        "peak_rss_mb": round(rss, 1) if proc else None,
    }
    if scenario.get("scale_down") and done and proc is not None:
        burst_nodes = set(new_nodes)
        with rec.lock:
            rec.evictions = 0
        t1 = time.monotonic()
        api.delete(f"/apis/apps/v1/namespaces/{NS}/deployments/burst?propagationPolicy=Foreground")

        def burst_nodes_gone():
            with rec.lock:
                return all(rec.nodes[n]["deleted"] is not None for n in burst_nodes)

        gone = wait_until("burst nodes gone", burst_nodes_gone, args.scale_down_timeout, proc, peer)
        with rec.lock:
            deleted = [rec.nodes[n]["deleted"] - t1 for n in burst_nodes if rec.nodes[n]["deleted"] is not None]
            # When the last burst pod was gone: no node can be empty before that, so
            # pods gone + the unneeded time is the earliest any peer could be done.
            pods_gone = [p["deleted"] - t1 for p in rec.pods.values() if p["deleted"] is not None and p["deleted"] >= t1]
            result.update(
                scale_down_pods_gone_s=max(pods_gone) if len(pods_gone) >= pods else None,
                scale_down_all_gone_s=max(deleted) if gone and deleted else None,
                scale_down_first_gone_s=min(deleted) if deleted else None,
                scale_down_nodes_removed=len(deleted),
                evictions=rec.evictions,
            )
        cpu2, rss = proc_usage(proc.pid)
        result.update(cpu_s_scale_down=round(cpu2 - cpu1, 2), peak_rss_mb=round(rss, 1))
    stop.set()
    return result


def slug(s):
    return "".join(c if c.isalnum() else "-" for c in s.lower()).strip("-").replace("--", "-")


# ------------------------------------------------------------------ report --
def pct(values, q):
    v = sorted(x for x in values if x is not None)
    if not v:
        return None
    # nearest-rank percentile
    return v[max(0, math.ceil(q / 100 * len(v)) - 1)]


def summarize(runs):
    s = {"runs": len(runs), "failed_runs": sum(1 for r in runs if not r["all_running"])}
    for key in (
        "first_node_s",
        "all_bound_s",
        "all_running_s",
        "scale_down_pods_gone_s",
        "scale_down_first_gone_s",
        "scale_down_all_gone_s",
    ):
        vals = [r.get(key) for r in runs if r.get(key) is not None]
        if vals:
            s[key] = {"p50": statistics.median(vals), "p95": pct(vals, 95), "max": max(vals)}
    for key in ("nodes_launched", "binpacking", "cpu_s", "peak_rss_mb", "evictions", "scale_down_nodes_removed", "cpu_s_scale_down"):
        vals = [r.get(key) for r in runs if r.get(key) is not None]
        if vals:
            m = statistics.median(vals)
            # the median of an even count is a mean: keep counts whole, figures short
            s[key] = round(m) if all(isinstance(v, int) for v in vals) and m == round(m) else round(m, 2)
    return s


def fmt_t(d):
    if not d:
        return "–"
    return f"{d['p50']:.1f} / {d['p95']:.1f} / {d['max']:.1f}"


def markdown(results, meta):
    lines = [
        f"Commit `{meta['commit']}`, {meta['date']}, `{meta['command']}`; {meta['host']}.",
        "Times in seconds from the Deployment's creation, p50 / p95 / max over the runs.",
        "",
    ]
    for sc in sorted(results["scenarios"], key=lambda sc: sc["title"]):
        lines.append(f"### {sc['title']}")
        lines.append("")
        scale = any("scale_down_all_gone_s" in p["summary"] for p in sc["peers"])
        head = "| peer | runs | first node | all bound | all Running | above floor (p50) | nodes | bin-packing | CPU s | peak RSS MB |"
        if scale:
            head += (
                " scale-down: pods gone | first node gone | all gone | all gone above pods gone +"
                f" {SCALE_DOWN_AFTER_S} s (p50) | nodes removed | evictions | CPU s (scale-down) |"
            )
        lines.append(head)
        lines.append("|" + "---|" * (head.count("|") - 1))
        floor = next((p["summary"] for p in sc["peers"] if p["peer"].startswith("floor")), None)
        floor_p50 = floor.get("all_bound_s", {}).get("p50") if floor else None
        for p in sc["peers"]:
            s = p["summary"]
            above = "–"
            if floor_p50 is not None and s.get("all_bound_s") and not p["peer"].startswith("floor"):
                above = f"{s['all_bound_s']['p50'] - floor_p50:.1f}"
            fail = f" ({s['failed_runs']} failed)" if s.get("failed_runs") else ""
            bp = f"{s['binpacking']:.2f}" if s.get("binpacking") is not None else "–"
            row = (
                f"| {p['peer']} | {s['runs']}{fail} | {fmt_t(s.get('first_node_s'))} | {fmt_t(s.get('all_bound_s'))} | "
                f"{fmt_t(s.get('all_running_s'))} | {above} | {s.get('nodes_launched', '–')} | {bp} | "
                f"{s.get('cpu_s', '–')} | {s.get('peak_rss_mb', '–')} |"
            )
            if scale:
                removed = s.get("scale_down_nodes_removed", "–")
                gone, pods_gone = s.get("scale_down_all_gone_s"), s.get("scale_down_pods_gone_s")
                late = f"{gone['p50'] - pods_gone['p50'] - SCALE_DOWN_AFTER_S:.1f}" if gone and pods_gone else "–"
                row += (
                    f" {fmt_t(pods_gone)} | {fmt_t(s.get('scale_down_first_gone_s'))} | {fmt_t(gone)} | {late} | "
                    f"{removed} of {s.get('nodes_launched', '–')} | {s.get('evictions', '–')} | {s.get('cpu_s_scale_down', '–')} |"
                )
            lines.append(row)
        lines.append("")
    return "\n".join(lines)


SCENARIOS = {
    "burst100": {"title": "1. 100 pods × 500m on an empty cluster", "pods": 100},
    "burst1000": {"title": "2. 1,000 pods × 500m on an empty cluster", "pods": 1000},
    "arrive1000": {
        "title": "3. 1,000 pods arriving over 60 s onto 2,000 existing (tainted, full) nodes",
        "pods": 1000,
        "arrival_s": 60,
        "existing_nodes": 2000,
    },
    "scaledown100": {
        "title": f"4. scale-down: 100 pods up, then the Deployment deleted (unneeded/consolidateAfter {SCALE_DOWN_AFTER_S}s)",
        "pods": 100,
        "scale_down": True,
    },
}


def make_peers(args):
    peers = {
        "floor": Floor(),
        "ours": Ours(args.ours_bin),
        "ca": ClusterAutoscaler(args.ca_bin),
        "ca-scan1s": ClusterAutoscaler(args.ca_bin, "1s"),
        "karpenter": Karpenter(args.karpenter_bin, args.karpenter_crds),
        "karpenter-fast": Karpenter(args.karpenter_bin, args.karpenter_crds, low_latency=True),
    }
    chosen = []
    for key in args.peers.split(","):
        if key not in peers:
            raise ArenaError(f"--peers: unknown peer '{key}' (known: {', '.join(peers)})")
        chosen.append(peers[key])
    return chosen


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--scenarios", default="burst100,burst1000,scaledown100")
    ap.add_argument("--peers", default="floor,ours,ca,ca-scan1s,karpenter,karpenter-fast")
    ap.add_argument("--out", required=True)
    ap.add_argument("--qps", type=int, default=300)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--scale-down-timeout", type=float, default=300)
    ap.add_argument("--command", default="benches/peers/run.sh")
    ap.add_argument("--append", action="store_true", help="add to (or replace rows of) OUT/results.json")
    ap.add_argument("--render", action="store_true", help="only rewrite OUT/results.md from OUT/results.json")
    args = ap.parse_args()
    for var in ("CONTROLPLANE", "OURS_BIN", "CA_BIN", "KARPENTER_BIN", "KARPENTER_CRDS"):
        setattr(args, var.lower(), os.environ.get(var, ""))
    os.makedirs(args.out, exist_ok=True)
    if args.render:
        results = json.load(open(os.path.join(args.out, "results.json")))
        for sc in results["scenarios"]:
            for p in sc["peers"]:
                p["summary"] = summarize(p["runs"])
        with open(os.path.join(args.out, "results.md"), "w") as f:
            f.write(markdown(results, results["meta"]) + "\n")
        return results
    if args.ours_bin and "ours" in args.peers.split(","):
        # a private copy: the shared target dir may be rebuilt by someone else mid-arena
        private_dir = tempfile.mkdtemp(prefix="peers-ours.")
        atexit.register(shutil.rmtree, private_dir, True)
        private = os.path.join(private_dir, "autoscaler")
        shutil.copy2(args.ours_bin, private)
        args.ours_bin = private
        args.ours_version = subprocess.run([private, "--version"], capture_output=True, text=True).stdout.strip()
    peers = make_peers(args)
    results = {"scenarios": []}
    previous = os.path.join(args.out, "results.json")
    if args.append and os.path.exists(previous):
        # keep what earlier invocations measured; rows of the peers run now are replaced
        results = json.load(open(previous))
        # kept rows are summarized again from their runs, by today's summarize()
        for e in results["scenarios"]:
            for p in e["peers"]:
                p["summary"] = summarize(p["runs"])
    for key in args.scenarios.split(","):
        if key not in SCENARIOS:
            raise ArenaError(f"--scenarios: unknown scenario '{key}' (known: {', '.join(SCENARIOS)})")
        sc = SCENARIOS[key]
        entry = next((e for e in results["scenarios"] if e["name"] == key), None)
        if entry is None:
            entry = {"name": key, "title": sc["title"], "peers": []}
            results["scenarios"].append(entry)
        for peer in peers:
            if sc.get("scale_down") and isinstance(peer, Floor):
                continue
            runs = []
            for i in range(args.runs):
                log(f"{key}: {peer.name}, run {i + 1}/{args.runs}")
                try:
                    r = one_run(args, peer, dict(sc, name=key), i, args.out)
                except ArenaError as e:
                    log(f"  FAILED: {e}")
                    r = {"all_running": False, "error": str(e)}
                log(f"  {json.dumps(r)}")
                runs.append(r)
            row = {
                "peer": peer.name,
                "runs": runs,
                "summary": summarize(runs),
                "measured": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                "version": getattr(args, "ours_version", None) if isinstance(peer, Ours) else None,
            }
            old = [i for i, p in enumerate(entry["peers"]) if p["peer"] == peer.name]
            if old:
                entry["peers"][old[0]] = row
            else:
                entry["peers"].append(row)
            write_outputs(args, results)
    return results


def write_outputs(args, results):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    commit = subprocess.run(["git", "-C", root, "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True).stdout.strip()
    meta = {
        "commit": commit,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": args.command,
        "host": f"{os.cpu_count()} CPUs, control plane client QPS {args.qps}, load average {os.getloadavg()[0]:.1f} at the end",
    }
    results["meta"] = meta
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(markdown(results, meta) + "\n")


if __name__ == "__main__":
    try:
        main()
    except ArenaError as e:
        print(f"arena: ERROR: {e}", file=sys.stderr)
        sys.exit(1)
