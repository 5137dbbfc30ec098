//! `replay`: the recording the e2e test `aws_recording_of_a_peak_with_ice` made against a
//! real control plane, KWOK and moto (a peak with an injected ICE), replayed through
//! `ours`: the replay takes the live controller's decisions within one scan interval.

use simulator::replay::{match_decisions, Recording};
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
