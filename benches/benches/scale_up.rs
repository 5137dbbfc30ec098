//! Scale-up decision time at production scale.
//! `cargo bench -p autoscaler-benches --bench scale_up`

// criterion_group! generates an undocumented entry point.
#![allow(missing_docs)]

use autoscaler_benches::{cluster, PRODUCTION};
use autoscaler_core::{Autoscaler, AutoscalerConfig, Decision, Timestamp};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use std::time::Duration;

fn scale_up(c: &mut Criterion) {
    let snap = cluster(PRODUCTION);
    let engine = Autoscaler::new(AutoscalerConfig::default()).unwrap();
    let now = Timestamp::from_secs(1_000_000);
    // Sanity: the round really plans scale-ups for the pending pods.
    let d = engine.clone().decide(&snap, now);
    let ups = d
        .actions
        .iter()
        .filter(|a| matches!(a, Decision::ScaleUp { .. }))
        .count();
    assert!(ups > 0, "bench cluster must need a scale-up");
    eprintln!(
        "scale_up bench: {} groups, {} nodes, {} pods ({} pending) -> {} scale-up decision(s)",
        snap.groups().len(),
        snap.nodes().len(),
        snap.pods().len(),
        d.status.pending_pods,
        ups
    );
    let mut group = c.benchmark_group("scale_up");
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("decide_1k_pending_5k_nodes_150k_pods_50_groups", |b| {
        b.iter_batched(
            || engine.clone(),
            |mut e| black_box(e.decide(black_box(&snap), now)),
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, scale_up);
criterion_main!(benches);
