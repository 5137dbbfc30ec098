//! Node removal, as cluster-autoscaler does it: taint the node
//! `ToBeDeletedByClusterAutoscaler=<unix seconds>:NoSchedule` (and cordon it), evict its
//! pods through the Eviction API (`policy/v1`, so PDBs are honoured; 429 is retried with
//! backoff up to `--max-pod-eviction-time`), wait for them to be gone (bounded by
//! `--max-graceful-termination-sec` plus a headroom), terminate the instance through the
//! provider (which decrements the group's desired capacity), then delete the Node object
//! unless the provider does.
//!
//! Each removal runs as its own task (bounded by a semaphore), so the decision loop is
//! never blocked. Pods are only ever evicted, never deleted, and the taint is the durable
//! record of a removal in progress: after a crash, the next leader finds the tainted
//! nodes ([`resumable`]) and carries on. A failure (eviction refused past the bound,
//! pods not gone in time, termination refused) removes the taint, uncordons the node if
//! we cordoned it, and reports [`Event::NodeRemovalFailed`] to the engine.

use crate::provider::NodeGroupProvider;
use crate::translate;
use autoscaler_core::{Event, RemovalKind};
use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod, Taint};
use kube::api::{Api, DeleteParams, EvictParams, ListParams, Patch, PatchParams};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::{Client, ResourceExt};
use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch, Notify, Semaphore};

/// CA's taint on a node being removed (`NoSchedule`, value: Unix seconds).
pub const TO_BE_DELETED_TAINT: &str = "ToBeDeletedByClusterAutoscaler";
/// CA's taint on a node found unneeded (`PreferNoSchedule`, value: Unix seconds).
pub const DELETION_CANDIDATE_TAINT: &str = "DeletionCandidateOfClusterAutoscaler";
/// Set on a node we cordoned, so that a failed removal uncordons only what we cordoned.
pub const CORDONED_ANNOTATION: &str = "spot-autoscaler/cordoned-for-removal";
/// Annotation of mirror (static) pods.
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
/// CA's `PodEvictionHeadroom`: extra time, past the longest grace period, for pods to go.
pub const POD_DELETION_HEADROOM: Duration = Duration::from_secs(30);

/// Bounds and pacing of removals.
#[derive(Clone, Debug)]
pub struct DrainConfig {
    /// How long a pod's eviction is retried (429 from a PDB, other errors) before the
    /// removal fails (`--max-pod-eviction-time`).
    pub max_pod_eviction_time: Duration,
    /// Longest grace period given to an evicted pod (`--max-graceful-termination-sec`).
    pub max_graceful_termination: Duration,
    /// Extra wait for the evicted pods to be gone, past `max_graceful_termination`.
    pub deletion_headroom: Duration,
    /// First retry delay of a refused eviction (doubles up to `retry_max`).
    pub retry_initial: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// How often the node's pods are listed while waiting for them to be gone.
    pub poll: Duration,
    /// Removals carried out at once.
    pub parallelism: usize,
}

impl Default for DrainConfig {
    fn default() -> Self {
        DrainConfig {
            max_pod_eviction_time: Duration::from_secs(120),
            max_graceful_termination: Duration::from_secs(600),
            deletion_headroom: POD_DELETION_HEADROOM,
            retry_initial: Duration::from_millis(500),
            retry_max: Duration::from_secs(5),
            poll: Duration::from_secs(1),
            parallelism: 11,
        }
    }
}

/// One node to remove.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removal {
    /// Node name.
    pub node: String,
    /// Its group, as the engine named it (empty when resumed after a restart).
    pub group: String,
    /// Why, when the engine decided it (`None` when resumed).
    pub kind: Option<RemovalKind>,
    /// Why, in words.
    pub reason: String,
}

/// Unix seconds now, as CA writes in its taints.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Whether the node carries a taint with this key.
pub fn has_taint(node: &Node, key: &str) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|ts| ts.iter().any(|t| t.key == key))
}

/// The node's taints.
fn taints(node: &Node) -> Vec<Taint> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
}

/// A merge patch setting the node's whole taint list (`spec.taints` has no merge key,
/// so it is always replaced whole) under the node's `resourceVersion`: a concurrent
/// change makes it fail with 409 instead of being lost.
fn taints_patch(node: &Node, taints: Vec<Taint>) -> serde_json::Value {
    serde_json::json!({
        "metadata": {"resourceVersion": node.metadata.resource_version},
        "spec": {"taints": taints},
    })
}

/// The patch that marks a node for removal: the `ToBeDeleted` taint (value
/// `unix_secs`) and, unless it is cordoned already, `spec.unschedulable` plus our
/// annotation. `None` when the node carries the taint already (a resumed removal).
pub fn mark_patch(node: &Node, unix_secs: i64) -> Option<serde_json::Value> {
    if has_taint(node, TO_BE_DELETED_TAINT) {
        return None;
    }
    let mut ts = taints(node);
    ts.push(Taint {
        key: TO_BE_DELETED_TAINT.into(),
        value: Some(unix_secs.to_string()),
        effect: "NoSchedule".into(),
        time_added: None,
    });
    let mut patch = taints_patch(node, ts);
    if !node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false)
    {
        patch["spec"]["unschedulable"] = true.into();
        patch["metadata"]["annotations"] = serde_json::json!({CORDONED_ANNOTATION: "true"});
    }
    Some(patch)
}

/// The patch that undoes [`mark_patch`]: drops the taint and, if we cordoned the node
/// (our annotation), uncordons it and drops the annotation. `None` if nothing to undo.
pub fn unmark_patch(node: &Node) -> Option<serde_json::Value> {
    let ours = node
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(CORDONED_ANNOTATION));
    if !ours && !has_taint(node, TO_BE_DELETED_TAINT) {
        return None;
    }
    let ts = taints(node)
        .into_iter()
        .filter(|t| t.key != TO_BE_DELETED_TAINT)
        .collect();
    let mut patch = taints_patch(node, ts);
    if ours {
        patch["spec"]["unschedulable"] = false.into();
        patch["metadata"]["annotations"] =
            serde_json::json!({CORDONED_ANNOTATION: serde_json::Value::Null});
    }
    Some(patch)
}

/// The `DeletionCandidate` taint changes of one round, as cluster-autoscaler makes them
/// (core/scaledown/actuation/softtaint.go): first off the nodes no longer unneeded,
/// then on the unneeded ones, at most `budget` (`--max-bulk-soft-taint-count`) in all;
/// `true` puts it on. A budget of 0 turns the taint off: it comes off every node that
/// has it.
pub fn soft_taint_changes(
    unneeded: &BTreeSet<String>,
    current: &BTreeSet<String>,
    budget: u32,
) -> Vec<(String, bool)> {
    if budget == 0 {
        return current.iter().map(|n| (n.clone(), false)).collect();
    }
    current
        .difference(unneeded)
        .map(|n| (n.clone(), false))
        .chain(unneeded.difference(current).map(|n| (n.clone(), true)))
        .take(budget as usize)
        .collect()
}

/// The patch that adds (`Some(unix_secs)`) or removes (`None`) the `DeletionCandidate`
/// `PreferNoSchedule` taint; `None` if the node is already so.
pub fn candidate_patch(node: &Node, unix_secs: Option<i64>) -> Option<serde_json::Value> {
    let has = has_taint(node, DELETION_CANDIDATE_TAINT);
    let mut ts = taints(node);
    match unix_secs {
        Some(_) if has => return None,
        None if !has => return None,
        Some(t) => ts.push(Taint {
            key: DELETION_CANDIDATE_TAINT.into(),
            value: Some(t.to_string()),
            effect: "PreferNoSchedule".into(),
            time_added: None,
        }),
        None => ts.retain(|t| t.key != DELETION_CANDIDATE_TAINT),
    }
    Some(taints_patch(node, ts))
}

/// Whether a Kubernetes error is worth retrying: no answer (connection refused, reset,
/// timeout), or the API server shedding load or failing (429, 5xx).
fn is_transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code == 429 || s.code >= 500,
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// Reads the node and applies `change` (a patch built from what was read, guarded by its
/// resourceVersion), retrying conflicts. `Ok(false)`: the node is gone or nothing to do.
pub async fn update_node(
    api: &Api<Node>,
    name: &str,
    change: impl Fn(&Node) -> Option<serde_json::Value>,
) -> kube::Result<bool> {
    let mut attempt = 0;
    loop {
        let Some(node) = api.get_opt(name).await? else {
            return Ok(false);
        };
        let Some(patch) = change(&node) else {
            return Ok(false);
        };
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 && attempt < 5 => attempt += 1,
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(false),
            Err(e) => return Err(e),
        }
    }
}

/// Whether the pod stays with its node (left for the node's termination, as CA does):
/// the engine's rule on its owner ([`autoscaler_core::OwnerRef::stays_with_node`]:
/// DaemonSet, or the Node of a mirror pod), or the kubelet's mirror annotation, which a
/// static pod carries even where no owner reference was set.
pub fn stays_with_node(pod: &Pod) -> bool {
    translate::owner(&pod.metadata).is_some_and(|o| o.stays_with_node())
        || pod
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(MIRROR_ANNOTATION))
}

/// Whether the pod must be gone before the node's instance is terminated: anything live
/// except DaemonSet and mirror pods.
pub fn blocks_removal(pod: &Pod) -> bool {
    !translate::is_terminal(pod) && !stays_with_node(pod)
}

/// The pods to evict: those that block the removal and are not already terminating.
pub fn pods_to_evict(pods: &[Pod]) -> Vec<&Pod> {
    pods.iter()
        .filter(|p| blocks_removal(p) && p.metadata.deletion_timestamp.is_none())
        .collect()
}

/// Grace period for an evicted pod: its own, capped at `max` (30 s when unset, as in
/// Kubernetes).
pub fn grace_seconds(pod: &Pod, max: Duration) -> i64 {
    let own = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(30);
    own.clamp(0, i64::try_from(max.as_secs()).unwrap_or(i64::MAX))
}

/// The nodes whose removal was in progress (they carry our `ToBeDeleted` taint): the
/// drains a new leader resumes.
pub fn resumable(nodes: &[Node]) -> Vec<String> {
    nodes
        .iter()
        .filter(|n| has_taint(n, TO_BE_DELETED_TAINT) && n.metadata.deletion_timestamp.is_none())
        .map(|n| n.name_any())
        .collect()
}

/// How a removal ended.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// The instance is terminated and the Node deleted (or it was gone already).
    Removed,
    /// Leadership was lost: the node keeps its taint for the next leader to resume.
    Abandoned,
    /// Gave up: the node is untainted and the engine told.
    Failed(String),
}

/// Carries out node removals in background tasks. Cheap to clone.
#[derive(Clone)]
pub struct Drainer<P: NodeGroupProvider + Clone> {
    client: Client,
    provider: P,
    cfg: Arc<DrainConfig>,
    permits: Arc<Semaphore>,
    active: Arc<Mutex<HashSet<String>>>,
    failures: mpsc::UnboundedSender<Event>,
    leader: watch::Receiver<bool>,
    recorder: Recorder,
    wake: Arc<Notify>,
}

impl<P: NodeGroupProvider + Clone> Drainer<P> {
    /// A drainer; failed removals are sent to `failures` (for the engine) and `wake` is
    /// notified so that the next round comes soon.
    pub fn new(
        client: Client,
        provider: P,
        cfg: DrainConfig,
        leader: watch::Receiver<bool>,
        failures: mpsc::UnboundedSender<Event>,
        wake: Arc<Notify>,
    ) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "cluster-autoscaler".into(),
                instance: std::env::var("POD_NAME").ok(),
            },
        );
        Drainer {
            client,
            provider,
            permits: Arc::new(Semaphore::new(cfg.parallelism.max(1))),
            cfg: Arc::new(cfg),
            active: Arc::default(),
            failures,
            leader,
            recorder,
            wake,
        }
    }

    /// Nodes whose removal is in progress in this process.
    pub fn active(&self) -> BTreeSet<String> {
        self.lock().iter().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    /// Starts removing a node in the background; `false` if it is already in progress.
    pub fn start(&self, r: Removal) -> bool {
        if !self.lock().insert(r.node.clone()) {
            return false;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let node = r.node.clone();
            let outcome = this.remove(&r).await;
            match &outcome {
                Outcome::Removed => tracing::info!(node = %node, group = %r.group, "node removed"),
                Outcome::Abandoned => {
                    tracing::warn!(node = %node, "lost the Lease mid-removal; the next leader resumes it")
                }
                Outcome::Failed(why) => {
                    tracing::warn!(node = %node, reason = %why, "node removal failed");
                    this.unmark(&node).await;
                    this.node_event(&node, EventType::Warning, "ScaleDownFailed", why)
                        .await;
                    let _ = this.failures.send(Event::NodeRemovalFailed {
                        node: node.clone(),
                        reason: why.clone(),
                    });
                    this.wake.notify_one();
                }
            }
            this.lock().remove(&node);
        });
        true
    }

    /// Resumes every removal a previous leader left half done (nodes with our taint).
    /// Returns the nodes resumed.
    pub async fn resume(&self) -> kube::Result<Vec<String>> {
        let api: Api<Node> = Api::all(self.client.clone());
        let nodes = api.list(&ListParams::default()).await?.items;
        let names = resumable(&nodes);
        for n in &names {
            tracing::info!(node = %n, "resuming the removal of a node tainted {TO_BE_DELETED_TAINT}");
            self.start(Removal {
                node: n.clone(),
                group: String::new(),
                kind: None,
                reason: "resumed after a restart or a leader change".into(),
            });
        }
        Ok(names)
    }

    /// Dry run: what would be done, as a log line and an Event on the node.
    pub async fn dry_run(&self, r: &Removal) {
        tracing::info!(node = %r.node, group = %r.group, reason = %r.reason, "(dry-run) would remove node");
        let note = format!("(dry-run) would remove the node: {}", r.reason);
        self.node_event(&r.node, EventType::Normal, "ScaleDown", &note)
            .await;
    }

    async fn remove(&self, r: &Removal) -> Outcome {
        let Ok(_permit) = self.permits.acquire().await else {
            return Outcome::Abandoned;
        };
        let nodes: Api<Node> = Api::all(self.client.clone());
        let node = match self
            .retry_transient("reading the node", &r.node, || nodes.get_opt(&r.node))
            .await
        {
            Ok(Some(n)) => n,
            Ok(None) => return Outcome::Removed,
            Err(e) => return Outcome::Failed(format!("reading the node: {e}")),
        };
        if !self.is_leader() {
            return Outcome::Abandoned;
        }
        // 1. Taint (CA-compatible) and cordon, unless a previous run already did.
        let now = unix_now();
        let marked = self
            .retry_transient("tainting the node", &r.node, || {
                update_node(&nodes, &r.node, |n| mark_patch(n, now))
            })
            .await;
        match marked {
            Ok(true) => {
                let note = format!("marked the node as toBeDeleted/unschedulable: {}", r.reason);
                self.node_event(&r.node, EventType::Normal, "ScaleDown", &note)
                    .await;
            }
            Ok(false) => {}
            Err(e) => return Outcome::Failed(format!("tainting the node: {e}")),
        }
        // 2. Evict every pod but DaemonSet and mirror pods, retrying refusals.
        let pods: Api<Pod> = Api::all(self.client.clone());
        let on_node = ListParams::default().fields(&format!("spec.nodeName={}", r.node));
        let list = match self
            .retry_transient("listing the node's pods", &r.node, || pods.list(&on_node))
            .await
        {
            Ok(l) => l.items,
            Err(e) => return Outcome::Failed(format!("listing the node's pods: {e}")),
        };
        let evictions = pods_to_evict(&list).into_iter().map(|p| self.evict(p));
        for result in futures::future::join_all(evictions).await {
            match result {
                Ok(()) => {}
                Err(Outcome::Abandoned) => return Outcome::Abandoned,
                Err(other) => return other,
            }
        }
        // 3. Wait for them to be gone.
        let deadline =
            Instant::now() + self.cfg.max_graceful_termination + self.cfg.deletion_headroom;
        loop {
            match pods.list(&on_node).await {
                Ok(l) => {
                    let left: Vec<String> = l
                        .items
                        .iter()
                        .filter(|p| blocks_removal(p))
                        .map(|p| format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any()))
                        .collect();
                    if left.is_empty() {
                        break;
                    }
                    if Instant::now() >= deadline {
                        return Outcome::Failed(format!(
                            "evicted pods still on the node after {}s: {}",
                            (self.cfg.max_graceful_termination + self.cfg.deletion_headroom)
                                .as_secs(),
                            left.join(", ")
                        ));
                    }
                }
                Err(e) => tracing::warn!(node = %r.node, error = %e, "listing the node's pods"),
            }
            if !self.is_leader() {
                return Outcome::Abandoned;
            }
            tokio::time::sleep(self.cfg.poll).await;
        }
        // 4. Terminate the instance (and decrement the group), then drop the Node object.
        if !self.is_leader() {
            return Outcome::Abandoned;
        }
        let provider_id = node
            .spec
            .as_ref()
            .and_then(|s| s.provider_id.clone())
            .unwrap_or_default();
        let Some(instance) = translate::instance_id(&provider_id) else {
            return Outcome::Failed(format!(
                "the node has no usable providerID ({provider_id:?})"
            ));
        };
        if let Err(e) = self.provider.terminate_instance(instance).await {
            return Outcome::Failed(format!("terminating instance {instance}: {e}"));
        }
        if !self.provider.deletes_node_objects() {
            match nodes.delete(&r.node, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => {
                    tracing::warn!(node = %r.node, error = %e, "deleting the Node object failed")
                }
            }
        }
        Outcome::Removed
    }

    /// Evicts one pod, retrying refusals (429 from a PDB, or any other error) with
    /// backoff until `max_pod_eviction_time`.
    async fn evict(&self, pod: &Pod) -> Result<(), Outcome> {
        let ns = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let params = EvictParams {
            delete_options: Some(DeleteParams {
                grace_period_seconds: u32::try_from(grace_seconds(
                    pod,
                    self.cfg.max_graceful_termination,
                ))
                .ok(),
                ..DeleteParams::default()
            }),
            ..EvictParams::default()
        };
        let started = Instant::now();
        let mut delay = self.cfg.retry_initial;
        loop {
            let last = match api.evict(&name, &params).await {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
                Err(kube::Error::Api(s)) => format!("{} ({})", s.message, s.code),
                Err(e) => e.to_string(),
            };
            tracing::debug!(pod = %format!("{ns}/{name}"), error = %last, "eviction refused; retrying");
            if started.elapsed() + delay > self.cfg.max_pod_eviction_time {
                return Err(Outcome::Failed(format!(
                    "pod {ns}/{name} could not be evicted within {}s: {last}",
                    self.cfg.max_pod_eviction_time.as_secs()
                )));
            }
            if !self.is_leader() {
                return Err(Outcome::Abandoned);
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(self.cfg.retry_max);
        }
    }

    /// Runs a Kubernetes call, retrying while the API server is unreachable or
    /// overloaded (connection errors, 429, 5xx) with the eviction backoff, for up to
    /// `max_pod_eviction_time`: an API server outage pauses a removal instead of failing
    /// it. Other errors, and the last one at the deadline, are returned.
    async fn retry_transient<T, F, Fut>(
        &self,
        what: &str,
        node: &str,
        mut call: F,
    ) -> kube::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = kube::Result<T>>,
    {
        let started = Instant::now();
        let mut delay = self.cfg.retry_initial;
        loop {
            match call().await {
                Err(e)
                    if is_transient(&e)
                        && started.elapsed() + delay <= self.cfg.max_pod_eviction_time =>
                {
                    tracing::debug!(node, what, error = %e, "Kubernetes API unavailable; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.cfg.retry_max);
                }
                other => return other,
            }
        }
    }

    /// Undoes the marking of a node whose removal failed.
    async fn unmark(&self, node: &str) {
        let api: Api<Node> = Api::all(self.client.clone());
        let result = self
            .retry_transient("untainting the node", node, || {
                update_node(&api, node, unmark_patch)
            })
            .await;
        if let Err(e) = result {
            tracing::warn!(node, error = %e, "untainting the node failed");
        }
    }

    /// Puts the `DeletionCandidate` taint on unneeded nodes and takes it off the others
    /// ([`soft_taint_changes`]). `current` is the nodes carrying it now.
    pub fn mark_candidates(
        &self,
        unneeded: BTreeSet<String>,
        current: BTreeSet<String>,
        budget: u32,
    ) {
        let changes = soft_taint_changes(&unneeded, &current, budget);
        if changes.is_empty() {
            return;
        }
        let api: Api<Node> = Api::all(self.client.clone());
        let now = unix_now();
        tokio::spawn(async move {
            for (node, put) in changes {
                let value = put.then_some(now);
                if let Err(e) = update_node(&api, &node, |n| candidate_patch(n, value)).await {
                    tracing::debug!(node = %node, error = %e, "DeletionCandidate taint");
                }
            }
        });
    }

    /// Publishes an Event on a node.
    pub async fn node_event(&self, node: &str, type_: EventType, reason: &str, note: &str) {
        let uid = Api::<Node>::all(self.client.clone())
            .get_opt(node)
            .await
            .ok()
            .flatten()
            .and_then(|n| n.metadata.uid);
        publish_node_event(&self.recorder, node, uid, type_, reason, note).await;
    }

    /// The recorder (for other node Events).
    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }
}

/// Publishes an Event on a node (`uid` when known).
pub async fn publish_node_event(
    recorder: &Recorder,
    node: &str,
    uid: Option<String>,
    type_: EventType,
    reason: &str,
    note: &str,
) {
    let reference = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Node".into()),
        name: Some(node.into()),
        uid,
        ..ObjectReference::default()
    };
    let ev = KubeEvent {
        type_,
        reason: reason.into(),
        note: Some(note.chars().take(1024).collect()),
        action: "ScaleDown".into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&ev, &reference).await {
        tracing::warn!(node, error = %e, "publishing a node Event failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_taints_come_off_first_within_the_budget_and_all_off_at_zero() {
        let set = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
        let unneeded = set(&["a", "b", "c"]);
        let current = set(&["c", "x", "y"]);
        assert_eq!(
            soft_taint_changes(&unneeded, &current, 3),
            vec![("x".into(), false), ("y".into(), false), ("a".into(), true)]
        );
        assert_eq!(soft_taint_changes(&unneeded, &current, 10).len(), 4);
        assert_eq!(
            soft_taint_changes(&unneeded, &current, 0),
            vec![
                ("c".into(), false),
                ("x".into(), false),
                ("y".into(), false)
            ]
        );
        assert!(soft_taint_changes(&unneeded, &unneeded, 10).is_empty());
    }

    fn pod(name: &str, extra: serde_json::Value) -> Pod {
        let mut v = serde_json::json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": "n1", "containers": [{"name": "c"}]},
            "status": {"phase": "Running"}
        });
        merge(&mut v, extra);
        serde_json::from_value(v).unwrap()
    }

    fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
        match (a, b) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }

    fn node(name: &str, taints: serde_json::Value) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name}, "spec": {"taints": taints}
        }))
        .unwrap()
    }

    #[test]
    fn taints_are_cas_and_keep_the_others() {
        let mut n = node(
            "n1",
            serde_json::json!([{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]),
        );
        n.metadata.resource_version = Some("42".into());
        let p = mark_patch(&n, 1_700_000_000).unwrap();
        assert_eq!(p["metadata"]["resourceVersion"], "42");
        assert_eq!(
            p["spec"]["taints"][0]["key"], "dedicated",
            "other taints kept"
        );
        let t = &p["spec"]["taints"][1];
        assert_eq!(t["key"], "ToBeDeletedByClusterAutoscaler");
        assert_eq!(t["value"], "1700000000");
        assert_eq!(t["effect"], "NoSchedule");
        assert_eq!(p["spec"]["unschedulable"], true);
        assert_eq!(p["metadata"]["annotations"][CORDONED_ANNOTATION], "true");
        // What the apiserver makes of it: marked, so a second mark does nothing.
        let mut marked = n.clone();
        let patched: Node = serde_json::from_value(p).unwrap();
        marked.spec = patched.spec;
        marked.metadata.annotations = patched.metadata.annotations;
        assert!(has_taint(&marked, TO_BE_DELETED_TAINT));
        assert!(mark_patch(&marked, 1).is_none());
        // Undo: taint gone, uncordoned because we cordoned it.
        let u = unmark_patch(&marked).unwrap();
        assert_eq!(u["spec"]["taints"].as_array().unwrap().len(), 1);
        assert_eq!(u["spec"]["unschedulable"], false);
        assert!(u["metadata"]["annotations"][CORDONED_ANNOTATION].is_null());
        assert!(unmark_patch(&n).is_none());
        // An already cordoned node is not ours to uncordon later.
        let mut cordoned = n.clone();
        cordoned.spec.as_mut().unwrap().unschedulable = Some(true);
        let p = mark_patch(&cordoned, 1).unwrap();
        assert!(p["spec"].get("unschedulable").is_none());
        assert!(p["metadata"].get("annotations").is_none());
        // DeletionCandidate: added once, removed once.
        let c = candidate_patch(&n, Some(5)).unwrap();
        assert_eq!(c["spec"]["taints"][1]["key"], DELETION_CANDIDATE_TAINT);
        assert_eq!(c["spec"]["taints"][1]["effect"], "PreferNoSchedule");
        assert!(candidate_patch(&n, None).is_none());
        let with: Node = serde_json::from_value(c).unwrap();
        assert!(candidate_patch(&with, Some(6)).is_none());
        assert_eq!(
            candidate_patch(&with, None).unwrap()["spec"]["taints"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn evicts_all_but_daemonset_mirror_terminal_and_terminating_pods() {
        let pods = vec![
            pod(
                "web",
                serde_json::json!({"metadata": {"ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "uid": "u", "controller": true}]}}),
            ),
            pod("bare", serde_json::json!({})),
            pod(
                "ds",
                serde_json::json!({"metadata": {"ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "ds", "uid": "u", "controller": true}]}}),
            ),
            pod(
                "mirror",
                serde_json::json!({"metadata": {"annotations": {MIRROR_ANNOTATION: "x"}}}),
            ),
            // The kubelet makes the Node the owner of a mirror pod: the engine's rule.
            pod(
                "mirror-owned",
                serde_json::json!({"metadata": {"ownerReferences": [
                {"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": "u", "controller": true}]}}),
            ),
            pod(
                "done",
                serde_json::json!({"status": {"phase": "Succeeded"}}),
            ),
            pod(
                "going",
                serde_json::json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}}),
            ),
        ];
        let names: Vec<String> = pods_to_evict(&pods).iter().map(|p| p.name_any()).collect();
        assert_eq!(names, ["web", "bare"]);
        // A terminating pod is not evicted again but still has to be waited for.
        let blocking: Vec<String> = pods
            .iter()
            .filter(|p| blocks_removal(p))
            .map(|p| p.name_any())
            .collect();
        assert_eq!(blocking, ["web", "bare", "going"]);
    }

    #[test]
    fn grace_is_capped() {
        let max = Duration::from_secs(600);
        assert_eq!(grace_seconds(&pod("a", serde_json::json!({})), max), 30);
        let long = pod(
            "b",
            serde_json::json!({"spec": {"terminationGracePeriodSeconds": 3600}}),
        );
        assert_eq!(grace_seconds(&long, max), 600);
        assert_eq!(grace_seconds(&long, Duration::from_secs(5)), 5);
    }

    #[test]
    fn resumes_nodes_with_our_taint_only() {
        let nodes = vec![
            node(
                "draining",
                serde_json::json!([{"key": TO_BE_DELETED_TAINT, "value": "1", "effect": "NoSchedule"}]),
            ),
            node(
                "candidate",
                serde_json::json!([{"key": DELETION_CANDIDATE_TAINT, "value": "1", "effect": "PreferNoSchedule"}]),
            ),
            node("plain", serde_json::json!([])),
        ];
        assert_eq!(resumable(&nodes), ["draining"]);
    }
}
