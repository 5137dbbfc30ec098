//! `autoscaler-sim`: replay traffic through `ours` and cluster-autoscaler models
//! (`ca-1.33`, alias `ca-baseline`; `ca-1.30`) and compare.
//!
//! Exit codes: 0 success, 2 bad input (file, line and field named), 1 anything else.

use anyhow::Context;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use simulator::scenario::{list_builtins, Scenario};
use simulator::trace::Columns;
use simulator::{InputError, PolicyKind};
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "autoscaler-sim",
    version,
    about = "Replay traffic through the autoscaler core and a cluster-autoscaler model"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the built-in scenarios.
    Scenarios,
    /// Run a scenario.
    Run {
        /// Built-in name or YAML file.
        #[arg(long)]
        scenario: String,
        /// CSV trace replacing the scenario's traffic.
        #[arg(long)]
        trace: Option<PathBuf>,
        /// Time column of the trace (default `timestamp`, or the first *time*/*second*/*minute* column).
        #[arg(long)]
        time_column: Option<String>,
        /// Count column of the trace (default `requests`).
        #[arg(long)]
        requests_column: Option<String>,
        /// Seed (default: the scenario's `cloud.seed`).
        #[arg(long)]
        seed: Option<u64>,
        /// Policies, comma-separated: ours, ca-1.33 (alias ca-baseline), ca-1.30.
        #[arg(long, default_value = "ours,ca-1.33")]
        policy: String,
        /// Run the cluster-autoscaler models with `--balance-similar-node-groups`
        /// (overrides the scenario's `ca_baseline.balance_similar_node_groups`).
        #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
        balance_similar_node_groups: Option<bool>,
        /// Run aws-node-termination-handler beside the cluster-autoscaler models
        /// (overrides the scenario's `ca_baseline.node_termination_handler`).
        #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
        node_termination_handler: Option<bool>,
        /// Write the JSON report here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write the HTML report here.
        #[arg(long)]
        html: Option<PathBuf>,
    },
    /// Replay a recording made by `autoscaler --record-dir` through the policies, and
    /// compare the replay's `ours` decisions with the live controller's
    Replay {
        /// The folder given to --record-dir (or one recording-*.jsonl file).
        #[arg(long)]
        recording: PathBuf,
        /// Start, seconds after the first recorded round.
        #[arg(long)]
        from: Option<u64>,
        /// End, seconds after the first recorded round.
        #[arg(long)]
        to: Option<u64>,
        /// Re-derive the replicas of HPA-scaled workloads from the recorded CPU
        /// utilisation through the HPA model, with the recorded HPA settings
        #[arg(long)]
        hpa: bool,
        /// Seed (default: the scenario's `cloud.seed`).
        #[arg(long)]
        seed: Option<u64>,
        /// Policies, comma-separated: ours, ca-1.33 (alias ca-baseline), ca-1.30.
        #[arg(long, default_value = "ours,ca-1.33")]
        policy: String,
        /// Write the JSON report here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write the HTML report here.
        #[arg(long)]
        html: Option<PathBuf>,
        /// Write the scenario the recording became (YAML) here.
        #[arg(long)]
        scenario_out: Option<PathBuf>,
    },
    /// Run `ours` over a grid of settings: Pareto frontier of cost vs degraded+unserved
    /// vs evictions, and the cheapest setting meeting the objective
    Tune {
        /// Built-in name or YAML file.
        #[arg(long, conflicts_with = "recording")]
        scenario: Option<String>,
        /// A recording folder instead of a scenario.
        #[arg(long)]
        recording: Option<PathBuf>,
        /// With --recording: re-derive HPA-scaled workloads through the HPA model (as
        /// `replay --hpa`), so the hpa-* knobs change their replicas
        #[arg(long, requires = "recording")]
        hpa: bool,
        /// `flag=v1,v2,...` (repeatable): ice-cooloff, ice-cooloff-max, drain-back-after,
        /// drain-back-budget, scale-down-unneeded-time, scale-down-utilization-threshold,
        /// scale-down-delay-after-add, zone-skew-threshold, hpa-scale-down-window,
        /// hpa-scale-up-window, hpa-target, or a scenario path (autoscaler.balance.rebalance_after)
        #[arg(long, required = true)]
        vary: Vec<String>,
        /// Constraints, comma-separated, e.g. `degraded<=0.1%,evictions<=20`.
        #[arg(long, default_value = "degraded<=0.1%")]
        objective: String,
        /// Metric to minimise among the settings meeting the objective.
        #[arg(long, default_value = "cost")]
        minimise: String,
        /// Seed (default: the scenario's `cloud.seed`).
        #[arg(long)]
        seed: Option<u64>,
        /// Run slice i of n (`i/n`) and write it with --json for `merge`.
        #[arg(long)]
        shard: Option<String>,
        /// Write the result (or the shard) as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write the frontier chart (HTML) here.
        #[arg(long)]
        html: Option<PathBuf>,
    },
    /// Join `tune --shard` outputs into the unsharded result
    Merge {
        /// Shard JSON files.
        #[arg(required = true)]
        shards: Vec<PathBuf>,
        /// Write the result as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write the frontier chart (HTML) here.
        #[arg(long)]
        html: Option<PathBuf>,
    },
    /// Replay every built-in story and every repository trace (under the
    /// tv-peak-ice and breaking-news clouds) with ours and every cluster-autoscaler
    /// variant, and judge each row against issue 12's criteria
    Scoreboard {
        /// Folder of traces (`*.csv`) [default: the repository's simulator/traces]
        #[arg(long)]
        traces: Option<PathBuf>,
        /// Only the rows whose scenario or trace name contains this
        #[arg(long)]
        only: Option<String>,
        /// Write the rows and verdicts as JSON here
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write the table as an HTML page here
        #[arg(long)]
        html: Option<PathBuf>,
        /// Write the table in Markdown here (what simulator/README.md shows)
        #[arg(long)]
        markdown: Option<PathBuf>,
        /// Exit with status 3 when any criterion fails
        #[arg(long)]
        strict: bool,
        /// Run every policy with the chart's placeholder ladder (for CA: the
        /// cluster-proportional-autoscaler beside it) and ours with growth headroom, as
        /// the chart does with `overprovisioning.enabled`
        #[arg(long)]
        overprovisioning: bool,
        /// One seed for every row (default: each scenario's `cloud.seed`); run a few to
        /// see which verdicts are close calls
        #[arg(long)]
        seed: Option<u64>,
    },
}

fn main() {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(()) => {}
        Err(e) => {
            eprintln!("autoscaler-sim: {e:#}");
            let input = e.chain().any(|c| c.downcast_ref::<InputError>().is_some());
            std::process::exit(if input { 2 } else { 1 });
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Scenarios => {
            for (name, desc) in list_builtins() {
                println!("{name:<22} {desc}");
            }
            Ok(())
        }
        Command::Scoreboard {
            traces,
            only,
            json,
            html,
            markdown,
            strict,
            overprovisioning,
            seed,
        } => {
            let traces = traces
                .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/traces")));
            let board = simulator::scoreboard::run(
                &traces,
                only.as_deref(),
                overprovisioning,
                seed,
                &|row| {
                    if std::io::stderr().is_terminal() {
                        eprintln!("replaying {row}");
                    }
                },
            )?;
            print!("{}", board.table());
            if let Some(p) = json {
                let text = serde_json::to_string_pretty(&board).context("serializing")?;
                std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
            }
            if let Some(p) = html {
                std::fs::write(&p, board.html())
                    .with_context(|| format!("writing {}", p.display()))?;
            }
            if let Some(p) = markdown {
                std::fs::write(&p, board.markdown())
                    .with_context(|| format!("writing {}", p.display()))?;
            }
            if strict && !board.all_pass() {
                std::process::exit(3);
            }
            Ok(())
        }
        Command::Replay {
            recording,
            from,
            to,
            hpa,
            seed,
            policy,
            json,
            html,
            scenario_out,
        } => {
            let policies = parse_policies(&policy)?;
            let rec = simulator::replay::Recording::load(&recording)?.window(from, to)?;
            let (loaded, warnings) = rec.to_loaded_with(hpa)?;
            if let Some(p) = scenario_out {
                let yaml = serde_yaml_ng::to_string(&loaded.scenario).context("serializing")?;
                std::fs::write(&p, yaml).with_context(|| format!("writing {}", p.display()))?;
            }
            let bar = progress_bar(loaded.duration_s() * policies.len() as u64);
            let mut report = simulator::run_policies(&loaded, &policies, seed, &|n| bar.inc(n));
            bar.finish_and_clear();
            for r in report.policies.values_mut() {
                r.warnings.extend(warnings.iter().cloned());
            }
            print!("{}", report.table());
            if let Some(ours) = report.policies.get("ours") {
                let tolerance = loaded.scenario.sim.scan_interval_s;
                let matches =
                    simulator::replay::match_decisions(&rec.live_decisions(), &ours.decisions);
                print!("{}", simulator::replay::match_table(&matches, tolerance));
            }
            if let Some(p) = json {
                std::fs::write(&p, report.to_json())
                    .with_context(|| format!("writing {}", p.display()))?;
            }
            if let Some(p) = html {
                std::fs::write(&p, simulator::html::render(&report))
                    .with_context(|| format!("writing {}", p.display()))?;
            }
            Ok(())
        }
        Command::Tune {
            scenario,
            recording,
            hpa,
            vary,
            objective,
            minimise,
            seed,
            shard,
            json,
            html,
        } => {
            use simulator::tune;
            let (loaded, input) = match (scenario, recording) {
                (Some(s), None) => {
                    let (sc, path) = Scenario::load(&s)?;
                    (sc.resolve(path.as_deref(), None)?, s)
                }
                (None, Some(r)) => {
                    let rec = simulator::replay::Recording::load(&r)?.window(None, None)?;
                    (rec.to_loaded_with(hpa)?.0, r.display().to_string())
                }
                _ => return Err(InputError::Usage("give --scenario or --recording".into()).into()),
            };
            tune::check_metric(&minimise)?;
            let question = tune::Question {
                input,
                seed: seed.unwrap_or(loaded.scenario.cloud.seed),
                vary: vary
                    .iter()
                    .map(|v| tune::Vary::parse(v))
                    .collect::<Result<_, _>>()?,
                objective: tune::Objective::parse_all(&objective)?,
                minimise,
            };
            let slice = match &shard {
                None => (0, 1),
                Some(text) => text
                    .split_once('/')
                    .and_then(|(i, n)| Some((i.trim().parse().ok()?, n.trim().parse().ok()?)))
                    .ok_or_else(|| {
                        InputError::Usage(format!("--shard {text:?}: write it as i/n, e.g. 0/4"))
                    })?,
            };
            let size = tune::grid_size(&question.vary);
            let bar = progress_bar(size.div_ceil(slice.1) as u64);
            let started = std::time::Instant::now();
            let part = tune::run_shard(&loaded, &question, slice, &|| bar.inc(1))?;
            bar.finish_and_clear();
            eprintln!(
                "{} of {size} points in {:.1} s",
                part.points.len(),
                started.elapsed().as_secs_f64()
            );
            if shard.is_some() {
                let p = json.ok_or_else(|| {
                    InputError::Usage("--shard needs --json FILE (the input of `merge`)".into())
                })?;
                let text = serde_json::to_string_pretty(&part).context("serializing")?;
                std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
                return Ok(());
            }
            let result = tune::merge(vec![part])?;
            write_tune(&result, json, html)
        }
        Command::Merge { shards, json, html } => {
            let mut parts = Vec::new();
            for p in &shards {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading {}", p.display()))?;
                parts.push(serde_json::from_str(&text).map_err(|e| InputError::File {
                    file: p.display().to_string(),
                    message: format!("not a `tune --shard` output: {e}"),
                })?);
            }
            let result = simulator::tune::merge(parts)?;
            write_tune(&result, json, html)
        }
        Command::Run {
            scenario,
            trace,
            time_column,
            requests_column,
            seed,
            policy,
            balance_similar_node_groups,
            node_termination_handler,
            json,
            html,
        } => {
            let policies = policy
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(|s| s.parse::<PolicyKind>().map_err(InputError::Usage))
                .collect::<Result<Vec<_>, _>>()?;
            if policies.is_empty() {
                return Err(InputError::Usage("--policy is empty".into()).into());
            }
            let (mut sc, path) = Scenario::load(&scenario)?;
            if let Some(b) = balance_similar_node_groups {
                sc.ca_baseline.balance_similar_node_groups = b;
            }
            if let Some(n) = node_termination_handler {
                sc.ca_baseline.node_termination_handler = n;
            }
            let columns = Columns {
                time: time_column,
                requests: requests_column,
            };
            let loaded = sc.resolve(path.as_deref(), trace.as_deref().map(|t| (t, &columns)))?;
            let duration = loaded.scenario.duration_s.unwrap_or(loaded.trace.len_s());
            let bar = if std::io::stderr().is_terminal() {
                ProgressBar::with_draw_target(
                    Some(duration * policies.len() as u64),
                    ProgressDrawTarget::stderr(),
                )
            } else {
                ProgressBar::hidden()
            };
            bar.set_style(
                ProgressStyle::with_template("{bar:40} {percent}% simulated, {elapsed} elapsed")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            let report = simulator::run_policies(&loaded, &policies, seed, &|n| bar.inc(n));
            bar.finish_and_clear();
            print!("{}", report.table());
            if let Some(p) = json {
                std::fs::write(&p, report.to_json())
                    .with_context(|| format!("writing {}", p.display()))?;
            }
            if let Some(p) = html {
                std::fs::write(&p, simulator::html::render(&report))
                    .with_context(|| format!("writing {}", p.display()))?;
            }
            Ok(())
        }
    }
}

fn parse_policies(policy: &str) -> anyhow::Result<Vec<PolicyKind>> {
    let policies = policy
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.parse::<PolicyKind>().map_err(InputError::Usage))
        .collect::<Result<Vec<_>, _>>()?;
    if policies.is_empty() {
        return Err(InputError::Usage("--policy is empty".into()).into());
    }
    Ok(policies)
}

/// A progress bar on stderr when it is a terminal, hidden otherwise.
fn progress_bar(len: u64) -> ProgressBar {
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len}, {elapsed} elapsed")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

fn write_tune(
    result: &simulator::tune::TuneResult,
    json: Option<PathBuf>,
    html: Option<PathBuf>,
) -> anyhow::Result<()> {
    print!("{}", result.table());
    print!("{}", result.recommendation());
    if let Some(p) = json {
        std::fs::write(&p, result.to_json()).with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = html {
        std::fs::write(&p, result.html()).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}
