//! `replay`: the recording the e2e test `aws_recording_of_a_peak_with_ice` made against a
//! real control plane, KWOK and moto (a peak with an injected ICE), replayed through
//! `ours`: the replay takes the live controller's decisions within one scan interval.

use autoscaler_core::fixtures::{group, node, pod};
use autoscaler_core::hpa::{Behavior, ScalingRules};
use autoscaler_core::recording::{
    Encoder, HpaCount, HpaSettings, ObservedHpa, RoundRecord, RECORDING_VERSION,
};
use autoscaler_core::{AutoscalerConfig, CapacityType, ClusterSnapshot, SnapshotParts, Timestamp};
use simulator::replay::{hpa_load, match_decisions, Recording};
use simulator::tune::{self, Vary};
use std::path::Path;

fn recording() -> Recording {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("recordings/e2e-ice");
    Recording::load(&dir).unwrap().window(None, None).unwrap()
}

#[test]
fn replay_of_the_e2e_recording_takes_the_live_decisions_within_one_scan_interval() {
    let rec = recording();
    let (loaded, warnings) = rec.to_loaded().unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(
        !loaded.scenario.cloud.ice.is_empty(),
        "the ICE became an outage"
    );
    let report = simulator::run_policies(
        &loaded,
        &[
            simulator::PolicyKind::Ours,
            simulator::PolicyKind::CA_BASELINE,
        ],
        None,
        &|_| {},
    );
    let live = rec.live_decisions();
    assert!(live.iter().any(|d| d.kind == "ScaleUp"), "{live:?}");
    let ours = &report.policies["ours"];
    let scan = loaded.scenario.sim.scan_interval_s;
    let matches = match_decisions(&live, &ours.decisions);
    print!("{}", simulator::replay::match_table(&matches, scan));
    for m in &matches {
        assert!(
            m.within(scan),
            "{m:?} not within {scan} s; replay log {:?}",
            ours.decisions
        );
    }
    // No extra scale-up either: the replay adds what the live controller added.
    let added = |log: &[simulator::report::LogEntry]| {
        log.iter()
            .filter(|d| d.kind == "ScaleUp")
            .map(|d| d.delta)
            .sum::<i64>()
    };
    assert_eq!(added(&ours.decisions), added(&live));
}

#[test]
fn a_folder_without_recordings_and_an_empty_window_are_refused_clearly() {
    let err = Recording::load(Path::new(env!("CARGO_MANIFEST_DIR")).join("src").as_path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("--record-dir"), "{err}");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("recordings/e2e-ice");
    let err = Recording::load(&dir)
        .unwrap()
        .window(Some(100_000), None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("--from/--to"), "{err}");
}

#[test]
fn the_checked_in_recording_is_format_version_1_and_still_reads() {
    let rec = recording();
    assert_eq!(rec.header.version, 1);
    assert!(rec.hpas.is_empty());
    let err = rec.to_loaded_with(true).unwrap_err().to_string();
    assert!(err.contains("--hpa") && err.contains("no HPA"), "{err}");
}

fn hpa_round(id: u32, replicas: u32, utilization: Option<u32>, at_ms: u64) -> RoundRecord {
    RoundRecord {
        at_ms,
        hpas: vec![HpaCount {
            id,
            current_replicas: replicas,
            desired_replicas: replicas,
            cpu_utilization: utilization,
        }],
        ..RoundRecord::default()
    }
}

#[test]
fn hpa_load_is_utilisation_times_replicas_carrying_the_last_known_utilisation() {
    let rounds = [
        hpa_round(0, 4, None, 10_000),
        hpa_round(0, 5, Some(80), 12_000),
        hpa_round(0, 6, None, 15_000),
        RoundRecord {
            at_ms: 17_000,
            ..RoundRecord::default()
        },
    ];
    let load = hpa_load(&rounds, 0, 9).unwrap();
    // Before the first utilisation: the first one (80 %) x 4 replicas.
    assert_eq!(&load[..2], &[3.2, 3.2]);
    assert_eq!(&load[2..5], &[4.0, 4.0, 4.0]);
    // No utilisation that round: the last one (80 %) x 6.
    assert!((load[5] - 4.8).abs() < 1e-9 && (load[6] - 4.8).abs() < 1e-9);
    // The HPA gone: nothing.
    assert_eq!(&load[7..], &[0.0, 0.0]);
    assert_eq!(hpa_load(&rounds, 1, 9), None, "an unknown HPA");
    assert_eq!(
        hpa_load(&[hpa_round(0, 4, None, 0)], 0, 5),
        None,
        "never a utilisation"
    );
}

/// Minutes of the synthetic peak: 4 replicas at 50 %, 12 from minute 3 to 6, 4 again.
const PEAK: (u64, u64) = (180, 360);

/// A recording, written through the controller's encoder, of a Deployment `web` scaled
/// by an HPA (target 50 %, scale-down window 0 s) through a peak.
fn hpa_recording(dir: &Path) {
    let mut g = group("spot", CapacityType::Spot, &["eu-west-1a"], &["m5.large"]);
    g.max_size = 40;
    let nodes: Vec<_> = (0..4)
        .map(|i| {
            node(
                &format!("n{i}"),
                &g,
                "eu-west-1a",
                "m5.large",
                Timestamp::ZERO,
            )
        })
        .collect();
    g.target_size = 4;
    let mut enc = Encoder::new(AutoscalerConfig::default(), 10_000, true);
    let mut lines = enc.preamble(Timestamp::from_secs(1_000));
    for step in 0..90u64 {
        let t = step * 10;
        let replicas = if (PEAK.0..PEAK.1).contains(&t) { 12 } else { 4 };
        let snap = ClusterSnapshot::new(SnapshotParts {
            groups: vec![g.clone()],
            nodes: nodes.clone(),
            pods: (0..replicas)
                .map(|i| {
                    let n = format!("n{}", i % 4);
                    pod(&format!("web-{i}"), "web-7c9d8b5f4", 500, 512, Some(&n)).into()
                })
                .collect(),
            ..SnapshotParts::default()
        })
        .unwrap();
        enc.observe_hpas(vec![ObservedHpa {
            settings: HpaSettings {
                namespace: "default".into(),
                name: "web".into(),
                target_kind: "Deployment".into(),
                target_name: "web".into(),
                min_replicas: 2,
                max_replicas: 20,
                cpu_target_utilization: Some(50),
                behavior: Some(Behavior {
                    scale_down: ScalingRules {
                        stabilization_window_seconds: Some(0),
                        ..ScalingRules::default()
                    },
                    ..Behavior::default()
                }),
            },
            current_replicas: replicas,
            desired_replicas: replicas,
            cpu_utilization: Some(50),
        }]);
        lines.extend(enc.round(Timestamp::from_secs(1_000 + t), None, &snap, &[], &[]));
    }
    std::fs::create_dir_all(dir).unwrap();
    let text: String = lines
        .iter()
        .map(|l| serde_json::to_string(l).unwrap() + "\n")
        .collect();
    std::fs::write(dir.join("recording-000000.jsonl"), text).unwrap();
}

/// Mean pods of `ours` from `from_s` to `to_s`.
fn mean_pods(loaded: &simulator::scenario::Loaded, from_s: u64, to_s: u64) -> f64 {
    let report = simulator::run_policies(loaded, &[simulator::PolicyKind::Ours], None, &|_| {});
    let s: Vec<f64> = report.policies["ours"]
        .series
        .iter()
        .filter(|p| (from_s..to_s).contains(&p.t_s))
        .map(|p| f64::from(p.pods))
        .collect();
    assert!(!s.is_empty(), "samples between {from_s} and {to_s} s");
    s.iter().sum::<f64>() / s.len() as f64
}

#[test]
fn hpa_replay_with_a_longer_scale_down_window_keeps_more_replicas_than_recorded() {
    let dir = std::env::temp_dir().join(format!("replay-hpa-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    hpa_recording(&dir);
    let rec = Recording::load(&dir).unwrap().window(None, None).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(rec.header.version, RECORDING_VERSION);
    let (as_recorded, _) = rec.to_loaded().unwrap();
    let (hpa, warnings) = rec.to_loaded_with(true).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let svc = &hpa.scenario.services[0];
    assert_eq!(
        hpa.scenario.services.len(),
        1,
        "the ReplicaSet is the HPA's"
    );
    assert_eq!(
        (svc.min_replicas, svc.max_replicas, svc.target_utilization),
        (2, 20, 50)
    );
    assert_eq!(hpa.scenario.sim.hpa_sync_s, 15);
    let longer = tune::apply(
        &hpa,
        &[Vary::parse("hpa-scale-down-window=600").unwrap()],
        &["600".to_string()],
    )
    .unwrap();
    // After the peak (leaving the HPA one sync and the pods a scan to go).
    let after = (PEAK.1 + 60, PEAK.1 + 300);
    let recorded = mean_pods(&as_recorded, after.0, after.1);
    let rederived = mean_pods(&hpa, after.0, after.1);
    let held = mean_pods(&longer, after.0, after.1);
    let peak = mean_pods(&hpa, PEAK.0 + 60, PEAK.1);
    println!("pods after the peak: recorded {recorded}, --hpa {rederived}, --hpa with a 600 s window {held}; at the peak {peak}");
    // The recorded settings give the recorded counts back.
    assert!((recorded - 4.0).abs() < 0.5, "{recorded}");
    assert!(
        (rederived - recorded).abs() < 0.5,
        "{rederived} vs {recorded}"
    );
    assert!((peak - 12.0).abs() < 0.5, "{peak}");
    // A 600 s scale-down window keeps the peak's replicas.
    assert!(held > recorded + 6.0, "{held} vs {recorded}");
}
