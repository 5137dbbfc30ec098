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
        /// Exit with status 3 when any criterion fails
        #[arg(long)]
        strict: bool,
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
            strict,
        } => {
            let traces = traces
                .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/traces")));
            let board = simulator::scoreboard::run(&traces, only.as_deref(), &|row| {
                if std::io::stderr().is_terminal() {
                    eprintln!("replaying {row}");
                }
            })?;
            print!("{}", board.table());
            if let Some(p) = json {
                let text = serde_json::to_string_pretty(&board).context("serializing")?;
                std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
            }
            if let Some(p) = html {
                std::fs::write(&p, board.html())
                    .with_context(|| format!("writing {}", p.display()))?;
            }
            if strict && !board.all_pass() {
                std::process::exit(3);
            }
            Ok(())
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
