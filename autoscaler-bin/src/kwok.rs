//! For `--cloud-provider=static --static-create-kwok-nodes`: turns the instances the
//! static provider "launches" into Node objects that KWOK makes Ready, and deletes the
//! Nodes of terminated instances. Test and demo plumbing, never used with AWS.

use crate::provider::{Instance, StaticProvider};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, DeleteParams, PostParams};
use kube::Client;
use std::time::Duration;

/// The Node a launched instance registers as.
pub fn node_for(i: &Instance) -> Node {
    let name = format!("{}.static.internal", i.id);
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
                "autoscaler.static/group": i.group,
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

/// Polls the provider every 200 ms and mirrors launches/terminations as Nodes.
pub async fn launch_loop(client: Client, provider: StaticProvider) {
    let api: Api<Node> = Api::all(client);
    loop {
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
            if let Err(e) = api.delete(&name, &DeleteParams::default()).await {
                tracing::warn!(node = %name, error = %e, "static: deleting node failed");
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
