//! Groups kept in memory ([`StaticProvider`]), for tests and `--cloud-provider=static`;
//! with `--static-create-kwok-nodes` its instances become KWOK Nodes ([`launch_loop`]).

use crate::kwok::{instance_of, interruption_of, node_for, GROUP_LABEL};
use crate::provider::{Instance, NodeGroupProvider, ProviderContext, ProviderError};
use autoscaler_core::{CapacityType, Decision, Event, InstanceType, NodeGroup, NodeTemplate};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One group of the static provider.
#[derive(Clone, Debug)]
struct StaticGroup {
    group: NodeGroup,
    instances: Vec<Instance>,
}

#[derive(Debug, Default)]
struct StaticState {
    groups: BTreeMap<String, StaticGroup>,
    events: Vec<Event>,
    next_id: u64,
    launched: Vec<Instance>,
    terminated: Vec<Instance>,
}

/// Groups kept in memory: setting the desired capacity "launches" (or drops) instances at
/// once. Used by tests and `--cloud-provider=static`; a clone shares the same state.
#[derive(Clone, Debug, Default)]
pub struct StaticProvider {
    state: Arc<Mutex<StaticState>>,
    /// Whether launched instances become KWOK Nodes (`--static-create-kwok-nodes`).
    kwok_nodes: bool,
    /// Wakes [`launch_loop`] when instances are launched or terminated, so a Node is
    /// created as soon as its instance exists rather than at the next poll.
    changed: Arc<tokio::sync::Notify>,
}

impl StaticProvider {
    /// A provider with these groups (their `target_size` instances exist already).
    pub fn new(groups: Vec<NodeGroup>) -> Self {
        let p = StaticProvider::default();
        {
            let mut s = p.lock();
            for g in groups {
                let target = g.target_size;
                s.groups.insert(
                    g.name.clone(),
                    StaticGroup {
                        group: NodeGroup {
                            target_size: 0,
                            ..g.clone()
                        },
                        instances: Vec::new(),
                    },
                );
                resize(&mut s, &g.name, target);
            }
            s.launched.clear();
        }
        p
    }

    /// Turns launched instances into KWOK Nodes and back ([`launch_loop`], started by
    /// [`NodeGroupProvider::start`]), and re-syncs the groups from those Nodes on becoming
    /// leader ([`sync_provider`]).
    pub fn with_kwok_nodes(mut self, on: bool) -> Self {
        self.kwok_nodes = on;
        self
    }

    /// A group as `--nodes=min:max:name` describes it: spot when the name contains
    /// "spot", else on-demand; one instance type; the given zones.
    pub fn group_from_flag(
        name: &str,
        min: u32,
        max: u32,
        instance_type: InstanceType,
        zones: Vec<String>,
    ) -> NodeGroup {
        let capacity_type = if name.contains("spot") {
            CapacityType::Spot
        } else {
            CapacityType::OnDemand
        };
        let mut labels = BTreeMap::new();
        labels.insert(
            autoscaler_core::model::CAPACITY_TYPE_LABEL.to_string(),
            capacity_type.to_string(),
        );
        labels.insert(
            autoscaler_core::model::INSTANCE_TYPE_LABEL.to_string(),
            instance_type.name.clone(),
        );
        if zones.len() == 1 {
            labels.insert(
                autoscaler_core::model::ZONE_LABEL.to_string(),
                zones[0].clone(),
            );
        }
        NodeGroup {
            name: name.to_string(),
            min_size: min,
            max_size: max,
            target_size: min,
            current_instances: None,
            zones,
            capacity_type,
            mix: None,
            instance_types: vec![instance_type],
            template: NodeTemplate {
                labels: labels.into(),
                taints: Vec::new(),
            },
            options: Default::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StaticState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues an event for the next [`NodeGroupProvider::poll_events`] (tests: ICE, interruptions).
    pub fn push_event(&self, event: Event) {
        self.lock().events.push(event);
    }

    /// Instances launched since the last call (the KWOK launcher turns them into Nodes).
    pub fn take_launched(&self) -> Vec<Instance> {
        std::mem::take(&mut self.lock().launched)
    }

    /// Gives back launches whose Node could not be created (the API server is down):
    /// they are taken again by the next [`StaticProvider::take_launched`], as a real
    /// instance keeps booting and registers once the API server is back.
    pub fn retry_launched(&self, instances: Vec<Instance>) {
        let mut s = self.lock();
        let newer = std::mem::replace(&mut s.launched, instances);
        s.launched.extend(newer);
    }

    /// Instances terminated since the last call.
    pub fn take_terminated(&self) -> Vec<Instance> {
        std::mem::take(&mut self.lock().terminated)
    }

    /// Replaces each known group's instances with `instances` (the Nodes that exist,
    /// e.g. the KWOK nodes a previous process launched) plus the launches not yet turned
    /// into Nodes, and sets the desired capacities to match. Called on becoming leader, so
    /// that a restarted or standby process takes over the "cloud" the Nodes describe.
    /// Instances of unknown groups are ignored.
    pub fn sync_instances(&self, instances: Vec<Instance>) {
        let mut s = self.lock();
        let StaticState {
            groups,
            next_id,
            launched,
            ..
        } = &mut *s;
        for i in &instances {
            if let Some(n) =
                i.id.strip_prefix("i-")
                    .and_then(|h| u64::from_str_radix(h, 16).ok())
            {
                *next_id = (*next_id).max(n);
            }
        }
        for (name, g) in groups.iter_mut() {
            let mut mine: Vec<Instance> = instances
                .iter()
                .filter(|i| &i.group == name)
                .cloned()
                .collect();
            for l in launched.iter().filter(|l| &l.group == name) {
                if !mine.iter().any(|i| i.id == l.id) {
                    mine.push(l.clone());
                }
            }
            let n = mine.len() as u32;
            g.instances = mine;
            g.group.target_size = n;
            g.group.current_instances = Some(n);
        }
    }

    /// Sets a group's desired capacity: "launches" or drops instances at once.
    pub fn set_desired_capacity(&self, group: &str, desired: u32) -> Result<(), ProviderError> {
        let mut s = self.lock();
        let g = s
            .groups
            .get(group)
            .ok_or_else(|| ProviderError::UnknownGroup(group.to_string()))?;
        let (min, max) = (g.group.min_size, g.group.max_size);
        if desired < min || desired > max {
            return Err(ProviderError::OutOfRange {
                group: group.to_string(),
                desired,
                min,
                max,
            });
        }
        resize(&mut s, group, desired);
        drop(s);
        self.changed.notify_one();
        Ok(())
    }

    /// A group's desired capacity.
    pub fn desired(&self, group: &str) -> Option<u32> {
        self.lock().groups.get(group).map(|g| g.group.target_size)
    }
}

fn resize(s: &mut StaticState, name: &str, desired: u32) {
    let StaticState {
        groups,
        next_id,
        launched,
        terminated,
        ..
    } = s;
    let Some(g) = groups.get_mut(name) else {
        return;
    };
    while (g.instances.len() as u32) < desired {
        *next_id += 1;
        let zones = &g.group.zones;
        let zone = zones[g.instances.len() % zones.len().max(1)].clone();
        let inst = Instance::in_service(
            format!("i-{:017x}", *next_id),
            name,
            zone,
            g.group.instance_types[0].name.clone(),
        );
        launched.push(inst.clone());
        g.instances.push(inst);
    }
    while (g.instances.len() as u32) > desired {
        if let Some(i) = g.instances.pop() {
            terminated.push(i);
        }
    }
    g.group.target_size = desired;
    g.group.current_instances = Some(desired);
}

impl NodeGroupProvider for StaticProvider {
    async fn groups(&self) -> Result<Vec<NodeGroup>, ProviderError> {
        Ok(self
            .lock()
            .groups
            .values()
            .map(|g| g.group.clone())
            .collect())
    }

    async fn instances(&self) -> Result<Vec<Instance>, ProviderError> {
        Ok(self
            .lock()
            .groups
            .values()
            .flat_map(|g| g.instances.iter().cloned())
            .collect())
    }

    async fn apply(&self, decision: &Decision) -> Result<(), ProviderError> {
        match decision {
            Decision::ScaleUp {
                group, new_target, ..
            }
            | Decision::RevertScaleUp {
                group, new_target, ..
            } => self.set_desired_capacity(group, *new_target),
            Decision::RemoveNode { .. } | Decision::SetOverprovisioning { .. } => {
                Err(unsupported(decision))
            }
        }
    }

    async fn terminate_instance(&self, instance_id: &str) -> Result<(), ProviderError> {
        let mut s = self.lock();
        let StaticState {
            groups, terminated, ..
        } = &mut *s;
        for g in groups.values_mut() {
            if let Some(pos) = g.instances.iter().position(|i| i.id == instance_id) {
                terminated.push(g.instances.remove(pos));
                g.group.target_size = g.group.target_size.saturating_sub(1);
                g.group.current_instances = Some(g.instances.len() as u32);
                drop(s);
                self.changed.notify_one();
                return Ok(());
            }
        }
        Err(ProviderError::UnknownInstance(instance_id.to_string()))
    }

    async fn poll_events(&self) -> Result<Vec<Event>, ProviderError> {
        Ok(std::mem::take(&mut self.lock().events))
    }

    fn start(&self, context: &ProviderContext) {
        if self.kwok_nodes {
            tokio::spawn(launch_loop(
                context.client.clone(),
                self.clone(),
                context.nodes.clone(),
            ));
        }
    }

    async fn became_leader(&self, client: &Client) {
        if !self.kwok_nodes {
            return;
        }
        match sync_provider(client, self).await {
            Ok(n) => tracing::info!(instances = n, "static: groups synced from the Nodes"),
            Err(e) => {
                tracing::warn!(error = %e, "static: syncing groups from the Nodes failed")
            }
        }
    }
}

fn unsupported(decision: &Decision) -> ProviderError {
    ProviderError::Unsupported {
        provider: "static provider",
        decision: format!("{decision:?}"),
    }
}

/// Makes the static provider's groups match the static Nodes that exist (see
/// [`StaticProvider::sync_instances`]).
pub async fn sync_provider(client: &Client, provider: &StaticProvider) -> kube::Result<usize> {
    let api: Api<Node> = Api::all(client.clone());
    let lp = kube::api::ListParams::default().labels(GROUP_LABEL);
    let instances: Vec<Instance> = api
        .list(&lp)
        .await?
        .items
        .iter()
        .filter(|n| n.metadata.deletion_timestamp.is_none())
        .filter_map(instance_of)
        .collect();
    let n = instances.len();
    provider.sync_instances(instances);
    Ok(n)
}

/// How many Nodes [`launch_loop`] creates at once: instances of one scale-up boot in
/// parallel on AWS, so their Nodes should not register one API call after another.
const NODE_CREATIONS_IN_FLIGHT: usize = 32;

/// Mirrors launches/terminations as Nodes as soon as the provider has them (and at least
/// every 200 ms); turns [`INTERRUPTION_ANNOTATION`]s on static nodes into provider events
/// (once per node).
pub async fn launch_loop(client: Client, provider: StaticProvider, nodes: Store<Node>) {
    let api: Api<Node> = Api::all(client);
    let mut interrupted: HashSet<String> = HashSet::new();
    loop {
        for n in nodes.state() {
            let (Some(kind), Some(i)) = (interruption_of(&n), instance_of(&n)) else {
                continue;
            };
            if interrupted.insert(i.id.clone()) {
                tracing::info!(node = %n.name_any(), ?kind, "static: interruption notice");
                provider.push_event(Event::InstanceInterruption {
                    instance_id: i.id,
                    kind,
                    zone: None,
                    instance_type: None,
                    deadline: None,
                });
            }
        }
        let retry: Vec<Instance> = futures::stream::iter(provider.take_launched())
            .map(|i| {
                let api = api.clone();
                async move {
                    match api.create(&PostParams::default(), &node_for(&i)).await {
                        Ok(_) => {
                            tracing::info!(instance = %i.id, group = %i.group, "static: node launched");
                            None
                        }
                        Err(kube::Error::Api(s)) if s.code == 409 => None,
                        Err(e) => {
                            tracing::warn!(instance = %i.id, error = %e, "static: creating node failed; retrying");
                            Some(i)
                        }
                    }
                }
            })
            .buffer_unordered(NODE_CREATIONS_IN_FLIGHT)
            .filter_map(std::future::ready)
            .collect()
            .await;
        if !retry.is_empty() {
            provider.retry_launched(retry);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        for i in provider.take_terminated() {
            let name = format!("{}.static.internal", i.id);
            // The drain usually deleted it already.
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => tracing::warn!(node = %name, error = %e, "static: deleting node failed"),
            }
        }
        tokio::select! {
            _ = provider.changed.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use autoscaler_core::ScaleUpCause;

    fn provider() -> StaticProvider {
        StaticProvider::new(vec![StaticProvider::group_from_flag(
            "web-spot",
            1,
            5,
            InstanceType::new("m5.large", 2, 8192, 0.04),
            vec!["us-east-1a".into(), "us-east-1b".into()],
        )])
    }

    #[tokio::test]
    async fn static_groups_scale_and_terminate() {
        let p = provider();
        let g = &p.groups().await.unwrap()[0];
        assert_eq!((g.target_size, g.capacity_type), (1, CapacityType::Spot));
        assert!(
            p.take_launched().is_empty(),
            "initial instances are not 'launched'"
        );
        p.set_desired_capacity("web-spot", 3).unwrap();
        let launched = p.take_launched();
        assert_eq!(launched.len(), 2);
        assert_eq!(p.instances().await.unwrap().len(), 3);
        let zones: Vec<_> = p
            .instances()
            .await
            .unwrap()
            .iter()
            .map(|i| i.zone.clone())
            .collect();
        assert_eq!(zones, ["us-east-1a", "us-east-1b", "us-east-1a"]);
        p.terminate_instance(&launched[0].id).await.unwrap();
        assert_eq!(p.desired("web-spot"), Some(2));
        assert_eq!(p.take_terminated().len(), 1);
        assert!(matches!(
            p.set_desired_capacity("web-spot", 9),
            Err(ProviderError::OutOfRange { .. })
        ));
        assert!(matches!(
            p.set_desired_capacity("nope", 1),
            Err(ProviderError::UnknownGroup(_))
        ));
        assert!(p.terminate_instance("i-missing").await.is_err());
    }

    #[tokio::test]
    async fn launches_and_terminations_wake_the_node_loop_at_once() {
        let p = provider();
        let woken = |p: &StaticProvider| {
            let changed = p.changed.clone();
            async move {
                tokio::time::timeout(Duration::from_millis(50), changed.notified())
                    .await
                    .is_ok()
            }
        };
        assert!(!woken(&p).await, "nothing happened yet");
        p.set_desired_capacity("web-spot", 2).unwrap();
        assert!(woken(&p).await, "a launch wakes the loop");
        let id = p.take_launched()[0].id.clone();
        p.terminate_instance(&id).await.unwrap();
        assert!(woken(&p).await, "a termination wakes the loop");
    }

    #[tokio::test]
    async fn sync_takes_over_existing_instances() {
        let p = provider();
        p.set_desired_capacity("web-spot", 3).unwrap();
        let launched = p.take_launched();
        // A new process sees the Nodes of the old one (one of them already terminated).
        let q = provider();
        q.take_launched();
        let mut adopted = vec![launched[0].clone()];
        adopted.push(Instance {
            group: "other".into(),
            ..launched[1].clone()
        });
        q.sync_instances(adopted);
        assert_eq!(q.desired("web-spot"), Some(1));
        assert_eq!(q.instances().await.unwrap(), vec![launched[0].clone()]);
        q.terminate_instance(&launched[0].id).await.unwrap();
        assert_eq!(q.desired("web-spot"), Some(0));
        // New ids never collide with adopted ones.
        q.set_desired_capacity("web-spot", 1).unwrap();
        let new = q.take_launched();
        assert!(new[0].id > launched[1].id, "{new:?}");
    }

    #[tokio::test]
    async fn applies_capacity_decisions_only() {
        let p = provider();
        p.apply(&Decision::ScaleUp {
            group: "web-spot".into(),
            delta: 2,
            new_target: 3,
            cause: ScaleUpCause::PendingPods,
            reason: "r".into(),
        })
        .await
        .unwrap();
        assert_eq!(p.desired("web-spot"), Some(3));
        p.apply(&Decision::RevertScaleUp {
            group: "web-spot".into(),
            cancelled: 1,
            new_target: 2,
            reason: "r".into(),
        })
        .await
        .unwrap();
        assert_eq!(p.desired("web-spot"), Some(2));
        let e = p
            .apply(&Decision::SetOverprovisioning {
                replicas: 1,
                reason: "r".into(),
            })
            .await
            .unwrap_err();
        assert!(matches!(e, ProviderError::Unsupported { .. }), "{e}");
    }

    #[tokio::test]
    async fn events_are_polled_once() {
        let p = provider();
        p.push_event(Event::NodeRemovalFailed {
            node: "n".into(),
            reason: "x".into(),
        });
        assert_eq!(p.poll_events().await.unwrap().len(), 1);
        assert!(p.poll_events().await.unwrap().is_empty());
    }
}
