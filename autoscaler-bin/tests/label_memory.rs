//! What the pod cache holds per pod with real labels, counted by the allocator (issue 14,
//! "memory with real labels"). Opt-in, since it measures rather than checks behaviour:
//!
//! ```text
//! cargo test -p autoscaler-bin --test label_memory -- --ignored --nocapture
//! ```
//!
//! It builds 100,000 API pods the way `bench/rss_at_scale.sh` creates them (300
//! workloads, 10 labels and 5 annotations each), passes each through the controller's
//! translation into a `PodCache`, drops the API object, and reports the bytes still
//! allocated per cached pod: once with every pod owning its labels, once with the
//! labels shared per distinct set (what the controller's watch does).

use autoscaler_bin::pod_cache::{self, PodCache, PodChange};
use autoscaler_bin::translate::LabelInterner;
use k8s_openapi::api::core::v1::Pod as ApiPod;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;

#[global_allocator]
static ALLOCATOR: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const PODS: usize = 100_000;
const WORKLOADS: usize = 300;

/// A 64-hex-digit digest of `text` (FNV-1a, stretched), standing in for the script's sha256.
fn digest(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    (0..4)
        .map(|round| {
            for b in text.bytes().chain([round]) {
                h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
            format!("{h:016x}")
        })
        .collect()
}

/// Pod `i` as `rss_at_scale.sh` creates it (labels and annotations of a Helm chart).
fn api_pod(i: usize) -> ApiPod {
    let svc = format!("svc-{}", i % WORKLOADS);
    let h = digest(&svc);
    let last = &svc[svc.len() - 1..];
    serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": format!("p{i:06}"), "namespace": "scale", "uid": format!("uid-{i:032}"),
            "labels": {
                "app": svc, "app.kubernetes.io/name": svc,
                "app.kubernetes.io/instance": format!("{svc}-prod"),
                "app.kubernetes.io/version": "1.24.3", "app.kubernetes.io/component": "server",
                "app.kubernetes.io/part-of": format!("shop-{last}"),
                "app.kubernetes.io/managed-by": "Helm", "helm.sh/chart": format!("{svc}-3.12.0"),
                "pod-template-hash": &h[..10], "team": format!("team-{}", &h[10..14]),
            },
            "annotations": {
                "checksum/config": h, "checksum/secret": h.chars().rev().collect::<String>(),
                "prometheus.io/scrape": "true", "prometheus.io/port": "9090",
                "kubectl.kubernetes.io/restartedAt": "2026-11-30T08:12:44Z",
            },
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": svc,
                                 "uid": format!("owner-{svc}"), "controller": true}],
        },
        "spec": {
            "nodeName": format!("n{:05}", i / 20), "automountServiceAccountToken": false,
            "containers": [{"name": "c", "image": "registry.invalid/app:1",
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}],
        },
        "status": {"phase": "Running"},
    }))
    .expect("the bench pod is a valid API pod")
}

/// Bytes the cache and the interner hold per pod after translating every pod.
fn cached_bytes_per_pod(share_labels: bool) -> (f64, usize) {
    let region = Region::new(ALLOCATOR);
    let cache = PodCache::default();
    let mut interner = LabelInterner::default();
    cache.apply(PodChange::ListStarted);
    for i in 0..PODS {
        let api = api_pod(i);
        let change = if share_labels {
            pod_cache::upsert_interned(&api, &mut interner)
        } else {
            pod_cache::upsert(&api)
        };
        cache.apply(change);
    }
    cache.apply(PodChange::ListDone);
    let change = region.change();
    let held = change.bytes_allocated as isize - change.bytes_deallocated as isize
        + change.bytes_reallocated;
    assert_eq!(
        cache.engine_pods().len(),
        PODS,
        "every pod reaches the engine's view"
    );
    (held as f64 / PODS as f64, interner.len())
}

#[test]
#[ignore = "measures memory (100,000 pods); run with --ignored --nocapture"]
fn shared_labels_cost_a_fraction_of_owned_ones() {
    let (owned, _) = cached_bytes_per_pod(false);
    let (shared, label_sets) = cached_bytes_per_pod(true);
    println!(
        "pod cache, {PODS} pods / {WORKLOADS} workloads, 10 labels + 5 annotations: \
         {owned:.0} bytes per pod with owned labels, {shared:.0} with shared ones \
         ({label_sets} label sets): {:.0} bytes ({:.1} MB at {PODS} pods) saved",
        owned - shared,
        (owned - shared) * PODS as f64 / 1e6,
    );
    assert_eq!(label_sets, WORKLOADS, "one shared map per workload");
    // Ten labels of ~30 bytes each in their own strings and B-tree node cost several
    // hundred bytes; shared, they cost an Arc clone.
    assert!(
        owned - shared > 400.0,
        "sharing saved only {:.0} bytes per pod",
        owned - shared
    );
}
