//! `--record-dir`'s per-round cost at 5,000 nodes / 100,000 pods (the RSS bench's scale),
//! beside the cost of building the round's snapshot, which every round pays anyway.
//! `cargo bench -p autoscaler-benches --bench recording`

// criterion_group! generates an undocumented entry point.
#![allow(missing_docs)]

use autoscaler_benches::{cluster, Scale};
use autoscaler_core::recording::{Encoder, RecordLine};
use autoscaler_core::{AutoscalerConfig, ClusterSnapshot, Pod, Timestamp};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use std::sync::Arc;
use std::time::Duration;

/// The RSS bench's cluster: 5,000 nodes, 100,000 pods of 300 workloads.
const RSS_BENCH: Scale = Scale {
    groups: 10,
    nodes: 5_000,
    running_pods: 100_000,
    pending_pods: 0,
};

/// What the controller's writer does with a round's lines before the file write.
fn encode(lines: &[RecordLine]) -> Vec<u8> {
    let mut text = Vec::new();
    for l in lines {
        serde_json::to_writer(&mut text, l).expect("a recording line serializes");
        text.push(b'\n');
    }
    text
}

/// The RSS bench's cluster; each owner's pods share one spec (the generator sizes pods
/// per node, a ReplicaSet's pods are alike).
fn rss_bench_cluster() -> ClusterSnapshot {
    let mut parts = cluster(RSS_BENCH).into_parts();
    let mut spec_of = std::collections::HashMap::new();
    for p in &mut parts.pods {
        let owner = p.owner.as_ref().map(|o| o.name.clone());
        let spec = spec_of.entry(owner).or_insert_with(|| p.spec.clone());
        if p.spec != *spec {
            Arc::make_mut(p).spec = spec.clone();
        }
    }
    ClusterSnapshot::new(parts).expect("the bench cluster is valid")
}

fn recording(c: &mut Criterion) {
    let snap = rss_bench_cluster();
    let priorities = Some("10: ['.*spot.*']\n1: ['.*']");
    let mut encoder = Encoder::new(AutoscalerConfig::default(), 10_000, true);
    let first = encode(&encoder.round(Timestamp::from_secs(1), priorities, &snap, &[], &[]));
    let steady = encode(&encoder.round(Timestamp::from_secs(2), priorities, &snap, &[], &[]));
    eprintln!(
        "recording bench: {} nodes, {} pods; first round {} bytes, a steady round {} bytes",
        snap.nodes().len(),
        snap.pods().len(),
        first.len(),
        steady.len()
    );
    assert!(
        steady.len() < first.len(),
        "a steady round repeats no definition"
    );
    // The same pods as new allocations: what a round sees after a re-list.
    let mut relisted = snap.parts().clone();
    relisted.pods = relisted
        .pods
        .iter()
        .map(|p| Arc::new(Pod::clone(p)))
        .collect();
    let relisted = ClusterSnapshot::new(relisted).expect("the bench cluster is valid");

    let mut group = c.benchmark_group("recording_5k_nodes_100k_pods");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(8));
    group.bench_function("snapshot_build", |b| {
        b.iter(|| black_box(ClusterSnapshot::new(black_box(snap.parts().clone())).unwrap()))
    });
    let mut t = 3;
    group.bench_function("record_round_same_pods", |b| {
        b.iter(|| {
            t += 1;
            let lines = encoder.round(Timestamp::from_secs(t), priorities, &snap, &[], &[]);
            black_box(encode(&lines))
        })
    });
    group.bench_function("record_round_every_pod_new", |b| {
        b.iter(|| {
            // Alternate so that no round finds the pods of the one before.
            t += 1;
            let s = if t % 2 == 0 { &snap } else { &relisted };
            let lines = encoder.round(Timestamp::from_secs(t), priorities, s, &[], &[]);
            black_box(encode(&lines))
        })
    });
    group.finish();
}

criterion_group!(benches, recording);
criterion_main!(benches);
