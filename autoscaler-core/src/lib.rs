//! # autoscaler-core
//!
//! The decision engine of a spot-aware cluster autoscaler for Kubernetes on AWS
//! AutoScalingGroups. It is **sans-IO and deterministic**: it never reads a clock, a
//! random source, the network or a file. Inputs are a [`ClusterSnapshot`], [`Event`]s
//! (launch failures, ...) and `now`; outputs are plain-data [`Decisions`], each with a
//! reason a person can read. The same history of inputs gives the same decisions, which
//! is what lets the simulator replay traffic through this very code.
//!
//! Adapters (the AWS adapter, the Kubernetes controller, the simulator) translate the
//! world into snapshots and events and carry out the decisions.
//!
//! ```
//! use autoscaler_core::{
//!     Autoscaler, AutoscalerConfig, CapacityType, ClusterSnapshot, Decision, Event,
//!     InstanceType, LaunchFailureReason, NodeGroup, NodeTemplate, Pod, Resources,
//!     SnapshotParts, Timestamp,
//! };
//!
//! fn group(name: &str, capacity_type: CapacityType, price: f64) -> NodeGroup {
//!     NodeGroup {
//!         name: name.into(),
//!         min_size: 0,
//!         max_size: 10,
//!         target_size: 0,
//!         current_instances: None,
//!         zones: vec!["eu-west-1a".into()],
//!         capacity_type,
//!         mix: None,
//!         instance_types: vec![InstanceType::new("m5.xlarge", 4, 16384, price)],
//!         template: NodeTemplate::default(),
//!         options: Default::default(),
//!     }
//! }
//!
//! let mut engine = Autoscaler::new(AutoscalerConfig::default()).unwrap();
//! // CA's priority ConfigMap format: spot first, on-demand as the fallback.
//! engine.set_priorities("50: ['spot']\n10: ['on-demand']\n").unwrap();
//!
//! let snapshot = ClusterSnapshot::new(SnapshotParts {
//!     groups: vec![
//!         group("web-spot", CapacityType::Spot, 0.07),
//!         group("web-on-demand", CapacityType::OnDemand, 0.19),
//!     ],
//!     pods: (0..6)
//!         .map(|i| Pod::pending(format!("web-{i}"), Resources::parse("1", "2Gi").unwrap()).into())
//!         .collect(),
//!     ..SnapshotParts::default()
//! })
//! .unwrap();
//!
//! let t0 = Timestamp::from_secs(1_000);
//! let first = engine.decide(&snapshot, t0);
//! assert!(matches!(&first.actions[..], [Decision::ScaleUp { group, delta: 2, .. }] if group == "web-spot"));
//!
//! // Spot is out of capacity: fail over in the same round, without waiting 15 minutes.
//! engine.handle_event(
//!     Event::LaunchFailed {
//!         group: "web-spot".into(),
//!         zone: Some("eu-west-1a".into()),
//!         instance_type: Some("m5.xlarge".into()),
//!         reason: LaunchFailureReason::InsufficientInstanceCapacity,
//!     },
//!     Timestamp::from_secs(1_020),
//! );
//! let second = engine.decide(&snapshot, Timestamp::from_secs(1_020));
//! assert!(matches!(&second.actions[0], Decision::RevertScaleUp { group, .. } if group == "web-spot"));
//! assert!(matches!(&second.actions[1], Decision::ScaleUp { group, .. } if group == "web-on-demand"));
//! ```

#![deny(clippy::disallowed_methods)]

pub mod balance;
pub mod config;
pub mod cooloff;
pub mod deadline;
pub mod decision;
mod disruption;
pub mod engine;
pub mod events;
pub mod expander;
pub mod fixtures;
pub mod headroom;
mod hedge;
pub mod hpa;
pub mod index;
pub mod labels;
pub mod model;
pub mod overprovisioning;
pub mod predicates;
pub mod quantity;
pub mod recording;
pub mod resources;
mod scaleup;
pub mod snapshot;
pub mod time;

pub use balance::BalanceSets;
pub use config::{
    AutoscalerConfig, BalanceConfig, Budget, ConfigError, DrainBackConfig, HedgeConfig, Range,
    ScaleDownConfig,
};
pub use cooloff::{CoolOff, CoolOffPolicy, CoolOffs, PoolKey};
pub use decision::{
    Decision, Decisions, GroupStatus, NodeOutcome, NodeVerdict, PodDeletionCost, PodOutcome,
    PodVerdict, RemovalKind, ScaleDownBlocker, ScaleUpCause, Status,
};
pub use engine::Autoscaler;
pub use events::{Event, InterruptionKind, LaunchFailureReason};
pub use expander::{Expander, ExpanderChain, ExpanderError, PriorityConfig};
pub use headroom::{HeadroomConfig, HeadroomWindow};
pub use index::{GroupIdx, NodeIdx, PodIdx};
pub use model::{
    CapacityMix, CapacityType, DaemonSet, GroupOptions, InstanceType, LabelSelector, Labels,
    LaunchSplit, Node, NodeGroup, NodeSelectorTerm, NodeTemplate, OwnerRef, Pod,
    PodAntiAffinityTerm, PodDisruptionBudget, Requirement, SchedulingSpec, SelectorOperator, Taint,
    TaintEffect, Toleration, TolerationOperator, TopologySpreadConstraint, WhenUnsatisfiable,
    WorkloadLoad,
};
pub use predicates::{Unfit, Variant};
pub use resources::{ResourceName, Resources, Shortfall};
pub use snapshot::{ClusterSnapshot, SnapshotError, SnapshotParts};
pub use time::Timestamp;

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
