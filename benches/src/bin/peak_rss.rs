//! Peak memory of one scale-up round at production scale, and its median time.
//! `cargo run --release -p autoscaler-benches --bin peak_rss`

use autoscaler_benches::{cluster, PRODUCTION};
use autoscaler_core::{Autoscaler, AutoscalerConfig, Timestamp};
use std::time::Instant;

fn vm_hwm_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn main() {
    let before = vm_hwm_kib().unwrap_or(0);
    let snap = cluster(PRODUCTION);
    let after_snapshot = vm_hwm_kib().unwrap_or(0);
    let engine = Autoscaler::new(AutoscalerConfig::default()).expect("default config is valid");
    let now = Timestamp::from_secs(1_000_000);
    let mut times = Vec::new();
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(21);
    for _ in 0..rounds {
        let mut e = engine.clone();
        let start = Instant::now();
        let d = e.decide(&snap, now);
        times.push(start.elapsed());
        let _ = std::hint::black_box(d);
    }
    times.sort();
    let peak = vm_hwm_kib().unwrap_or(0);
    println!(
        "nodes={} pods={} groups={}",
        snap.nodes().len(),
        snap.pods().len(),
        snap.groups().len()
    );
    println!(
        "median_decide_ms={:.2}",
        times[times.len() / 2].as_secs_f64() * 1e3
    );
    println!(
        "peak_rss_mib={:.1} (process start {:.1}, after snapshot {:.1}, decide adds {:.1})",
        peak as f64 / 1024.0,
        before as f64 / 1024.0,
        after_snapshot as f64 / 1024.0,
        (peak.saturating_sub(after_snapshot)) as f64 / 1024.0
    );
}
