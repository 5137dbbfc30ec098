//! Scheduling predicates, the same filters kube-scheduler applies, evaluated on real or
//! hypothetical nodes. A hypothetical node of a group spanning several zones or instance
//! types is a set of *variants*: a pod counts as fitting only if it fits every variant,
//! because AWS, not us, picks the zone and the type. The one exception is a last resort
//! for pods that depend on the zone (`scaleup::ZoneGuess`).

use crate::index::{GroupIdx, NodeIdx, PodIdx};
use crate::model::{
    Labels, Pod, PodAntiAffinityTerm, Requirement, Taint, TaintEffect, WhenUnsatisfiable,
    HOSTNAME_LABEL, INSTANCE_TYPE_LABEL, NODE_NAME_FIELD, ZONE_LABEL,
};
use crate::resources::{Resources, Shortfall};
use crate::snapshot::ClusterSnapshot;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// One possible outcome of launching a node of a group: the zone and type AWS may pick.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Variant {
    /// Availability zone.
    pub zone: String,
    /// Instance type.
    pub instance_type: String,
}

/// The words every reason about an unsupported scheduling feature carries (metrics count
/// the pending pods whose `NotTriggerScaleUp` reason has them).
pub const UNSUPPORTED_FEATURE: &str = "which the autoscaler does not model";

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
    /// Required pod affinity: no matching pod in the node's domain.
    PodAffinity {
        /// The topology key of the first unsatisfied term.
        topology_key: String,
    },
    /// A host port is already taken on the node.
    HostPort {
        /// The port.
        port: u16,
        /// Its protocol.
        protocol: String,
    },
    /// The pod uses a scheduling feature the engine does not model.
    Unsupported {
        /// The feature, by name.
        feature: String,
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
            Unfit::PodAffinity { topology_key } => write!(
                f,
                "required pod affinity on {topology_key}: no matching pod in the node's domain"
            ),
            Unfit::HostPort { port, protocol } => {
                write!(f, "host port {port}/{protocol} is already in use on the node")
            }
            Unfit::Unsupported { feature } => write!(
                f,
                "pod uses {feature}, {UNSUPPORTED_FEATURE} (it never guesses a fit)"
            ),
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
    /// Label lookup for one variant (or the node itself when it has none). A hypothetical
    /// node's hostname is its synthetic name: a domain of its own, with no pod yet.
    fn label(&self, variant: Option<&'a Variant>, key: &str) -> Option<&str> {
        if let Some(v) = variant {
            if key == ZONE_LABEL {
                return Some(&v.zone);
            }
            if key == INSTANCE_TYPE_LABEL {
                return Some(&v.instance_type);
            }
        }
        if key == HOSTNAME_LABEL && self.existing.is_none() {
            return Some(&self.hostname);
        }
        self.labels.get(key).map(String::as_str)
    }

    /// The node itself (`None`) when it has no variants, else each variant. No
    /// allocation: this runs for every node a pod is tried on.
    fn variant_iter(&self) -> impl Iterator<Item = Option<&'a Variant>> + 'a {
        let variants: &'a [Variant] = self.variants;
        let itself = variants.is_empty().then_some(None);
        itself.into_iter().chain(variants.iter().map(Some))
    }

    /// The values the node may have for `key`, one per variant (duplicates removed);
    /// empty when some variant lacks the label.
    fn domains(&self, key: &str) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for v in self.variant_iter() {
            match self.label(v, key) {
                Some(value) => {
                    if !out.contains(&value) {
                        out.push(value);
                    }
                }
                None => return Vec::new(),
            }
        }
        out
    }

    /// Whether every variant of the node has `key` (what `domains` being non-empty
    /// says, without collecting them).
    fn has_domain(&self, key: &str) -> bool {
        self.variant_iter().all(|v| self.label(v, key).is_some())
    }

    /// Places a pod (already checked) on the node.
    pub fn place(&mut self, pod_index: PodIdx, requests: &Resources) {
        self.free.saturating_sub(requests);
        self.free_pods = self.free_pods.saturating_sub(1);
        self.placed.push(pod_index);
    }

    /// Pods on the node: bound in the snapshot, then placed by the simulation.
    fn pods_here(&self) -> impl Iterator<Item = PodIdx> + '_ {
        self.bound.iter().chain(&self.placed).copied()
    }
}

/// Checks only what does not depend on other pods: labels, affinity, taints, cordon.
pub(crate) fn static_fit(pod: &Pod, node: &SimNode<'_>) -> Result<(), Unfit> {
    if let Some(feature) = pod.spec.unsupported.first() {
        return Err(Unfit::Unsupported {
            feature: feature.clone(),
        });
    }
    if !node.schedulable {
        return Err(Unfit::Unschedulable);
    }
    for taint in node.taints {
        if taint.effect == TaintEffect::PreferNoSchedule {
            continue;
        }
        // tolerationSeconds only bounds how long a NoExecute taint is tolerated once
        // it appears; the scheduler's filter ignores it, so it is ignored here.
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
        let mut check = |r: &Requirement, value: Option<&str>| {
            let ok = r.matches_value(value);
            if !ok && first_failed.is_none() {
                first_failed = Some(format!("{} {:?} {:?}", r.key, r.operator, r.values));
            }
            ok
        };
        let any = terms.iter().any(|term| {
            // A term with no requirement at all matches no node (Kubernetes' rule).
            (!term.match_expressions.is_empty() || !term.match_fields.is_empty())
                && term
                    .match_expressions
                    .iter()
                    .all(|r| check(r, node.label(variant, &r.key)))
                && term.match_fields.iter().all(|r| {
                    // metadata.name is the only field the API server accepts.
                    let name = (r.key == NODE_NAME_FIELD).then_some(&*node.hostname);
                    check(r, name)
                })
        });
        if !any {
            return Err(Unfit::NodeAffinity {
                first_failed: first_failed.unwrap_or_else(|| "empty term".into()),
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

/// Host ports: none of the pod's may clash with one of a pod on the node.
pub(crate) fn host_port_fit(
    pod: &Pod,
    node: &SimNode<'_>,
    snap: &ClusterSnapshot,
) -> Result<(), Unfit> {
    if pod.spec.host_ports.is_empty() {
        return Ok(());
    }
    for q in node.pods_here() {
        for theirs in &snap.pods()[q].spec.host_ports {
            if let Some(mine) = pod
                .spec
                .host_ports
                .iter()
                .find(|m| m.conflicts_with(theirs))
            {
                return Err(Unfit::HostPort {
                    port: mine.port,
                    protocol: mine.protocol.clone(),
                });
            }
        }
    }
    Ok(())
}

fn namespaces_match(term_namespaces: &[String], owner_ns: &str, candidate_ns: &str) -> bool {
    if term_namespaces.is_empty() {
        owner_ns == candidate_ns
    } else {
        term_namespaces.iter().any(|n| n == candidate_ns)
    }
}

/// Whether `term`, declared by a pod of namespace `owner_ns`, selects `candidate`.
fn term_selects(term: &PodAntiAffinityTerm, owner_ns: &str, candidate: &Pod) -> bool {
    namespaces_match(&term.namespaces, owner_ns, &candidate.namespace)
        && term.label_selector.matches(&candidate.labels)
}

/// A topology domain: (key, value).
type Domain = (String, String);

/// Required pod affinity and anti-affinity for one pod class, as kube-scheduler's
/// InterPodAffinity filter counts them: per topology domain (any label key), over the
/// pods bound in the snapshot and the pods the simulation placed so far.
#[derive(Clone, Debug, Default)]
pub(crate) struct AffinityState {
    /// Domains holding a pod the class's anti-affinity terms select, with that pod.
    anti: rustc_hash::FxHashMap<Domain, PodIdx>,
    /// Domains holding a pod whose anti-affinity terms select the class, with that pod.
    rejected_by: rustc_hash::FxHashMap<Domain, PodIdx>,
    /// Domains holding a pod that every affinity term of the class selects.
    affinity: rustc_hash::FxHashSet<Domain>,
}

impl AffinityState {
    /// Counts over the snapshot's bound pods; evaluates each selector once per distinct
    /// label set, not once per pod.
    pub fn build(pod: &Pod, snap: &ClusterSnapshot) -> AffinityState {
        let mut state = AffinityState::default();
        let has_terms = !pod.spec.anti_affinity.is_empty() || !pod.spec.affinity.is_empty();
        if has_terms {
            for (ns, labels, pods) in snap.label_sets() {
                let probe = |term: &PodAntiAffinityTerm| {
                    namespaces_match(&term.namespaces, &pod.namespace, ns)
                        && term.label_selector.matches(labels)
                };
                let anti_terms: Vec<&PodAntiAffinityTerm> =
                    pod.spec.anti_affinity.iter().filter(|t| probe(t)).collect();
                let all_affinity =
                    !pod.spec.affinity.is_empty() && pod.spec.affinity.iter().all(probe);
                if anti_terms.is_empty() && !all_affinity {
                    continue;
                }
                for &q in pods {
                    let Some(ni) = snap.node_of_pod(q) else {
                        continue;
                    };
                    let labels = &snap.nodes()[ni].labels;
                    for term in &anti_terms {
                        if let Some(v) = labels.get(&term.topology_key) {
                            state
                                .anti
                                .entry((term.topology_key.clone(), v.clone()))
                                .or_insert(q);
                        }
                    }
                    if all_affinity {
                        for term in &pod.spec.affinity {
                            if let Some(v) = labels.get(&term.topology_key) {
                                state
                                    .affinity
                                    .insert((term.topology_key.clone(), v.clone()));
                            }
                        }
                    }
                }
            }
        }
        for &q in snap.bound_anti_affinity_pods() {
            let other = &snap.pods()[q];
            let Some(ni) = snap.node_of_pod(q) else {
                continue;
            };
            for term in &other.spec.anti_affinity {
                if term_selects(term, &other.namespace, pod) {
                    if let Some(v) = snap.nodes()[ni].labels.get(&term.topology_key) {
                        state
                            .rejected_by
                            .entry((term.topology_key.clone(), v.clone()))
                            .or_insert(q);
                    }
                }
            }
        }
        state
    }

    /// [`AffinityState::build`], plus the pods already placed on `nodes` this round.
    pub fn build_with_placed(
        pod: &Pod,
        snap: &ClusterSnapshot,
        nodes: &[SimNode<'_>],
    ) -> AffinityState {
        let mut state = AffinityState::build(pod, snap);
        if snap.any_anti_affinity() || !pod.spec.affinity.is_empty() {
            for node in nodes {
                for &q in &node.placed {
                    state.record(pod, &snap.pods()[q], q, node);
                }
            }
        }
        state
    }

    /// Records that `placed` (index `q`) now runs on `node`, for the class of `pod`.
    /// A hypothetical node of several zones counts in each: conservative for
    /// anti-affinity, and affinity is only granted where every zone agrees.
    pub fn record(&mut self, pod: &Pod, placed: &Pod, q: PodIdx, node: &SimNode<'_>) {
        for term in &pod.spec.anti_affinity {
            if term_selects(term, &pod.namespace, placed) {
                for v in node.domains(&term.topology_key) {
                    self.anti
                        .entry((term.topology_key.clone(), v.to_string()))
                        .or_insert(q);
                }
            }
        }
        for term in &placed.spec.anti_affinity {
            if term_selects(term, &placed.namespace, pod) {
                for v in node.domains(&term.topology_key) {
                    self.rejected_by
                        .entry((term.topology_key.clone(), v.to_string()))
                        .or_insert(q);
                }
            }
        }
        let affinity = &pod.spec.affinity;
        if !affinity.is_empty()
            && affinity
                .iter()
                .all(|t| term_selects(t, &pod.namespace, placed))
        {
            for term in affinity {
                let domains = node.domains(&term.topology_key);
                if domains.len() == 1 {
                    self.affinity
                        .insert((term.topology_key.clone(), domains[0].to_string()));
                }
            }
        }
    }
}

/// Required pod affinity and anti-affinity, both directions (the incoming pod's terms,
/// and terms of the pods already placed that would reject it), per topology domain.
/// Adds `n` to `domain`'s count, allocating its name only the first time.
fn add_count(counts: &mut BTreeMap<String, u32>, domain: &str, n: u32) {
    match counts.get_mut(domain) {
        Some(c) => *c += n,
        None => {
            counts.insert(domain.to_string(), n);
        }
    }
}

pub(crate) fn anti_affinity_fit(
    pod: &Pod,
    node: &SimNode<'_>,
    snap: &ClusterSnapshot,
    affinity: &AffinityState,
) -> Result<(), Unfit> {
    let pods = snap.pods();
    for variant in node.variant_iter() {
        // Nothing recorded (the usual case): no domain to build for the lookup.
        if !affinity.anti.is_empty() {
            for term in &pod.spec.anti_affinity {
                if let Some(v) = node.label(variant, &term.topology_key) {
                    let domain = (term.topology_key.clone(), v.to_string());
                    if let Some(q) = affinity.anti.get(&domain) {
                        return Err(Unfit::AntiAffinity {
                            conflicts_with: pods[*q].key(),
                        });
                    }
                }
            }
        }
        if !affinity.rejected_by.is_empty() {
            for (key, value) in affinity.rejected_by.keys() {
                if node.label(variant, key) == Some(value.as_str()) {
                    return Err(Unfit::AntiAffinity {
                        conflicts_with: pods[affinity.rejected_by[&(key.clone(), value.clone())]]
                            .key(),
                    });
                }
            }
        }
        if !pod.spec.affinity.is_empty() {
            affinity_fit(pod, node, variant, affinity)?;
        }
    }
    // Pods the simulation placed on this very node (same node: same domain for every key
    // the node has), in case they were not recorded in `affinity`.
    if snap.any_anti_affinity() {
        for &q in &node.placed {
            let other = &pods[q];
            let conflict = pod.spec.anti_affinity.iter().any(|term| {
                node.label(None, &term.topology_key).is_some()
                    && term_selects(term, &pod.namespace, other)
            }) || other.spec.anti_affinity.iter().any(|term| {
                node.label(None, &term.topology_key).is_some()
                    && term_selects(term, &other.namespace, pod)
            });
            if conflict {
                return Err(Unfit::AntiAffinity {
                    conflicts_with: other.key(),
                });
            }
        }
    }
    Ok(())
}

/// Required pod affinity on one variant: every term's key on the node, and a pod matching
/// all terms in each term's domain; or, when no such pod exists anywhere, the pod matches
/// its own terms (the first of a group with affinity to itself).
fn affinity_fit<'a>(
    pod: &Pod,
    node: &SimNode<'a>,
    variant: Option<&'a Variant>,
    affinity: &AffinityState,
) -> Result<(), Unfit> {
    let mut all_found = true;
    for term in &pod.spec.affinity {
        let Some(v) = node.label(variant, &term.topology_key) else {
            return Err(Unfit::PodAffinity {
                topology_key: term.topology_key.clone(),
            });
        };
        if !affinity
            .affinity
            .contains(&(term.topology_key.clone(), v.to_string()))
        {
            all_found = false;
        }
    }
    if all_found {
        return Ok(());
    }
    let self_match = pod
        .spec
        .affinity
        .iter()
        .all(|t| term_selects(t, &pod.namespace, pod));
    if affinity.affinity.is_empty() && self_match {
        return Ok(());
    }
    Err(Unfit::PodAffinity {
        topology_key: pod.spec.affinity[0].topology_key.clone(),
    })
}

/// Pod counts per topology domain for one pod class's hard spread constraints, as
/// kube-scheduler's PodTopologySpread filter counts them.
#[derive(Clone, Debug, Default)]
pub(crate) struct SpreadState {
    constraints: Vec<SpreadCounter>,
    /// Every constraint's topology key: a node lacking one is no domain for any.
    keys: Vec<String>,
    /// Keys of the class's anti-affinity terms that select the class itself ...
    self_anti_keys: Vec<String>,
    /// ... and the domains where the round placed one of its pods (kept with the class
    /// between expansions, so a later expansion does not reuse a taken zone).
    self_anti_taken: rustc_hash::FxHashSet<Domain>,
}

#[derive(Clone, Debug)]
struct SpreadCounter {
    index: usize,
    key: String,
    /// Whether the incoming pod matches its own selector (counts itself once placed).
    self_match: bool,
    counts: BTreeMap<String, u32>,
}

impl SpreadState {
    /// Counts matching pods per domain over the nodes that pass the pod's node selector
    /// and affinity (Kubernetes' default `nodeAffinityPolicy: Honor`) and carry every
    /// constraint's key: bound pods and those the simulation placed on `nodes` so far.
    ///
    /// `nodes` starts with the snapshot's nodes, in snapshot order; later ones are
    /// hypothetical. Placements made after this are added with [`SpreadState::record`].
    pub fn build(pod: &Pod, nodes: &[SimNode<'_>], snap: &ClusterSnapshot) -> SpreadState {
        let hard: Vec<usize> = pod
            .spec
            .topology_spread
            .iter()
            .enumerate()
            .filter(|(_, c)| c.when_unsatisfiable == WhenUnsatisfiable::DoNotSchedule)
            .map(|(i, _)| i)
            .collect();
        let self_anti_keys: Vec<String> = pod
            .spec
            .anti_affinity
            .iter()
            .filter(|t| term_selects(t, &pod.namespace, pod))
            .map(|t| t.topology_key.clone())
            .collect();
        if hard.is_empty() {
            return SpreadState {
                self_anti_keys,
                ..SpreadState::default()
            };
        }
        let mut keys: Vec<String> = Vec::new();
        for &i in &hard {
            let key = &pod.spec.topology_spread[i].topology_key;
            if !keys.contains(key) {
                keys.push(key.clone());
            }
        }
        let mut constraints: Vec<SpreadCounter> = hard
            .iter()
            .map(|&index| {
                let c = &pod.spec.topology_spread[index];
                SpreadCounter {
                    index,
                    key: c.topology_key.clone(),
                    self_match: pod_counts(pod, c, pod),
                    counts: BTreeMap::new(),
                }
            })
            .collect();
        let unconstrained =
            pod.spec.node_selector.is_empty() && pod.spec.required_node_affinity.is_empty();
        let pods = snap.pods();
        let counted: Vec<bool> = nodes
            .iter()
            .map(|node| {
                (unconstrained || static_labels_fit(pod, node).is_ok())
                    && keys.iter().all(|k| node.has_domain(k))
            })
            .collect();
        let mut sim_of_real: Vec<Option<usize>> = vec![None; snap.nodes().len()];
        for (k, node) in nodes.iter().enumerate() {
            if let Some(ni) = node.existing {
                sim_of_real[ni] = Some(k);
            }
        }
        for counter in &mut constraints {
            let c = &pod.spec.topology_spread[counter.index];
            let mut matching = vec![0u32; nodes.len()];
            // Bound pods: the selector is evaluated once per distinct (namespace, labels),
            // not once per pod (a round with a few spread classes met 150k pods each).
            for (namespace, labels, members) in snap.label_sets() {
                if namespace != pod.namespace || !c.label_selector.matches(labels) {
                    continue;
                }
                for &q in members {
                    if let Some(k) = snap.node_of_pod(q).and_then(|ni| sim_of_real[ni]) {
                        matching[k] += 1;
                    }
                }
            }
            for (k, node) in nodes.iter().enumerate() {
                if !counted[k] {
                    continue;
                }
                // Plus the pods this round placed so far.
                let here = matching[k]
                    + node
                        .placed
                        .iter()
                        .filter(|&&q| pod_counts(pod, c, &pods[q]))
                        .count() as u32;
                for d in node.domains(&c.topology_key) {
                    add_count(&mut counter.counts, d, here);
                }
            }
        }
        SpreadState {
            constraints,
            keys,
            self_anti_keys,
            self_anti_taken: Default::default(),
        }
    }

    /// Whether the class has nothing to track between placements.
    pub fn is_empty(&self) -> bool {
        self.constraints.is_empty() && self.self_anti_keys.is_empty()
    }

    /// Checks that placing `pod` on `node` keeps every hard constraint.
    pub fn check(
        &self,
        pod: &Pod,
        node: &SimNode<'_>,
        _snap: &ClusterSnapshot,
    ) -> Result<(), Unfit> {
        for key in &self.self_anti_keys {
            for domain in node.domains(key) {
                let taken = (key.clone(), domain.to_string());
                if self.self_anti_taken.contains(&taken) {
                    return Err(Unfit::AntiAffinity {
                        conflicts_with: format!(
                            "a pod of its own set placed this round in {}={}",
                            taken.0, taken.1
                        ),
                    });
                }
            }
        }
        for counter in &self.constraints {
            let c = &pod.spec.topology_spread[counter.index];
            let domains = node.domains(&c.topology_key);
            if domains.is_empty() {
                return Err(Unfit::TopologySpread {
                    topology_key: c.topology_key.clone(),
                    domain: "(node has no such label)".into(),
                    max_skew: c.max_skew,
                });
            }
            for domain in domains {
                let here = counter.counts.get(domain).copied().unwrap_or(0);
                let min = counter
                    .counts
                    .values()
                    .copied()
                    .chain(std::iter::once(here))
                    .min()
                    .unwrap_or(0);
                if here + u32::from(counter.self_match) > min + c.max_skew {
                    return Err(Unfit::TopologySpread {
                        topology_key: c.topology_key.clone(),
                        domain: domain.to_string(),
                        max_skew: c.max_skew,
                    });
                }
            }
        }
        Ok(())
    }

    /// Records a placement of the class's own pod on `node`.
    pub fn record(&mut self, node: &SimNode<'_>) {
        for key in &self.self_anti_keys {
            for d in node.domains(key) {
                self.self_anti_taken.insert((key.clone(), d.to_string()));
            }
        }
        for counter in &mut self.constraints {
            if !counter.self_match {
                continue;
            }
            for d in node.domains(&counter.key) {
                add_count(&mut counter.counts, d, 1);
            }
        }
    }

    /// Records a placement of `placed`, a pod of another class, for `pod`'s class.
    pub fn record_other(&mut self, pod: &Pod, placed: &Pod, node: &SimNode<'_>) {
        if self.keys.iter().any(|k| !node.has_domain(k)) {
            return;
        }
        for counter in &mut self.constraints {
            let c = &pod.spec.topology_spread[counter.index];
            if pod_counts(pod, c, placed) {
                for d in node.domains(&c.topology_key) {
                    add_count(&mut counter.counts, d, 1);
                }
            }
        }
    }
}

/// Whether `other` counts for `pod`'s spread constraint: same namespace, selector matches.
fn pod_counts(pod: &Pod, c: &crate::model::TopologySpreadConstraint, other: &Pod) -> bool {
    other.namespace == pod.namespace && c.label_selector.matches(&other.labels)
}

/// Node selector and required node affinity only (spread domains honour them).
fn static_labels_fit(pod: &Pod, node: &SimNode<'_>) -> Result<(), Unfit> {
    if node.variants.is_empty() {
        label_fit(pod, node, None)
    } else {
        node.variants
            .iter()
            .try_for_each(|v| label_fit(pod, node, Some(v)))
    }
}

/// Every predicate: static, resources, host ports, pod (anti-)affinity, spread.
pub(crate) fn full_fit(
    pod: &Pod,
    node: &SimNode<'_>,
    snap: &ClusterSnapshot,
    spread: &SpreadState,
    affinity: &AffinityState,
) -> Result<(), Unfit> {
    resource_fit(pod, node)?;
    static_fit(pod, node)?;
    host_port_fit(pod, node, snap)?;
    anti_affinity_fit(pod, node, snap, affinity)?;
    spread.check(pod, node, snap)
}

/// Default pod slots when a node reports none (the kubelet's default).
pub(crate) const DEFAULT_MAX_PODS: u64 = 110;

/// The filter as the engine evaluates it, for one pod against every node of the snapshot
/// as it stands (bound pods counted, nothing placed): in snapshot order, `Ok` where the
/// pod fits. Cordoned nodes refuse; readiness is not looked at (the scheduler does not
/// either). This is the question the differential test asks kube-scheduler too.
pub fn fit_on_nodes(snap: &ClusterSnapshot, pod: &Pod) -> Vec<Result<(), Unfit>> {
    let nodes: Vec<SimNode<'_>> = snap
        .node_indexes()
        .zip(snap.nodes())
        .map(|(ni, n)| {
            let pod_slots = if n.allocatable.pods == 0 {
                DEFAULT_MAX_PODS
            } else {
                n.allocatable.pods
            };
            let bound = snap.pods_on_node(ni);
            let mut free = n.allocatable.clone();
            free.saturating_sub(snap.requested_on_node(ni));
            SimNode {
                existing: Some(ni),
                group: snap.group_of_node(ni),
                labels: &n.labels,
                variants: &[],
                taints: &n.taints,
                free,
                free_pods: pod_slots.saturating_sub(bound.len() as u64),
                pod_slots,
                schedulable: !n.unschedulable,
                bound,
                placed: Vec::new(),
                hostname: n.name.as_str().into(),
            }
        })
        .collect();
    let spread = SpreadState::build(pod, &nodes, snap);
    let affinity = AffinityState::build(pod, snap);
    nodes
        .iter()
        .map(|n| full_fit(pod, n, snap, &spread, &affinity))
        .collect()
}
