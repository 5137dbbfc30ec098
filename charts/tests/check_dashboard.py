#!/usr/bin/env python3
"""Checks of the Grafana dashboard (charts/dashboards/autoscaler.json) and the chart's alerts.

usage: check_dashboard.py DASHBOARD.json
       check_dashboard.py DASHBOARD.json SCRAPE CONTENT_TYPE PROMQL_CHECK [RENDERED.yaml...]
Prints one `ok - ...` / `not ok - ...` line per assertion; exit 1 if any failed.

Without a scrape: the dashboard's shape (a Prometheus datasource variable that every
panel uses, unique panel ids, panels inside the 24-column grid without overlaps, every
query's Grafana variables defined) and that it covers every topic operators asked for.

With a scrape of a running controller's /metrics (scripts/image/test.sh takes it from the
image it built) and the promql-check binary (charts/tests/promql-check): every query of
the dashboard, of its variables and of the PrometheusRules in the rendered manifests is
parsed by Prometheus' own parser and fails when it names a metric the scrape does not
have, or a label those metrics do not carry. Last, a query with a misspelt metric must
fail the same check (the check can fail).
"""
import json
import re
import subprocess
import sys

import yaml

results = []


def check(desc, cond, detail=""):
    results.append((bool(cond), desc, detail))


# Every topic of the dashboard, with the metrics that show it (one is enough).
TOPICS = {
    "scale-ups and their causes": ["autoscaler_scale_ups_total"],
    "ICE failovers": ["cluster_autoscaler_failed_scale_ups_total"],
    "ICE cool-offs": ["autoscaler_pool_cooloff_active", "autoscaler_pools_available"],
    "on-demand vs spot nodes": ["autoscaler_on_demand_node_share"],
    "drain-backs": ["autoscaler_drain_back_total"],
    "zone skew": ["autoscaler_zone_skew"],
    "pending pods": ["cluster_autoscaler_unschedulable_pods_count"],
    "round duration": ["autoscaler_decision_round_seconds_bucket"],
    "failed rounds": ["autoscaler_round_failures_total"],
    "AWS API calls": ["autoscaler_aws_api_calls_total"],
    "AWS throttling": ["autoscaler_aws_api_throttled_total"],
    "leader": ["autoscaler_is_leader"],
}
# What Grafana substitutes in a query; ranges become a duration, the rest a value.
RANGE_VARS = {"__rate_interval", "__interval", "__range"}


def panels_of(dash):
    for p in dash.get("panels", []):
        yield p
        yield from p.get("panels", [])  # collapsed rows keep theirs inside


def substitute(expr, defined, where):
    def repl(m):
        name = m.group(1) or m.group(2)
        if name in RANGE_VARS:
            return "5m"
        if name not in defined:
            check(f"{where}: variable ${name} is defined by the dashboard", False, expr)
        return "autoscaler"
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", repl, expr)


def main():
    path = sys.argv[1]
    try:
        dash = json.load(open(path))
    except ValueError as e:
        check(f"{path} is JSON", False, str(e))
        return
    check(f"{path}: has a title and a uid", dash.get("title") and dash.get("uid"))
    variables = dash.get("templating", {}).get("list", [])
    defined = {v["name"] for v in variables}
    ds = [v for v in variables if v.get("type") == "datasource" and v.get("query") == "prometheus"]
    check("dashboard: a Prometheus datasource variable (operators pick their Prometheus)", len(ds) == 1)
    ds_uid = "${%s}" % ds[0]["name"] if ds else None

    exprs = []  # (where, expr as written)
    for v in variables:
        if v.get("type") == "query":
            q = v.get("query")
            q = q.get("query", "") if isinstance(q, dict) else q or ""
            m = re.fullmatch(r"\s*label_values\(\s*(.+?)\s*,\s*(\w+)\s*\)\s*", q)
            check(f"dashboard variable ${v['name']}: a label_values(metric, label) query", m, q)
            if m:
                exprs.append((f"variable ${v['name']}", f"count by ({m.group(2)}) ({m.group(1)})"))
    ids, cells = set(), {}
    for p in panels_of(dash):
        title = p.get("title", "?")
        check(f"panel '{title}': id unique", p.get("id") not in ids, p.get("id"))
        ids.add(p.get("id"))
        g = p.get("gridPos", {})
        inside = all(isinstance(g.get(k), int) for k in "xywh") and g["x"] >= 0 and g["x"] + g["w"] <= 24
        check(f"panel '{title}': inside the 24-column grid", inside, g)
        if inside:
            clash = {cells[c] for c in ((x, y) for x in range(g["x"], g["x"] + g["w"])
                                         for y in range(g["y"], g["y"] + g["h"])) if c in cells}
            check(f"panel '{title}': overlaps no other panel", not clash, sorted(clash))
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    cells[(x, y)] = title
        if p.get("type") == "row":
            continue
        targets = p.get("targets", [])
        check(f"panel '{title}': queries the datasource variable",
              targets and p.get("datasource", {}).get("uid") == ds_uid
              and all(t.get("datasource", {}).get("uid") == ds_uid for t in targets),
              p.get("datasource"))
        for t in targets:
            if t.get("expr"):
                exprs.append((f"panel '{title}' query {t.get('refId', '?')}", t["expr"]))
    check(f"dashboard: {len(exprs)} queries", exprs)
    text = " ".join(e for _, e in exprs)
    for topic, metrics in TOPICS.items():
        check(f"dashboard covers {topic} ({' or '.join(metrics)})",
              any(re.search(r"\b%s\b" % m, text) for m in metrics))

    if len(sys.argv) < 5:
        print("# queries not checked against a scrape (scripts/image/test.sh passes one)")
        return
    scrape, content_type, promql_check = sys.argv[2:5]
    for rendered in sys.argv[5:]:
        for doc in yaml.safe_load_all(open(rendered)):
            if doc and doc.get("kind") == "PrometheusRule":
                for group in doc["spec"]["groups"]:
                    for rule in group["rules"]:
                        exprs.append((f"PrometheusRule {doc['metadata']['name']} {rule.get('alert') or rule.get('record')}",
                                      str(rule["expr"])))
    lines = "".join(json.dumps({"where": w, "expr": substitute(e, defined, w)}) + "\n" for w, e in exprs)
    run = subprocess.run([promql_check, scrape, content_type], input=lines, capture_output=True, text=True)
    got = 0
    for line in run.stdout.splitlines():
        if line.startswith("ok - "):
            check(line[5:], True)
            got += 1
        elif line.startswith("not ok - "):
            check(line[9:], False)
            got += 1
    check(f"promql-check checked all {len(exprs)} queries against {scrape}", got == len(exprs) and run.returncode in (0, 1),
          run.stderr.strip())
    # the check can fail: a misspelt metric is reported
    bad = json.dumps({"where": "misspelt", "expr": "sum(rate(autoscaler_aws_throttled_calls_total[5m]))"}) + "\n"
    neg = subprocess.run([promql_check, scrape, content_type], input=bad, capture_output=True, text=True)
    check("promql-check fails a query naming a metric the scrape lacks (autoscaler_aws_throttled_calls_total)",
          neg.returncode == 1 and "not ok - misspelt: metric autoscaler_aws_throttled_calls_total is not on /metrics" in neg.stdout,
          neg.stdout + neg.stderr)


main()
for ok, desc, detail in results:
    print(("ok - " if ok else "not ok - ") + desc)
    if not ok and detail:
        print(f"    {detail}")
sys.exit(0 if all(ok for ok, _, _ in results) else 1)
