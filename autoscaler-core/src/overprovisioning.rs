//! Overprovisioning: how many low-priority placeholder pods to keep, from the
//! cluster-proportional-autoscaler's `ladder` and `linear` formats, so users no longer
//! need a separate proportional autoscaler next to this one.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The `ladder` mode: step functions over cluster cores and nodes; the larger result wins.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Ladder {
    /// `[[cores, replicas], ...]`: at or above `cores`, at least `replicas`.
    #[serde(default)]
    pub cores_to_replicas: Vec<(u64, u32)>,
    /// `[[nodes, replicas], ...]`: at or above `nodes`, at least `replicas`.
    #[serde(default)]
    pub nodes_to_replicas: Vec<(u64, u32)>,
}

/// The `linear` mode: `max(ceil(cores / coresPerReplica), ceil(nodes / nodesPerReplica))`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Linear {
    /// Cores per replica (0: ignore cores).
    #[serde(default)]
    pub cores_per_replica: f64,
    /// Nodes per replica (0: ignore nodes).
    #[serde(default)]
    pub nodes_per_replica: f64,
    /// Lower bound.
    #[serde(default)]
    pub min: u32,
    /// Upper bound (0: none).
    #[serde(default)]
    pub max: u32,
    /// At least 2 replicas once the cluster has more than one node.
    #[serde(default)]
    pub prevent_single_point_failure: bool,
}

/// Overprovisioning rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Overprovisioning {
    /// Step functions.
    Ladder(Ladder),
    /// Proportional.
    Linear(Linear),
}

/// A ConfigMap value that is not a valid rule.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OverprovisioningError {
    /// Not JSON of the expected shape.
    #[error("overprovisioning ConfigMap, key {key}: {error}; expected e.g. {{\"coresToReplicas\":[[1,1],[64,3]],\"nodesToReplicas\":[[1,1],[2,2]]}}")]
    Json {
        /// ConfigMap key.
        key: &'static str,
        /// Parser message.
        error: String,
    },
    /// Neither `ladder` nor `linear` is present.
    #[error("overprovisioning ConfigMap has neither a \"ladder\" nor a \"linear\" key")]
    MissingKey,
    /// A rule that can never give replicas.
    #[error("overprovisioning {0}")]
    Invalid(String),
}

impl Overprovisioning {
    /// Parses the ConfigMap data (`ladder` or `linear` key, JSON as for the
    /// cluster-proportional-autoscaler).
    pub fn from_configmap_data(
        data: &std::collections::BTreeMap<String, String>,
    ) -> Result<Self, OverprovisioningError> {
        if let Some(text) = data.get("ladder") {
            let ladder: Ladder =
                serde_json::from_str(text).map_err(|e| OverprovisioningError::Json {
                    key: "ladder",
                    error: e.to_string(),
                })?;
            return Ok(Overprovisioning::Ladder(ladder));
        }
        if let Some(text) = data.get("linear") {
            let linear: Linear =
                serde_json::from_str(text).map_err(|e| OverprovisioningError::Json {
                    key: "linear",
                    error: e.to_string(),
                })?;
            if linear.cores_per_replica < 0.0 || linear.nodes_per_replica < 0.0 {
                return Err(OverprovisioningError::Invalid(
                    "linear: coresPerReplica and nodesPerReplica must not be negative".into(),
                ));
            }
            if linear.cores_per_replica == 0.0 && linear.nodes_per_replica == 0.0 {
                return Err(OverprovisioningError::Invalid(
                    "linear: set coresPerReplica or nodesPerReplica".into(),
                ));
            }
            return Ok(Overprovisioning::Linear(linear));
        }
        Err(OverprovisioningError::MissingKey)
    }

    /// Replicas for a cluster of `cores` schedulable cores on `nodes` schedulable nodes,
    /// with the rule that decided it.
    pub fn replicas(&self, cores: u64, nodes: u64) -> (u32, String) {
        match self {
            Overprovisioning::Ladder(l) => {
                // The highest step reached, in whatever order the table lists them.
                let step = |table: &[(u64, u32)], x: u64| {
                    table
                        .iter()
                        .filter(|(at, _)| *at <= x)
                        .max()
                        .map_or(0, |&(_, r)| r)
                };
                let by_cores = step(&l.cores_to_replicas, cores);
                let by_nodes = step(&l.nodes_to_replicas, nodes);
                (
                    by_cores.max(by_nodes),
                    format!("ladder: {cores} cores -> {by_cores}, {nodes} nodes -> {by_nodes}"),
                )
            }
            Overprovisioning::Linear(l) => {
                let per = |x: u64, per: f64| {
                    if per > 0.0 {
                        (x as f64 / per).ceil() as u32
                    } else {
                        0
                    }
                };
                let mut r = per(cores, l.cores_per_replica).max(per(nodes, l.nodes_per_replica));
                if l.prevent_single_point_failure && nodes > 1 {
                    r = r.max(2);
                }
                r = r.max(l.min);
                if l.max > 0 {
                    r = r.min(l.max);
                }
                (r, format!("linear: {cores} cores, {nodes} nodes -> {r}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn data(key: &str, value: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(key.to_string(), value.to_string())])
    }

    #[test]
    fn ladder_takes_the_larger_of_both_steps() {
        let o = Overprovisioning::from_configmap_data(&data(
            "ladder",
            r#"{"coresToReplicas":[[64,3],[1,1],[512,5]],"nodesToReplicas":[[1,1],[2,2]]}"#,
        ))
        .unwrap();
        assert_eq!(o.replicas(0, 0).0, 0);
        assert_eq!(o.replicas(4, 1).0, 1);
        assert_eq!(o.replicas(4, 3).0, 2);
        assert_eq!(o.replicas(100, 3).0, 3);
        assert_eq!(o.replicas(1000, 3).0, 5);
    }

    #[test]
    fn linear_rounds_up_and_clamps() {
        let o = Overprovisioning::from_configmap_data(&data(
            "linear",
            r#"{"coresPerReplica":16,"nodesPerReplica":4,"min":1,"max":10,"preventSinglePointFailure":true}"#,
        ))
        .unwrap();
        assert_eq!(o.replicas(0, 0).0, 1);
        assert_eq!(o.replicas(8, 2).0, 2, "no single point of failure");
        assert_eq!(o.replicas(33, 3).0, 3);
        assert_eq!(o.replicas(10_000, 3).0, 10);
    }

    #[test]
    fn bad_configs_name_the_key() {
        let e = Overprovisioning::from_configmap_data(&data("ladder", "{\"coresToReplica\":[]}"))
            .unwrap_err();
        assert!(e.to_string().contains("ladder"), "{e}");
        assert_eq!(
            Overprovisioning::from_configmap_data(&BTreeMap::new()).unwrap_err(),
            OverprovisioningError::MissingKey
        );
        assert!(Overprovisioning::from_configmap_data(&data("linear", "{}")).is_err());
    }
}
