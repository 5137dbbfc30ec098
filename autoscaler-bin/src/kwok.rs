//! For `--cloud-provider=static --static-create-kwok-nodes`: the Node object that KWOK
//! makes Ready for an instance the static provider "launches", and back (the loop that
//! creates and deletes them is the static provider's, [`crate::static_provider`]). Test
//! and demo plumbing, never used with AWS.

use crate::provider::Instance;
use autoscaler_core::InterruptionKind;
use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;

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
