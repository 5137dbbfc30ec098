//! Leader election on a `coordination.k8s.io/v1` Lease (CA's default lock), with
//! `kube-lease-manager`: it renews through server-side apply, so two candidates can never
//! both believe they hold a valid lock.

use crate::flags::Flags;
use anyhow::{Context, Result};
use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseParams};
use tokio::sync::watch;

/// This replica's identity: `$POD_NAME`, else the hostname, plus a random-ish suffix so a
/// restarted process never reuses a predecessor's claim.
pub fn identity() -> String {
    let base = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "autoscaler".into());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{base}_{:08x}{:04x}", nanos, std::process::id() & 0xffff)
}

/// Starts leader election and returns a channel that is `true` while this replica
/// leads. Without `--leader-elect` the channel is always `true`.
pub async fn start(client: &Client, flags: &Flags) -> Result<watch::Receiver<bool>> {
    if !flags.leader_elect {
        let (tx, rx) = watch::channel(true);
        // Keep the sender alive for the life of the process.
        std::mem::forget(tx);
        return Ok(rx);
    }
    let duration = flags.leader_elect_lease_duration.as_secs().max(2);
    // Renew this long before expiry: CA's lease duration minus its renew deadline.
    let grace = duration
        .saturating_sub(flags.leader_elect_renew_deadline.as_secs())
        .clamp(1, duration - 1);
    let id = identity();
    tracing::info!(identity = %id, lease = %flags.leader_elect_resource_name, namespace = %flags.lease_namespace(), "leader election");
    let manager = LeaseManagerBuilder::new(client.clone(), &flags.leader_elect_resource_name)
        .with_namespace(flags.lease_namespace())
        .with_parameters(LeaseParams::new(id, duration, grace))
        .build()
        .await
        .context("starting leader election on the Lease")?;
    let (rx, _task) = manager.watch().await;
    Ok(rx)
}
