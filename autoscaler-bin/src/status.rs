//! The `cluster-autoscaler-status` ConfigMap, in cluster-autoscaler's YAML shape
//! (`autoscalerStatus`, `clusterWide`, `nodeGroups`), so dashboards and runbooks that
//! read CA's status keep working.

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
    let value = json!({
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
        assert_eq!(
            v["nodeGroups"][0]["health"]["cloudProviderTarget"].as_u64(),
            Some(2)
        );
    }
}
