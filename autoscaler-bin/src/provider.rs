//! Where node groups live and how they are changed: the seam between the controller and
//! a cloud. [`crate::aws_provider::AwsProvider`] implements [`NodeGroupProvider`] for ASGs; the
//! [`StaticProvider`] keeps groups in memory for tests and `--cloud-provider=static`.

use autoscaler_core::{CapacityType, Decision, Event, InstanceType, NodeGroup, NodeTemplate};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use thiserror::Error;

/// A provider call that failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProviderError {
    /// The group is not known to the provider.
    #[error("node group {0:?} is not known to the provider")]
    UnknownGroup(String),
    /// The instance is not in any known group.
    #[error("instance {0:?} is not in any known node group")]
    UnknownInstance(String),
    /// The requested size is outside `min..=max`.
    #[error("node group {group:?}: desired capacity {desired} is outside {min}..={max}")]
    OutOfRange {
        /// Group.
        group: String,
        /// Requested size.
        desired: u32,
        /// Min.
        min: u32,
        /// Max.
        max: u32,
    },
    /// The cloud refused or failed the call.
    #[error("cloud call failed: {0}")]
    Cloud(String),
}

/// An instance a provider launched for a group (so nodes can be matched to groups): the
/// AWS adapter's, which every provider uses.
pub use autoscaler_aws::Instance;

/// Node groups in a cloud. Implementations are cheap to share (`Arc` inside) and safe to
/// call from several tasks.
#[allow(async_fn_in_trait)]
pub trait NodeGroupProvider: Send + Sync + 'static {
    /// The groups as the core models them, with current sizes.
    fn groups(
        &self,
    ) -> impl std::future::Future<Output = Result<Vec<NodeGroup>, ProviderError>> + Send;
    /// Instance id -> group, for matching nodes (by providerID) to groups.
    fn instances(
        &self,
    ) -> impl std::future::Future<Output = Result<Vec<Instance>, ProviderError>> + Send;
    /// Sets a group's desired capacity.
    fn set_desired_capacity(
        &self,
        group: &str,
        desired: u32,
    ) -> impl std::future::Future<Output = Result<(), ProviderError>> + Send;
    /// Carries out a `ScaleUp` or `RevertScaleUp`. The default sets the desired capacity
    /// to the decision's `new_target`; a cloud may check the decision's base first
    /// (compare-and-set against someone else's change).
    fn apply_decision(
        &self,
        decision: &Decision,
    ) -> impl std::future::Future<Output = Result<(), ProviderError>> + Send {
        async move {
            match decision {
                Decision::ScaleUp {
                    group, new_target, ..
                }
                | Decision::RevertScaleUp {
                    group, new_target, ..
                } => self.set_desired_capacity(group, *new_target).await,
                other => Err(ProviderError::Cloud(format!(
                    "not a desired-capacity change: {other:?}"
                ))),
            }
        }
    }
    /// Terminates one instance and decrements its group's desired capacity.
    fn terminate_instance(
        &self,
        instance_id: &str,
    ) -> impl std::future::Future<Output = Result<(), ProviderError>> + Send;
    /// Events since the last poll (launch failures, interruptions).
    fn poll_events(
        &self,
    ) -> impl std::future::Future<Output = Result<Vec<Event>, ProviderError>> + Send;
    /// Whether the Node object of a terminated instance goes away by itself (a cloud
    /// node-lifecycle controller deletes it). When `false` (the default), the drain
    /// deletes it right after the termination.
    fn deletes_node_objects(&self) -> bool {
        false
    }
}

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
            instance_types: vec![instance_type],
            template: NodeTemplate {
                labels,
                taints: Vec::new(),
            },
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

    async fn set_desired_capacity(&self, group: &str, desired: u32) -> Result<(), ProviderError> {
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
        Ok(())
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
                return Ok(());
            }
        }
        Err(ProviderError::UnknownInstance(instance_id.to_string()))
    }

    async fn poll_events(&self) -> Result<Vec<Event>, ProviderError> {
        Ok(std::mem::take(&mut self.lock().events))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        p.set_desired_capacity("web-spot", 3).await.unwrap();
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
            p.set_desired_capacity("web-spot", 9).await,
            Err(ProviderError::OutOfRange { .. })
        ));
        assert!(matches!(
            p.set_desired_capacity("nope", 1).await,
            Err(ProviderError::UnknownGroup(_))
        ));
        assert!(p.terminate_instance("i-missing").await.is_err());
    }

    #[tokio::test]
    async fn sync_takes_over_existing_instances() {
        let p = provider();
        p.set_desired_capacity("web-spot", 3).await.unwrap();
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
        q.set_desired_capacity("web-spot", 1).await.unwrap();
        let new = q.take_launched();
        assert!(new[0].id > launched[1].id, "{new:?}");
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
