//! `autoscaler-sim scoreboard`: `ours` against every cluster-autoscaler variant on every
//! built-in story and on every repository trace under the two crisis clouds, with a
//! verdict per criterion of issue 12 ("never worse, much better in a crisis").
//!
//! Criteria (ours vs one CA variant on the same row, same seed):
//! - **served**: unserved + degraded requests within 0.005 percentage points of CA's;
//! - **disruption**: evictions the autoscaler chose (scale-down, rebalance, drain-back)
//!   at most CA's plus what rebalancing and drain-back spent of their budget
//!   (`balance.evictions_per_hour` per balance set, 30 by default), and no node removed
//!   within 10 min of its launch. Interruption evictions are AWS's choice and shown
//!   beside, not judged;
//! - **cost**: at most CA's + 1 %, or, when ours served more requests well (neither
//!   unserved nor degraded: what the served criterion counts), cost per request served
//!   well at most CA's;
//! - **crisis** rows (the `tv-peak-ice` and `breaking-news` clouds): time-to-capacity
//!   p95 at most half of CA's and degraded requests at most a third of CA's;
//! - **on-demand return**: on-demand nodes bought while spot was short are back to the
//!   base within 2 h 15 min after spot returns (`–` when the run ends too early to tell).

use crate::error::InputError;
use crate::report::PolicyReport;
use crate::scenario::Scenario;
use crate::trace::Columns;
use crate::PolicyKind;
use autoscaler_core::overprovisioning::{Ladder, Overprovisioning};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Stories replayed as they are (`bench-24h` is a benchmark, not a story).
pub const STORIES: [&str; 6] = [
    "tv-peak-ice",
    "breaking-news",
    "onsale",
    "front-outage-return",
    "az-imbalance",
    "zonal-placement",
];
/// Clouds every repository trace is replayed under; their rows are crisis rows.
pub const CRISIS_CLOUDS: [&str; 2] = ["tv-peak-ice", "breaking-news"];
/// Served-traffic tolerance, percentage points.
const SERVED_TOLERANCE_PP: f64 = 0.005;
/// On-demand must be back this long after spot returns.
const ON_DEMAND_RETURN_S: u64 = 8100;

/// A cluster-autoscaler variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Variant {
    /// 1.33 with its defaults.
    Ca133,
    /// 1.33 with `--balance-similar-node-groups` and aws-node-termination-handler.
    Ca133Tuned,
    /// 1.30 with its defaults.
    Ca130,
}

impl Variant {
    /// Every variant, in table order.
    pub const ALL: [Variant; 3] = [Variant::Ca133, Variant::Ca133Tuned, Variant::Ca130];

    /// Name in the table.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Ca133 => "ca-1.33",
            Variant::Ca133Tuned => "ca-1.33+balance+nth",
            Variant::Ca130 => "ca-1.30",
        }
    }
}

/// One criterion's verdict.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Check {
    /// `served`, `disruption`, `cost`, `ttc`, `degraded`, `on-demand`.
    pub criterion: &'static str,
    /// What ours did.
    pub ours: String,
    /// What CA did (or the bound).
    pub ca: String,
    /// `Some(true)` ✓, `Some(false)` ✗, `None` not applicable / cannot tell.
    pub pass: Option<bool>,
}

/// One row: a scenario (with or without a trace) against one variant.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    /// Scenario (the cloud, for trace rows).
    pub scenario: String,
    /// Trace file name, for trace rows.
    pub trace: Option<String>,
    /// CA variant.
    pub variant: &'static str,
    /// Crisis row.
    pub crisis: bool,
    /// Verdicts.
    pub checks: Vec<Check>,
}

/// The whole scoreboard.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Scoreboard {
    /// Rows in order.
    pub rows: Vec<Row>,
    /// Every policy ran with the chart's placeholder ladder, ours with growth headroom.
    pub overprovisioning: bool,
    /// One seed for every row instead of each scenario's `cloud.seed` (`--seed`).
    pub seed: Option<u64>,
}

impl Scoreboard {
    /// The closing line of every rendering: failures, rows, and what they ran with.
    fn summary(&self) -> String {
        let mode = if self.overprovisioning {
            " (every policy with the chart's placeholder ladder, ours with growth headroom)"
        } else {
            ""
        };
        let seed = self
            .seed
            .map(|s| format!(", seed {s} for every row"))
            .unwrap_or_default();
        format!(
            "{} ✗ in {} rows{mode}{seed}",
            self.failures(),
            self.rows.len()
        )
    }
}

fn served_pp(r: &PolicyReport) -> f64 {
    100.0 * (r.unserved_request_fraction + r.degraded_request_fraction)
}

fn evictions_of(r: &PolicyReport, causes: &[&str]) -> u64 {
    causes
        .iter()
        .map(|c| r.evictions_by_cause.get(*c).copied().unwrap_or(0))
        .sum()
}

/// Judges `ours` against `ca` on one row. `budget` is the most rebalancing and
/// drain-back may evict over the run (see the module docs).
pub fn evaluate(ours: &PolicyReport, ca: &PolicyReport, crisis: bool, budget: u64) -> Vec<Check> {
    let mut checks = Vec::new();
    let (so, sc) = (served_pp(ours), served_pp(ca));
    checks.push(Check {
        criterion: "served",
        ours: format!("{so:.3}% unserved+degraded"),
        ca: format!("{sc:.3}%"),
        pass: Some(so <= sc + SERVED_TOLERANCE_PP),
    });
    let replacements = evictions_of(ours, &["rebalance", "drain-back"]);
    let chosen = |r| evictions_of(r, &["scale-down", "rebalance", "drain-back"]);
    let allowance = replacements.min(budget);
    checks.push(Check {
        criterion: "disruption",
        ours: format!(
            "{} chosen ({replacements} replacing), {} interrupted, {} young removals",
            chosen(ours),
            evictions_of(ours, &["interruption"]),
            ours.young_removals
        ),
        ca: format!(
            "{} chosen, {} interrupted",
            chosen(ca),
            evictions_of(ca, &["interruption"])
        ),
        pass: Some(
            chosen(ours) <= chosen(ca) + allowance
                && replacements <= budget
                && ours.young_removals == 0,
        ),
    });
    let per_served = |r: &PolicyReport| r.cost_usd / served_well(r).max(1.0);
    checks.push(Check {
        criterion: "cost",
        ours: format!("${:.2}", ours.cost_usd),
        ca: format!("${:.2}", ca.cost_usd),
        pass: Some(
            ours.cost_usd <= ca.cost_usd * 1.01
                || (served_well(ours) > served_well(ca) && per_served(ours) <= per_served(ca)),
        ),
    });
    let (to, tc) = (ours.time_to_capacity_s.p95, ca.time_to_capacity_s.p95);
    checks.push(Check {
        criterion: "ttc",
        ours: format!("{to} s"),
        ca: format!("{tc} s"),
        pass: crisis.then_some(2 * to <= tc),
    });
    let (dgo, dgc) = (ours.degraded_request_fraction, ca.degraded_request_fraction);
    checks.push(Check {
        criterion: "degraded",
        ours: format!("{:.3}%", 100.0 * dgo),
        ca: format!("{:.3}%", 100.0 * dgc),
        pass: crisis.then_some(3.0 * dgo <= dgc),
    });
    let (text, pass) = match &ours.on_demand_return {
        None => ("no spot outage".to_string(), None),
        Some(r) if r.peak <= r.base => ("none bought".to_string(), Some(true)),
        Some(r) => match r.back_after_s {
            Some(s) => (
                format!("back {s} s after spot"),
                Some(s <= ON_DEMAND_RETURN_S),
            ),
            None if r.observed_s >= ON_DEMAND_RETURN_S => {
                ("not back by the end".to_string(), Some(false))
            }
            None => (format!("not back within the {} s left", r.observed_s), None),
        },
    };
    checks.push(Check {
        criterion: "on-demand",
        ours: text,
        ca: format!("≤ {ON_DEMAND_RETURN_S} s"),
        pass,
    });
    checks
}

/// The chart's placeholder ladder (`overprovisioning.ladder` in
/// `charts/autoscaler/values.yaml`): 1 placeholder from 1 core or 1 node, 2 from 2
/// nodes, 3 from 64 cores, 8 from 512 cores.
pub fn chart_ladder() -> Overprovisioning {
    Overprovisioning::Ladder(Ladder {
        cores_to_replicas: vec![(1, 1), (64, 3), (512, 8)],
        nodes_to_replicas: vec![(1, 1), (2, 2)],
    })
}

/// Runs the scoreboard. `traces` is the folder of repository traces (`*.csv`);
/// `only` keeps the rows whose scenario or trace name contains it. With
/// `overprovisioning`, every row runs as the chart does with `overprovisioning.enabled`:
/// the placeholder ladder ([`chart_ladder`]) for every policy (for CA, the
/// cluster-proportional-autoscaler its users run beside it), and `ours` adds its growth
/// headroom (`autoscaler.headroom.enabled`, the chart's default there). `seed`, when
/// given, replaces every scenario's `cloud.seed` (a verdict that flips with the seed is
/// a close call, not a result).
pub fn run(
    traces: &Path,
    only: Option<&str>,
    overprovisioning: bool,
    seed: Option<u64>,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Scoreboard, InputError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(traces)
        .map_err(|e| {
            InputError::Usage(format!(
                "cannot read the traces folder {}: {e}; pass --traces DIR",
                traces.display()
            ))
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .collect();
    files.sort();
    let mut plan: Vec<(&str, Option<PathBuf>)> = STORIES.iter().map(|s| (*s, None)).collect();
    for f in &files {
        for cloud in CRISIS_CLOUDS {
            plan.push((cloud, Some(f.clone())));
        }
    }
    let mut board = Scoreboard {
        overprovisioning,
        seed,
        ..Scoreboard::default()
    };
    for (scenario, trace) in plan {
        let trace_name = trace
            .as_ref()
            .and_then(|t| t.file_name())
            .map(|n| n.to_string_lossy().into_owned());
        let label = format!("{scenario} {}", trace_name.as_deref().unwrap_or(""));
        if only.is_some_and(|o| !label.contains(o)) {
            continue;
        }
        progress(&label);
        let crisis = CRISIS_CLOUDS.contains(&scenario);
        let load = |tuned: bool| -> Result<_, InputError> {
            let (mut sc, path) = Scenario::load(scenario)?;
            sc.ca_baseline.balance_similar_node_groups = tuned;
            sc.ca_baseline.node_termination_handler = tuned;
            if overprovisioning {
                sc.overprovisioning = Some(chart_ladder());
                sc.autoscaler.headroom.enabled = true;
            }
            let columns = Columns::default();
            sc.resolve(path.as_deref(), trace.as_deref().map(|t| (t, &columns)))
        };
        let plain = load(false)?;
        let tuned = load(true)?;
        let base = crate::run_policies(
            &plain,
            &[PolicyKind::Ours, PolicyKind::Ca133, PolicyKind::Ca130],
            seed,
            &|_| {},
        );
        let with_options = crate::run_policies(&tuned, &[PolicyKind::Ca133], seed, &|_| {});
        let ours = &base.policies["ours"];
        let hours = plain.duration_s().div_ceil(3600);
        let sets = ours.balance_sets as u64;
        let budget = u64::from(plain.scenario.autoscaler.balance.evictions_per_hour) * hours * sets;
        for v in Variant::ALL {
            let ca = match v {
                Variant::Ca133 => &base.policies["ca-1.33"],
                Variant::Ca133Tuned => &with_options.policies["ca-1.33"],
                Variant::Ca130 => &base.policies["ca-1.30"],
            };
            board.rows.push(Row {
                scenario: scenario.to_string(),
                trace: trace_name.clone(),
                variant: v.name(),
                crisis,
                checks: evaluate(ours, ca, crisis, budget),
            });
        }
    }
    Ok(board)
}

fn mark(pass: Option<bool>) -> &'static str {
    match pass {
        Some(true) => "✓",
        Some(false) => "✗",
        None => "–",
    }
}

impl Scoreboard {
    /// Whether every applicable criterion of every row passed.
    pub fn all_pass(&self) -> bool {
        self.failures() == 0
    }

    /// ✗ count.
    pub fn failures(&self) -> usize {
        self.rows
            .iter()
            .flat_map(|r| &r.checks)
            .filter(|c| c.pass == Some(false))
            .count()
    }

    /// Plain-text table: one row per (scenario, trace, CA variant), ours/CA and a mark
    /// per criterion.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<20} {:<34} {:<20} criteria (ours | ca)",
            "scenario", "trace", "vs"
        );
        for r in &self.rows {
            let cells: Vec<String> = r
                .checks
                .iter()
                .map(|c| format!("{} {} {} | {}", mark(c.pass), c.criterion, c.ours, c.ca))
                .collect();
            let _ = writeln!(
                out,
                "{:<20} {:<34} {:<20} {}",
                r.scenario,
                r.trace.as_deref().unwrap_or("-"),
                r.variant,
                cells.join("; ")
            );
        }
        let _ = writeln!(out, "{}", self.summary());
        out
    }

    /// The same table in Markdown, as the simulator README shows it: per criterion the
    /// mark, then ours / CA in short (disruption: evictions chosen; on-demand: ours).
    pub fn markdown(&self) -> String {
        let mut out = String::from(
            "| scenario (cloud) | trace | vs | served | disruption | cost | TTC p95 (crisis) \
             | degraded (crisis) | on-demand back |\n|---|---|---|---|---|---|---|---|---|\n",
        );
        let first = |s: &str| s.split_whitespace().next().unwrap_or("").to_string();
        for r in &self.rows {
            let trace = r.trace.as_deref().unwrap_or("-");
            let _ = write!(
                out,
                "| {} | {} | {} |",
                r.scenario,
                trace.strip_suffix(".csv").unwrap_or(trace),
                r.variant
            );
            for c in &r.checks {
                let body = match c.criterion {
                    "served" | "disruption" => format!("{} / {}", first(&c.ours), first(&c.ca)),
                    "ttc" => format!(
                        "{} / {}",
                        c.ours.strip_suffix(" s").unwrap_or(&c.ours),
                        c.ca
                    ),
                    "on-demand" => c.ours.clone(),
                    _ => format!("{} / {}", c.ours, c.ca),
                };
                let _ = write!(out, " {} {} |", mark(c.pass), body);
            }
            out.push('\n');
        }
        let _ = writeln!(out, "\n{}.", self.summary());
        out
    }

    /// The same table as an HTML page.
    pub fn html(&self) -> String {
        let esc = |s: &str| {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
        };
        let mut out = String::from(
            "<!doctype html><meta charset=utf-8><title>autoscaler-sim scoreboard</title>\
             <style>td,th{border:1px solid #ccc;padding:2px 6px;font:13px sans-serif}\
             .f{background:#fdd}.p{background:#dfd}</style><table><tr><th>scenario</th>\
             <th>trace</th><th>vs</th>",
        );
        if let Some(r) = self.rows.first() {
            for c in &r.checks {
                let _ = write!(out, "<th>{}</th>", c.criterion);
            }
        }
        out.push_str("</tr>");
        for r in &self.rows {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td>",
                esc(&r.scenario),
                esc(r.trace.as_deref().unwrap_or("-")),
                r.variant
            );
            for c in &r.checks {
                let class = match c.pass {
                    Some(true) => "p",
                    Some(false) => "f",
                    None => "",
                };
                let _ = write!(
                    out,
                    "<td class='{class}'>{} {} | {}</td>",
                    mark(c.pass),
                    esc(&c.ours),
                    esc(&c.ca)
                );
            }
            out.push_str("</tr>");
        }
        let _ = write!(out, "</table><p>{}</p>", esc(&self.summary()));
        out
    }
}

/// Requests served neither unserved nor degraded (by pods over the saturation point):
/// the ones the served criterion counts as served.
fn served_well(r: &PolicyReport) -> f64 {
    let total = r.served_requests / (1.0 - r.unserved_request_fraction).max(1e-9);
    (total * (1.0 - r.unserved_request_fraction - r.degraded_request_fraction)).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::OnDemandReturn;

    fn report(unserved: f64, cost: f64, ttc: u64) -> PolicyReport {
        let mut r = PolicyReport {
            unserved_request_fraction: unserved,
            cost_usd: cost,
            served_requests: 1e6,
            ..PolicyReport::default()
        };
        r.time_to_capacity_s.p95 = ttc;
        r
    }

    fn verdict(checks: &[Check], criterion: &str) -> Option<bool> {
        checks
            .iter()
            .find(|c| c.criterion == criterion)
            .unwrap()
            .pass
    }

    #[test]
    fn each_criterion_has_its_bound() {
        let ca = report(0.01, 100.0, 400);
        // Within 0.005 pp and 1 %: pass; half the time to capacity: pass.
        let ok = evaluate(&report(0.01004, 101.0, 200), &ca, true, 0);
        assert!(ok.iter().all(|c| c.pass != Some(false)), "{ok:?}");
        let bad = evaluate(&report(0.0101, 101.5, 201), &ca, true, 0);
        assert_eq!(verdict(&bad, "served"), Some(false));
        assert_eq!(verdict(&bad, "cost"), Some(false));
        assert_eq!(verdict(&bad, "ttc"), Some(false));
        // Not a crisis row: no time-to-capacity verdict.
        let calm = evaluate(&report(0.0101, 101.5, 201), &ca, false, 0);
        assert_eq!(verdict(&calm, "ttc"), None);
    }

    #[test]
    fn replacements_count_only_within_the_budget_and_flapping_fails() {
        let ca = {
            let mut r = report(0.0, 1.0, 0);
            r.evictions_by_cause.insert("scale-down".into(), 5);
            r
        };
        let mut ours = report(0.0, 1.0, 0);
        ours.evictions_by_cause.insert("scale-down".into(), 5);
        ours.evictions_by_cause.insert("rebalance".into(), 10);
        ours.evictions_by_cause.insert("interruption".into(), 50);
        assert_eq!(
            verdict(&evaluate(&ours, &ca, false, 10), "disruption"),
            Some(true)
        );
        assert_eq!(
            verdict(&evaluate(&ours, &ca, false, 9), "disruption"),
            Some(false)
        );
        ours.young_removals = 1;
        assert_eq!(
            verdict(&evaluate(&ours, &ca, false, 10), "disruption"),
            Some(false)
        );
    }

    #[test]
    fn costing_more_passes_only_per_request_served_well() {
        // CA is 10 % cheaper but a fifth of its requests hit saturated pods.
        let mut ca = report(0.0, 90.0, 0);
        ca.degraded_request_fraction = 0.2;
        let mut ours = report(0.0, 100.0, 0);
        ours.degraded_request_fraction = 0.01;
        assert_eq!(verdict(&evaluate(&ours, &ca, false, 0), "cost"), Some(true));
        // Served as badly as CA: the 1 % bound applies.
        ours.degraded_request_fraction = 0.2;
        assert_eq!(
            verdict(&evaluate(&ours, &ca, false, 0), "cost"),
            Some(false)
        );
        // Served better, but not enough to pay for the price.
        ours.degraded_request_fraction = 0.15;
        assert_eq!(
            verdict(&evaluate(&ours, &ca, false, 0), "cost"),
            Some(false)
        );
    }

    #[test]
    fn on_demand_must_be_back_within_two_hours_fifteen() {
        let ca = report(0.0, 1.0, 0);
        let mut ours = report(0.0, 1.0, 0);
        let mut back = |after: Option<u64>, observed: u64| {
            ours.on_demand_return = Some(OnDemandReturn {
                spot_returned_s: 100,
                base: 0,
                peak: 5,
                back_after_s: after,
                observed_s: observed,
            });
            verdict(&evaluate(&ours, &ca, false, 0), "on-demand")
        };
        assert_eq!(back(Some(8100), 9000), Some(true));
        assert_eq!(back(Some(8101), 9000), Some(false));
        assert_eq!(back(None, 9000), Some(false));
        assert_eq!(back(None, 3000), None);
    }
}
