//! Small builders for tests, benches, examples and the simulator: a cluster in a few
//! lines, with realistic defaults (EKS-like allocatable, well-known labels).

use crate::model::{
    CapacityMix, CapacityType, InstanceType, Labels, Node, NodeGroup, NodeTemplate, Pod,
    HOSTNAME_LABEL, INSTANCE_TYPE_LABEL, ZONE_LABEL,
};
use crate::resources::Resources;
use crate::time::Timestamp;

/// A few common EC2 types with on-demand prices (us-east-1, USD/h) for fixtures.
pub fn instance_type(name: &str) -> InstanceType {
    let (vcpus, mem_gib, price) = match name {
        "m5.large" => (2, 8, 0.096),
        "m5.xlarge" => (4, 16, 0.192),
        "m5.2xlarge" => (8, 32, 0.384),
        "m5.4xlarge" => (16, 64, 0.768),
        "m5.16xlarge" => (64, 256, 3.072),
        "m5a.xlarge" => (4, 16, 0.172),
        "m4.xlarge" => (4, 16, 0.20),
        "c5.xlarge" => (4, 8, 0.17),
        "c5.2xlarge" => (8, 16, 0.34),
        "r5.xlarge" => (4, 32, 0.252),
        "g4dn.xlarge" => (4, 16, 0.526),
        _ => (4, 16, 0.2),
    };
    let t = InstanceType::new(name, vcpus, mem_gib * 1024, price);
    if name.starts_with("g4dn") {
        t.with_extended("nvidia.com/gpu", 1)
    } else {
        t
    }
}

/// A group with the given market, zones and instance types; min 0, max 100, target 0.
/// Spot groups are priced at 35% of on-demand.
pub fn group(name: &str, capacity_type: CapacityType, zones: &[&str], types: &[&str]) -> NodeGroup {
    NodeGroup {
        name: name.into(),
        min_size: 0,
        max_size: 100,
        target_size: 0,
        current_instances: None,
        zones: zones.iter().map(|z| z.to_string()).collect(),
        capacity_type,
        mix: None,
        instance_types: types
            .iter()
            .map(|t| {
                let mut it = instance_type(t);
                if capacity_type == CapacityType::Spot {
                    it.price_per_hour *= 0.35;
                }
                it
            })
            .collect(),
        template: NodeTemplate::default(),
        options: Default::default(),
    }
}

/// A mixed-instances group: the first `on_demand_base` instances on-demand, then
/// `on_demand_percentage_above_base` % of the rest; types carry both prices (spot at 35%).
pub fn mixed_group(
    name: &str,
    zones: &[&str],
    types: &[&str],
    on_demand_base: u32,
    on_demand_percentage_above_base: u8,
) -> NodeGroup {
    let mut g = group(name, CapacityType::Spot, zones, types);
    for t in &mut g.instance_types {
        t.on_demand_price_per_hour = Some(instance_type(&t.name).price_per_hour);
    }
    g.mix = Some(CapacityMix {
        on_demand_base,
        on_demand_percentage_above_base,
    });
    g
}

/// A ready node of `group` in `zone` of type `itype`, created at `created_at`.
pub fn node(name: &str, group: &NodeGroup, zone: &str, itype: &str, created_at: Timestamp) -> Node {
    let t = group
        .instance_types
        .iter()
        .find(|t| t.name == itype)
        .cloned()
        .unwrap_or_else(|| instance_type(itype));
    let mut labels: Labels = group.template.labels.clone();
    labels.insert(ZONE_LABEL.into(), zone.into());
    labels.insert(INSTANCE_TYPE_LABEL.into(), itype.into());
    labels.insert(HOSTNAME_LABEL.into(), name.into());
    Node {
        name: name.into(),
        provider_id: Some(format!("aws:///{zone}/i-{:017x}", fxhash(name))),
        group: Some(group.name.clone()),
        capacity_type: group.capacity_type,
        capacity: t.capacity(),
        allocatable: t.allocatable.clone(),
        labels,
        annotations: Labels::new(),
        taints: group.template.taints.clone(),
        created_at,
        ready: true,
        ready_changed_at: None,
        unschedulable: false,
    }
}

/// A pod of a ReplicaSet named `owner`, with `app=<owner>` label and the given requests;
/// `node: None` makes it pending.
pub fn pod(name: &str, owner: &str, cpu_millis: u64, memory_mib: u64, node: Option<&str>) -> Pod {
    let mut p = Pod::pending(name, Resources::new(cpu_millis, memory_mib << 20));
    p.labels.insert("app".into(), owner.into());
    p.owner = Some(crate::model::OwnerRef {
        kind: "ReplicaSet".into(),
        name: owner.into(),
    });
    p.node_name = node.map(str::to_string);
    p
}

fn fxhash(s: &str) -> u64 {
    // FNV-1a: stable across runs and platforms, enough for fake instance ids.
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
