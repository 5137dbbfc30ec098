//! Pure translation from Kubernetes objects (k8s-openapi) to the core's model.
//!
//! No I/O: each function takes an object and returns the core value, so the rules (how
//! requests add up, what counts as local storage, ...) are unit-tested here.

use autoscaler_core::model::{HostPort, PodAffinityTerm};
use autoscaler_core::model::{CAPACITY_TYPE_LABEL, DELETION_COST_SET_BY_US, POD_DELETION_COST};
use autoscaler_core::quantity::{parse_bytes, parse_count, parse_cpu_millis, QuantityError};
use autoscaler_core::{
    CapacityType, DaemonSet, LabelSelector, Labels, Node, NodeSelectorTerm, OwnerRef, Pod,
    PodAntiAffinityTerm, PodDisruptionBudget, Requirement, Resources, SchedulingSpec,
    SelectorOperator, Taint, TaintEffect, Timestamp, Toleration, TolerationOperator,
    TopologySpreadConstraint, WhenUnsatisfiable,
};
use k8s_openapi::api::apps::v1 as apps;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::policy::v1 as policy;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use std::collections::{BTreeMap, HashSet};

/// EKS managed node groups' capacity-type label (`SPOT` / `ON_DEMAND`).
pub const EKS_CAPACITY_TYPE_LABEL: &str = "eks.amazonaws.com/capacityType";

/// A resource quantity that does not parse, with the object it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{object}: resource {resource}: {source}")]
pub struct TranslateError {
    /// `Node/name` or `Pod/ns/name`.
    pub object: String,
    /// Resource name.
    pub resource: String,
    /// The quantity problem.
    pub source: QuantityError,
}

fn millis(t: &meta::Time) -> Timestamp {
    Timestamp::from_millis(u64::try_from(t.0.as_millisecond()).unwrap_or(0))
}

fn created(meta: &meta::ObjectMeta) -> Timestamp {
    meta.creation_timestamp
        .as_ref()
        .map(millis)
        .unwrap_or_default()
}

fn labels(m: &Option<BTreeMap<String, String>>) -> Labels {
    m.clone().unwrap_or_default().into()
}

/// Hands out one shared [`Labels`] per distinct label set, so the 100,000 pods of a few
/// hundred workloads hold a few hundred label maps instead of 100,000 (about 690 bytes
/// per pod with ten labels: autoscaler-bin/README.md "Benchmarks at scale").
///
/// Sets no pod uses any more are dropped by a sweep that runs when the set has doubled
/// since the last one, so a rollout's old `pod-template-hash` does not stay forever and
/// the sweeps cost O(1) per interned set on average.
#[derive(Debug)]
pub struct LabelInterner {
    sets: HashSet<Labels>,
    /// Size at which the next sweep runs.
    sweep_at: usize,
}

/// Below this many sets, sweeping is not worth it.
const MIN_SWEEP_AT: usize = 1024;

impl Default for LabelInterner {
    fn default() -> Self {
        Self {
            sets: HashSet::new(),
            sweep_at: MIN_SWEEP_AT,
        }
    }
}

impl LabelInterner {
    /// The shared labels equal to `map` (`None` is empty), made on first sight.
    pub fn intern_map(&mut self, map: Option<&BTreeMap<String, String>>) -> Labels {
        match map {
            None => Labels::new(),
            Some(map) if map.is_empty() => Labels::new(),
            // Looked up by the API object's own map: a hit allocates nothing.
            Some(map) => match self.sets.get(map) {
                Some(shared) => shared.clone(),
                None => self.insert(Labels::from(map.clone())),
            },
        }
    }

    /// The shared labels equal to `labels` (`labels` itself when it is the first of its kind).
    pub fn intern(&mut self, labels: Labels) -> Labels {
        if labels.is_empty() {
            return Labels::new();
        }
        match self.sets.get(labels.as_map()) {
            Some(shared) => shared.clone(),
            None => self.insert(labels),
        }
    }

    /// Distinct label sets held now.
    pub fn len(&self) -> usize {
        self.sets.len()
    }

    /// Whether no set is held.
    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    fn insert(&mut self, labels: Labels) -> Labels {
        if self.sets.len() >= self.sweep_at {
            // Held only here (count 1): no pod has these labels any more.
            self.sets.retain(|l| l.share_count() > 1);
            self.sweep_at = (self.sets.len() * 2).max(MIN_SWEEP_AT);
        }
        self.sets.insert(labels.clone());
        labels
    }
}

/// Converts a ResourceList into core resources (cpu, memory, pods, ephemeral-storage;
/// anything else is an extended resource counted in units).
pub fn resources(
    list: Option<&BTreeMap<String, Quantity>>,
    object: &str,
) -> Result<Resources, TranslateError> {
    let mut r = Resources::default();
    let Some(list) = list else {
        return Ok(r);
    };
    for (name, Quantity(q)) in list {
        let wrap = |source| TranslateError {
            object: object.to_string(),
            resource: name.clone(),
            source,
        };
        match name.as_str() {
            "cpu" => r.cpu_millis = parse_cpu_millis(q).map_err(wrap)?,
            "memory" => r.memory_bytes = parse_bytes(q).map_err(wrap)?,
            "pods" => r.pods = parse_count(q).map_err(wrap)?,
            "ephemeral-storage" => r.ephemeral_storage_bytes = parse_bytes(q).map_err(wrap)?,
            other => {
                let n = parse_count(q).map_err(wrap)?;
                r.extended.insert(other.to_string(), n);
            }
        }
    }
    Ok(r)
}

fn container_requests(c: &core::Container, object: &str) -> Result<Resources, TranslateError> {
    resources(
        c.resources.as_ref().and_then(|r| r.requests.as_ref()),
        object,
    )
}

/// A pod's effective requests as the scheduler computes them: the sum of the regular
/// containers and restartable init containers (sidecars), at least each plain init
/// container (plus the sidecars started before it), plus the pod overhead.
pub fn pod_requests(spec: &core::PodSpec, object: &str) -> Result<Resources, TranslateError> {
    let mut sum = Resources::default();
    for c in &spec.containers {
        sum.add(&container_requests(c, object)?);
    }
    let mut sidecars = Resources::default();
    let mut init_peak = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let req = container_requests(c, object)?;
        if c.restart_policy.as_deref() == Some("Always") {
            sidecars.add(&req);
        } else {
            let mut during = sidecars.clone();
            during.add(&req);
            init_peak = init_peak.component_max(&during);
        }
    }
    sum.add(&sidecars);
    sum = sum.component_max(&init_peak);
    sum.add(&resources(spec.overhead.as_ref(), object)?);
    Ok(sum)
}

fn operator(op: &str) -> SelectorOperator {
    match op {
        "In" => SelectorOperator::In,
        "NotIn" => SelectorOperator::NotIn,
        "Exists" => SelectorOperator::Exists,
        "DoesNotExist" => SelectorOperator::DoesNotExist,
        "Gt" => SelectorOperator::Gt,
        "Lt" => SelectorOperator::Lt,
        // The API server validates operators; an unknown one matches nothing, like `In []`.
        _ => SelectorOperator::In,
    }
}

/// One selector requirement (label and node selectors share the shape).
fn requirement(key: &str, op: &str, values: &Option<Vec<String>>) -> Requirement {
    Requirement {
        key: key.to_string(),
        operator: operator(op),
        values: values.clone().unwrap_or_default(),
    }
}

/// Converts a label selector. `None` (a null selector) is `None`: it matches nothing.
pub fn label_selector(s: Option<&meta::LabelSelector>) -> Option<LabelSelector> {
    let s = s?;
    Some(LabelSelector {
        match_labels: labels(&s.match_labels),
        match_expressions: s
            .match_expressions
            .iter()
            .flatten()
            .map(|r| requirement(&r.key, &r.operator, &r.values))
            .collect(),
    })
}

fn effect(e: &str) -> Option<TaintEffect> {
    match e {
        "NoSchedule" => Some(TaintEffect::NoSchedule),
        "PreferNoSchedule" => Some(TaintEffect::PreferNoSchedule),
        "NoExecute" => Some(TaintEffect::NoExecute),
        _ => None,
    }
}

/// The scheduling-relevant part of a pod spec.
pub fn scheduling_spec(
    spec: &core::PodSpec,
    object: &str,
) -> Result<SchedulingSpec, TranslateError> {
    let affinity = spec.affinity.as_ref();
    let required_node_affinity = affinity
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .map(|sel| {
            sel.node_selector_terms
                .iter()
                .map(|t| NodeSelectorTerm {
                    match_expressions: t
                        .match_expressions
                        .iter()
                        .flatten()
                        .map(|r| requirement(&r.key, &r.operator, &r.values))
                        .collect(),
                    match_fields: t
                        .match_fields
                        .iter()
                        .flatten()
                        .map(|r| requirement(&r.key, &r.operator, &r.values))
                        .collect(),
                })
                .collect()
        })
        .unwrap_or_default();
    let anti_affinity = pod_affinity_terms(
        affinity
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .and_then(|p| {
                p.required_during_scheduling_ignored_during_execution
                    .as_ref()
            }),
    );
    let pod_affinity = pod_affinity_terms(affinity.and_then(|a| a.pod_affinity.as_ref()).and_then(
        |p| {
            p.required_during_scheduling_ignored_during_execution
                .as_ref()
        },
    ));
    let topology_spread = spec
        .topology_spread_constraints
        .iter()
        .flatten()
        .filter_map(|t| {
            Some(TopologySpreadConstraint {
                max_skew: u32::try_from(t.max_skew).unwrap_or(1).max(1),
                topology_key: t.topology_key.clone(),
                when_unsatisfiable: if t.when_unsatisfiable == "DoNotSchedule" {
                    WhenUnsatisfiable::DoNotSchedule
                } else {
                    WhenUnsatisfiable::ScheduleAnyway
                },
                label_selector: label_selector(t.label_selector.as_ref())?,
            })
        })
        .collect();
    let tolerations = spec
        .tolerations
        .iter()
        .flatten()
        .map(|t| Toleration {
            key: t.key.clone().unwrap_or_default(),
            operator: if t.operator.as_deref() == Some("Exists") {
                TolerationOperator::Exists
            } else {
                TolerationOperator::Equal
            },
            value: t.value.clone().unwrap_or_default(),
            effect: t.effect.as_deref().and_then(effect),
            toleration_seconds: t.toleration_seconds,
        })
        .collect();
    Ok(SchedulingSpec {
        requests: pod_requests(spec, object)?,
        priority: spec.priority.unwrap_or(0),
        node_selector: labels(&spec.node_selector),
        required_node_affinity,
        tolerations,
        anti_affinity,
        topology_spread,
        affinity: pod_affinity,
        host_ports: host_ports(spec),
        unsupported: unsupported_features(spec),
    })
}

/// Required pod (anti-)affinity terms. A term with a null selector selects no pod.
fn pod_affinity_terms(terms: Option<&Vec<core::PodAffinityTerm>>) -> Vec<PodAffinityTerm> {
    terms
        .into_iter()
        .flatten()
        .filter_map(|t| {
            Some(PodAntiAffinityTerm {
                label_selector: label_selector(t.label_selector.as_ref())?,
                topology_key: t.topology_key.clone(),
                namespaces: t.namespaces.clone().unwrap_or_default(),
            })
        })
        .collect()
}

/// Host ports of the containers, init containers included (the scheduler counts both).
fn host_ports(spec: &core::PodSpec) -> Vec<HostPort> {
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let port = u16::try_from(p.host_port?).ok().filter(|p| *p > 0)?;
            Some(HostPort {
                port,
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                host_ip: p.host_ip.clone().unwrap_or_default(),
            })
        })
        .collect()
}

/// Scheduling features of the pod the engine does not model, by name, so the pod's
/// reason says so instead of the engine guessing a fit.
pub fn unsupported_features(spec: &core::PodSpec) -> Vec<String> {
    let mut out = Vec::new();
    if spec.resource_claims.as_ref().is_some_and(|c| !c.is_empty()) {
        out.push("dynamic resource allocation (spec.resourceClaims)".to_string());
    }
    if spec.resources.is_some() {
        out.push("pod-level resources (spec.resources)".to_string());
    }
    let affinity = spec.affinity.as_ref();
    let terms = affinity
        .and_then(|a| a.pod_affinity.as_ref())
        .and_then(|p| {
            p.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .into_iter()
        .chain(
            affinity
                .and_then(|a| a.pod_anti_affinity.as_ref())
                .and_then(|p| {
                    p.required_during_scheduling_ignored_during_execution
                        .as_ref()
                }),
        )
        .flatten();
    for t in terms {
        if t.namespace_selector.is_some() {
            out.push("pod affinity namespaceSelector".to_string());
        }
        if t.match_label_keys.as_ref().is_some_and(|k| !k.is_empty())
            || t.mismatch_label_keys
                .as_ref()
                .is_some_and(|k| !k.is_empty())
        {
            out.push("pod affinity matchLabelKeys/mismatchLabelKeys".to_string());
        }
    }
    for c in spec.topology_spread_constraints.iter().flatten() {
        if c.when_unsatisfiable != "DoNotSchedule" {
            continue;
        }
        if c.min_domains.is_some() {
            out.push("topology spread minDomains".to_string());
        }
        if c.match_label_keys.as_ref().is_some_and(|k| !k.is_empty()) {
            out.push("topology spread matchLabelKeys".to_string());
        }
        if c.node_affinity_policy.as_deref() == Some("Ignore")
            || c.node_taints_policy.as_deref() == Some("Honor")
        {
            out.push("topology spread nodeAffinityPolicy/nodeTaintsPolicy".to_string());
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Whether the pod mounts local storage that a drain would lose: an emptyDir not backed
/// by memory, or a hostPath.
pub fn has_local_storage(spec: &core::PodSpec) -> bool {
    spec.volumes.iter().flatten().any(|v| {
        v.host_path.is_some()
            || v.empty_dir
                .as_ref()
                .is_some_and(|e| e.medium.as_deref() != Some("Memory"))
    })
}

/// Whether a pod is finished (Succeeded or Failed) and so holds nothing.
pub fn is_terminal(pod: &core::Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// Whether the scheduler has tried the pod and found no node (`PodScheduled=False`,
/// reason `Unschedulable`): the pods cluster-autoscaler acts on.
pub fn is_unschedulable(pod: &core::Pod) -> bool {
    pod.spec.as_ref().is_none_or(|s| s.node_name.is_none())
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| {
                c.type_ == "PodScheduled"
                    && c.status == "False"
                    && c.reason.as_deref() == Some("Unschedulable")
            })
}

/// The prefix of the pod annotations the engine reads.
pub const CA_ANNOTATION_PREFIX: &str = "cluster-autoscaler.kubernetes.io/";

/// The pod's owner as the engine sees it: the controller reference, else the first one.
pub fn owner(m: &meta::ObjectMeta) -> Option<OwnerRef> {
    let refs = m.owner_references.as_deref().unwrap_or_default();
    refs.iter()
        .find(|o| o.controller == Some(true))
        .or(refs.first())
        .map(|o| OwnerRef {
            kind: o.kind.clone(),
            name: o.name.clone(),
        })
}

/// Converts a live pod; `Ok(None)` for terminal pods. Keeps only what the engine reads
/// (the pod cache holds 100k of these).
pub fn pod(p: &core::Pod) -> Result<Option<Pod>, TranslateError> {
    pod_interned(p, &mut LabelInterner::default())
}

/// [`pod`], with its labels and `nodeSelector` shared through `interner` with the pods
/// that carry the same ones (what the pod cache does).
pub fn pod_interned(
    p: &core::Pod,
    interner: &mut LabelInterner,
) -> Result<Option<Pod>, TranslateError> {
    if is_terminal(p) {
        return Ok(None);
    }
    let m = &p.metadata;
    let namespace = m.namespace.clone().unwrap_or_default();
    let name = m.name.clone().unwrap_or_default();
    let object = format!("Pod/{namespace}/{name}");
    let default_spec = core::PodSpec::default();
    let spec = p.spec.as_ref().unwrap_or(&default_spec);
    let owner = owner(m);
    let mut scheduling = scheduling_spec(spec, &object)?;
    // Tolerations of the Ready-condition taints, which [`node`] drops: they can match
    // nothing the engine sees, and every pod carries two (admission adds them).
    scheduling
        .tolerations
        .retain(|t| !CONDITION_TAINTS.contains(&t.key.as_str()));
    scheduling.node_selector = interner.intern(std::mem::take(&mut scheduling.node_selector));
    Ok(Some(Pod {
        namespace,
        name,
        labels: interner.intern_map(m.labels.as_ref()),
        // Only cluster-autoscaler's annotations (safe-to-evict, ...) and the deletion
        // cost are read; others, such as kubectl's last-applied-configuration, can be
        // kilobytes per pod.
        annotations: m
            .annotations
            .iter()
            .flatten()
            .filter(|(k, _)| {
                k.starts_with(CA_ANNOTATION_PREFIX)
                    || k.as_str() == POD_DELETION_COST
                    || k.as_str() == DELETION_COST_SET_BY_US
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        owner,
        node_name: spec.node_name.clone(),
        spec: scheduling,
        has_local_storage: has_local_storage(spec),
        created_at: created(m),
    }))
}

/// Reads the capacity type from the node's labels (ours/Karpenter's, then EKS's).
pub fn capacity_type_from_labels(labels: &Labels) -> Option<CapacityType> {
    if let Some(v) = labels.get(CAPACITY_TYPE_LABEL) {
        return match v.as_str() {
            "spot" => Some(CapacityType::Spot),
            "on-demand" => Some(CapacityType::OnDemand),
            _ => None,
        };
    }
    match labels.get(EKS_CAPACITY_TYPE_LABEL).map(String::as_str) {
        Some("SPOT") => Some(CapacityType::Spot),
        Some("ON_DEMAND") => Some(CapacityType::OnDemand),
        _ => None,
    }
}

/// The EC2 instance id in a providerID (`aws:///us-east-1a/i-0123` -> `i-0123`).
pub fn instance_id(provider_id: &str) -> Option<&str> {
    provider_id
        .rsplit('/')
        .next()
        .filter(|id| !id.is_empty() && provider_id.contains("://"))
}

/// Taints the node lifecycle controller derives from the Ready condition.
pub const CONDITION_TAINTS: [&str; 2] = [
    "node.kubernetes.io/not-ready",
    "node.kubernetes.io/unreachable",
];

/// Converts a node. `group_of` maps a providerID to the node's group and that group's
/// market (from the provider's instance map); nodes it does not know are unmanaged.
pub fn node(
    n: &core::Node,
    group_of: impl Fn(&str) -> Option<(String, CapacityType)>,
) -> Result<Node, TranslateError> {
    let m = &n.metadata;
    let name = m.name.clone().unwrap_or_default();
    let object = format!("Node/{name}");
    let spec = n.spec.as_ref();
    let status = n.status.as_ref();
    let provider_id = spec.and_then(|s| s.provider_id.clone());
    let membership = provider_id.as_deref().and_then(&group_of);
    let node_labels = labels(&m.labels);
    let capacity_type = capacity_type_from_labels(&node_labels)
        .or(membership.as_ref().map(|(_, c)| *c))
        .unwrap_or(CapacityType::OnDemand);
    let taints = spec
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
        // The node lifecycle controller's mirrors of the Ready condition: the engine
        // reads `ready` itself (a fresh unready node is an upcoming one, as in CA), so
        // keeping them would make it launch another node for the same pods.
        .filter(|t| !CONDITION_TAINTS.contains(&t.key.as_str()))
        .filter_map(|t| {
            Some(Taint {
                key: t.key.clone(),
                value: t.value.clone().unwrap_or_default(),
                effect: effect(&t.effect)?,
            })
        })
        .collect();
    let ready_condition = status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .find(|c| c.type_ == "Ready");
    let ready = ready_condition.is_some_and(|c| c.status == "True");
    let ready_changed_at = ready_condition
        .and_then(|c| c.last_transition_time.as_ref())
        .map(millis);
    Ok(Node {
        name,
        provider_id,
        group: membership.map(|(g, _)| g),
        capacity_type,
        capacity: resources(status.and_then(|s| s.capacity.as_ref()), &object)?,
        allocatable: resources(status.and_then(|s| s.allocatable.as_ref()), &object)?,
        labels: node_labels,
        annotations: labels(&m.annotations),
        taints,
        created_at: created(m),
        ready,
        ready_changed_at,
        unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
    })
}

/// Converts a PodDisruptionBudget (a null selector covers no pod).
pub fn pdb(p: &policy::PodDisruptionBudget) -> PodDisruptionBudget {
    let selector = label_selector(p.spec.as_ref().and_then(|s| s.selector.as_ref()))
        .unwrap_or_else(|| LabelSelector {
            match_labels: Labels::new(),
            match_expressions: vec![Requirement {
                key: "autoscaler.invalid/null-selector".into(),
                operator: SelectorOperator::Exists,
                values: vec![],
            }],
        });
    PodDisruptionBudget {
        namespace: p.metadata.namespace.clone().unwrap_or_default(),
        name: p.metadata.name.clone().unwrap_or_default(),
        selector,
        disruptions_allowed: p
            .status
            .as_ref()
            .map(|s| u32::try_from(s.disruptions_allowed).unwrap_or(0))
            .unwrap_or(0),
    }
}

/// Converts a DaemonSet (its pod template's scheduling spec).
pub fn daemonset(d: &apps::DaemonSet) -> Result<DaemonSet, TranslateError> {
    let namespace = d.metadata.namespace.clone().unwrap_or_default();
    let name = d.metadata.name.clone().unwrap_or_default();
    let object = format!("DaemonSet/{namespace}/{name}");
    let default_spec = core::PodSpec::default();
    let spec = d
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .unwrap_or(&default_spec);
    Ok(DaemonSet {
        spec: scheduling_spec(spec, &object)?,
        namespace,
        name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn from<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn node_translation() {
        let n: core::Node = from(json!({
            "metadata": {"name": "ip-1", "creationTimestamp": "2024-01-01T00:00:10Z",
                "labels": {"topology.kubernetes.io/zone": "us-east-1a",
                           "node.kubernetes.io/instance-type": "m5.large"},
                "annotations": {"a": "b"}},
            "spec": {"providerID": "aws:///us-east-1a/i-0abc", "unschedulable": true,
                "taints": [{"key": "ToBeDeletedByClusterAutoscaler", "value": "123", "effect": "NoSchedule"}]},
            "status": {"allocatable": {"cpu": "1930m", "memory": "7Gi", "pods": "29"},
                       "capacity": {"cpu": "2", "memory": "8Gi", "pods": "29", "nvidia.com/gpu": "1"},
                       "conditions": [{"type": "Ready", "status": "True"}]}
        }));
        let node = node(&n, |pid| {
            (instance_id(pid) == Some("i-0abc"))
                .then(|| ("web-spot".to_string(), CapacityType::Spot))
        })
        .unwrap();
        assert_eq!(node.group.as_deref(), Some("web-spot"));
        assert_eq!(node.capacity_type, CapacityType::Spot);
        assert_eq!(node.allocatable.cpu_millis, 1930);
        assert_eq!(node.allocatable.memory_bytes, 7 << 30);
        assert_eq!(node.allocatable.pods, 29);
        assert_eq!(node.capacity.extended("nvidia.com/gpu"), 1);
        assert_eq!(node.zone(), Some("us-east-1a"));
        assert!(node.ready && node.unschedulable);
        assert_eq!(node.taints[0].effect, TaintEffect::NoSchedule);
        assert_eq!(node.created_at, Timestamp::from_secs(1_704_067_210));
        assert_eq!(node.annotations["a"], "b");

        let unmanaged: core::Node = from(json!({
            "metadata": {"name": "x", "labels": {"eks.amazonaws.com/capacityType": "SPOT"}},
            "status": {"conditions": [{"type": "Ready", "status": "False"}]}
        }));
        let u = super::node(&unmanaged, |_| None).unwrap();
        assert!(u.group.is_none() && !u.ready);
        assert_eq!(u.capacity_type, CapacityType::Spot);
    }

    #[test]
    fn bad_quantity_names_the_object() {
        let n: core::Node = from(json!({
            "metadata": {"name": "bad"},
            "status": {"allocatable": {"cpu": "lots"}}
        }));
        let e = node(&n, |_| None).unwrap_err().to_string();
        assert!(e.contains("Node/bad") && e.contains("cpu"), "{e}");
    }

    #[test]
    fn pod_requests_follow_the_scheduler() {
        let spec: core::PodSpec = from(json!({
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}},
                {"name": "b", "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}}}
            ],
            "initContainers": [
                {"name": "big-init", "resources": {"requests": {"cpu": "2", "memory": "256Mi"}}},
                {"name": "sidecar", "restartPolicy": "Always", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}},
                {"name": "late-init", "resources": {"requests": {"cpu": "100m", "memory": "2Gi"}}}
            ],
            "overhead": {"cpu": "10m", "memory": "16Mi"}
        }));
        let r = pod_requests(&spec, "Pod/x").unwrap();
        // cpu: max(750 + 100 sidecar, 2000 big init) + 10 overhead
        assert_eq!(r.cpu_millis, 2010);
        // memory: max(1.5Gi + 64Mi, 64Mi + 2Gi late init) + 16Mi
        assert_eq!(r.memory_bytes, (2048 + 64 + 16) << 20);
    }

    #[test]
    fn pod_translation() {
        let p: core::Pod = from(json!({
            "metadata": {"name": "web-1", "namespace": "prod", "labels": {"app": "web"},
                "annotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false",
                    "controller.kubernetes.io/pod-deletion-cost": "-3",
                    "spot-autoscaler.io/pod-deletion-cost": "-3",
                    "kubectl.kubernetes.io/last-applied-configuration": "{\"big\": true}"},
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Other", "name": "o", "uid": "1"},
                    {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-abc", "uid": "2", "controller": true}
                ]},
            "spec": {
                "priority": 1000,
                "nodeSelector": {"karpenter.sh/capacity-type": "spot"},
                "containers": [{"name": "c", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}],
                "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}, {"operator": "Exists"},
                    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
                "affinity": {
                    "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["us-east-1a"]}]}
                    ]}},
                    "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                        {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"},
                        {"topologyKey": "kubernetes.io/hostname"}
                    ]}
                },
                "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                    "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]}}],
                "volumes": [{"name": "cache", "emptyDir": {"medium": "Memory"}}, {"name": "cfg", "configMap": {"name": "x"}}]
            },
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}
        }));
        assert!(is_unschedulable(&p));
        let pod = pod(&p).unwrap().unwrap();
        assert_eq!(pod.key(), "prod/web-1");
        assert_eq!(pod.owner.as_ref().unwrap().kind, "ReplicaSet");
        assert_eq!(pod.spec.priority, 1000);
        assert_eq!(pod.spec.requests.cpu_millis, 1000);
        assert_eq!(pod.spec.node_selector["karpenter.sh/capacity-type"], "spot");
        assert_eq!(
            pod.spec.required_node_affinity[0].match_expressions[0].values,
            ["us-east-1a"]
        );
        // The not-ready toleration is dropped (so is the taint, on nodes).
        assert_eq!(pod.spec.tolerations.len(), 2);
        assert_eq!(
            pod.spec.tolerations[0].effect,
            Some(TaintEffect::NoSchedule)
        );
        assert_eq!(pod.spec.tolerations[1].operator, TolerationOperator::Exists);
        // The term without a selector matches nothing and is dropped.
        assert_eq!(pod.spec.anti_affinity.len(), 1);
        assert_eq!(
            pod.spec.topology_spread[0].when_unsatisfiable,
            WhenUnsatisfiable::DoNotSchedule
        );
        assert_eq!(
            pod.spec.topology_spread[0].label_selector.match_expressions[0].operator,
            SelectorOperator::Exists
        );
        assert!(
            !pod.has_local_storage,
            "a memory-backed emptyDir is not local storage"
        );
        assert!(pod.node_name.is_none());
        assert_eq!(
            pod.annotations["cluster-autoscaler.kubernetes.io/safe-to-evict"],
            "false"
        );
        assert_eq!(pod.annotations[POD_DELETION_COST], "-3");
        assert_eq!(pod.annotations[DELETION_COST_SET_BY_US], "-3");
        assert_eq!(
            pod.annotations.len(),
            3,
            "only CA's annotations and the deletion cost are kept"
        );
    }

    #[test]
    fn scheduling_features_of_issue_18_are_kept() {
        let spec: core::PodSpec = from(serde_json::json!({
            "containers": [{"name": "c", "ports": [
                {"containerPort": 80, "hostPort": 8080},
                {"containerPort": 81, "hostPort": 8081, "protocol": "UDP", "hostIP": "10.0.0.1"},
                {"containerPort": 82}
            ]}],
            "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30}],
            "affinity": {
                "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}
                ]}},
                "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": "topology.kubernetes.io/zone"}
                ]}
            },
            "resourceClaims": [{"name": "gpu", "resourceClaimName": "gpu-claim"}]
        }));
        let s = scheduling_spec(&spec, "Pod/x").unwrap();
        assert_eq!(s.host_ports.len(), 2);
        assert_eq!(
            (s.host_ports[0].port, s.host_ports[0].protocol.as_str()),
            (8080, "TCP")
        );
        assert_eq!(s.host_ports[1].host_ip, "10.0.0.1");
        assert_eq!(s.tolerations[0].toleration_seconds, Some(30));
        assert_eq!(
            s.required_node_affinity[0].match_fields[0].key,
            "metadata.name"
        );
        assert_eq!(s.affinity[0].topology_key, "topology.kubernetes.io/zone");
        assert_eq!(
            s.unsupported,
            vec!["dynamic resource allocation (spec.resourceClaims)".to_string()]
        );
    }

    #[test]
    fn local_storage_and_terminal_pods() {
        let disk: core::PodSpec =
            from(json!({"containers": [], "volumes": [{"name": "d", "emptyDir": {}}]}));
        assert!(has_local_storage(&disk));
        let host: core::PodSpec =
            from(json!({"containers": [], "volumes": [{"name": "h", "hostPath": {"path": "/x"}}]}));
        assert!(has_local_storage(&host));
        for phase in ["Succeeded", "Failed"] {
            let p: core::Pod = from(
                json!({"metadata": {"name": "done"}, "spec": {"containers": []}, "status": {"phase": phase}}),
            );
            assert!(pod(&p).unwrap().is_none(), "{phase}");
        }
        let running: core::Pod = from(
            json!({"metadata": {"name": "r"}, "spec": {"containers": [], "nodeName": "n1"}, "status": {"phase": "Running"}}),
        );
        let r = pod(&running).unwrap().unwrap();
        assert_eq!(r.node_name.as_deref(), Some("n1"));
        assert!(!is_unschedulable(&running));
        // Not yet seen by the scheduler: not unschedulable.
        let fresh: core::Pod = from(
            json!({"metadata": {"name": "f"}, "spec": {"containers": []}, "status": {"phase": "Pending"}}),
        );
        assert!(!is_unschedulable(&fresh));
    }

    #[test]
    fn pdb_and_daemonset() {
        let p: policy::PodDisruptionBudget = from(json!({
            "metadata": {"name": "web", "namespace": "prod"},
            "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}},
            "status": {"disruptionsAllowed": 1, "currentHealthy": 3, "desiredHealthy": 2, "expectedPods": 3}
        }));
        let b = pdb(&p);
        assert_eq!(b.disruptions_allowed, 1);
        assert!(b.selector.matches(&Labels::from([("app", "web")])));
        let null: policy::PodDisruptionBudget =
            from(json!({"metadata": {"name": "n"}, "spec": {}}));
        let n = pdb(&null);
        assert!(!n.selector.matches(&Labels::new()));
        assert_eq!(n.disruptions_allowed, 0);

        let d: apps::DaemonSet = from(json!({
            "metadata": {"name": "fluent-bit", "namespace": "logging"},
            "spec": {"selector": {"matchLabels": {"app": "fb"}}, "template": {"metadata": {"labels": {"app": "fb"}},
                "spec": {"containers": [{"name": "fb", "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}],
                         "tolerations": [{"operator": "Exists"}]}}}
        }));
        let ds = daemonset(&d).unwrap();
        assert_eq!(ds.spec.requests.cpu_millis, 100);
        assert_eq!(ds.spec.tolerations.len(), 1);
        assert_eq!(
            (ds.namespace.as_str(), ds.name.as_str()),
            ("logging", "fluent-bit")
        );
    }

    #[test]
    fn instance_ids() {
        assert_eq!(instance_id("aws:///us-east-1a/i-0123"), Some("i-0123"));
        assert_eq!(instance_id("kwok://x"), Some("x"));
        assert_eq!(instance_id("i-0123"), None);
    }

    #[test]
    fn interner_forgets_label_sets_no_pod_holds_any_more() {
        let mut interner = LabelInterner::default();
        let kept: Vec<Labels> = (0..10)
            .map(|i| interner.intern(Labels::from([("pod-template-hash", format!("kept{i}"))])))
            .collect();
        // A long series of rollouts: every set but the ten kept ones is dropped at once.
        for i in 0..(4 * MIN_SWEEP_AT) {
            let hash = format!("gone{i}");
            drop(interner.intern(Labels::from([("pod-template-hash", hash)])));
        }
        assert!(
            interner.len() <= MIN_SWEEP_AT + 10,
            "{} sets held",
            interner.len()
        );
        let again = interner.intern_map(Some(kept[3].as_map()));
        assert!(again.ptr_eq(&kept[3]), "a set still in use stays shared");
        assert!(interner.intern_map(None).is_empty());
        assert_eq!(interner.intern(Labels::new()).share_count(), 0);
    }
}
