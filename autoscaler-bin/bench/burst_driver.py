#!/usr/bin/env python3
"""Driver of burst_at_scale.sh: builds the cluster in moto + the API server, creates the
burst, and reports its latencies. Run by the script (which starts the control plane,
moto and the controller); not meant to be run alone.

  burst_driver.py setup  NODES GROUPS          ASGs in moto, their instances as KWOK Nodes,
                                                one filler pod per Node so nothing fits
  burst_driver.py burst  PODS CONTROLLER_LOG PID METRICS_URL
                                                the burst, then the figures

Environment: KUBECONFIG (the control plane's), MOTO (moto's endpoint), WORK (a directory).
"""
import base64
import concurrent.futures as cf
import datetime as dt
import json
import os
import re
import ssl
import sys
import threading
import time
import urllib.request

import boto3
import yaml

ENABLED_TAG = "k8s.io/cluster-autoscaler/enabled"
CLUSTER_TAG = "k8s.io/cluster-autoscaler/burst-bench"
# kwok::node_named's shape (2 CPU, 7 GiB allocatable); the filler pod takes all the CPU.
ALLOCATABLE_CPU_M = 1930
BURST_CPU_M = 100
ZONES = ["us-east-1a", "us-east-1b", "us-east-1c"]


def die(msg):
    print(f"burst_driver: {msg}", file=sys.stderr)
    sys.exit(1)


class Kube:
    """A tiny client for the control plane's kubeconfig (client certificate auth)."""

    def __init__(self, path):
        cfg = yaml.safe_load(open(path))
        work = os.environ["WORK"]
        self.server = cfg["clusters"][0]["cluster"]["server"]
        user = cfg["users"][0]["user"]
        files = {}
        for key, name in [("certificate-authority-data", "ca.crt"),
                          ("client-certificate-data", "client.crt"),
                          ("client-key-data", "client.key")]:
            src = cfg["clusters"][0]["cluster"] if key.startswith("certificate-authority") else user
            files[name] = os.path.join(work, name)
            with open(files[name], "wb") as f:
                f.write(base64.b64decode(src[key]))
        self.ctx = ssl.create_default_context(cafile=files["ca.crt"])
        self.ctx.load_cert_chain(files["client.crt"], files["client.key"])

    def request(self, method, path, body=None, timeout=60):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.server + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        return urllib.request.urlopen(req, context=self.ctx, timeout=timeout)

    def create(self, path, body):
        for attempt in range(5):
            try:
                with self.request("POST", path, body) as r:
                    return json.load(r)
            except urllib.error.HTTPError as e:
                if e.code == 409:
                    return None
                if e.code in (429, 500, 503, 504) and attempt < 4:
                    time.sleep(0.5 * (attempt + 1))
                    continue
                die(f"POST {path}: {e.code} {e.read()[:300]!r}")
            except (urllib.error.URLError, TimeoutError) as e:
                if attempt < 4:
                    time.sleep(0.5 * (attempt + 1))
                    continue
                die(f"POST {path}: {e}")

    def get(self, path):
        with self.request("GET", path) as r:
            return json.load(r)


def aws():
    kw = dict(endpoint_url=os.environ["MOTO"], region_name="us-east-1",
              aws_access_key_id="testing", aws_secret_access_key="testing")
    return boto3.client("autoscaling", **kw), boto3.client("ec2", **kw)


def node(instance_id, group, zone):
    name = f"{instance_id}.ec2.internal"
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "annotations": {"kwok.x-k8s.io/node": "fake"},
                         "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                    "kubernetes.io/arch": "amd64",
                                    "topology.kubernetes.io/zone": zone,
                                    "node.kubernetes.io/instance-type": "m5.large",
                                    "eks.amazonaws.com/nodegroup": group}},
            "spec": {"providerID": f"aws:///{zone}/{instance_id}"},
            "status": {"allocatable": {"cpu": f"{ALLOCATABLE_CPU_M}m", "memory": "7Gi", "pods": "110"},
                       "capacity": {"cpu": "2", "memory": "8Gi", "pods": "110"}}}


def group_instances(asg, names):
    out = {}
    for page in asg.get_paginator("describe_auto_scaling_groups").paginate(AutoScalingGroupNames=names):
        for g in page["AutoScalingGroups"]:
            for i in g.get("Instances", []):
                out[i["InstanceId"]] = (g["AutoScalingGroupName"], i["AvailabilityZone"])
    return out


def group_names(groups):
    return [f"bench-{g:02d}" for g in range(groups)]


def setup(nodes, groups):
    kube = Kube(os.environ["KUBECONFIG"])
    asg, ec2 = aws()
    subnets = {s["AvailabilityZone"]: s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]}
    per_group = nodes // groups
    priorities = ""
    start = time.time()
    for g, name in enumerate(group_names(groups)):
        zone = ZONES[g % 3]
        lt = ec2.create_launch_template(
            LaunchTemplateName=f"lt-{name}",
            LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "m5.large"})
        asg.create_auto_scaling_group(
            AutoScalingGroupName=name, MinSize=0, MaxSize=per_group + 500,
            DesiredCapacity=per_group, VPCZoneIdentifier=subnets[zone],
            LaunchTemplate={"LaunchTemplateId": lt["LaunchTemplate"]["LaunchTemplateId"],
                            "Version": "$Latest"},
            Tags=[{"ResourceId": name, "ResourceType": "auto-scaling-group", "Key": k,
                   "Value": v, "PropagateAtLaunch": True}
                  for k, v in [(ENABLED_TAG, "true"), (CLUSTER_TAG, "owned")]])
        priorities += f"{100 - g}:\n  - ^{name}$\n"
    t = time.time()
    instances = group_instances(asg, group_names(groups))
    print(f"moto: DescribeAutoScalingGroups of the {groups} groups takes {time.time() - t:.2f} s", flush=True)
    if len(instances) != per_group * groups:
        die(f"moto has {len(instances)} instances, expected {per_group * groups}")
    print(f"moto: {groups} ASGs, {len(instances)} instances in {time.time() - start:.0f} s", flush=True)
    kube.create("/api/v1/namespaces/kube-system/configmaps", {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cluster-autoscaler-priority-expander"},
        "data": {"priorities": priorities}})
    for ns in ("fill", "burst"):
        kube.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})

    owners = owner_replicaset(kube, "fill", "fill")

    def one(item):
        iid, (group, zone) = item
        kube.create("/api/v1/nodes", node(iid, group, zone))
        kube.create("/api/v1/namespaces/fill/pods", filler_pod(iid, owners))

    start = time.time()
    with cf.ThreadPoolExecutor(16) as pool:
        list(pool.map(one, sorted(instances.items())))
    print(f"api server: {len(instances)} Nodes + {len(instances)} filler pods in {time.time() - start:.0f} s",
          flush=True)
    with open(os.path.join(os.environ["WORK"], "initial-instances.json"), "w") as f:
        json.dump(sorted(instances), f)


def owner_replicaset(kube, ns, name):
    """A real, empty ReplicaSet to own the bench's pods: the garbage collector deletes pods
    whose owner does not exist. Its selector matches none of them, so it never adopts
    or deletes them (they name it as a non-controller owner, which the engine reads)."""
    rs = kube.create(f"/apis/apps/v1/namespaces/{ns}/replicasets", {
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"bench-holder": name}},
                 "template": {"metadata": {"labels": {"bench-holder": name}},
                              "spec": {"containers": [{"name": "c", "image": "registry.invalid/x:1"}]}}}})
    rs = rs or kube.get(f"/apis/apps/v1/namespaces/{ns}/replicasets/{name}")
    return [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name, "uid": rs["metadata"]["uid"]}]


def filler_pod(iid, owners):
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"fill-{iid}", "labels": {"app": "fill"}, "ownerReferences": owners},
            "spec": {"nodeName": f"{iid}.ec2.internal", "automountServiceAccountToken": False,
                     "tolerations": [{"operator": "Exists"}],
                     "containers": [{"name": "c", "image": "registry.invalid/fill:1",
                                     "resources": {"requests": {"cpu": f"{ALLOCATABLE_CPU_M}m",
                                                                "memory": "1Gi"}}}]}}


def burst_pod(i, owners):
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"burst-{i:05d}", "labels": {"app": "burst"}, "ownerReferences": owners},
            "spec": {"automountServiceAccountToken": False,
                     "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists"}],
                     "containers": [{"name": "c", "image": "registry.invalid/app:1",
                                     "resources": {"requests": {"cpu": f"{BURST_CPU_M}m", "memory": "128Mi"}}}]}}


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def metric(url, name):
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def histogram(url, name):
    """Cumulative buckets {capacity label: {le: count}} of a Prometheus histogram, plus
    "all" (every label summed)."""
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    out = {"all": {}}
    for line in text.splitlines():
        m = re.match(name + r'_bucket\{le="([^"]+)",capacity="([^"]+)"\} (\S+)', line)
        if m:
            le, label, n = float(m.group(1)), m.group(2), float(m.group(3))
            out.setdefault(label, {})[le] = n
            out["all"][le] = out["all"].get(le, 0.0) + n
    return out


def histogram_quantile(before, after, label, q):
    """Prometheus' histogram_quantile over the increase between two readings."""
    b, a = before.get(label, {}), after.get(label, {})
    buckets = [(le, a[le] - b.get(le, 0.0)) for le in sorted(a)]
    if not buckets or buckets[-1][1] <= 0:
        return float("nan")
    rank, prev_le, prev_n = q * buckets[-1][1], 0.0, 0.0
    for le, n in buckets:
        if n >= rank:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * (rank - prev_n) / max(n - prev_n, 1e-9)
        prev_le, prev_n = le, n
    return prev_le


def histogram_count(before, after, label):
    a = after.get(label, {})
    return int(a.get(float("inf"), 0.0) - before.get(label, {}).get(float("inf"), 0.0))


def pct(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def parse_ts(s):
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def burst(pods, log_path, pid, metrics_url):
    kube = Kube(os.environ["KUBECONFIG"])
    asg, _ = aws()
    initial = set(json.load(open(os.path.join(os.environ["WORK"], "initial-instances.json"))))
    groups = sorted({g for g in group_names(100)} & set(
        g["AutoScalingGroupName"] for g in asg.describe_auto_scaling_groups()["AutoScalingGroups"]))
    seen, unschedulable, running = {}, {}, {}
    watch_errors = []
    rv0 = kube.get("/api/v1/namespaces/burst/pods?limit=1")["metadata"]["resourceVersion"]
    stop = threading.Event()

    def record(obj, now):
        name = obj.get("metadata", {}).get("name")
        if not name:
            return
        seen.setdefault(name, now)
        status = obj.get("status", {})
        if any(c.get("type") == "PodScheduled" and c.get("reason") == "Unschedulable"
               for c in status.get("conditions", [])):
            unschedulable.setdefault(name, now)
        if status.get("phase") == "Running":
            running.setdefault(name, now)

    def watch():
        # The API server ends watches (timeouts, compaction under load): list and resume.
        rv = rv0
        while not stop.is_set():
            try:
                with kube.request("GET", f"/api/v1/namespaces/burst/pods?watch=1&resourceVersion={rv}"
                                         "&allowWatchBookmarks=true&timeoutSeconds=120", timeout=180) as r:
                    for line in r:
                        ev = json.loads(line)
                        if ev.get("type") == "ERROR":
                            break
                        rv = ev["object"]["metadata"].get("resourceVersion", rv)
                        if ev.get("type") != "BOOKMARK":
                            record(ev["object"], time.time())
                        if stop.is_set():
                            return
            except Exception as e:  # reconnect below
                watch_errors.append(str(e))
            lst = kube.get("/api/v1/namespaces/burst/pods")
            now = time.time()
            for obj in lst["items"]:
                record(obj, now)
            rv = lst["metadata"]["resourceVersion"]

    threading.Thread(target=watch, daemon=True).start()
    registered = set(initial)
    registrar_errors = []

    def registrar():
        # What kubelets do on EC2: a Node for each instance moto launched (moto runs none).
        while not stop.is_set():
            try:
                for iid, (group, zone) in group_instances(asg, groups).items():
                    if iid not in registered:
                        kube.create("/api/v1/nodes", node(iid, group, zone))
                        registered.add(iid)
            except Exception as e:  # keep going, report at the end
                registrar_errors.append(str(e))
            stop.wait(1.0)

    threading.Thread(target=registrar, daemon=True).start()
    time.sleep(1)
    cpu0, round_sum0, round_n0 = cpu_seconds(pid), metric(metrics_url, "autoscaler_decision_round_seconds_sum"), \
        metric(metrics_url, "autoscaler_decision_round_seconds_count")
    decide0 = metric(metrics_url, "autoscaler_decide_seconds_sum")
    wait_metric = "autoscaler_unschedulable_to_capacity_seconds"
    waits0 = histogram(metrics_url, wait_metric)
    owners = owner_replicaset(kube, "burst", "burst")
    log_offset = os.path.getsize(log_path)
    t0 = time.time()
    with cf.ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda i: kube.create("/api/v1/namespaces/burst/pods", burst_pod(i, owners)), range(pods)))
    created = time.time() - t0
    deadline = time.time() + float(os.environ.get("BURST_TIMEOUT", "600"))
    while len(running) < pods and time.time() < deadline:
        time.sleep(0.5)
    t_end = time.time()
    cpu1 = cpu_seconds(pid)
    round_sum1 = metric(metrics_url, "autoscaler_decision_round_seconds_sum")
    round_n1 = metric(metrics_url, "autoscaler_decision_round_seconds_count")
    decide1 = metric(metrics_url, "autoscaler_decide_seconds_sum")
    waits1 = histogram(metrics_url, wait_metric)
    stop.set()

    # Every SetDesiredCapacity the controller made: its log line after the call returned.
    sets = []
    with open(log_path) as f:
        f.seek(log_offset)
        for line in f:
            if "desired capacity set" not in line:
                continue
            rec = json.loads(line)
            fl = rec.get("fields", {})
            # The adapter logs each call twice (actuate, then the provider): count one.
            if fl.get("message") != "AWS: desired capacity set":
                continue
            sets.append((parse_ts(rec["timestamp"]), fl.get("group"), int(fl.get("from", 0)), int(fl.get("to", 0))))
    if not sets:
        die("the controller made no SetDesiredCapacity call (see its log)")
    # The TriggeredScaleUp Event of each pod names its group.
    events = kube.get("/apis/events.k8s.io/v1/namespaces/burst/events")["items"]
    trig = {}
    for e in events:
        if e.get("reason") != "TriggeredScaleUp":
            continue
        name = e["regarding"]["name"]
        m = re.search(r"\[\{([^}]*)\}\]", e.get("note", ""))
        t = parse_ts(e.get("eventTime") or e["metadata"]["creationTimestamp"])
        if name not in trig or t < trig[name][1]:
            trig[name] = (m.group(1) if m else None, t)
    # a) Pods that triggered a scale-up: from pending to their group's next call.
    # The controller (like CA) sees a pod once the scheduler marked it Unschedulable, so
    # a pod's call is its group's first call after that mark.
    to_aws, unsched_to_aws, to_event, untriggered = [], [], [], 0
    for name, t_seen in seen.items():
        if name not in trig:
            untriggered += 1
            continue
        group, t_ev = trig[name]
        t_from = unschedulable.get(name, t_seen)
        after = [t for t, g, _, _ in sets if g == group and t >= t_from]
        if after:
            to_aws.append(after[0] - t_seen)
            if name in unschedulable:
                unsched_to_aws.append(after[0] - unschedulable[name])
        to_event.append(t_ev - t_seen)
    # The scheduler's share: a pod is pending for the autoscaler (as for CA) once the
    # scheduler marked it Unschedulable.
    to_unschedulable = [unschedulable[n] - seen[n] for n in unschedulable if n in seen]
    # b) Every pod, by capacity: the k-th pod (in creation order) is covered by the first
    # call after which the nodes asked for since the burst hold k pods (others wait on a
    # node an earlier call ordered: no Event, no call of their own).
    per_node = ALLOCATABLE_CPU_M // BURST_CPU_M
    covered_at, total = [], 0
    for t, _, frm, to in sets:
        total += max(0, to - frm)
        covered_at.append((total * per_node, t))
    to_cover = []
    for k, (name, t_seen) in enumerate(sorted(seen.items(), key=lambda kv: kv[1])):
        t_cov = next((t for cap, t in covered_at if cap >= k + 1), None)
        if t_cov is not None:
            to_cover.append(max(0.0, t_cov - t_seen))
    to_running = [running[n] - seen[n] for n in running if n in seen]
    added = sum(to - frm for _, _, frm, to in sets)
    la = open("/proc/loadavg").read().split()[:3]
    if os.environ.get("RAW_OUT"):
        with open(os.environ["RAW_OUT"], "w") as f:
            json.dump({"seen": seen, "unschedulable": unschedulable, "running": running,
                       "triggered": trig, "set_desired_capacity": sets}, f)
    print(json.dumps({
        "pods": pods, "created_in_s": round(created, 2),
        # The controller's own clock: its pod watch delivering the pod unschedulable ->
        # the end of the round that found it capacity (free room, a node on its way, or
        # a scale-up whose SetDesiredCapacity returned). Interpolated within buckets.
        "controller_unschedulable_to_capacity_s": {
            label: {"pods": histogram_count(waits0, waits1, label),
                    **{p: round(histogram_quantile(waits0, waits1, label, p / 100), 3)
                       for p in (50, 95, 99)}}
            for label in sorted(waits1)},
        "set_desired_capacity_calls": len(sets), "nodes_added": added,
        "pods_with_triggered_scale_up": len(trig), "pods_without": untriggered,
        "triggering_pods_pending_to_set_desired_capacity_s": {p: round(pct(to_aws, p), 3) for p in (50, 95, 99)},
        "triggering_pods_unschedulable_to_set_desired_capacity_s":
            {p: round(pct(unsched_to_aws, p), 3) for p in (50, 95, 99)},
        "created_to_unschedulable_s": {p: round(pct(to_unschedulable, p), 3) for p in (50, 95, 99)},
        "all_pods_pending_to_capacity_ordered_s": {p: round(pct(to_cover, p), 3) for p in (50, 95, 99)},
        "pods_covered": len(to_cover),
        "pending_to_triggered_event_s": {p: round(pct(to_event, p), 3) for p in (50, 95, 99)},
        "pending_to_running_s": {p: round(pct(to_running, p), 3) for p in (50, 95, 99)},
        "running": len(running),
        "controller_cpu_s_during_burst": round(cpu1 - cpu0, 3),
        "burst_wall_s": round(t_end - t0, 1),
        "rounds": int(round_n1 - round_n0),
        "round_wall_s_mean": round((round_sum1 - round_sum0) / max(1, round_n1 - round_n0), 4),
        "decide_s_total": round(decide1 - decide0, 4),
        "registrar_errors": len(registrar_errors), "watch_reconnects": len(watch_errors),
        "loadavg": " ".join(la),
    }, indent=1))
    if len(running) < pods:
        die(f"only {len(running)} of {pods} burst pods Running after {deadline - t0:.0f} s")
    if not to_aws or len(to_cover) < pods:
        die(f"{len(to_aws)} pods tied to their own call, {len(to_cover)} of {pods} covered by ordered capacity")


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "setup":
        setup(int(sys.argv[2]), int(sys.argv[3]))
    elif cmd == "burst":
        burst(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5])
    else:
        die("usage: burst_driver.py setup NODES GROUPS | burst PODS LOG PID METRICS_URL")
