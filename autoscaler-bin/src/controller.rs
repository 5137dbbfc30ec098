//! The controller: watches (reflectors) -> snapshot -> engine -> actuation/reporting.
//!
//! A new unschedulable pod wakes the loop (debounced by `--debounce`), so does a pod
//! leaving a node (at most one such round a second), and a round runs
//! at least every `--scan-interval`, and also at the engine's next deadline
//! ([`Autoscaler::poll_timeout`]: a cool-off ending, a node's unneeded time expiring, a
//! provision timeout), so timers fire on time whatever the scan interval. Only the Lease holder decides; a standby keeps its
//! caches warm and takes over as soon as the Lease is its own.

use crate::aws_provider::AwsProvider;
use crate::drain::{DrainConfig, Drainer, Removal, DELETION_CANDIDATE_TAINT};
use crate::flags::{CloudProvider, Flags};
use crate::hpa_watch::HpaWatch;
use crate::metrics::Metrics;
use crate::pod_cache::PodCache;
use crate::provider::{NodeGroupProvider, ProviderContext};
use crate::static_provider::StaticProvider;
use crate::status;
use crate::translate;
use anyhow::{Context, Result};
use autoscaler_core::model::{DELETION_COST_SET_BY_US, POD_DELETION_COST};
use autoscaler_core::overprovisioning::Overprovisioning;
use autoscaler_core::{
    Autoscaler, CapacityType, ClusterSnapshot, Decision, Decisions, Event, InstanceType,
    NodeVerdict, PodDeletionCost, PodVerdict, SnapshotParts, Timestamp,
};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Node, ObjectReference, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch, Notify};

/// Wall-clock now as the core's timestamp (Unix milliseconds).
pub fn now() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    Timestamp::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
}

/// The reflector caches.
#[derive(Clone)]
pub struct Caches {
    /// Nodes.
    pub nodes: Store<Node>,
    /// Pods (all namespaces), kept translated (see [`crate::pod_cache`]).
    pub pods: PodCache,
    /// PDBs.
    pub pdbs: Store<PodDisruptionBudget>,
    /// DaemonSets.
    pub daemonsets: Store<DaemonSet>,
    /// HorizontalPodAutoscalers (their measured load; optional, never waited for: a
    /// cluster without HPA read rights still scales).
    pub hpas: HpaWatch,
    /// The priority-expander ConfigMap (0 or 1 object).
    pub priorities: Store<ConfigMap>,
    /// The overprovisioning ConfigMap (0 or 1 object).
    pub overprovisioning: Store<ConfigMap>,
}

impl Caches {
    /// Waits until every cache has read its first full list: deciding on half a view
    /// (pods but no nodes yet) would launch nodes the cluster already has.
    pub async fn wait_until_ready(&self) -> Result<()> {
        self.nodes.wait_until_ready().await?;
        self.pods.wait_until_ready().await;
        self.pdbs.wait_until_ready().await?;
        self.daemonsets.wait_until_ready().await?;
        self.priorities.wait_until_ready().await?;
        self.overprovisioning.wait_until_ready().await?;
        Ok(())
    }
}

/// What a node cache keeps: no managed fields, image list or volume lists (a large part
/// of a real node object, and never read).
fn trim_node(n: &mut Node) {
    if let Some(s) = n.status.as_mut() {
        s.images = None;
        s.volumes_attached = None;
        s.volumes_in_use = None;
    }
}

/// Whether a watch error is the API server refusing the service account (RBAC), which
/// retrying alone never mends.
fn forbidden(e: &watcher::Error) -> bool {
    match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => s.is_forbidden(),
        watcher::Error::WatchError(s) => s.is_forbidden(),
        _ => false,
    }
}

/// Starts one reflector; `wake` says which changes should trigger a round now, `trim`
/// drops what is never read before the object is stored.
fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
    wake: fn(&K) -> bool,
    trim: fn(&mut K),
    notify: Arc<Notify>,
) -> Store<K>
where
    K: Resource + Clone + Debug + Send + Sync + serde::de::DeserializeOwned + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let (reader, writer) = reflector::store();
    let kind = K::kind(&K::DynamicType::default()).to_string();
    let stream = watcher(api, config)
        .default_backoff()
        // Managed fields are most of an object's size and never read: drop them (RSS).
        .modify(move |o: &mut K| {
            o.managed_fields_mut().clear();
            trim(o);
        })
        .reflect(writer)
        .touched_objects();
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(item) = stream.next().await {
            match item {
                Ok(obj) => {
                    if wake(&obj) {
                        notify.notify_one();
                    }
                }
                Err(e) if forbidden(&e) => tracing::warn!(
                    kind = %kind,
                    error = %e,
                    "watch refused: the service account may not list/watch {kind}; grant both \
                     verbs on it in the ClusterRole (the chart's clusterrole.yaml has every rule) \
                     (retrying with backoff)"
                ),
                Err(e) => {
                    tracing::warn!(kind = %kind, error = %e, "watch error (retrying with backoff)")
                }
            }
        }
    });
    reader
}

/// Starts every reflector. `notify` wakes a round after the debounce (a pod waits for
/// capacity, a config changed); `freed` wakes one when a pod leaves a node.
pub fn start_caches(
    client: &Client,
    flags: &Flags,
    notify: Arc<Notify>,
    freed: Arc<Notify>,
) -> Caches {
    let ns = &flags.namespace;
    let named = |name: &str| watcher::Config::default().fields(&format!("metadata.name={name}"));
    Caches {
        nodes: reflect(
            Api::all(client.clone()),
            watcher::Config::default(),
            |_| false,
            trim_node,
            notify.clone(),
        ),
        pods: PodCache::start(Api::all(client.clone()), notify.clone(), freed),
        pdbs: reflect(
            Api::all(client.clone()),
            watcher::Config::default(),
            |_| false,
            |_| {},
            notify.clone(),
        ),
        daemonsets: reflect(
            Api::all(client.clone()),
            watcher::Config::default(),
            |_| false,
            |_| {},
            notify.clone(),
        ),
        // Status updates every 15 s per HPA: read each round, never a reason for one.
        hpas: HpaWatch::new(reflect(
            Api::all(client.clone()),
            watcher::Config::default(),
            |_| false,
            |_| {},
            notify.clone(),
        )),
        priorities: reflect(
            Api::namespaced(client.clone(), ns),
            named(&flags.priority_config_map_name),
            |_| true,
            |_| {},
            notify.clone(),
        ),
        overprovisioning: reflect(
            Api::namespaced(client.clone(), ns),
            named(&flags.overprovisioning_name),
            |_| true,
            |_| {},
            notify,
        ),
    }
}

/// Builds the engine's snapshot from the caches and the provider's groups.
pub async fn build_snapshot<P: NodeGroupProvider>(
    caches: &Caches,
    provider: &P,
) -> Result<ClusterSnapshot> {
    let groups = provider.groups().await.context("listing node groups")?;
    let market: HashMap<&str, CapacityType> = groups
        .iter()
        .map(|g| (g.name.as_str(), g.capacity_type))
        .collect();
    let instances = provider.instances().await.context("listing instances")?;
    let group_of_instance: HashMap<&str, &str> = instances
        .iter()
        .map(|i| (i.id.as_str(), i.group.as_str()))
        .collect();
    let lookup = |pid: &str| {
        let id = translate::instance_id(pid)?;
        let g = *group_of_instance.get(id)?;
        Some((
            g.to_string(),
            market.get(g).copied().unwrap_or(CapacityType::OnDemand),
        ))
    };
    let mut parts = SnapshotParts {
        groups: groups.clone(),
        ..SnapshotParts::default()
    };
    for n in caches.nodes.state() {
        match translate::node(&n, lookup) {
            Ok(node) => parts.nodes.push(node),
            Err(e) => tracing::warn!(error = %e, "node skipped"),
        }
    }
    parts.pods = caches.pods.engine_pods();
    parts.pdbs = caches
        .pdbs
        .state()
        .iter()
        .map(|p| translate::pdb(p))
        .collect();
    parts.workload_loads = caches.hpas.workload_loads();
    for d in caches.daemonsets.state() {
        match translate::daemonset(&d) {
            Ok(ds) => parts.daemonsets.push(ds),
            Err(e) => tracing::warn!(error = %e, "daemonset skipped"),
        }
    }
    ClusterSnapshot::new(parts).context("building the cluster snapshot")
}

/// The provider selected by `--cloud-provider`.
pub fn static_provider(flags: &Flags) -> Result<StaticProvider> {
    let mut it = flags.static_instance_type.split(':');
    let (Some(name), Some(vcpus), Some(mem), Some(price)) =
        (it.next(), it.next(), it.next(), it.next())
    else {
        anyhow::bail!(
            "--static-instance-type {:?}: write it as name:vcpus:memory-MiB:price, e.g. m5.large:2:8192:0.096",
            flags.static_instance_type
        );
    };
    let it = InstanceType::new(
        name,
        vcpus.parse().context("--static-instance-type vcpus")?,
        mem.parse().context("--static-instance-type memory")?,
        price.parse().context("--static-instance-type price")?,
    );
    let zones: Vec<String> = flags
        .static_zones
        .split(',')
        .filter(|z| !z.is_empty())
        .map(String::from)
        .collect();
    Ok(StaticProvider::new(
        flags
            .nodes
            .iter()
            .map(|n| {
                StaticProvider::group_from_flag(&n.name, n.min, n.max, it.clone(), zones.clone())
            })
            .collect(),
    )
    .with_kwok_nodes(flags.static_create_kwok_nodes))
}

/// Runs the controller until SIGTERM/SIGINT.
pub async fn run(flags: Flags) -> Result<()> {
    let config = flags.to_config()?;
    let engine = Autoscaler::new(config)?;
    let client = if flags.kubeconfig.is_empty() {
        Client::try_default()
            .await
            .context("connecting to Kubernetes (in-cluster or $KUBECONFIG)")?
    } else {
        let kc = kube::config::Kubeconfig::read_from(&flags.kubeconfig)
            .with_context(|| format!("reading --kubeconfig {}", flags.kubeconfig))?;
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
        Client::try_from(cfg)?
    };
    match flags.cloud_provider {
        CloudProvider::Static => {
            let provider = static_provider(&flags)?;
            serve(flags, client, engine, provider).await
        }
        CloudProvider::Aws => {
            let provider = AwsProvider::from_flags(&flags).await;
            let queue = &flags.event_queue_url;
            if flags.dry_run && !queue.is_empty() {
                // SQS hands each message to one consumer and the consumer deletes it.
                tracing::warn!(
                    queue = %queue,
                    "--dry-run still consumes --event-queue-url: a shadow sharing the live autoscaler's queue takes events from it; give the shadow its own queue (a second target of the same EventBridge rules, docs/event-queue.md)"
                );
            }
            serve(flags, client, engine, provider).await
        }
    }
}

/// Runs the controller over `provider` until SIGTERM/SIGINT. The provider adds its
/// collectors to `/metrics`, starts its background tasks with the controller's event
/// channel, wake-up, leadership and Node cache, and takes over on each leadership.
async fn serve<P: NodeGroupProvider + Clone>(
    flags: Flags,
    client: Client,
    engine: Autoscaler,
    provider: P,
) -> Result<()> {
    let mut metrics = Metrics::new();
    for collector in provider.collectors() {
        metrics.register_collector(collector);
    }
    let metrics = Arc::new(metrics);
    metrics.dry_run.set(i64::from(flags.dry_run));
    metrics.beat();
    let addr = flags.metrics_socket()?;
    let stall = (flags.scan_interval * 10).max(Duration::from_secs(120));
    let server = tokio::spawn(crate::metrics::serve(addr, metrics.clone(), stall));
    let leader = crate::leader::start(&client, &flags).await?;
    let notify = Arc::new(Notify::new());
    let freed = Arc::new(Notify::new());
    let caches = start_caches(&client, &flags, notify.clone(), freed.clone());
    let (failures_tx, removal_failures) = mpsc::unbounded_channel();
    provider.start(&ProviderContext {
        client: client.clone(),
        nodes: caches.nodes.clone(),
        wake: notify.clone(),
        leader: leader.clone(),
    });
    let drainer = Drainer::new(
        client.clone(),
        provider.clone(),
        drain_config(&flags),
        leader.clone(),
        failures_tx,
        notify.clone(),
    );
    let recording = if flags.record_dir.is_empty() {
        None
    } else {
        let encoder = autoscaler_core::recording::Encoder::new(
            engine.config().clone(),
            u64::try_from(flags.scan_interval.as_millis()).unwrap_or(u64::MAX),
            flags.dry_run,
        );
        let dir = std::path::Path::new(&flags.record_dir);
        tracing::info!(dir = %dir.display(), max_bytes = flags.record_max_bytes, "recording rounds");
        Some(
            crate::recording::RecordingWriter::open(dir, flags.record_max_bytes, encoder)?
                .with_hpa_watch(caches.hpas.clone()),
        )
    };
    tracing::info!(dry_run = flags.dry_run, metrics = %addr, "autoscaler started");
    let mut ctl = Controller {
        flags,
        client,
        provider,
        engine,
        metrics,
        caches,
        leader,
        recorder: None,
        last_pod_verdict: HashMap::new(),
        last_node_verdict: HashMap::new(),
        drainer,
        removal_failures,
        priorities_text: None,
        overprovisioning_text: None,
        wake_at: None,
        recording,
        status: None,
    };
    let main = ctl.main_loop(notify, freed);
    tokio::select! {
        r = main => r,
        r = server => r.context("metrics server task")?,
        _ = shutdown_signal() => {
            tracing::info!("shutting down");
            Ok(())
        }
    }
}

/// The drain bounds the flags give.
pub fn drain_config(flags: &Flags) -> DrainConfig {
    DrainConfig {
        max_pod_eviction_time: flags.max_pod_eviction_time,
        max_graceful_termination: Duration::from_secs(flags.max_graceful_termination_sec),
        parallelism: (flags.max_drain_parallelism + flags.max_empty_bulk_delete).max(1) as usize,
        ..DrainConfig::default()
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
            return;
        }
    }
    let _ = ctrl_c.await;
}

struct Controller<P: NodeGroupProvider + Clone> {
    flags: Flags,
    client: Client,
    provider: P,
    engine: Autoscaler,
    metrics: Arc<Metrics>,
    caches: Caches,
    leader: watch::Receiver<bool>,
    recorder: Option<Recorder>,
    last_pod_verdict: HashMap<String, String>,
    last_node_verdict: HashMap<String, String>,
    drainer: Drainer<P>,
    removal_failures: mpsc::UnboundedReceiver<Event>,
    priorities_text: Option<String>,
    overprovisioning_text: Option<String>,
    /// The engine's next deadline after the last successful round.
    wake_at: Option<tokio::time::Instant>,
    /// `--record-dir`'s writer.
    recording: Option<crate::recording::RecordingWriter>,
    /// The status ConfigMap's writer (started at the first round that writes it).
    status: Option<watch::Sender<Option<StatusUpdate>>>,
}

/// One version of the status ConfigMap.
#[derive(Clone, Debug)]
struct StatusUpdate {
    text: String,
    updated: String,
}

/// Writes the status ConfigMap off the round's path (a PATCH took 0.2-0.7 s against a
/// busy API server, and pending pods wait for the round in progress): the latest
/// version wins, one write at a time.
fn start_status_writer(
    client: Client,
    namespace: String,
    name: String,
) -> watch::Sender<Option<StatusUpdate>> {
    let (tx, mut rx) = watch::channel::<Option<StatusUpdate>>(None);
    tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let Some(update) = rx.borrow_and_update().clone() else {
                continue;
            };
            if let Err(e) = write_status(&client, &namespace, &name, update).await {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "writing the status ConfigMap failed"
                );
            }
        }
    });
    tx
}

async fn write_status(
    client: &Client,
    namespace: &str,
    name: &str,
    update: StatusUpdate,
) -> Result<()> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let mut data = BTreeMap::new();
    data.insert("status".to_string(), update.text);
    let patch = serde_json::json!({
        "metadata": {"annotations": {"cluster-autoscaler.kubernetes.io/last-updated": update.updated}},
        "data": data,
    });
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => {
            let cm = ConfigMap {
                metadata: kube::api::ObjectMeta {
                    name: Some(name.to_string()),
                    namespace: Some(namespace.to_string()),
                    ..Default::default()
                },
                data: Some(data),
                ..Default::default()
            };
            api.create(&PostParams::default(), &cm).await?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Rounds woken by a pod leaving a node start at least this long after the previous
/// round.
const FREED_ROUND_GAP: Duration = Duration::from_secs(1);

/// A round longer than this is logged with where its time went.
const SLOW_ROUND: Duration = Duration::from_secs(1);

/// Sleeps until `at`, or forever when there is no deadline.
async fn sleep_until_deadline(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl<P: NodeGroupProvider + Clone> Controller<P> {
    fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    async fn main_loop(&mut self, notify: Arc<Notify>, freed: Arc<Notify>) -> Result<()> {
        let mut tick = tokio::time::interval(self.flags.scan_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut leader = self.leader.clone();
        let mut was_leader = false;
        let mut last_round = Instant::now();
        tracing::info!("waiting for the watch caches to fill");
        self.caches.wait_until_ready().await?;
        self.record_cache_sizes();
        tracing::info!(
            pods = self.caches.pods.len(),
            nodes = self.caches.nodes.len(),
            "watch caches filled"
        );
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = notify.notified() => {
                    // Debounce: let a burst of pod creations land in one round.
                    tokio::time::sleep(self.flags.debounce).await;
                }
                _ = freed.notified() => {
                    // A pod left a node: a round soon starts an emptied node's unneeded
                    // time (CA starts it at its next scan). Paced, so that a cluster
                    // with steady churn does not run rounds back to back.
                    let paced = FREED_ROUND_GAP.saturating_sub(last_round.elapsed());
                    tokio::time::sleep(self.flags.debounce.max(paced)).await;
                }
                r = leader.changed() => {
                    if r.is_err() {
                        anyhow::bail!("leader election task stopped");
                    }
                    tracing::info!(leader = *leader.borrow(), "leadership changed");
                }
                _ = sleep_until_deadline(self.wake_at) => {
                    tracing::debug!("engine deadline reached");
                }
            }
            // Set again by the next successful round (a failed one must not leave a
            // past deadline behind: that would spin the loop).
            self.wake_at = None;
            self.metrics.is_leader.set(i64::from(self.is_leader()));
            self.record_cache_sizes();
            if !self.is_leader() {
                // A standby's loop is alive when it goes round.
                self.metrics.beat();
                was_leader = false;
                continue;
            }
            if !was_leader {
                was_leader = true;
                self.became_leader().await;
            }
            let started = Instant::now();
            last_round = started;
            // The leader is alive only when its rounds succeed (the heartbeat follows
            // a successful round), so /healthz turns unhealthy when rounds keep failing.
            match self.round().await {
                Ok(()) => {
                    self.metrics.beat();
                    self.provider.round_done().await;
                }
                Err(e) => {
                    let reason = failure_reason(&e);
                    let provider = provider_error(&e);
                    tracing::warn!(
                        error = format!("{e:#}"),
                        reason,
                        kind = provider.map(|p| p.kind()),
                        action = provider.and_then(|p| p.action()),
                        "decision round failed"
                    );
                    self.metrics.round_failed(reason);
                    if let Some(p) = provider {
                        self.metrics.cloud_provider_error(p);
                    }
                }
            }
            self.metrics
                .round_seconds
                .observe(started.elapsed().as_secs_f64());
        }
    }

    /// Takes over: the provider's own state first (the static provider's instances from
    /// the Nodes), then every removal a previous leader (or this process before a
    /// restart) left half done.
    async fn became_leader(&mut self) {
        self.provider.became_leader(&self.client).await;
        if self.flags.dry_run {
            return;
        }
        match self.drainer.resume().await {
            Ok(nodes) if !nodes.is_empty() => {
                tracing::info!(?nodes, "resumed node removals in progress")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "looking for node removals to resume failed"),
        }
    }

    fn record_cache_sizes(&self) {
        let set = |k: &str, n: usize| {
            self.metrics
                .cache_objects
                .get_or_create(&crate::metrics::StateLabel { state: k.into() })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        };
        set("nodes", self.caches.nodes.len());
        set("pods", self.caches.pods.len());
        set("pdbs", self.caches.pdbs.len());
        set("daemonsets", self.caches.daemonsets.len());
    }

    fn refresh_configmaps(&mut self) {
        let data = |s: &Store<ConfigMap>| s.state().first().and_then(|c| c.data.clone());
        match data(&self.caches.priorities).and_then(|d| d.get("priorities").cloned()) {
            Some(text) if self.priorities_text.as_ref() != Some(&text) => {
                if let Err(e) = self.engine.set_priorities(&text) {
                    tracing::warn!(error = %e, "priority ConfigMap rejected; the last good one stays in force");
                } else {
                    tracing::info!("priority ConfigMap loaded");
                }
                self.priorities_text = Some(text);
            }
            None if self.priorities_text.is_some() => {
                self.engine.clear_priorities();
                self.priorities_text = None;
                tracing::info!(
                    "priority ConfigMap removed: every group passes the priority expander"
                );
            }
            _ => {}
        }
        let op = data(&self.caches.overprovisioning);
        let text = op.as_ref().map(|d| format!("{d:?}"));
        if text != self.overprovisioning_text {
            match op.map(|d| Overprovisioning::from_configmap_data(&d)) {
                Some(Ok(rule)) => self.engine.set_overprovisioning(Some(rule)),
                Some(Err(e)) => tracing::warn!(error = %e, "overprovisioning ConfigMap rejected"),
                None => self.engine.set_overprovisioning(None),
            }
            self.overprovisioning_text = text;
        }
    }

    async fn round(&mut self) -> Result<()> {
        self.refresh_configmaps();
        let t = now();
        let started = tokio::time::Instant::now();
        // The round's events, kept only when recording.
        let mut seen_events = Vec::new();
        let recording = self.recording.is_some();
        while let Ok(ev) = self.removal_failures.try_recv() {
            if recording {
                seen_events.push(ev.clone());
            }
            self.engine.handle_event(ev, t);
        }
        for ev in self
            .provider
            .poll_events()
            .await
            .context("polling provider events")?
        {
            tracing::info!(event = ?ev, "provider event");
            if recording {
                seen_events.push(ev.clone());
            }
            self.engine.handle_event(ev, t);
        }
        let events_done = started.elapsed();
        let snap = build_snapshot(&self.caches, &self.provider).await?;
        let snapshot_done = started.elapsed();
        let decide_started = Instant::now();
        let decisions = self.engine.decide(&snap, t);
        self.metrics
            .decide_seconds
            .observe(decide_started.elapsed().as_secs_f64());
        self.wake_at = self
            .engine
            .poll_timeout(t, snap.groups())
            .map(|at| started + at.since(t));
        let unix_secs = i64::try_from(t.as_millis() / 1000).unwrap_or(0);
        self.metrics
            .record_round(snap.nodes(), &decisions, unix_secs);
        if let Some(r) = &mut self.recording {
            let priorities = self.priorities_text.as_deref();
            if let Err(e) = r.round(t, priorities, &snap, &seen_events, &decisions.actions) {
                // A full disk must not stop autoscaling.
                tracing::warn!(error = %e, "recording the round failed");
            }
        }
        let decide_done = started.elapsed();
        let failed = self.carry_out(&decisions).await;
        let carry_out_done = started.elapsed();
        self.count_waits_for_capacity(&decisions, &failed);
        self.report_pods(&decisions);
        self.report_nodes(&decisions);
        if self.flags.write_status_configmap {
            self.send_status(&snap, &decisions, t);
        }
        let total = started.elapsed();
        // Pending pods wait for the round in progress: say where a slow one went.
        if total > SLOW_ROUND {
            tracing::info!(
                total_ms = total.as_millis() as u64,
                events_ms = events_done.as_millis() as u64,
                snapshot_ms = (snapshot_done - events_done).as_millis() as u64,
                decide_ms = (decide_done - snapshot_done).as_millis() as u64,
                carry_out_ms = (carry_out_done - decide_done).as_millis() as u64,
                report_and_status_ms = (total - carry_out_done).as_millis() as u64,
                "slow round"
            );
        }
        Ok(())
    }

    /// Carries out the round's decisions; returns the groups whose scale-up did not
    /// reach the cloud.
    async fn carry_out(&mut self, d: &Decisions) -> BTreeSet<String> {
        let dry = self.flags.dry_run;
        let mut failed = BTreeSet::new();
        for (i, action) in d.actions.iter().enumerate() {
            // Never act on a stale leadership: re-check before every change.
            if !dry && !self.is_leader() {
                tracing::warn!("lost the Lease mid-round; remaining decisions dropped");
                for a in &d.actions[i..] {
                    if let Decision::ScaleUp { group, .. } = a {
                        failed.insert(group.clone());
                    }
                }
                return failed;
            }
            tracing::info!(dry_run = dry, decision = ?action, reason = action.reason(), "decision");
            if dry {
                if let Decision::RemoveNode {
                    node,
                    group,
                    kind,
                    reason,
                    ..
                } = action
                {
                    let drainer = self.drainer.clone();
                    let r = Removal {
                        node: node.clone(),
                        group: group.clone(),
                        kind: Some(*kind),
                        reason: reason.clone(),
                    };
                    tokio::spawn(async move { drainer.dry_run(&r).await });
                }
                continue;
            }
            let result = match action {
                Decision::ScaleUp { .. } | Decision::RevertScaleUp { .. } => {
                    self.provider.apply(action).await.map_err(|e| {
                        self.metrics.cloud_provider_error(&e);
                        anyhow::Error::from(e)
                    })
                }
                Decision::RemoveNode {
                    node,
                    group,
                    kind,
                    reason,
                    ..
                } => {
                    // In the background: taint, evict, terminate; failures come back
                    // through `removal_failures`.
                    if !self.drainer.start(Removal {
                        node: node.clone(),
                        group: group.clone(),
                        kind: Some(*kind),
                        reason: reason.clone(),
                    }) {
                        tracing::debug!(node = %node, "removal already in progress");
                    }
                    Ok(())
                }
                Decision::SetOverprovisioning { replicas, .. } => {
                    self.scale_placeholder(*replicas).await
                }
            };
            if let Err(e) = result {
                tracing::warn!(decision = ?action, error = format!("{e:#}"), "carrying out a decision failed");
                if let Decision::ScaleUp { group, .. } | Decision::RevertScaleUp { group, .. } =
                    action
                {
                    // Nothing changed in AWS: the next round plans from the real size.
                    self.engine.target_not_applied(group);
                    failed.insert(group.clone());
                }
            }
        }
        if !d.deletion_costs.is_empty() && (dry || self.is_leader()) {
            self.write_deletion_costs(&d.deletion_costs, dry).await;
        }
        failed
    }

    /// Writes (or clears) pod deletion costs: `controller.kubernetes.io/pod-deletion-cost`
    /// and the copy that marks it as ours. A failure is logged and retried by a later
    /// round (the engine compares against the pods it sees).
    async fn write_deletion_costs(&self, costs: &[PodDeletionCost], dry: bool) {
        for c in costs {
            let Some((namespace, name)) = c.pod.split_once('/') else {
                continue;
            };
            tracing::debug!(dry_run = dry, pod = %c.pod, cost = ?c.cost, "pod deletion cost");
            if dry {
                continue;
            }
            let value = c.cost.map(|v| v.to_string());
            let patch = serde_json::json!({"metadata": {"annotations": {
                POD_DELETION_COST: value,
                DELETION_COST_SET_BY_US: value,
            }}});
            let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
            if let Err(e) = api
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                // A pod deleted meanwhile is expected; anything else is worth a look.
                let gone = matches!(&e, kube::Error::Api(r) if r.code == 404);
                if !gone {
                    tracing::warn!(pod = %c.pod, error = %e, "writing a pod deletion cost failed");
                }
            }
        }
    }

    /// `autoscaler_unschedulable_to_capacity_seconds`: each pending pod this round found
    /// capacity for, once, unless its group's scale-up failed.
    fn count_waits_for_capacity(&self, d: &Decisions, failed: &BTreeSet<String>) {
        let found = d.pods.iter().filter_map(|o| {
            let capacity = match &o.verdict {
                PodVerdict::FitsExistingNode { .. } => "free_room",
                PodVerdict::WaitsForUpcomingNode { .. } => "upcoming",
                PodVerdict::TriggeredScaleUp { group } if !failed.contains(group) => "new_node",
                _ => return None,
            };
            Some((o.pod.as_str(), capacity))
        });
        let mut logged = 0;
        for (pod, capacity, waited) in self.caches.pods.capacity_found(found, Instant::now()) {
            self.metrics
                .unschedulable_to_capacity
                .get_or_create(&crate::metrics::CapacityLabel { capacity })
                .observe(waited.as_secs_f64());
            if waited > SLOW_ROUND * 2 && logged < 5 {
                logged += 1;
                tracing::info!(
                    pod,
                    capacity,
                    waited_ms = waited.as_millis() as u64,
                    previous_verdict = self.last_pod_verdict.get(pod).map(String::as_str),
                    "pending pod waited long for capacity"
                );
            }
        }
    }

    /// `ScaleDownBlocked` Events on nodes whose blocking reason changed, and the
    /// `DeletionCandidateOfClusterAutoscaler` taint on unneeded nodes (as CA, when
    /// `--max-bulk-soft-taint-count` is not 0).
    fn report_nodes(&mut self, d: &Decisions) {
        let mut seen = HashMap::new();
        let mut to_send = Vec::new();
        let mut unneeded = BTreeSet::new();
        for o in &d.nodes {
            match &o.verdict {
                NodeVerdict::ScaleDownBlocked { blocker } => {
                    let reason = blocker.to_string();
                    if self.last_node_verdict.get(&o.node) != Some(&reason) {
                        to_send.push((o.node.clone(), reason.clone()));
                    }
                    seen.insert(o.node.clone(), reason);
                }
                NodeVerdict::Unneeded { .. } => {
                    unneeded.insert(o.node.clone());
                }
            }
        }
        self.last_node_verdict = seen;
        if !self.flags.dry_run {
            let current: BTreeSet<String> = self
                .caches
                .nodes
                .state()
                .iter()
                .filter(|n| crate::drain::has_taint(n, DELETION_CANDIDATE_TAINT))
                .map(|n| n.name_any())
                .collect();
            // Nodes being removed keep whatever they have.
            let active = self.drainer.active();
            let unneeded = unneeded.difference(&active).cloned().collect();
            let current = current.difference(&active).cloned().collect();
            let budget = self.engine.config().scale_down.max_bulk_soft_taint_count;
            self.drainer.mark_candidates(unneeded, current, budget);
        }
        if to_send.is_empty() {
            return;
        }
        let nodes = self.caches.nodes.clone();
        // A fresh recorder: kube's Recorder folds Events with the same reason on the same
        // object into one series and keeps the first note, but a new reason must show.
        let recorder = Recorder::new(
            self.client.clone(),
            Reporter {
                controller: "cluster-autoscaler".into(),
                instance: std::env::var("POD_NAME").ok(),
            },
        );
        let prefix = if self.flags.dry_run { "(dry-run) " } else { "" };
        tokio::spawn(async move {
            for (node, reason) in to_send {
                let uid = nodes
                    .get(&ObjectRef::new(&node))
                    .and_then(|n| n.metadata.uid.clone());
                let note = format!("{prefix}node cannot be removed: {reason}");
                crate::drain::publish_node_event(
                    &recorder,
                    &node,
                    uid,
                    EventType::Normal,
                    "ScaleDownBlocked",
                    &note,
                )
                .await;
            }
        });
    }

    async fn scale_placeholder(&self, replicas: u32) -> Result<()> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &self.flags.namespace);
        let patch = serde_json::json!({"spec": {"replicas": replicas}});
        api.patch_scale(
            &self.flags.overprovisioning_name,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .with_context(|| {
            format!(
                "scaling Deployment {} to {replicas}",
                self.flags.overprovisioning_name
            )
        })?;
        Ok(())
    }

    /// Emits `TriggeredScaleUp` / `NotTriggerScaleUp` on pods whose verdict changed.
    fn report_pods(&mut self, d: &Decisions) {
        let recorder = self
            .recorder
            .get_or_insert_with(|| {
                Recorder::new(
                    self.client.clone(),
                    Reporter {
                        controller: "cluster-autoscaler".into(),
                        instance: std::env::var("POD_NAME").ok(),
                    },
                )
            })
            .clone();
        let prefix = if self.flags.dry_run { "(dry-run) " } else { "" };
        let mut seen = HashMap::with_capacity(d.pods.len());
        let mut to_send = Vec::new();
        for o in &d.pods {
            let (reason, note) = match &o.verdict {
                PodVerdict::TriggeredScaleUp { group } => (
                    "TriggeredScaleUp",
                    format!("{prefix}pod triggered scale-up: [{{{group}}}]"),
                ),
                PodVerdict::NotTriggerScaleUp { reason } => (
                    "NotTriggerScaleUp",
                    format!("{prefix}pod didn't trigger scale-up: {reason}"),
                ),
                // No Event: the scheduler places it, a launch is under way, or it is expendable.
                PodVerdict::FitsExistingNode { .. }
                | PodVerdict::WaitsForUpcomingNode { .. }
                | PodVerdict::Expendable { .. } => continue,
            };
            let key = format!("{reason}/{note}");
            if self.last_pod_verdict.get(&o.pod) != Some(&key) {
                to_send.push((o.pod.clone(), reason, note));
            }
            seen.insert(o.pod.clone(), key);
        }
        self.last_pod_verdict = seen;
        if to_send.is_empty() {
            return;
        }
        let pods = self.caches.pods.clone();
        tokio::spawn(async move {
            for (key, reason, note) in to_send {
                let Some((ns, name)) = key.split_once('/') else {
                    continue;
                };
                let Some(uid) = pods.uid(ns, name) else {
                    continue; // deleted meanwhile
                };
                let reference = ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    namespace: Some(ns.into()),
                    name: Some(name.into()),
                    uid: Some(uid),
                    ..ObjectReference::default()
                };
                let ev = KubeEvent {
                    type_: EventType::Normal,
                    reason: reason.into(),
                    note: Some(note.chars().take(1024).collect()),
                    action: "ScaleUp".into(),
                    secondary: None,
                };
                if let Err(e) = recorder.publish(&ev, &reference).await {
                    tracing::warn!(pod = %key, error = %e, "publishing an Event failed");
                }
            }
        });
    }

    /// Hands this round's status to the writer.
    fn send_status(&mut self, snap: &ClusterSnapshot, d: &Decisions, t: Timestamp) {
        let prices = self.provider.on_demand_prices();
        let update = StatusUpdate {
            text: status::render_with_prices(snap, d, t, self.flags.dry_run, &prices),
            updated: status::rfc3339(t),
        };
        let (client, flags) = (&self.client, &self.flags);
        self.status
            .get_or_insert_with(|| {
                start_status_writer(
                    client.clone(),
                    flags.namespace.clone(),
                    flags.status_config_map_name.clone(),
                )
            })
            .send_replace(Some(update));
    }
}

/// The provider error that failed a round, if one did.
fn provider_error(e: &anyhow::Error) -> Option<&crate::provider::ProviderError> {
    e.chain()
        .find_map(|c| c.downcast_ref::<crate::provider::ProviderError>())
}

/// The `reason` label of a failed round: the side that failed.
fn failure_reason(e: &anyhow::Error) -> &'static str {
    for cause in e.chain() {
        if cause
            .downcast_ref::<crate::provider::ProviderError>()
            .is_some()
        {
            return "cloud_provider";
        }
        if cause
            .downcast_ref::<autoscaler_core::SnapshotError>()
            .is_some()
        {
            return "snapshot";
        }
        if cause.downcast_ref::<kube::Error>().is_some() {
            return "kubernetes_api";
        }
    }
    "other"
}

#[cfg(test)]
mod failure_reason_tests {
    use super::*;

    #[test]
    fn a_failed_round_is_labelled_by_the_side_that_failed() {
        let provider = anyhow::Error::new(crate::provider::ProviderError::UnknownGroup("g".into()))
            .context("listing node groups");
        assert_eq!(failure_reason(&provider), "cloud_provider");
        let snapshot =
            anyhow::Error::new(autoscaler_core::SnapshotError::DuplicateNode("n".into()));
        assert_eq!(failure_reason(&snapshot), "snapshot");
        assert_eq!(failure_reason(&anyhow::anyhow!("something else")), "other");
    }
}

#[cfg(test)]
mod forbidden_tests {
    use super::*;

    fn status(code: u16, reason: &str) -> Box<kube::core::Status> {
        Box::new(kube::core::Status {
            code,
            reason: reason.into(),
            ..kube::core::Status::default()
        })
    }

    #[test]
    fn a_watch_refused_by_rbac_is_told_apart_from_other_watch_errors() {
        let refused = watcher::Error::InitialListFailed(kube::Error::Api(status(403, "Forbidden")));
        assert!(forbidden(&refused));
        assert!(forbidden(&watcher::Error::WatchError(status(
            403,
            "Forbidden"
        ))));
        let gone = watcher::Error::WatchError(status(410, "Expired"));
        assert!(!forbidden(&gone));
        assert!(!forbidden(&watcher::Error::NoResourceVersion));
    }
}
