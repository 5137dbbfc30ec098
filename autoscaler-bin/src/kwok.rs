//! For `--cloud-provider=static --static-create-kwok-nodes`: turns the instances the
//! static provider "launches" into Node objects that KWOK makes Ready, and deletes the
//! Nodes of terminated instances. Test and demo plumbing, never used with AWS.

use crate::provider::{Instance, StaticProvider};
use autoscaler_core::{Event, InterruptionKind};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};
use std::collections::HashSet;
use std::time::Duration;

/// Label naming a static node's group.
pub const GROUP_LABEL: &str = "autoscaler.static/group";
/// Annotation a test (or a demo) puts on a static node to simulate an AWS interruption
/// notice for its instance: `spot-interruption`, `rebalance-recommendation`,
/// `scheduled-change` or `state-change`.
pub const INTERRUPTION_ANNOTATION: &str = "autoscaler.static/interruption";

/// The instance a static Node stands for (`None` for any other node).
pub fn instance_of(n: &Node) -> Option<Instance> {
    let labels = n.metadata.labels.as_ref()?;
    let group = labels.get(GROUP_LABEL)?.clone();
    let pid = n.spec.as_ref()?.provider_id.as_deref()?;
    let id = crate::translate::instance_id(pid)?.to_string();
    Some(Instance::in_service(
        id,
        group,
        labels
            .get("topology.kubernetes.io/zone")
            .cloned()
            .unwrap_or_default(),
        labels
            .get("node.kubernetes.io/instance-type")
            .cloned()
            .unwrap_or_default(),
    ))
}

/// The interruption a node's [`INTERRUPTION_ANNOTATION`] asks for.
pub fn interruption_of(n: &Node) -> Option<InterruptionKind> {
    match n.annotations().get(INTERRUPTION_ANNOTATION)?.as_str() {
        "spot-interruption" => Some(InterruptionKind::SpotInterruption),
        "rebalance-recommendation" => Some(InterruptionKind::RebalanceRecommendation),
        "scheduled-change" => Some(InterruptionKind::ScheduledChange),
        "state-change" => Some(InterruptionKind::StateChange),
        _ => None,
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

/// The Node a launched instance registers as.
pub fn node_for(i: &Instance) -> Node {
    node_named(&format!("{}.static.internal", i.id), i)
}

/// A KWOK Node called `name` for instance `i`: 2 CPU / 8 GiB, labelled with its zone,
/// type and [`GROUP_LABEL`], and the AWS providerID of the instance.
pub fn node_named(name: &str, i: &Instance) -> Node {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "topology.kubernetes.io/zone": i.zone,
                "node.kubernetes.io/instance-type": i.instance_type,
                GROUP_LABEL: i.group,
            }
        },
        "spec": {"providerID": format!("aws:///{}/{}", i.zone, i.id)},
        "status": {
            "allocatable": {"cpu": "1930m", "memory": "7Gi", "pods": "110"},
            "capacity": {"cpu": "2", "memory": "8Gi", "pods": "110"}
        }
    }))
    .unwrap_or_default()
}

/// Polls the provider every 200 ms and mirrors launches/terminations as Nodes; turns
/// [`INTERRUPTION_ANNOTATION`]s on static nodes into provider events (once per node).
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
        for i in provider.take_launched() {
            let node = node_for(&i);
            match api.create(&PostParams::default(), &node).await {
                Ok(_) => {
                    tracing::info!(instance = %i.id, group = %i.group, "static: node launched")
                }
                Err(e) => {
                    tracing::warn!(instance = %i.id, error = %e, "static: creating node failed")
                }
            }
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
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_nodes_round_trip_to_instances() {
        let i = Instance::in_service(
            "i-00000000000000002",
            "static-spot",
            "us-east-1a",
            "m5.large",
        );
        let mut n = node_for(&i);
        assert_eq!(instance_of(&n), Some(i));
        assert_eq!(interruption_of(&n), None);
        n.annotations_mut()
            .insert(INTERRUPTION_ANNOTATION.into(), "scheduled-change".into());
        assert_eq!(interruption_of(&n), Some(InterruptionKind::ScheduledChange));
        n.labels_mut().remove(GROUP_LABEL);
        assert_eq!(instance_of(&n), None, "not a static node");
    }
}
