#!/usr/bin/env python3
"""Assertions on `helm template` output of charts/autoscaler.

usage: assert_render.py CASE RENDERED.yaml
Prints one `ok - ...` / `not ok - ...` line per assertion; exit 1 if any failed.
"""
import re
import sys

import yaml

case, path = sys.argv[1], sys.argv[2]
docs = [d for d in yaml.safe_load_all(open(path)) if d]
results = []


def check(desc, cond, detail=""):
    results.append((bool(cond), desc, detail))


def kinds():
    return sorted(d["kind"] for d in docs)


def one(kind, name=None):
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    return found[0] if len(found) == 1 else None


def rules_of(kind):
    return [r for d in docs if d["kind"] == kind for r in d.get("rules", [])]


def rbac_common():
    all_rules = rules_of("ClusterRole") + rules_of("Role")
    check(f"{case}: no RBAC rule mentions secrets",
          all(not any("secret" in res for res in r.get("resources", [])) for r in all_rules))
    check(f"{case}: no wildcard verbs, resources or apiGroups",
          all("*" not in r.get(k, []) for r in all_rules for k in ("verbs", "resources", "apiGroups")))
    check(f"{case}: no escalate/bind/impersonate verbs",
          all(not set(r["verbs"]) & {"escalate", "bind", "impersonate"} for r in all_rules))
    check(f"{case}: ClusterRole writes nothing but nodes, evictions, events and pod patches (deletion cost)",
          all(set(r["verbs"]) <= {"get", "list", "watch"}
              or set(r["resources"]) <= {"nodes", "pods/eviction", "events"}
              or (r["resources"] == ["pods"] and r["verbs"] == ["patch"])
              for r in rules_of("ClusterRole")))
    named = [r for r in rules_of("Role") if set(r["verbs"]) & {"update", "patch", "get"}]
    check(f"{case}: every namespaced get/update/patch is limited by resourceNames",
          named and all(r.get("resourceNames") for r in named))
    unnamed = [r for r in rules_of("Role") if not r.get("resourceNames")]
    check(f"{case}: rules without resourceNames only create (Lease, status ConfigMap)",
          all(r["verbs"] == ["create"] for r in unnamed))
    lease = [r for r in rules_of("Role") if "leases" in r["resources"] and r.get("resourceNames")]
    check(f"{case}: Lease limited to resourceNames [cluster-autoscaler]",
          lease and lease[0]["resourceNames"] == ["cluster-autoscaler"])
    check(f"{case}: no Secret objects rendered", "Secret" not in kinds())


if case == "default":
    check("default: no Deployment (nothing autoscales without node groups)", "Deployment" not in kinds(), kinds())
    check("default: no Service/PDB/ConfigMap/monitoring objects",
          not set(kinds()) & {"Service", "PodDisruptionBudget", "ConfigMap", "ServiceMonitor", "PrometheusRule", "PriorityClass"},
          kinds())
    check("default: ServiceAccount and RBAC still rendered (like CA's chart)",
          kinds() == ["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ServiceAccount"], kinds())
    rbac_common()

elif case == "asg":
    dep = one("Deployment", "autoscaler")
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"] if dep else []
    check("asg: Deployment rendered for autoscalingGroups alone", dep)
    check("asg: one --nodes per group", [a for a in args if a.startswith("--nodes=")] == ["--nodes=1:10:spot-a", "--nodes=0:5:od-a"], args)
    check("asg: no --node-group-auto-discovery", not any(a.startswith("--node-group-auto-discovery") for a in args), args)
    check("asg: no --event-queue-url when eventQueue.url is empty", not any(a.startswith("--event-queue-url") for a in args), args)
    check("asg: shadow mode renders --dry-run=true", "--dry-run=true" in args, args)
    check("asg: extraArgs null removes a chart flag (--expander)", not any(a.startswith("--expander") for a in args), args)
    check("asg: no priority ConfigMap without expanderPriorities", one("ConfigMap") is None)
    check("asg: no overprovisioning Deployment by default", len([d for d in docs if d["kind"] == "Deployment"]) == 1)

elif case == "realistic":
    dep = one("Deployment", "autoscaler")
    check("realistic: autoscaler Deployment rendered", dep)
    pod = dep["spec"]["template"]["spec"] if dep else {}
    c = pod.get("containers", [{}])[0]
    args = c.get("args", [])
    want = [
        "--cloud-provider=aws",
        "--namespace=kube-system",
        "--node-group-auto-discovery=asg:tag=k8s.io/cluster-autoscaler/enabled,k8s.io/cluster-autoscaler/prod-eu",
        "--aws-region=eu-west-1",
        "--expander=priority,least-waste",
        "--leader-elect=true",
        "--status-config-map-name=cluster-autoscaler-status",
        "--metrics-address=:8085",
        "--dry-run=false",
        "--ice-cooloff=3m",
        "--ice-cooloff-max=30m",
        "--drain-back-after=1h",
        "--drain-back-budget=2",
        "--balance-zones=true",
        "--zone-skew-threshold=1",
        "--event-queue-url=https://sqs.eu-west-1.amazonaws.com/123456789012/prod-eu-autoscaler-events",
        "--scan-interval=10s",
        "--scale-down-utilization-threshold=0.6",
        "--skip-nodes-with-local-storage=false",
        "--expendable-pods-priority-cutoff=-10",
        "--max-nodes-total=1000000",
        "--cores-total=0:20000",
        "--v=2",
        "--balancing-ignore-label=eks.amazonaws.com/nodegroup",
        "--balancing-ignore-label=topology.ebs.csi.aws.com/zone",
    ]
    for w in want:
        check(f"realistic: arg {w}", w in args)
    flags = [a.split("=", 1)[0] for a in args]
    dup = {f for f in flags if flags.count(f) > 1} - {"--balancing-ignore-label", "--nodes"}
    check("realistic: no flag rendered twice (extraArgs overrides chart flags)", not dup, dup)
    check("realistic: no float notation in args", not any(re.search(r"\de\+\d", a) for a in args), args)
    check("realistic: 2 replicas", dep and dep["spec"]["replicas"] == 2)
    check("realistic: priorityClassName system-cluster-critical", pod.get("priorityClassName") == "system-cluster-critical")
    psc, csc = pod.get("securityContext", {}), c.get("securityContext", {})
    check("realistic: runAsNonRoot, UID 65532, seccomp RuntimeDefault",
          psc.get("runAsNonRoot") is True and psc.get("runAsUser") == 65532 and psc.get("seccompProfile", {}).get("type") == "RuntimeDefault")
    check("realistic: readOnlyRootFilesystem, no privilege escalation, capabilities drop ALL",
          csc.get("readOnlyRootFilesystem") is True and csc.get("allowPrivilegeEscalation") is False and csc.get("capabilities", {}).get("drop") == ["ALL"])
    res = c.get("resources", {})
    check("realistic: cpu/memory requests and limits set",
          all(res.get(k, {}).get(r) for k in ("requests", "limits") for r in ("cpu", "memory")), res)
    check("realistic: liveness/readiness on /healthz:http, port 8085",
          c.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/healthz" and c.get("ports", [{}])[0].get("containerPort") == 8085)
    check("realistic: AWS_REGION env", {"name": "AWS_REGION", "value": "eu-west-1"} in c.get("env", []))
    check("realistic: nodeSelector on-demand", pod.get("nodeSelector") == {"eks.amazonaws.com/capacityType": "ON_DEMAND"})
    check("realistic: pod is safe-to-evict=false",
          dep["spec"]["template"]["metadata"]["annotations"].get("cluster-autoscaler.kubernetes.io/safe-to-evict") == "false")
    sa = one("ServiceAccount", "autoscaler")
    check("realistic: ServiceAccount carries the IRSA role annotation",
          sa and sa["metadata"].get("annotations", {}).get("eks.amazonaws.com/role-arn") == "arn:aws:iam::123456789012:role/prod-eu-autoscaler")
    check("realistic: Deployment uses that ServiceAccount", pod.get("serviceAccountName") == "autoscaler")
    pdb = one("PodDisruptionBudget")
    check("realistic: PDB maxUnavailable 1 selecting the autoscaler pods",
          pdb and pdb["spec"].get("maxUnavailable") == 1 and pdb["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"])
    svc = one("Service")
    check("realistic: Service on 8085 selecting the autoscaler pods",
          svc and svc["spec"]["ports"][0]["port"] == 8085 and svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"])
    op = one("Deployment", "autoscaler-overprovisioning")
    check("realistic: overprovisioning Deployment without replicas (the autoscaler owns them)", op and "replicas" not in op["spec"])
    check("realistic: overprovisioning pods not selected by the autoscaler's Service/PDB",
          op and not (set(dep["spec"]["selector"]["matchLabels"].items()) <= set(op["spec"]["template"]["metadata"]["labels"].items())))
    pc = one("PriorityClass", "autoscaler-overprovisioning")
    check("realistic: placeholder PriorityClass -1 (>= expendable cutoff -10), preemptionPolicy Never",
          pc and pc["value"] == -1 and pc["preemptionPolicy"] == "Never")
    ladder = one("ConfigMap", "autoscaler-overprovisioning")
    check("realistic: ladder ConfigMap in cluster-proportional-autoscaler format",
          ladder and yaml.safe_load(ladder["data"]["ladder"]) == {"coresToReplicas": [[1, 1], [64, 3], [512, 8]], "nodesToReplicas": [[1, 1], [2, 2]]})
    prio = one("ConfigMap", "cluster-autoscaler-priority-expander")
    check("realistic: priority expander ConfigMap in CA format",
          prio and yaml.safe_load(prio["data"]["priorities"]) == {100: [".*-spot-(m7i|m6i|m6a|m5)-.*"], 50: [".*-spot-.*"], 10: [".*-ondemand-.*"]},
          prio and prio["data"]["priorities"])
    sm = one("ServiceMonitor")
    check("realistic: ServiceMonitor in monitoring, scraping kube-system", sm and sm["metadata"]["namespace"] == "monitoring"
          and sm["spec"]["namespaceSelector"]["matchNames"] == ["kube-system"])
    pr = one("PrometheusRule")
    alerts = {r["alert"]: r for g in (pr["spec"]["groups"] if pr else []) for r in g["rules"]}
    for name, metric in [
        ("AutoscalerPodsPendingTooLong", "cluster_autoscaler_unschedulable_pods_count"),
        ("AutoscalerAllPoolsInCooloff", "autoscaler_pools_available"),
        ("AutoscalerOnDemandShareAboveBudget", "autoscaler_on_demand_node_share"),
        ("AutoscalerZoneSkew", "autoscaler_zone_skew"),
        ("AutoscalerAWSThrottled", "autoscaler_aws_api_throttled_total"),
    ]:
        check(f"realistic: alert {name} on {metric}", name in alerts and metric in alerts[name]["expr"])
    check("realistic: on-demand budget from values (0.25)", "> 0.25" in alerts.get("AutoscalerOnDemandShareAboveBudget", {}).get("expr", ""))
    check("realistic: alert annotations keep Prometheus templates", "{{ $labels.balance_set }}" in alerts.get("AutoscalerZoneSkew", {}).get("annotations", {}).get("summary", ""))
    check("realistic: all objects in kube-system/monitoring or cluster-scoped",
          all(d["metadata"].get("namespace") in (None, "kube-system", "monitoring") for d in docs))
    rbac_common()
    ov = [r for r in rules_of("Role") if "deployments/scale" in r["resources"]]
    check("realistic: deployments/scale only for autoscaler-overprovisioning",
          ov and all(r.get("resourceNames") == ["autoscaler-overprovisioning"] for r in ov))
else:
    sys.exit(f"unknown case {case}")

failed = 0
for ok, desc, detail in results:
    print(("ok - " if ok else "not ok - ") + desc)
    if not ok:
        failed += 1
        if detail != "":
            print(f"    got: {detail}")
sys.exit(1 if failed else 0)
