//! # simulator
//!
//! A deterministic, offline replay of request traffic through the production autoscaler
//! core (`ours`) and models of cluster-autoscaler 1.33 (`ca-1.33`, alias `ca-baseline`)
//! and 1.30 (`ca-1.30`) on AWS, side by side. Same scenario, trace and seed give byte-identical JSON.
//!
//! ```no_run
//! let (scenario, path) = simulator::scenario::Scenario::load("tv-peak-ice").unwrap();
//! let loaded = scenario.resolve(path.as_deref(), None).unwrap();
//! let report = simulator::run_policies(
//!     &loaded,
//!     &[simulator::PolicyKind::Ours, simulator::PolicyKind::CA_BASELINE],
//!     None,
//!     &|_| {},
//! );
//! println!("{}", report.table());
//! ```

pub mod aws_messages;
pub mod error;
pub mod html;
pub mod replay;
pub mod report;
pub mod scenario;
pub mod scoreboard;
pub mod sim;
pub mod trace;
pub mod tune;

pub use error::InputError;
pub use report::{PolicyReport, Report};
pub use sim::PolicyKind;

use scenario::Loaded;

/// Runs each policy (in parallel threads) and gathers the report. `seed` overrides the
/// scenario's `cloud.seed`.
pub fn run_policies(
    loaded: &Loaded,
    policies: &[PolicyKind],
    seed: Option<u64>,
    progress: &(dyn Fn(u64) + Sync),
) -> Report {
    let seed = seed.unwrap_or(loaded.scenario.cloud.seed);
    let results: Vec<PolicyReport> = std::thread::scope(|s| {
        let handles: Vec<_> = policies
            .iter()
            .map(|&k| s.spawn(move || sim::run(loaded, k, seed, progress)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a simulation thread panicked"))
            .collect()
    });
    let duration_s = loaded
        .scenario
        .duration_s
        .unwrap_or(loaded.trace.len_s())
        .max(1);
    Report {
        scenario: loaded.scenario.name.clone(),
        description: loaded.scenario.description.clone(),
        seed,
        duration_s,
        trace: loaded.trace.source.clone(),
        policies: results.into_iter().map(|r| (r.policy.clone(), r)).collect(),
    }
}
