//! A mixed-instances group (on-demand base + a share above it) under a spot outage:
//! AWS still launches its on-demand part, and `ours` plans with it at once.

use simulator::scenario::Scenario;
use simulator::{run_policies, PolicyKind};

/// One mixed group (base 2, 50 % above it) carrying a peak while every spot pool is out.
const MIXED_UNDER_ICE: &str = r#"
name: mixed-under-ice
description: "a mixed group (on-demand base 2, 50 % above) takes a peak while spot is out"
duration_s: 3600
trace:
  points:
    - [0, 1000]
    - [600, 1000]
    - [660, 3000]
    - [3600, 3000]
services:
  - name: web
    requests_per_pod: 50
    cpu: "1"
    memory: 2Gi
    min_replicas: 3
    max_replicas: 500
    target_utilization: 70
    share: 1.0
node_groups:
  - name: web-mixed
    zones: [eu-west-1a]
    capacity_type: spot
    mix: {on_demand_base: 2, on_demand_percentage_above_base: 50}
    instance_types:
      - {name: m5.2xlarge, vcpu: 8, memory_gib: 32, price_per_hour: 0.15, on_demand_price_per_hour: 0.384}
    min: 0
    max: 40
    initial: 4
cloud:
  seed: 7
  ice:
    - {from_s: 300, to_s: 3600, capacity_type: spot}
"#;

#[test]
fn ours_gets_the_on_demand_part_of_a_mixed_group_at_once_under_spot_ice() {
    let sc = Scenario::from_yaml(MIXED_UNDER_ICE, "mixed-under-ice.yaml").expect("parses");
    let loaded = sc.resolve(None, None).expect("resolves");
    let r = run_policies(
        &loaded,
        &[PolicyKind::Ours, PolicyKind::Ca133],
        None,
        &|_| {},
    );
    let (ours, ca) = (&r.policies["ours"], &r.policies["ca-1.33"]);
    // The spot part fails and is reported as spot; the on-demand part launches.
    assert!(
        !ours.aws_launch_failures.is_empty(),
        "the spot part must fail"
    );
    assert!(ours.on_demand_node_hours > 0.0);
    assert!(
        ours.time_to_capacity_s.steps >= 1,
        "the peak must leave pods pending: {:?}",
        ours.episodes
    );
    // Every spot slot fails and is re-planned around; the on-demand part carries the peak
    // well before the outage ends (at 3600 s).
    assert!(
        ours.time_to_capacity_s.max <= 600,
        "ours took {} s to capacity: {:?}",
        ours.time_to_capacity_s.max,
        ours.episodes
    );
    // cluster-autoscaler counts the spot nodes that never come and waits for them.
    assert!(
        ca.time_to_capacity_s.max > ours.time_to_capacity_s.max,
        "ca-1.33 {} s vs ours {} s",
        ca.time_to_capacity_s.max,
        ours.time_to_capacity_s.max
    );
}
