//! `autoscaler event-infra ensure|verify --cluster NAME`: creates, or checks, the SQS
//! queue and the EventBridge rules that feed it (spot interruption and rebalance
//! warnings, failed launches, instance state changes, scheduled maintenance), the same
//! resources as the CloudFormation in docs/event-queue.md. A one-shot command for an
//! install job or an operator's shell, not something the controller does at start:
//! the controller's role then needs no write access to EventBridge or SQS.

use anyhow::{Context, Result};
use autoscaler_aws::{AwsCloud, AwsConfig, EventInfra};
use clap::{Parser, Subcommand};

/// `autoscaler event-infra`: the command line after the program name.
#[derive(Clone, Debug, Parser)]
#[command(
    name = "autoscaler event-infra",
    about = "Create or check the SQS queue and EventBridge rules the autoscaler reads (--event-queue-url)"
)]
pub struct EventInfraArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: Action,
    /// Cluster name: queue `<cluster>-autoscaler-events`, rules `<cluster>-autoscaler-*`.
    #[arg(long, global = true, default_value = "")]
    pub cluster: String,
    /// AWS region (else AWS_REGION or the profile's).
    #[arg(long, global = true, default_value = "")]
    pub aws_region: String,
    /// AWS endpoint override (tests against moto); the SDK also reads AWS_ENDPOINT_URL.
    #[arg(long, global = true, default_value = "")]
    pub aws_endpoint_url: String,
}

/// `ensure` or `verify`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Subcommand)]
pub enum Action {
    /// Create or update the queue, its policy and the rules (idempotent); prints the
    /// queue URL to pass as --event-queue-url.
    Ensure,
    /// Check that the queue and every rule exist, are enabled, match and target the
    /// queue; prints each problem and exits 1 if there is any.
    Verify,
}

/// Whether `args` (the process's, program name first) ask for this command.
pub fn requested(args: &[String]) -> bool {
    args.get(1).is_some_and(|a| a == "event-infra")
}

/// Parses `args` (program name first, then `event-infra`, then the rest).
pub fn parse(args: &[String]) -> Result<EventInfraArgs, clap::Error> {
    let parsed = EventInfraArgs::try_parse_from(args.iter().skip(1))?;
    if parsed.cluster.is_empty() {
        return Err(clap::Error::raw(
            clap::error::ErrorKind::MissingRequiredArgument,
            "event-infra: --cluster NAME is required (the queue is <NAME>-autoscaler-events, the rules <NAME>-autoscaler-*)\n",
        ));
    }
    Ok(parsed)
}

/// Runs the command; returns the process exit code (0: done or all good, 1: problems
/// found by `verify`). Output goes to stdout, one line per fact.
pub async fn run(args: &EventInfraArgs) -> Result<i32> {
    let sdk = crate::aws_provider::load_sdk_config(&args.aws_region, &args.aws_endpoint_url).await;
    let cloud = AwsCloud::new(&sdk, AwsConfig::default());
    let infra = EventInfra::for_cluster(&args.cluster);
    match args.action {
        Action::Ensure => {
            let state = infra.ensure(cloud.api()).await.with_context(|| {
                format!(
                    "creating queue {} and rules {}-*",
                    infra.queue_name, infra.rule_prefix
                )
            })?;
            println!("queue {} ({})", state.queue_url, state.queue_arn);
            for arn in &state.rule_arns {
                println!("rule {arn}");
            }
            println!("--event-queue-url={}", state.queue_url);
            Ok(0)
        }
        Action::Verify => {
            let problems = infra.verify(cloud.api()).await.with_context(|| {
                format!(
                    "checking queue {} and rules {}-*",
                    infra.queue_name, infra.rule_prefix
                )
            })?;
            for p in &problems {
                println!("problem: {p}");
            }
            if problems.is_empty() {
                println!(
                    "ok: queue {} and rules {}-* are in place",
                    infra.queue_name, infra.rule_prefix
                );
                Ok(0)
            } else {
                println!("fix: run `autoscaler event-infra ensure --cluster {}`, or apply docs/event-queue.md", args.cluster);
                Ok(1)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn only_the_first_argument_selects_the_command() {
        assert!(requested(&args(&["autoscaler", "event-infra", "verify"])));
        assert!(!requested(&args(&["autoscaler", "--nodes=0:1:a"])));
        assert!(!requested(&args(&[
            "autoscaler",
            "--cluster-name",
            "event-infra"
        ])));
    }

    #[test]
    fn the_cluster_is_required_and_named_in_the_error() {
        let e = parse(&args(&["autoscaler", "event-infra", "ensure"])).unwrap_err();
        assert!(e.to_string().contains("--cluster NAME is required"), "{e}");
        let ok = parse(&args(&[
            "autoscaler",
            "event-infra",
            "verify",
            "--cluster",
            "prod",
        ]))
        .unwrap();
        assert_eq!((ok.action, ok.cluster.as_str()), (Action::Verify, "prod"));
        assert!(parse(&args(&[
            "autoscaler",
            "event-infra",
            "create",
            "--cluster",
            "p"
        ]))
        .is_err());
    }
}
