//! The pod watch cache, kept in the engine's own form.
//!
//! A `k8s-openapi` `Pod` costs about 7.7 KB in memory even when the API object is small
//! (its structs reserve room for every optional field); the engine's `Pod` about 1.3 KB.
//! At 100,000 pods that is the difference between ~770 MB and ~130 MB, so pods are
//! translated once, when they change, and the cache holds only the translation behind
//! an `Arc` that every round's snapshot shares (no per-round copy). Nodes, PDBs and
//! DaemonSets are few and stay in kube's reflector stores. Pods with the same labels share
//! one label map ([`LabelInterner`]): ten labels cost ~690 bytes per pod when each owns them.

use crate::translate::{self, LabelInterner};
use autoscaler_core::Pod;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod as ApiPod;
use kube::api::Api;
use kube::runtime::{watcher, WatchStreamExt};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

/// What the controller keeps of one pod.
#[derive(Clone, Debug, PartialEq)]
pub struct CachedPod {
    /// The pod's UID (Events need it).
    pub uid: Option<String>,
    /// The translated pod, when the engine should see it: bound to a node, or found
    /// unschedulable by the scheduler. `None` for pods the scheduler has not tried yet,
    /// finished pods and pods whose spec could not be read (logged when seen).
    pub pod: Option<Arc<Pod>>,
    /// Since when it waits for capacity, for `autoscaler_unschedulable_to_capacity_seconds`.
    pending: PendingClock,
    /// The watch list generation that last saw it (see [`PodCache::apply`]).
    generation: u64,
}

/// How long a pod has waited for capacity, as the controller saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PendingClock {
    /// Bound, finished, or not yet tried by the scheduler.
    NotPending,
    /// The watch first delivered it unschedulable at this instant.
    Since(Instant),
    /// A round already found capacity for it (counted once).
    Counted,
}

/// A change the watch delivered, reduced to what the cache needs.
#[derive(Debug)]
pub enum PodChange {
    /// A re-list starts: what it does not deliver is gone when it ends.
    ListStarted,
    /// A pod exists with this content (from a list or a watch).
    Upsert {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The entry to keep.
        entry: CachedPod,
    },
    /// A pod was deleted.
    Deleted {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// The re-list ended.
    ListDone,
}

#[derive(Debug, Default)]
struct Inner {
    /// By (namespace, name): sorted, so snapshots list pods in a stable order.
    pods: BTreeMap<(String, String), CachedPod>,
    /// Bumped at each re-list; entries a re-list did not touch are dropped at its end.
    generation: u64,
}

/// The shared pod cache. Cloning shares it.
#[derive(Clone, Debug)]
pub struct PodCache {
    inner: Arc<RwLock<Inner>>,
    ready: watch::Sender<bool>,
}

impl Default for PodCache {
    fn default() -> Self {
        Self {
            inner: Arc::default(),
            ready: watch::channel(false).0,
        }
    }
}

/// Reads an API pod into a cache change (`Upsert`), logging a spec the engine cannot read.
/// Its labels are its own; the watch uses [`upsert_interned`] to share them.
pub fn upsert(p: &ApiPod) -> PodChange {
    upsert_interned(p, &mut LabelInterner::default())
}

/// [`upsert`], sharing the pod's labels with the cached pods that carry the same ones.
pub fn upsert_interned(p: &ApiPod, interner: &mut LabelInterner) -> PodChange {
    let namespace = p.metadata.namespace.clone().unwrap_or_default();
    let name = p.metadata.name.clone().unwrap_or_default();
    let bound = p.spec.as_ref().is_some_and(|s| s.node_name.is_some());
    let unschedulable = !bound && translate::is_unschedulable(p);
    let pod = if bound || unschedulable {
        match translate::pod_interned(p, interner) {
            Ok(pod) => pod.map(Arc::new),
            Err(e) => {
                tracing::warn!(error = %e, "pod left out of the engine's view until it changes");
                None
            }
        }
    } else {
        None // not yet seen by the scheduler
    };
    PodChange::Upsert {
        namespace,
        name,
        entry: CachedPod {
            uid: p.metadata.uid.clone(),
            pod,
            pending: if unschedulable {
                PendingClock::Since(Instant::now())
            } else {
                PendingClock::NotPending
            },
            generation: 0,
        },
    }
}

impl PodCache {
    /// Applies one change. A re-list does not build a second map beside the first (that
    /// would double the peak at 100k pods): it stamps what it sees and sweeps the rest.
    pub fn apply(&self, change: PodChange) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        match change {
            PodChange::ListStarted => inner.generation += 1,
            PodChange::Upsert {
                namespace,
                name,
                mut entry,
            } => {
                entry.generation = inner.generation;
                let key = (namespace, name);
                // A pod still pending keeps the instant it was first seen so (updates and
                // re-lists deliver it again).
                if let (PendingClock::Since(_), Some(old)) = (entry.pending, inner.pods.get(&key)) {
                    if matches!(old.pending, PendingClock::Since(_) | PendingClock::Counted) {
                        entry.pending = old.pending;
                    }
                }
                inner.pods.insert(key, entry);
            }
            PodChange::Deleted { namespace, name } => {
                inner.pods.remove(&(namespace, name));
            }
            PodChange::ListDone => {
                let current = inner.generation;
                inner.pods.retain(|_, e| e.generation == current);
                drop(inner);
                self.ready.send_replace(true);
            }
        }
    }

    /// Pods in the cache (every pod the watch delivered, including those the engine does
    /// not see).
    pub fn len(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .pods
            .len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pods the engine should see, in (namespace, name) order.
    pub fn engine_pods(&self) -> Vec<Arc<Pod>> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.pods.values().filter_map(|e| e.pod.clone()).collect()
    }

    /// The UID of a cached pod.
    pub fn uid(&self, namespace: &str, name: &str) -> Option<String> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner
            .pods
            .get(&(namespace.to_string(), name.to_string()))
            .and_then(|e| e.uid.clone())
    }

    /// Marks the pods (`namespace/name`) a round found capacity for (free room, a node on
    /// its way or one just ordered) and returns, once per pod, how long each waited since
    /// the watch first delivered it unschedulable. Each pod comes with a tag (what it
    /// found) that is handed back with its key and wait.
    pub fn capacity_found<'a, T>(
        &self,
        pods: impl IntoIterator<Item = (&'a str, T)>,
        at: Instant,
    ) -> Vec<(&'a str, T, Duration)> {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let mut waited = Vec::new();
        for (key, tag) in pods {
            let Some((ns, name)) = key.split_once('/') else {
                continue;
            };
            if let Some(e) = inner.pods.get_mut(&(ns.to_string(), name.to_string())) {
                if let PendingClock::Since(t) = e.pending {
                    waited.push((key, tag, at.saturating_duration_since(t)));
                    e.pending = PendingClock::Counted;
                }
            }
        }
        waited
    }

    /// Waits until the first full list has been read.
    pub async fn wait_until_ready(&self) {
        let mut rx = self.ready.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }

    /// Starts the watch that fills the cache; `notify` is woken when a pod turns up
    /// unschedulable (the debounced fast path of a scale-up), `freed` when a pod leaves a
    /// node (see [`wake_for`]).
    pub fn start(api: Api<ApiPod>, notify: Arc<Notify>, freed: Arc<Notify>) -> Self {
        let cache = Self::default();
        let writer = cache.clone();
        let stream = watcher(api, watcher::Config::default()).default_backoff();
        tokio::spawn(async move {
            // Only this task translates pods, so the interner needs no lock.
            let mut interner = LabelInterner::default();
            futures::pin_mut!(stream);
            while let Some(item) = stream.next().await {
                let event = match item {
                    Ok(event) => event,
                    Err(e) => {
                        tracing::warn!(kind = "Pod", error = %e, "watch error (retrying with backoff)");
                        continue;
                    }
                };
                match wake_for(&event) {
                    Wake::Pending => notify.notify_one(),
                    Wake::Freed => freed.notify_one(),
                    Wake::No => {}
                }
                let change = match event {
                    watcher::Event::Init => PodChange::ListStarted,
                    watcher::Event::InitDone => PodChange::ListDone,
                    watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                        upsert_interned(&p, &mut interner)
                    }
                    watcher::Event::Delete(p) => PodChange::Deleted {
                        namespace: p.metadata.namespace.unwrap_or_default(),
                        name: p.metadata.name.unwrap_or_default(),
                    },
                };
                writer.apply(change);
            }
        });
        cache
    }
}

/// Which round a pod watch event calls for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// None before the next scan.
    No,
    /// A pod waits for capacity: a scale-up round, after the debounce.
    Pending,
    /// A pod left a node (deleted, or finished while bound): a round soon, so that a node
    /// left empty starts its unneeded time now rather than at the next scan.
    Freed,
}

/// What a pod watch event asks of the decision loop. A re-list's pods (`InitApply`) are
/// not news, except that an unschedulable one still needs a round.
pub fn wake_for(event: &watcher::Event<ApiPod>) -> Wake {
    match event {
        watcher::Event::Apply(p) | watcher::Event::InitApply(p)
            if translate::is_unschedulable(p) =>
        {
            Wake::Pending
        }
        watcher::Event::Apply(p) if on_a_node(p) && finished(p) => Wake::Freed,
        watcher::Event::Delete(p) if on_a_node(p) && !finished(p) => Wake::Freed,
        _ => Wake::No,
    }
}

fn on_a_node(p: &ApiPod) -> bool {
    p.spec.as_ref().is_some_and(|s| s.node_name.is_some())
}

fn finished(p: &ApiPod) -> bool {
    matches!(
        p.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_pod(name: &str, node: Option<&str>, phase: &str) -> ApiPod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}")},
            "spec": {"nodeName": node, "containers": [{"name": "c",
                "resources": {"requests": {"cpu": "100m"}}}]},
            "status": {"phase": phase},
        }))
        .unwrap()
    }

    fn unschedulable_pod(name: &str) -> ApiPod {
        let mut p = api_pod(name, None, "Pending");
        p.status = serde_json::from_value(serde_json::json!({"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}))
        .unwrap();
        p
    }

    #[test]
    fn a_pod_leaving_a_node_wakes_a_round_and_other_changes_do_not() {
        use watcher::Event::{Apply, Delete, InitApply};
        // Room freed on a node: the round that starts its unneeded time should not wait
        // for the next scan.
        assert_eq!(
            wake_for(&Delete(api_pod("a", Some("n1"), "Running"))),
            Wake::Freed
        );
        assert_eq!(
            wake_for(&Apply(api_pod("job", Some("n1"), "Succeeded"))),
            Wake::Freed
        );
        assert_eq!(
            wake_for(&Apply(api_pod("job", Some("n1"), "Failed"))),
            Wake::Freed
        );
        // Already counted when it finished; never on a node; still running.
        assert_eq!(
            wake_for(&Delete(api_pod("job", Some("n1"), "Succeeded"))),
            Wake::No
        );
        assert_eq!(wake_for(&Delete(api_pod("p", None, "Pending"))), Wake::No);
        assert_eq!(
            wake_for(&Apply(api_pod("a", Some("n1"), "Running"))),
            Wake::No
        );
        // A re-list is not news about room.
        assert_eq!(
            wake_for(&InitApply(api_pod("job", Some("n1"), "Succeeded"))),
            Wake::No
        );
        // Waiting for capacity is the scale-up's fast path, re-listed or not.
        assert_eq!(wake_for(&Apply(unschedulable_pod("u"))), Wake::Pending);
        assert_eq!(wake_for(&InitApply(unschedulable_pod("u"))), Wake::Pending);
        assert_eq!(wake_for(&Delete(unschedulable_pod("u"))), Wake::No);
    }

    #[test]
    fn the_wait_for_capacity_counts_from_the_first_delivery_once() {
        let cache = PodCache::default();
        let first = Instant::now();
        cache.apply(upsert(&unschedulable_pod("a")));
        std::thread::sleep(Duration::from_millis(30));
        // The scheduler's next attempt delivers it again: the clock keeps its start.
        cache.apply(upsert(&unschedulable_pod("a")));
        cache.apply(upsert(&api_pod("bound", Some("n1"), "Running")));
        let at = Instant::now();
        let pods = ["ns/a", "ns/bound", "ns/gone", "no-slash"].map(|k| (k, k.len()));
        let waited = cache.capacity_found(pods, at);
        assert_eq!(waited.len(), 1, "only the pending pod has a wait");
        let (key, tag, wait) = waited[0];
        assert_eq!((key, tag), ("ns/a", 4));
        assert!(wait >= Duration::from_millis(30));
        assert!(wait <= at - first);
        // Counted once, even when delivered again while still pending.
        cache.apply(upsert(&unschedulable_pod("a")));
        assert!(cache
            .capacity_found([("ns/a", ())], Instant::now())
            .is_empty());
        // Bound, then pending again (evicted back to the queue): a new wait.
        cache.apply(upsert(&api_pod("a", Some("n1"), "Running")));
        cache.apply(upsert(&unschedulable_pod("a")));
        assert_eq!(
            cache.capacity_found([("ns/a", ())], Instant::now()).len(),
            1
        );
    }

    fn names(cache: &PodCache) -> Vec<String> {
        cache.engine_pods().iter().map(|p| p.name.clone()).collect()
    }

    #[test]
    fn keeps_what_the_engine_needs() {
        let cache = PodCache::default();
        cache.apply(PodChange::ListStarted);
        cache.apply(upsert(&api_pod("bound", Some("n1"), "Running")));
        cache.apply(upsert(&api_pod("unscheduled", None, "Pending")));
        cache.apply(upsert(&api_pod("done", Some("n1"), "Succeeded")));
        cache.apply(PodChange::ListDone);
        assert_eq!(cache.len(), 3);
        // A pod the scheduler has not tried, and a finished one, are not the engine's.
        assert_eq!(names(&cache), ["bound"]);
        assert_eq!(
            cache.uid("ns", "unscheduled").as_deref(),
            Some("uid-unscheduled")
        );
        cache.apply(PodChange::Deleted {
            namespace: "ns".into(),
            name: "bound".into(),
        });
        assert!(names(&cache).is_empty());
    }

    #[test]
    fn relist_drops_what_it_did_not_see() {
        let cache = PodCache::default();
        cache.apply(PodChange::ListStarted);
        for n in ["a", "b", "c"] {
            cache.apply(upsert(&api_pod(n, Some("n1"), "Running")));
        }
        cache.apply(PodChange::ListDone);
        // The watch expired and re-lists: "b" was deleted meanwhile.
        cache.apply(PodChange::ListStarted);
        cache.apply(upsert(&api_pod("a", Some("n1"), "Running")));
        cache.apply(upsert(&api_pod("c", Some("n2"), "Running")));
        // Until the re-list ends the old view stays whole.
        assert_eq!(names(&cache), ["a", "b", "c"]);
        cache.apply(PodChange::ListDone);
        assert_eq!(names(&cache), ["a", "c"]);
        let c = cache.engine_pods().pop().unwrap();
        assert_eq!(c.node_name.as_deref(), Some("n2"));
    }

    #[test]
    fn snapshots_share_the_cached_pods() {
        let cache = PodCache::default();
        cache.apply(upsert(&api_pod("a", Some("n1"), "Running")));
        let first = cache.engine_pods();
        let second = cache.engine_pods();
        assert!(Arc::ptr_eq(&first[0], &second[0]));
    }

    fn labelled_pod(name: &str, app: &str) -> ApiPod {
        let mut p = api_pod(name, Some("n1"), "Running");
        p.metadata.labels = Some(
            [("app", app), ("app.kubernetes.io/part-of", "shop")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        p.spec.as_mut().unwrap().node_selector =
            Some([("pool".to_string(), "spot".to_string())].into());
        p
    }

    #[test]
    fn pods_with_the_same_labels_share_one_map() {
        let cache = PodCache::default();
        let mut interner = LabelInterner::default();
        for (name, app) in [("web-1", "web"), ("web-2", "web"), ("db-1", "db")] {
            cache.apply(upsert_interned(&labelled_pod(name, app), &mut interner));
        }
        let pods = cache.engine_pods(); // db-1, web-1, web-2
        assert!(pods[1].labels.ptr_eq(&pods[2].labels));
        assert!(!pods[0].labels.ptr_eq(&pods[1].labels));
        assert_eq!(pods[0].labels.get("app").map(String::as_str), Some("db"));
        assert!(pods[0]
            .spec
            .node_selector
            .ptr_eq(&pods[2].spec.node_selector));
        // Two label sets and one nodeSelector.
        assert_eq!(interner.len(), 3);
        // Without the interner every pod owns its labels.
        let (a, b) = (
            upsert(&labelled_pod("web-1", "web")),
            upsert(&labelled_pod("web-2", "web")),
        );
        let label_map = |c: &PodChange| match c {
            PodChange::Upsert { entry, .. } => entry.pod.as_ref().unwrap().labels.clone(),
            other => panic!("not an upsert: {other:?}"),
        };
        assert_eq!(label_map(&a), label_map(&b));
        assert!(!label_map(&a).ptr_eq(&label_map(&b)));
    }
}
