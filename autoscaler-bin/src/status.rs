//! The `cluster-autoscaler-status` ConfigMap, in cluster-autoscaler's YAML shape
//! (`autoscalerStatus`, `clusterWide`, `nodeGroups`), so dashboards and runbooks that
//! read CA's status keep working.

use autoscaler_aws::PriceQuote;
use autoscaler_core::{ClusterSnapshot, Decision, Decisions, NodeVerdict, Timestamp};
use serde_json::json;

/// RFC 3339 (UTC, seconds) of a core timestamp in Unix milliseconds.
pub fn rfc3339(t: Timestamp) -> String {
    let secs = i64::try_from(t.as_millis() / 1000).unwrap_or(0);
    k8s_openapi::jiff::Timestamp::from_second(secs)
        .map(|ts| ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// The `status` key's YAML.
pub fn render(snap: &ClusterSnapshot, d: &Decisions, now: Timestamp, dry_run: bool) -> String {
    render_with_prices(snap, d, now, dry_run, &[])
}

/// The `status` key's YAML with an `onDemandPrices` section when `prices` is not empty:
/// how many prices come from each source (`api`, `table`, `override`, `estimate`) and
/// each instance type's price and source.
pub fn render_with_prices(
    snap: &ClusterSnapshot,
    d: &Decisions,
    now: Timestamp,
    dry_run: bool,
    prices: &[PriceQuote],
) -> String {
    let time = rfc3339(now);
    let nodes = snap.nodes();
    let ready = nodes.iter().filter(|n| n.ready).count();
    let scaling_up = d
        .actions
        .iter()
        .any(|a| matches!(a, Decision::ScaleUp { .. }))
        || d.status.groups.iter().any(|g| g.in_flight > 0);
    let candidates = d
        .nodes
        .iter()
        .any(|n| matches!(n.verdict, NodeVerdict::Unneeded { .. }));
    let node_groups: Vec<_> = d
        .status
        .groups
        .iter()
        .map(|g| {
            let backoff = g.cool_off_until.map(|u| json!({"until": rfc3339(u), "why": g.why}));
            json!({
                "name": g.name,
                "health": {
                    "status": if g.cool_off_until.is_some_and(|u| u > now) { "Unhealthy" } else { "Healthy" },
                    "nodeCounts": {
                        "registered": {"total": g.registered},
                        "notStarted": g.in_flight,
                    },
                    "cloudProviderTarget": g.target,
                    "minSize": g.min_size,
                    "maxSize": g.max_size,
                    "lastProbeTime": time,
                },
                "scaleUp": {
                    "status": if g.in_flight > 0 { "InProgress" } else if backoff.is_some() { "Backoff" } else { "NoActivity" },
                    "backoffInfo": backoff,
                    "lastProbeTime": time,
                },
                "why": g.why,
            })
        })
        .collect();
    let mut value = json!({
        "time": time,
        "autoscalerStatus": "Running",
        "dryRun": dry_run,
        "clusterWide": {
            "health": {
                "status": if d.status.config_errors.is_empty() { "Healthy" } else { "Unhealthy" },
                "nodeCounts": {
                    "registered": {"total": nodes.len(), "ready": ready, "notStarted": nodes.len() - ready},
                },
                "lastProbeTime": time,
            },
            "scaleUp": {
                "status": if scaling_up { "InProgress" } else { "NoActivity" },
                "lastProbeTime": time,
            },
            "scaleDown": {
                "status": if candidates { "CandidatesPresent" } else { "NoCandidates" },
                "lastProbeTime": time,
            },
            "pendingPods": d.status.pending_pods,
            "unhelpablePods": d.status.unhelpable_pods,
            "configErrors": d.status.config_errors,
        },
        "nodeGroups": node_groups,
    });
    if !prices.is_empty() {
        let mut sources = serde_json::Map::new();
        let mut by_type = serde_json::Map::new();
        for q in prices {
            let n = sources.entry(q.source.as_str()).or_insert(json!(0));
            *n = json!(n.as_u64().unwrap_or(0) + 1);
            by_type.insert(
                q.instance_type.clone(),
                json!({"usdPerHour": q.usd_per_hour, "source": q.source.as_str()}),
            );
        }
        value["onDemandPrices"] = json!({"sources": sources, "instanceTypes": by_type});
    }
    serde_yaml_ng::to_string(&value).unwrap_or_else(|e| format!("error: {e}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use autoscaler_core::{GroupStatus, SnapshotParts, Status};

    #[test]
    fn status_has_cas_shape() {
        let snap = ClusterSnapshot::new(SnapshotParts::default()).unwrap();
        let d = Decisions {
            status: Status {
                groups: vec![GroupStatus {
                    name: "web-spot".into(),
                    min_size: 0,
                    max_size: 10,
                    target: 2,
                    registered: 1,
                    in_flight: 1,
                    cool_off_until: None,
                    why: "ok".into(),
                }],
                ..Status::default()
            },
            ..Decisions::default()
        };
        let text = render(&snap, &d, Timestamp::from_secs(1_700_000_000), false);
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(v["autoscalerStatus"].as_str(), Some("Running"));
        assert_eq!(v["time"].as_str(), Some("2023-11-14T22:13:20Z"));
        assert_eq!(
            v["clusterWide"]["scaleUp"]["status"].as_str(),
            Some("InProgress")
        );
        assert_eq!(v["nodeGroups"][0]["name"].as_str(), Some("web-spot"));
        assert!(v.get("onDemandPrices").is_none(), "no prices, no section");
        assert_eq!(
            v["nodeGroups"][0]["health"]["cloudProviderTarget"].as_u64(),
            Some(2)
        );
    }

    #[test]
    fn status_says_where_each_on_demand_price_comes_from() {
        use autoscaler_aws::PriceSource;
        let snap = ClusterSnapshot::new(SnapshotParts::default()).unwrap();
        let quote = |t: &str, usd, source| PriceQuote {
            instance_type: t.into(),
            usd_per_hour: usd,
            source,
        };
        let prices = [
            quote("c5.xlarge", 0.2345, PriceSource::Api),
            quote("m5.large", 0.096, PriceSource::Table),
            quote("m5a.large", 0.086, PriceSource::Table),
        ];
        let d = Decisions::default();
        let t = Timestamp::from_secs(1_700_000_000);
        let text = render_with_prices(&snap, &d, t, false, &prices);
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
        let p = &v["onDemandPrices"];
        assert_eq!(p["sources"]["api"].as_u64(), Some(1));
        assert_eq!(p["sources"]["table"].as_u64(), Some(2));
        assert_eq!(
            p["instanceTypes"]["c5.xlarge"]["source"].as_str(),
            Some("api")
        );
        assert_eq!(
            p["instanceTypes"]["c5.xlarge"]["usdPerHour"].as_f64(),
            Some(0.2345)
        );
        assert_eq!(
            p["instanceTypes"]["m5.large"]["source"].as_str(),
            Some("table")
        );
        assert_eq!(v["autoscalerStatus"].as_str(), Some("Running"));
    }
}
