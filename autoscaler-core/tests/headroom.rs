//! Headroom from demand growth, measured boot time and scheduled windows, black-box
//! through `Autoscaler::decide`.

use autoscaler_core::fixtures::{group, node, pod};
use autoscaler_core::*;

mod common;
use common::snapshot;
use std::time::Duration;

const A: &str = "us-east-1a";
const T0: Timestamp = Timestamp::from_secs(1_000_000);

fn at(secs: u64) -> Timestamp {
    T0 + Duration::from_secs(secs)
}

fn engine(headroom: HeadroomConfig) -> Autoscaler {
    Autoscaler::new(AutoscalerConfig {
        headroom,
        ..AutoscalerConfig::default()
    })
    .unwrap()
}

fn on() -> HeadroomConfig {
    HeadroomConfig {
        enabled: true,
        max_fraction: 1.0,
        ..HeadroomConfig::default()
    }
}

/// Ten 4-CPU nodes (m5.xlarge) and `pods` one-CPU pods, all bound.
fn cluster(pods: usize, ready_nodes: usize) -> ClusterSnapshot {
    let mut g = group("spot", CapacityType::Spot, &[A], &["m5.xlarge"]);
    let nodes: Vec<Node> = (0..ready_nodes)
        .map(|i| node(&format!("n{i}"), &g, A, "m5.xlarge", T0))
        .collect();
    g.target_size = nodes.len() as u32;
    g.max_size = 100;
    let pods = (0..pods)
        .map(|i| {
            let n = format!("n{}", i % ready_nodes.max(1));
            pod(&format!("p{i}"), "web", 1000, 512, Some(&n))
        })
        .collect();
    snapshot(vec![g], nodes, pods, vec![])
}

fn placeholders(d: &Decisions) -> Option<u32> {
    d.actions.iter().find_map(|a| match a {
        Decision::SetOverprovisioning { replicas, .. } => Some(*replicas),
        _ => None,
    })
}

#[test]
fn growth_times_boot_time_sizes_the_room_and_rest_releases_it() {
    let mut e = engine(on());
    // At rest: no room.
    assert_eq!(placeholders(&e.decide(&cluster(10, 10), at(0))), Some(0));
    assert_eq!(placeholders(&e.decide(&cluster(10, 10), at(60))), None);
    // +12 CPU in 120 s = 6 CPU/min; with the assumed 120 s boot, 12 CPU of room.
    let d = e.decide(&cluster(22, 10), at(120));
    assert_eq!(placeholders(&d), Some(12), "{:?}", d.actions);
    // Held while growth is recent, then released.
    assert_eq!(placeholders(&e.decide(&cluster(22, 10), at(180))), None);
    assert_eq!(placeholders(&e.decide(&cluster(22, 10), at(400))), Some(0));
}

#[test]
fn disabled_headroom_decides_nothing() {
    let mut e = engine(HeadroomConfig::default());
    for (i, pods) in [10, 22, 40].into_iter().enumerate() {
        let d = e.decide(&cluster(pods, 10), at(60 * i as u64));
        assert_eq!(placeholders(&d), None);
    }
}

#[test]
fn placeholder_pods_are_not_demand() {
    let mut e = engine(on());
    let _ = e.decide(&cluster(10, 10), at(0));
    // Twenty placeholders appear: their own growth must not size more of them.
    let mut snap = cluster(10, 10).into_parts();
    for i in 0..20 {
        let mut p = pod(&format!("ph{i}"), "overprovisioning", 1000, 512, Some("n0"));
        p.spec.priority = -1;
        snap.pods.push(std::sync::Arc::new(p));
    }
    let d = e.decide(&ClusterSnapshot::new(snap).unwrap(), at(120));
    assert_eq!(placeholders(&d), None, "still 0: {:?}", d.actions);
}

#[test]
fn the_room_is_capped_at_a_share_of_the_cluster() {
    let mut e = engine(HeadroomConfig {
        max_fraction: 0.1,
        ..on()
    });
    let _ = e.decide(&cluster(10, 10), at(0));
    // 10 nodes x 4 CPU = 40 CPU: at most 4 CPU of room however fast demand grows.
    let d = e.decide(&cluster(40, 10), at(60));
    assert_eq!(placeholders(&d), Some(4));
}

/// 8 CPU of room for 600 s from `at(1000)`, on top of `config`.
fn with_window(config: HeadroomConfig) -> Autoscaler {
    let start = T0.as_millis() / 1000 + 1000;
    engine(HeadroomConfig {
        windows: vec![HeadroomWindow {
            start_s: start,
            end_s: start + 600,
            cpu_millis: 8000,
        }],
        ..config
    })
}

#[test]
fn a_scheduled_window_is_ready_one_boot_time_before_it_starts() {
    let mut e = with_window(on());
    assert_eq!(placeholders(&e.decide(&cluster(10, 10), at(0))), Some(0));
    // 120 s (the assumed boot) before the start: the room is asked for.
    assert_eq!(placeholders(&e.decide(&cluster(10, 10), at(870))), None);
    assert_eq!(placeholders(&e.decide(&cluster(10, 10), at(880))), Some(8));
    assert_eq!(placeholders(&e.decide(&cluster(10, 10), at(1599))), None);
    assert_eq!(placeholders(&e.decide(&cluster(10, 10), at(1600))), Some(0));
}

#[test]
fn real_pods_arriving_in_a_window_use_its_room_up_instead_of_renewing_it() {
    // No growth term: the window alone.
    let mut e = with_window(HeadroomConfig {
        growth_window: Duration::ZERO,
        ..on()
    });
    let _ = e.decide(&cluster(10, 10), at(0));
    assert_eq!(placeholders(&e.decide(&cluster(10, 10), at(880))), Some(8));
    // The event: 6 CPU of real pods arrive; 2 CPU of room are left, not 8 again.
    assert_eq!(placeholders(&e.decide(&cluster(16, 10), at(1010))), Some(2));
    // More than the room: none left (ordinary scale-up serves the rest).
    assert_eq!(placeholders(&e.decide(&cluster(20, 10), at(1100))), Some(0));
    // Demand back where it was within the window: the room is whole again.
    assert_eq!(placeholders(&e.decide(&cluster(10, 10), at(1200))), Some(8));
    assert_eq!(placeholders(&e.decide(&cluster(10, 10), at(1600))), Some(0));
}

#[test]
fn boot_time_is_measured_from_our_scale_ups_to_ready_nodes() {
    let mut e = engine(HeadroomConfig {
        initial_boot_time: Duration::from_secs(300),
        windows: vec![HeadroomWindow {
            // Far ahead: asked for once the lead (boot time) reaches it.
            start_s: T0.as_millis() / 1000 + 10_000,
            end_s: T0.as_millis() / 1000 + 20_000,
            cpu_millis: 1000,
        }],
        ..on()
    });
    let _ = e.decide(&cluster(8, 2), at(0));
    // Pending pods: a scale-up of the group.
    let mut parts = cluster(8, 2).into_parts();
    for i in 0..8 {
        parts.pods.push(std::sync::Arc::new(pod(
            &format!("pending{i}"),
            "web",
            1000,
            512,
            None,
        )));
    }
    let d = e.decide(&ClusterSnapshot::new(parts).unwrap(), at(10));
    let launched: u32 = d
        .actions
        .iter()
        .filter_map(|a| match a {
            Decision::ScaleUp { delta, .. } => Some(*delta),
            _ => None,
        })
        .sum();
    assert!(launched >= 1, "{:?}", d.actions);
    // The new nodes are Ready 70 s after the decision: boot time 70 s from now on.
    let mut parts = cluster(16, 2 + launched as usize).into_parts();
    for n in parts.nodes.iter_mut().skip(2) {
        n.created_at = at(40);
    }
    parts.groups[0].target_size = 2 + launched;
    let _ = e.decide(&ClusterSnapshot::new(parts).unwrap(), at(80));
    // With the measured 70 s (not the assumed 300 s) the window is asked for 70 s ahead.
    let snap = cluster(16, 2 + launched as usize);
    // The growth's room is released long before the window.
    let _ = e.decide(&snap, at(9_000));
    assert_eq!(placeholders(&e.decide(&snap, at(9_920))), None);
    let d = e.decide(&snap, at(9_930));
    assert_eq!(placeholders(&d), Some(1), "{:?}", d.actions);
}
