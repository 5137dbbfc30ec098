//! # autoscaler-bin
//!
//! The process that runs in `kube-system` in place of cluster-autoscaler: it watches the
//! cluster (nodes, pods, PDBs, DaemonSets, its ConfigMaps), feeds the sans-IO
//! [`autoscaler_core`] engine, and carries out its decisions on Kubernetes and the cloud
//! (through a [`provider::NodeGroupProvider`]), with leader election, metrics and
//! CA-compatible flags.

pub mod aws_provider;
pub mod controller;
pub mod drain;
pub mod event_infra;
pub mod flags;
pub mod hpa_watch;
pub mod kwok;
pub mod leader;
pub mod logging;
pub mod metrics;
pub mod pod_cache;
pub mod provider;
pub mod recording;
pub mod static_provider;
pub mod status;
pub mod translate;

/// Installs ring as rustls's process-wide crypto provider. kube enables rustls's `ring`
/// and the AWS SDK its `aws-lc-rs`; with both, rustls cannot choose by itself and panics
/// on the first TLS client. Call once before any client is built; later calls do nothing.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
