//! Scheduling predicates, the same filters kube-scheduler applies, evaluated on real or
//! hypothetical nodes. A hypothetical node of a group spanning several zones or instance
//! types is a set of *variants*: a pod counts as fitting only if it fits every variant,
//! because AWS, not us, picks the zone and the type.

use crate::index::{GroupIdx, NodeIdx, PodIdx};
use crate::model::{
    Labels, Pod, Taint, TaintEffect, WhenUnsatisfiable, HOSTNAME_LABEL, INSTANCE_TYPE_LABEL,
    ZONE_LABEL,
};
use crate::resources::{Resources, Shortfall};
use crate::snapshot::ClusterSnapshot;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// One possible outcome of launching a node of a group: the zone and type AWS may pick.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Variant {
    /// Availability zone.
    pub zone: String,
    /// Instance type.
    pub instance_type: String,
}

/// Why a pod does not fit a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Unfit {
    /// Not enough of a resource.
    Resources(Shortfall),
    /// No pod slot left.
    TooManyPods {
        /// Pod slots of the node.
        capacity: u64,
    },
    /// A `nodeSelector` entry does not match.
    NodeSelector {
        /// Label key.
        key: String,
        /// Wanted value.
        wanted: String,
        /// Value on the node.
        found: Option<String>,
    },
    /// No required node-affinity term matches.
    NodeAffinity {
        /// The first requirement of the first term that failed, for the message.
        first_failed: String,
    },
    /// A taint the pod does not tolerate.
    Taint(Taint),
    /// The node is cordoned.
    Unschedulable,
    /// Required pod anti-affinity with a pod on the node.
    AntiAffinity {
        /// The pod it conflicts with.
        conflicts_with: String,
    },
    /// A `DoNotSchedule` spread constraint would be violated.
    TopologySpread {
        /// Topology key.
        topology_key: String,
        /// The domain that would get too many pods.
        domain: String,
        /// Its allowed skew.
        max_skew: u32,
    },
}

impl fmt::Display for Unfit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unfit::Resources(s) => write!(
                f,
                "requests {} {}, node has {} free",
                s.resource.format_amount(s.requested),
                s.resource,
                s.resource.format_amount(s.available)
            ),
            Unfit::TooManyPods { capacity } => write!(f, "node is full ({capacity} pod slots)"),
            Unfit::NodeSelector { key, wanted, found } => match found {
                Some(v) => write!(f, "nodeSelector {key}={wanted} but node has {key}={v}"),
                None => write!(f, "nodeSelector {key}={wanted} but node has no {key} label"),
            },
            Unfit::NodeAffinity { first_failed } => {
                write!(f, "required node affinity not matched ({first_failed})")
            }
            Unfit::Taint(t) => write!(f, "untolerated taint {t}"),
            Unfit::Unschedulable => f.write_str("node is cordoned"),
            Unfit::AntiAffinity { conflicts_with } => {
                write!(f, "required pod anti-affinity with {conflicts_with}")
            }
            Unfit::TopologySpread {
                topology_key,
                domain,
                max_skew,
            } => write!(
                f,
                "topology spread on {topology_key} (maxSkew {max_skew}) would be exceeded in {domain}"
            ),
        }
    }
}

/// A node as the simulation sees it: real, or hypothetical (from a group plan).
#[derive(Clone, Debug)]
pub(crate) struct SimNode<'a> {
    /// Snapshot index of a real node.
    pub existing: Option<NodeIdx>,
    /// Group index, when managed.
    pub group: Option<GroupIdx>,
    pub labels: &'a Labels,
    /// Empty for real nodes; the possible (zone, type) outcomes for hypothetical ones.
    pub variants: &'a [Variant],
    pub taints: &'a [Taint],
    pub free: Resources,
    pub free_pods: u64,
    pub pod_slots: u64,
    pub schedulable: bool,
    /// Pods bound to the node in the snapshot.
    pub bound: &'a [PodIdx],
    /// Pods the simulation placed on the node.
    pub placed: Vec<PodIdx>,
    /// Hostname (the node name; synthetic for hypothetical nodes).
    pub hostname: std::borrow::Cow<'a, str>,
}

impl<'a> SimNode<'a> {
    /// Label lookup for one variant (or the node itself when it has none).
    fn label(&self, variant: Option<&'a Variant>, key: &str) -> Option<&'a str> {
        if let Some(v) = variant {
            if key == ZONE_LABEL {
                return Some(&v.zone);
            }
            if key == INSTANCE_TYPE_LABEL {
                return Some(&v.instance_type);
            }
        }
        if key == HOSTNAME_LABEL && self.existing.is_none() {
            return None;
        }
        self.labels.get(key).map(String::as_str)
    }

    fn variant_iter(&self) -> Vec<Option<&'a Variant>> {
        if self.variants.is_empty() {
            vec![None]
        } else {
            self.variants.iter().map(Some).collect()
        }
    }

    /// The zones this node may be in.
    pub fn zones(&self) -> Vec<&'a str> {
        self.variant_iter()
            .into_iter()
            .filter_map(|v| self.label(v, ZONE_LABEL))
            .collect()
    }

    /// Places a pod (already checked) on the node.
    pub fn place(&mut self, pod_index: PodIdx, requests: &Resources) {
        self.free.saturating_sub(requests);
        self.free_pods = self.free_pods.saturating_sub(1);
        self.placed.push(pod_index);
    }
}

/// Checks only what does not depend on other pods: labels, affinity, taints, cordon.
pub(crate) fn static_fit(pod: &Pod, node: &SimNode<'_>) -> Result<(), Unfit> {
    if !node.schedulable {
        return Err(Unfit::Unschedulable);
    }
    for taint in node.taints {
        if taint.effect == TaintEffect::PreferNoSchedule {
            continue;
        }
        if !pod.spec.tolerations.iter().any(|t| t.tolerates(taint)) {
            return Err(Unfit::Taint(taint.clone()));
        }
    }
    if node.variants.is_empty() {
        label_fit(pod, node, None)
    } else {
        node.variants
            .iter()
            .try_for_each(|v| label_fit(pod, node, Some(v)))
    }
}

fn label_fit<'a>(pod: &Pod, node: &SimNode<'a>, variant: Option<&'a Variant>) -> Result<(), Unfit> {
    for (key, wanted) in &pod.spec.node_selector {
        let found = node.label(variant, key);
        if found != Some(wanted.as_str()) {
            return Err(Unfit::NodeSelector {
                key: key.clone(),
                wanted: wanted.clone(),
                found: found.map(str::to_string),
            });
        }
    }
    let terms = &pod.spec.required_node_affinity;
    if !terms.is_empty() {
        let mut first_failed = None;
        let any = terms.iter().any(|term| {
            term.match_expressions.iter().all(|r| {
                let ok = r.matches_value(node.label(variant, &r.key));
                if !ok && first_failed.is_none() {
                    first_failed = Some(format!("{} {:?} {:?}", r.key, r.operator, r.values));
                }
                ok
            })
        });
        if !any {
            return Err(Unfit::NodeAffinity {
                first_failed: first_failed.unwrap_or_default(),
            });
        }
    }
    Ok(())
}

/// Checks resources and pod slots.
pub(crate) fn resource_fit(pod: &Pod, node: &SimNode<'_>) -> Result<(), Unfit> {
    if node.free_pods == 0 {
        return Err(Unfit::TooManyPods {
            capacity: node.pod_slots,
        });
    }
    match node.free.shortfall(&pod.spec.requests) {
        Some(s) => Err(Unfit::Resources(s)),
        None => Ok(()),
    }
}

fn namespaces_match(term_namespaces: &[String], owner_ns: &str, candidate_ns: &str) -> bool {
    if term_namespaces.is_empty() {
        owner_ns == candidate_ns
    } else {
        term_namespaces.iter().any(|n| n == candidate_ns)
    }
}

/// Required anti-affinity for one pod class, precomputed against the snapshot's bound
/// pods: which real nodes host a pod the class must avoid (or that must avoid it). Pods
/// the simulation places are checked directly on the node.
#[derive(Clone, Debug, Default)]
pub(crate) struct AffinityState {
    /// Real node index -> a conflicting bound pod on it.
    blocked: rustc_hash::FxHashMap<NodeIdx, PodIdx>,
}

impl AffinityState {
    /// Evaluates each selector once per distinct label set, not once per pod.
    pub fn build(pod: &Pod, snap: &ClusterSnapshot) -> AffinityState {
        let mut blocked = rustc_hash::FxHashMap::default();
        for term in &pod.spec.anti_affinity {
            for (ns, labels, pods) in snap.label_sets() {
                if namespaces_match(&term.namespaces, &pod.namespace, ns)
                    && term.label_selector.matches(labels)
                {
                    for &q in pods {
                        if let Some(n) = snap.node_of_pod(q) {
                            blocked.entry(n).or_insert(q);
                        }
                    }
                }
            }
        }
        for &q in snap.bound_anti_affinity_pods() {
            let other = &snap.pods()[q];
            let rejects = other.spec.anti_affinity.iter().any(|term| {
                namespaces_match(&term.namespaces, &other.namespace, &pod.namespace)
                    && term.label_selector.matches(&pod.labels)
            });
            if let (true, Some(n)) = (rejects, snap.node_of_pod(q)) {
                blocked.entry(n).or_insert(q);
            }
        }
        AffinityState { blocked }
    }
}

/// Required anti-affinity, both directions (the incoming pod's terms, and terms of the
/// pods already on the node that would reject the incoming pod).
pub(crate) fn anti_affinity_fit(
    pod: &Pod,
    node: &SimNode<'_>,
    snap: &ClusterSnapshot,
    affinity: &AffinityState,
) -> Result<(), Unfit> {
    let pods = snap.pods();
    if let Some(q) = node.existing.and_then(|n| affinity.blocked.get(&n)) {
        return Err(Unfit::AntiAffinity {
            conflicts_with: pods[*q].key(),
        });
    }
    if !snap.any_anti_affinity() {
        return Ok(());
    }
    for &q in &node.placed {
        let other = &pods[q];
        let conflict = pod.spec.anti_affinity.iter().any(|term| {
            namespaces_match(&term.namespaces, &pod.namespace, &other.namespace)
                && term.label_selector.matches(&other.labels)
        }) || other.spec.anti_affinity.iter().any(|term| {
            namespaces_match(&term.namespaces, &other.namespace, &pod.namespace)
                && term.label_selector.matches(&pod.labels)
        });
        if conflict {
            return Err(Unfit::AntiAffinity {
                conflicts_with: other.key(),
            });
        }
    }
    Ok(())
}

/// Pod counts per topology domain for one pod class's hard spread constraints.
#[derive(Clone, Debug, Default)]
pub(crate) struct SpreadState {
    constraints: Vec<SpreadCounter>,
}

#[derive(Clone, Debug)]
struct SpreadCounter {
    index: usize,
    zone_keyed: bool,
    counts: BTreeMap<String, u32>,
}

impl SpreadState {
    /// Counts matching pods per zone over nodes that pass the pod's node selector and
    /// affinity (Kubernetes' default `nodeAffinityPolicy: Honor`).
    ///
    /// `nodes` starts with the snapshot's nodes, in snapshot order. Only pods bound in the
    /// snapshot are counted here; pods the simulation places later are added with
    /// [`SpreadState::record`].
    pub fn build(pod: &Pod, nodes: &[SimNode<'_>], snap: &ClusterSnapshot) -> SpreadState {
        if pod.spec.topology_spread.is_empty() {
            return SpreadState::default();
        }
        let existing = snap.nodes().len().min(nodes.len());
        let unconstrained =
            pod.spec.node_selector.is_empty() && pod.spec.required_node_affinity.is_empty();
        // Kubernetes' default nodeAffinityPolicy (Honor): only nodes the pod could select
        // are domains, and only pods on them count.
        let eligible: Vec<bool> = if unconstrained {
            Vec::new()
        } else {
            nodes[..existing]
                .iter()
                .map(|n| label_fit(pod, n, None).is_ok())
                .collect()
        };
        let is_eligible =
            |ni: NodeIdx| unconstrained || eligible.get(ni.get()).copied().unwrap_or(false);
        let mut constraints = Vec::new();
        for (index, c) in pod.spec.topology_spread.iter().enumerate() {
            if c.when_unsatisfiable != WhenUnsatisfiable::DoNotSchedule {
                continue;
            }
            let zone_keyed = c.topology_key == ZONE_LABEL;
            if !zone_keyed && c.topology_key != HOSTNAME_LABEL {
                continue;
            }
            let mut counts: BTreeMap<String, u32> = BTreeMap::new();
            if zone_keyed {
                if unconstrained {
                    for z in snap.node_zones() {
                        counts.insert(z.clone(), 0);
                    }
                } else {
                    for (ni, n) in snap.node_indexes().zip(snap.nodes()) {
                        if let (true, Some(z)) = (is_eligible(ni), n.zone()) {
                            counts.entry(z.to_string()).or_insert(0);
                        }
                    }
                }
                for (ns, labels, pods) in snap.label_sets() {
                    if ns != pod.namespace || !c.label_selector.matches(labels) {
                        continue;
                    }
                    for &q in pods {
                        let Some(ni) = snap.node_of_pod(q) else {
                            continue;
                        };
                        if !is_eligible(ni) {
                            continue;
                        }
                        if let Some(z) = snap.nodes()[ni].zone() {
                            *counts.entry(z.to_string()).or_insert(0) += 1;
                        }
                    }
                }
            }
            constraints.push(SpreadCounter {
                index,
                zone_keyed,
                counts,
            });
        }
        SpreadState { constraints }
    }

    /// Whether the class has any hard constraint to track.
    pub fn is_empty(&self) -> bool {
        self.constraints.is_empty()
    }

    /// Checks that placing `pod` on `node` keeps every hard constraint.
    pub fn check(
        &self,
        pod: &Pod,
        node: &SimNode<'_>,
        snap: &ClusterSnapshot,
    ) -> Result<(), Unfit> {
        for counter in &self.constraints {
            let c = &pod.spec.topology_spread[counter.index];
            if counter.zone_keyed {
                for zone in node.zones() {
                    let here = counter.counts.get(zone).copied().unwrap_or(0);
                    let min = counter
                        .counts
                        .values()
                        .copied()
                        .chain(std::iter::once(here))
                        .min()
                        .unwrap_or(0);
                    if here + 1 - min > c.max_skew {
                        return Err(Unfit::TopologySpread {
                            topology_key: c.topology_key.clone(),
                            domain: zone.to_string(),
                            max_skew: c.max_skew,
                        });
                    }
                }
            } else {
                // Hostname domains: a fresh node always has zero, so the minimum is 0.
                let here = node
                    .bound
                    .iter()
                    .chain(&node.placed)
                    .filter(|&&q| {
                        let other = &snap.pods()[q];
                        other.namespace == pod.namespace && c.label_selector.matches(&other.labels)
                    })
                    .count() as u32;
                if here + 1 > c.max_skew {
                    return Err(Unfit::TopologySpread {
                        topology_key: c.topology_key.clone(),
                        domain: node.hostname.to_string(),
                        max_skew: c.max_skew,
                    });
                }
            }
        }
        Ok(())
    }

    /// Records a placement on `node`.
    pub fn record(&mut self, node: &SimNode<'_>) {
        let zones: BTreeSet<&str> = node.zones().into_iter().collect();
        for counter in self.constraints.iter_mut().filter(|c| c.zone_keyed) {
            for zone in &zones {
                *counter.counts.entry(zone.to_string()).or_insert(0) += 1;
            }
        }
    }
}

/// Every predicate: static, resources, anti-affinity, spread.
pub(crate) fn full_fit(
    pod: &Pod,
    node: &SimNode<'_>,
    snap: &ClusterSnapshot,
    spread: &SpreadState,
    affinity: &AffinityState,
) -> Result<(), Unfit> {
    resource_fit(pod, node)?;
    static_fit(pod, node)?;
    anti_affinity_fit(pod, node, snap, affinity)?;
    spread.check(pod, node, snap)
}
