//! Balance sets: node groups of the same shape (market, instance types, labels apart
//! from the zone, taints; or an explicit regex) whose zones should hold equal node
//! counts. Scale-up splits toward light zones, scale-down takes from heavy ones and
//! rebalancing heals lasting skew; the simulator measures skew with the same sets.

use crate::config::AutoscalerConfig;
use crate::index::{GroupIdx, NodeIdx};
use crate::model::{NodeGroup, ZONE_LABEL};
use crate::snapshot::ClusterSnapshot;
use regex::Regex;
use std::collections::BTreeMap;

/// Balance sets: groups of the same shape whose zones should hold equal node counts.
#[derive(Clone, Debug)]
pub struct BalanceSets {
    /// Set index per group.
    pub of_group: Vec<usize>,
    /// Set names.
    pub names: Vec<String>,
}

impl BalanceSets {
    /// Explicit sets (regexes, first match wins) and automatic ones: same market,
    /// instance types, template labels (zone aside) and taints.
    pub fn build(groups: &[NodeGroup], config: &AutoscalerConfig) -> BalanceSets {
        let explicit: Vec<Regex> = config
            .balance
            .explicit_sets
            .iter()
            .filter_map(|p| Regex::new(p).ok())
            .collect();
        let mut names: Vec<String> = Vec::new();
        let mut index: BTreeMap<String, usize> = BTreeMap::new();
        let mut of_group = Vec::with_capacity(groups.len());
        for g in groups {
            let key = match explicit.iter().position(|r| r.is_match(&g.name)) {
                Some(i) => format!("explicit:{}", config.balance.explicit_sets[i]),
                None => {
                    let mut types: Vec<&str> =
                        g.instance_types.iter().map(|t| t.name.as_str()).collect();
                    types.sort();
                    let labels: Vec<String> = g
                        .template
                        .labels
                        .iter()
                        .filter(|(k, _)| k.as_str() != ZONE_LABEL && !k.contains("zone"))
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    let taints: Vec<String> =
                        g.template.taints.iter().map(|t| t.to_string()).collect();
                    format!(
                        "{}:{}:{}:{}",
                        g.capacity_type,
                        types.join("+"),
                        labels.join(","),
                        taints.join(",")
                    )
                }
            };
            let next = index.len();
            let id = *index.entry(key.clone()).or_insert(next);
            if id == names.len() {
                names.push(key);
            }
            of_group.push(id);
        }
        BalanceSets { of_group, names }
    }

    /// Nodes per zone in each set: registered nodes by their zone label, plus in-flight
    /// nodes of single-zone groups.
    pub fn zone_counts(
        &self,
        snap: &ClusterSnapshot,
        targets: &[u32],
        exclude: &dyn Fn(NodeIdx) -> bool,
    ) -> Vec<BTreeMap<String, i64>> {
        let mut counts = vec![BTreeMap::new(); self.names.len()];
        for gi in snap.group_indexes() {
            add_group(&mut counts[self.of_group[gi]], snap, gi, targets, exclude);
        }
        counts
    }

    /// [`Self::zone_counts`] of one set only: walks that set's nodes, not the cluster's
    /// (a scale-up split asks for it once per expansion).
    pub fn zone_counts_of_set(
        &self,
        snap: &ClusterSnapshot,
        targets: &[u32],
        set: usize,
    ) -> BTreeMap<String, i64> {
        let mut counts = BTreeMap::new();
        for gi in snap.group_indexes().filter(|gi| self.of_group[*gi] == set) {
            add_group(&mut counts, snap, gi, targets, &|_| false);
        }
        counts
    }
}

/// Adds one group's nodes (registered by zone label, in flight for a single-zone group)
/// to its set's zone counts.
fn add_group(
    set: &mut BTreeMap<String, i64>,
    snap: &ClusterSnapshot,
    gi: GroupIdx,
    targets: &[u32],
    exclude: &dyn Fn(NodeIdx) -> bool,
) {
    let g = &snap.groups()[gi];
    for z in &g.zones {
        set.entry(z.clone()).or_insert(0);
    }
    let mut registered = 0u32;
    for &ni in snap.nodes_of_group(gi) {
        registered += 1;
        if exclude(ni) {
            continue;
        }
        if let Some(z) = snap.nodes()[ni].zone() {
            // No allocation for a zone already counted (nearly every node).
            match set.get_mut(z) {
                Some(c) => *c += 1,
                None => {
                    set.insert(z.to_string(), 1);
                }
            }
        }
    }
    if g.zones.len() == 1 {
        let upcoming = i64::from(targets[gi].saturating_sub(registered));
        *set.entry(g.zones[0].clone()).or_insert(0) += upcoming;
    }
}

/// Max minus min of a zone count map (0 for fewer than two zones).
pub fn skew(counts: &BTreeMap<String, i64>) -> u32 {
    if counts.len() < 2 {
        return 0;
    }
    let max = counts.values().max().copied().unwrap_or(0);
    let min = counts.values().min().copied().unwrap_or(0);
    (max - min).max(0) as u32
}
