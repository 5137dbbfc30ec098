//! Scale-down evaluation at production scale.
//! `cargo bench -p autoscaler-benches --bench scale_down`

// criterion_group! generates an undocumented entry point.
#![allow(missing_docs)]

use autoscaler_benches::{scale_down_cluster, Scale};
use autoscaler_core::{Autoscaler, AutoscalerConfig, Decision, Timestamp};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use std::time::Duration;

fn scale_down(c: &mut Criterion) {
    let snap = scale_down_cluster(Scale {
        groups: 50,
        nodes: 5_000,
        running_pods: 150_000,
        pending_pods: 0,
    });
    let now = Timestamp::from_secs(1_000_000);
    // Warm engine: the light nodes have been unneeded for 11 minutes, so this round
    // evaluates every candidate and removes some.
    let mut engine = Autoscaler::new(AutoscalerConfig::default()).unwrap();
    let _ = engine.decide(&snap, now);
    let later = now + Duration::from_secs(660);
    let d = engine.clone().decide(&snap, later);
    let removals = d
        .actions
        .iter()
        .filter(|a| matches!(a, Decision::RemoveNode { .. }))
        .count();
    assert!(removals > 0, "bench cluster must have removable nodes");
    eprintln!(
        "scale_down bench: {} nodes, {} pods, {} candidates evaluated -> {removals} removal(s)",
        snap.nodes().len(),
        snap.pods().len(),
        d.nodes.len()
    );
    let mut group = c.benchmark_group("scale_down");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("evaluate_5k_nodes_150k_pods", |b| {
        b.iter_batched(
            || engine.clone(),
            |mut e| black_box(e.decide(black_box(&snap), later)),
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, scale_down);
criterion_main!(benches);
