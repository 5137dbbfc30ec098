#!/usr/bin/env python3
"""Consistency checks between the chart and docs/.

usage: check_docs.py REPO_ROOT
Prints one `ok - ...` / `not ok - ...` line per assertion; exit 1 if any failed.
"""
import json
import os
import re
import sys

import yaml

root = sys.argv[1]
docs = os.path.join(root, "docs")
chart = os.path.join(root, "charts", "autoscaler")
results = []


def check(desc, cond, detail=""):
    results.append((bool(cond), desc, detail))


def read(*p):
    with open(os.path.join(*p)) as f:
        return f.read()


def blocks(text, lang):
    return re.findall(r"```" + lang + r"\n(.*?)```", text, re.S)


# ---- every value has a one-line description (`# --` above it or above an ancestor)
values_lines = read(chart, "values.yaml").splitlines()
missing = []
stack = []  # (indent, described)
for i, line in enumerate(values_lines):
    m = re.match(r"^(\s*)([A-Za-z][\w.-]*):", line)
    if not m:
        continue
    indent = len(m.group(1))
    while stack and stack[-1][0] >= indent:
        stack.pop()
    described = i > 0 and values_lines[i - 1].strip().startswith("# --")
    inherited = any(d for _, d in stack)
    nxt = next((l for l in values_lines[i + 1:] if l.strip() and not l.strip().startswith("#")), "")
    is_parent = line.rstrip().endswith(":") and len(nxt) - len(nxt.lstrip()) > indent and not nxt.strip().startswith("-")
    if not (described or inherited or is_parent):
        missing.append(m.group(2))
    stack.append((indent, described))
check("values.yaml: every value has a `# --` description", not missing, missing)

# ---- migration guide covers every top-level value
top = [k for k in yaml.safe_load(read(chart, "values.yaml"))]
migration = read(docs, "migration.md")
undocumented = [k for k in top if f"`{k}" not in migration]
check("migration.md: every top-level value appears in the mapping", not undocumented, undocumented)
for flag in ["--dry-run", "--ice-cooloff", "--drain-back-after", "--drain-back-budget", "--balance-zones",
             "--zone-skew-threshold", "--event-queue-url", "--aws-region", "--nodes", "--node-group-auto-discovery",
             "--expander", "--scan-interval", "--max-node-provision-time", "--scale-down-enabled",
             "--scale-down-delay-after-add", "--scale-down-unneeded-time", "--scale-down-utilization-threshold",
             "--skip-nodes-with-local-storage", "--skip-nodes-with-system-pods", "--balance-similar-node-groups",
             "--expendable-pods-priority-cutoff", "--max-nodes-total", "--cores-total", "--memory-total",
             "--namespace", "--leader-elect", "--status-config-map-name"]:
    check(f"migration.md: flag {flag} mapped", f"`{flag}" in migration)

# ---- runbook anchors used by the PrometheusRule exist
rule = read(chart, "templates", "prometheusrule.yaml")
anchors = set(re.findall(r"runbook \}\}#([a-z0-9-]+)", rule))
headings = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in re.findall(r"^## (.+)$", read(docs, "runbook.md"), re.M)}
check("runbook.md: a section for every alert link", anchors and anchors <= headings, sorted(anchors - headings))

# ---- IAM policy snippets are valid JSON and least-privilege
iam = read(docs, "iam.md")
parsed = []
for b in blocks(iam, "json"):
    try:
        parsed.append(json.loads(b))
    except ValueError as e:
        check("iam.md: JSON block parses", False, f"{e}: {b[:80]}")
check("iam.md: policy, optional statement and trust policy parse", len(parsed) == 3, len(parsed))
policy = parsed[0] if parsed else {"Statement": []}
actions = [a for s in policy["Statement"] for a in s["Action"]]
check("iam.md: no wildcard actions", all("*" not in a for a in actions), actions)
writes = [s for s in policy["Statement"] if any(a in ("autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup") for a in s["Action"])]
check("iam.md: ASG writes conditioned on the k8s.io/cluster-autoscaler/enabled tag",
      writes and all("aws:ResourceTag/k8s.io/cluster-autoscaler/enabled" in json.dumps(s.get("Condition", {})) for s in writes))
check("iam.md: SQS limited to receive/delete/attributes on one queue ARN",
      any(s["Action"] == ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"] and s["Resource"].startswith("arn:aws:sqs:") for s in policy["Statement"]))

# ---- CloudFormation: 5 rules, each targets the queue, the queue policy admits exactly those rules
eq = read(docs, "event-queue.md")
cfn_blocks = blocks(eq, "yaml")
check("event-queue.md: one CloudFormation block", len(cfn_blocks) == 1, len(cfn_blocks))
cfn = yaml.safe_load(cfn_blocks[0]) if cfn_blocks else {"Resources": {}}
res = cfn["Resources"]
rules = {k: v for k, v in res.items() if v["Type"] == "AWS::Events::Rule"}
check("CloudFormation: 5 EventBridge rules", len(rules) == 5, list(rules))
check("CloudFormation: every rule targets the queue",
      all(t["Arn"] == {"Fn::GetAtt": ["Queue", "Arn"]} for r in rules.values() for t in r["Properties"]["Targets"]))
patterns = [r["Properties"]["EventPattern"] for r in rules.values()]
check("CloudFormation: launch failure, spot warning, rebalance, state change, scheduled change",
      sorted(p["detail-type"][0] for p in patterns) == sorted([
          "EC2 Instance Launch Unsuccessful", "EC2 Spot Instance Interruption Warning", "EC2 Instance Rebalance Recommendation",
          "EC2 Instance State-change Notification", "AWS Health Event"]))
qp = [v for v in res.values() if v["Type"] == "AWS::SQS::QueuePolicy"]
src = qp[0]["Properties"]["PolicyDocument"]["Statement"][0]["Condition"]["ArnEquals"]["aws:SourceArn"] if qp else []
check("CloudFormation: queue policy admits exactly the 5 rules", sorted(s["Fn::GetAtt"][0] for s in src) == sorted(rules))

# ---- Terraform: same 5 patterns, balanced braces
tf_blocks = blocks(eq, "hcl")
tf = tf_blocks[0] if tf_blocks else ""
check("Terraform: braces and brackets balanced", tf and tf.count("{") == tf.count("}") and tf.count("[") == tf.count("]"))
check("Terraform: same 5 detail-types as CloudFormation",
      all(f'"{p["detail-type"][0]}"' in tf for p in patterns))

# ---- relative links between docs and charts resolve (autoscaler-aws/ is another team's: not checked)
broken = []
for name in os.listdir(docs):
    if not name.endswith(".md"):
        continue
    for link in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", read(docs, name)):
        if "://" in link or link.startswith("../autoscaler-aws/"):
            continue
        if not os.path.exists(os.path.normpath(os.path.join(docs, link))):
            broken.append(f"{name}: {link}")
check("docs/*.md: relative links resolve", not broken, broken)

failed = 0
for ok, desc, detail in results:
    print(("ok - " if ok else "not ok - ") + desc)
    if not ok:
        failed += 1
        if detail != "":
            print(f"    got: {detail}")
sys.exit(1 if failed else 0)
