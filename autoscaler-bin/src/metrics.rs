//! Prometheus metrics (`cluster_autoscaler_*` where the meaning is CA's, `autoscaler_*`
//! for ours) and the `/metrics` + `/healthz` HTTP server.

use autoscaler_core::{CapacityType, Decision, Decisions, PodVerdict, RemovalKind};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A `state` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    /// State.
    pub state: String,
}

/// A `node_group` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabel {
    /// Group name.
    pub node_group: String,
}

/// A `balance_set` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BalanceSetLabel {
    /// Balance set.
    pub balance_set: String,
}

/// A `capacity` label: what a pending pod found (`free_room`, `upcoming`, `new_node`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CapacityLabel {
    /// What it found.
    pub capacity: &'static str,
}

/// A `reason` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Reason.
    pub reason: String,
}

/// A `cause` label ([`autoscaler_core::ScaleUpCause::label`]).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CauseLabel {
    /// Cause.
    pub cause: String,
}

/// The `kind` and `action` labels of a cloud provider error.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderErrorLabel {
    /// [`crate::provider::ProviderError::kind`]: `throttled`, `access_denied`, ...
    pub kind: String,
    /// The IAM action of the failed call, or empty.
    pub action: String,
}

/// Every metric the binary exports.
pub struct Metrics {
    registry: Registry,
    /// `cluster_autoscaler_nodes_count{state}`.
    pub nodes_count: Family<StateLabel, Gauge>,
    /// `cluster_autoscaler_unschedulable_pods_count`.
    pub unschedulable_pods: Gauge,
    /// `cluster_autoscaler_node_groups_count`.
    pub node_groups: Gauge,
    /// `cluster_autoscaler_scaled_up_nodes_total`.
    pub scaled_up_nodes: Counter,
    /// `cluster_autoscaler_scaled_down_nodes_total{reason}`.
    pub scaled_down_nodes: Family<ReasonLabel, Counter>,
    /// `cluster_autoscaler_failed_scale_ups_total`.
    pub failed_scale_ups: Counter,
    /// `cluster_autoscaler_last_activity{activity}` (unix seconds).
    pub last_activity: Family<StateLabel, Gauge>,
    /// `autoscaler_decision_round_seconds`: snapshot + decide + actuation of one round.
    pub round_seconds: Histogram,
    /// `autoscaler_decide_seconds`: the engine's `decide` alone.
    pub decide_seconds: Histogram,
    /// `autoscaler_unschedulable_to_capacity_seconds{capacity}`: per pending pod, from the
    /// watch first delivering it unschedulable to the end of the round that found it
    /// capacity: `free_room` on a node, a node `upcoming` (ordered before), or a
    /// `new_node` whose scale-up call returned in that round.
    pub unschedulable_to_capacity: Family<CapacityLabel, Histogram, fn() -> Histogram>,
    /// `autoscaler_is_leader`.
    pub is_leader: Gauge,
    /// `autoscaler_dry_run`.
    pub dry_run: Gauge,
    /// `autoscaler_on_demand_node_share` (0..1).
    pub on_demand_share: Gauge<f64, AtomicU64>,
    /// `autoscaler_pool_cooloff_active`.
    pub pool_cooloff_active: Gauge,
    /// `autoscaler_pools_available{node_group}`: 1 while the group has a pool out of cool-off.
    pub pools_available: Family<GroupLabel, Gauge>,
    /// `autoscaler_zone_skew{balance_set}`.
    pub zone_skew: Family<BalanceSetLabel, Gauge>,
    /// `autoscaler_drain_back_total`.
    pub drain_back: Counter,
    /// `autoscaler_decisions_total{reason}` by decision kind (dry-run included).
    pub decisions: Family<ReasonLabel, Counter>,
    /// `autoscaler_round_failures_total{reason}`: decision rounds that failed, by the side
    /// that failed (`cloud_provider`, `kubernetes_api`, `snapshot`, `other`).
    pub round_failures: Family<ReasonLabel, Counter>,
    /// `autoscaler_cloud_provider_errors_total{kind,action}`: failed provider calls that
    /// failed a round or a decision, by kind (throttled, access_denied, validation, ...)
    /// and IAM action.
    pub cloud_provider_errors: Family<ProviderErrorLabel, Counter>,
    /// `autoscaler_scale_ups_total{cause}`: scale-up decisions by cause (pending pods,
    /// zone balance, replacement for drain-back or rebalance).
    pub scale_ups: Family<CauseLabel, Counter>,
    /// `autoscaler_unsupported_pods`: pending pods that use a scheduling feature the engine
    /// does not model (DRA claims, ...), so never trigger a scale-up.
    pub unsupported_pods: Gauge,
    /// `autoscaler_watch_objects{state}`: objects in the reflector caches, by kind.
    pub cache_objects: Family<StateLabel, Gauge>,
    /// Last time (ms since process start) the main loop went round; for /healthz.
    pub heartbeat_ms: AtomicU64,
    started: Instant,
}

fn seconds_buckets() -> impl Iterator<Item = f64> {
    [
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ]
    .into_iter()
}

fn wait_buckets() -> impl Iterator<Item = f64> {
    [
        0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0,
    ]
    .into_iter()
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut m = Metrics {
            registry: Registry::default(),
            nodes_count: Family::default(),
            unschedulable_pods: Gauge::default(),
            unsupported_pods: Gauge::default(),
            node_groups: Gauge::default(),
            scaled_up_nodes: Counter::default(),
            scaled_down_nodes: Family::default(),
            failed_scale_ups: Counter::default(),
            last_activity: Family::default(),
            round_seconds: Histogram::new(seconds_buckets()),
            decide_seconds: Histogram::new(seconds_buckets()),
            unschedulable_to_capacity: Family::new_with_constructor(|| {
                Histogram::new(wait_buckets())
            }),
            is_leader: Gauge::default(),
            dry_run: Gauge::default(),
            on_demand_share: Gauge::default(),
            pool_cooloff_active: Gauge::default(),
            pools_available: Family::default(),
            zone_skew: Family::default(),
            drain_back: Counter::default(),
            decisions: Family::default(),
            scale_ups: Family::default(),
            round_failures: Family::default(),
            cloud_provider_errors: Family::default(),
            cache_objects: Family::default(),
            heartbeat_ms: AtomicU64::new(0),
            started: Instant::now(),
        };
        let r = &mut m.registry;
        r.register(
            "cluster_autoscaler_nodes_count",
            "Nodes by state (ready, unready, notStarted).",
            m.nodes_count.clone(),
        );
        r.register(
            "cluster_autoscaler_unschedulable_pods_count",
            "Unschedulable pods considered for scale-up.",
            m.unschedulable_pods.clone(),
        );
        r.register(
            "autoscaler_unsupported_pods",
            "Pending pods using a scheduling feature the autoscaler does not model (never scaled for).",
            m.unsupported_pods.clone(),
        );
        r.register(
            "cluster_autoscaler_node_groups_count",
            "Node groups managed.",
            m.node_groups.clone(),
        );
        r.register(
            "cluster_autoscaler_scaled_up_nodes",
            "Nodes added by scale-ups.",
            m.scaled_up_nodes.clone(),
        );
        r.register(
            "cluster_autoscaler_scaled_down_nodes",
            "Nodes removed, by reason.",
            m.scaled_down_nodes.clone(),
        );
        r.register(
            "cluster_autoscaler_failed_scale_ups",
            "Scale-ups reverted (launch failure, cool-off, timeout).",
            m.failed_scale_ups.clone(),
        );
        r.register(
            "cluster_autoscaler_last_activity",
            "Unix time of the last activity of each kind (main, scaleUp, scaleDown).",
            m.last_activity.clone(),
        );
        r.register(
            "autoscaler_decision_round_seconds",
            "Duration of one decision round: snapshot, decide, actuation.",
            m.round_seconds.clone(),
        );
        r.register(
            "autoscaler_decide_seconds",
            "Duration of the engine's decide() call.",
            m.decide_seconds.clone(),
        );
        r.register(
            "autoscaler_unschedulable_to_capacity_seconds",
            "Per pending pod: from the watch delivering it unschedulable to the end of the round that found it capacity.",
            m.unschedulable_to_capacity.clone(),
        );
        r.register(
            "autoscaler_is_leader",
            "1 while this replica holds the Lease.",
            m.is_leader.clone(),
        );
        r.register(
            "autoscaler_dry_run",
            "1 in --dry-run (shadow) mode.",
            m.dry_run.clone(),
        );
        r.register(
            "autoscaler_on_demand_node_share",
            "Share of managed nodes that are on-demand.",
            m.on_demand_share.clone(),
        );
        r.register(
            "autoscaler_pool_cooloff_active",
            "Capacity pools in ICE cool-off.",
            m.pool_cooloff_active.clone(),
        );
        r.register(
            "autoscaler_pools_available",
            "1 while a node group has a capacity pool out of cool-off.",
            m.pools_available.clone(),
        );
        r.register(
            "autoscaler_zone_skew",
            "Max minus min nodes per zone, per balance set.",
            m.zone_skew.clone(),
        );
        r.register(
            "autoscaler_drain_back",
            "On-demand nodes replaced by spot.",
            m.drain_back.clone(),
        );
        r.register(
            "autoscaler_decisions",
            "Decisions taken (or, in dry-run, that would be), by kind.",
            m.decisions.clone(),
        );
        r.register(
            "autoscaler_round_failures",
            "Decision rounds that failed, by the side that failed.",
            m.round_failures.clone(),
        );
        r.register(
            "autoscaler_cloud_provider_errors",
            "Cloud provider calls that failed a round or a decision, by kind and IAM action.",
            m.cloud_provider_errors.clone(),
        );
        r.register(
            "autoscaler_scale_ups",
            "Scale-up decisions by cause (pending_pods, zone_balance, hedge, replacement_*).",
            m.scale_ups.clone(),
        );
        r.register(
            "autoscaler_watch_objects",
            "Objects held in the watch caches, by kind.",
            m.cache_objects.clone(),
        );
        m
    }

    /// Adds a collector (a provider's own families, see
    /// [`crate::provider::NodeGroupProvider::collectors`]) to `/metrics`, read at each scrape.
    pub fn register_collector(&mut self, collector: Box<dyn Collector>) {
        self.registry.register_collector(collector);
    }

    /// The OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Marks the main loop alive.
    pub fn beat(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.heartbeat_ms.store(ms, Ordering::Relaxed);
    }

    /// Counts a failed round. The heartbeat is not renewed: rounds that keep failing
    /// turn `/healthz` unhealthy once the stall window has passed.
    pub fn round_failed(&self, reason: &str) {
        self.round_failures
            .get_or_create(&ReasonLabel {
                reason: reason.into(),
            })
            .inc();
    }

    /// Counts a provider error by kind and IAM action.
    pub fn cloud_provider_error(&self, e: &crate::provider::ProviderError) {
        self.cloud_provider_errors
            .get_or_create(&ProviderErrorLabel {
                kind: e.kind().into(),
                action: e.action().unwrap_or_default().into(),
            })
            .inc();
    }

    /// Whether the main loop went round within `max_age`.
    pub fn healthy(&self, max_age: Duration) -> bool {
        let last = Duration::from_millis(self.heartbeat_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last) <= max_age
    }

    /// Records one round: the snapshot's shape and the decisions (taken or, in dry-run,
    /// reported).
    pub fn record_round(
        &self,
        snap_nodes: &[autoscaler_core::Node],
        d: &Decisions,
        unix_secs: i64,
    ) {
        let (mut ready, mut unready, mut managed, mut on_demand) = (0i64, 0i64, 0u64, 0u64);
        for n in snap_nodes {
            if n.ready {
                ready += 1;
            } else {
                unready += 1;
            }
            if n.group.is_some() {
                managed += 1;
                on_demand += u64::from(n.capacity_type == CapacityType::OnDemand);
            }
        }
        let set = |f: &Family<StateLabel, Gauge>, s: &str, v: i64| {
            f.get_or_create(&StateLabel { state: s.into() }).set(v);
        };
        set(&self.nodes_count, "ready", ready);
        set(&self.nodes_count, "unready", unready);
        let in_flight: u32 = d.status.groups.iter().map(|g| g.in_flight).sum();
        set(&self.nodes_count, "notStarted", i64::from(in_flight));
        self.on_demand_share.set(if managed == 0 {
            0.0
        } else {
            on_demand as f64 / managed as f64
        });
        self.unschedulable_pods
            .set(i64::try_from(d.status.pending_pods).unwrap_or(i64::MAX));
        let unsupported = d
            .pods
            .iter()
            .filter(|p| {
                matches!(&p.verdict, PodVerdict::NotTriggerScaleUp { reason }
                    if reason.contains(autoscaler_core::predicates::UNSUPPORTED_FEATURE))
            })
            .count();
        self.unsupported_pods
            .set(i64::try_from(unsupported).unwrap_or(i64::MAX));
        self.node_groups
            .set(i64::try_from(d.status.groups.len()).unwrap_or(i64::MAX));
        let now = unix_secs;
        self.pool_cooloff_active.set(
            i64::try_from(
                d.status
                    .cool_offs
                    .iter()
                    .filter(|(_, c)| c.until.as_millis() as i64 > now * 1000)
                    .count(),
            )
            .unwrap_or(0),
        );
        for g in &d.status.groups {
            let blocked = g
                .cool_off_until
                .is_some_and(|t| t.as_millis() as i64 > now * 1000);
            self.pools_available
                .get_or_create(&GroupLabel {
                    node_group: g.name.clone(),
                })
                .set(i64::from(!blocked));
        }
        for (set_name, skew) in &d.status.zone_skew {
            self.zone_skew
                .get_or_create(&BalanceSetLabel {
                    balance_set: set_name.clone(),
                })
                .set(i64::from(*skew));
        }
        set(&self.last_activity, "main", now);
        for a in &d.actions {
            let kind = match a {
                Decision::ScaleUp { delta, cause, .. } => {
                    self.scaled_up_nodes.inc_by(u64::from(*delta));
                    self.scale_ups
                        .get_or_create(&CauseLabel {
                            cause: cause.label().into(),
                        })
                        .inc();
                    set(&self.last_activity, "scaleUp", now);
                    "scale_up"
                }
                Decision::RevertScaleUp { .. } => {
                    self.failed_scale_ups.inc();
                    "revert_scale_up"
                }
                Decision::RemoveNode { kind, .. } => {
                    let reason = match kind {
                        RemovalKind::ScaleDown => "underutilized",
                        RemovalKind::DrainBack => {
                            self.drain_back.inc();
                            "drain_back"
                        }
                        RemovalKind::Rebalance => "rebalance",
                        RemovalKind::Interruption => "interruption",
                    };
                    self.scaled_down_nodes
                        .get_or_create(&ReasonLabel {
                            reason: reason.into(),
                        })
                        .inc();
                    set(&self.last_activity, "scaleDown", now);
                    "remove_node"
                }
                Decision::SetOverprovisioning { .. } => "set_overprovisioning",
            };
            self.decisions
                .get_or_create(&ReasonLabel {
                    reason: kind.into(),
                })
                .inc();
        }
    }
}

/// Serves `/metrics` and `/healthz` until the task is dropped. `/healthz` fails once the
/// main loop has not gone round for `stall` (the pod is then restarted by its probe).
pub async fn serve(
    addr: std::net::SocketAddr,
    metrics: Arc<Metrics>,
    stall: Duration,
) -> anyhow::Result<()> {
    use axum::http::{header, StatusCode};
    use axum::routing::get;
    let m = metrics.clone();
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let m = m.clone();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        m.encode(),
                    )
                }
            }),
        )
        .route(
            "/healthz",
            get(move || {
                let m = metrics.clone();
                async move {
                    if m.healthy(stall) {
                        (StatusCode::OK, "ok\n".to_string())
                    } else {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("main loop stalled for more than {}s\n", stall.as_secs()),
                        )
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("--metrics-address {addr}: {e}"))?;
    axum::serve(listener, app).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use autoscaler_core::ScaleUpCause;

    #[test]
    fn exports_ca_names() {
        let m = Metrics::new();
        let d = Decisions {
            actions: vec![Decision::ScaleUp {
                group: "g".into(),
                delta: 3,
                new_target: 3,
                cause: ScaleUpCause::PendingPods,
                reason: "r".into(),
            }],
            ..Decisions::default()
        };
        m.record_round(&[], &d, 1_700_000_000);
        m.unschedulable_to_capacity
            .get_or_create(&CapacityLabel {
                capacity: "new_node",
            })
            .observe(1.2);
        let text = m.encode();
        for name in [
            "autoscaler_unschedulable_to_capacity_seconds_bucket{le=\"1.0\",capacity=\"new_node\"} 0",
            "autoscaler_unschedulable_to_capacity_seconds_bucket{le=\"1.5\",capacity=\"new_node\"} 1",
            "cluster_autoscaler_scaled_up_nodes_total 3",
            "cluster_autoscaler_unschedulable_pods_count 0",
            "cluster_autoscaler_nodes_count{state=\"ready\"} 0",
            "autoscaler_decision_round_seconds_bucket",
            "autoscaler_decisions_total{reason=\"scale_up\"} 1",
            "autoscaler_scale_ups_total{cause=\"pending_pods\"} 1",
            "autoscaler_on_demand_node_share",
        ] {
            assert!(text.contains(name), "{name} missing in\n{text}");
        }
    }

    #[test]
    fn counts_pods_using_unsupported_features() {
        let m = Metrics::new();
        let reason = |r: String| autoscaler_core::PodOutcome {
            pod: "ns/p".into(),
            verdict: PodVerdict::NotTriggerScaleUp { reason: r },
        };
        let d = Decisions {
            pods: vec![
                reason(format!(
                    "1 group(s) [g]: pod uses DRA, {}",
                    autoscaler_core::predicates::UNSUPPORTED_FEATURE
                )),
                reason("1 group(s) [g]: max node group size reached (3)".into()),
            ],
            ..Decisions::default()
        };
        m.record_round(&[], &d, 1_700_000_000);
        assert!(m.encode().contains("autoscaler_unsupported_pods 1"));
    }

    #[test]
    fn health_follows_the_heartbeat() {
        let m = Metrics::new();
        m.beat();
        assert!(m.healthy(Duration::from_secs(60)));
    }

    #[test]
    fn failed_rounds_are_counted_and_do_not_renew_the_heartbeat() {
        let m = Metrics::new();
        m.beat();
        let before = m.heartbeat_ms.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(5));
        m.round_failed("cloud_provider");
        m.round_failed("cloud_provider");
        assert_eq!(m.heartbeat_ms.load(Ordering::Relaxed), before);
        assert!(!m.healthy(Duration::ZERO), "a failing loop is not alive");
        let text = m.encode();
        assert!(
            text.contains("autoscaler_round_failures_total{reason=\"cloud_provider\"} 2"),
            "{text}"
        );
    }

    #[test]
    fn provider_errors_are_counted_by_kind_and_action() {
        use crate::provider::ProviderError;
        use autoscaler_aws::AwsError;
        let m = Metrics::new();
        let throttled = ProviderError::Aws(AwsError::Throttled {
            action: "autoscaling:DescribeAutoScalingGroups",
            code: "Throttling".into(),
        });
        m.cloud_provider_error(&throttled);
        m.cloud_provider_error(&throttled);
        m.cloud_provider_error(&ProviderError::AwsTarget {
            target: "web".into(),
            error: AwsError::AccessDenied {
                action: "autoscaling:SetDesiredCapacity",
                message: "no".into(),
            },
        });
        m.cloud_provider_error(&ProviderError::UnknownGroup("g".into()));
        let text = m.encode();
        for line in [
            "autoscaler_cloud_provider_errors_total{kind=\"throttled\",action=\"autoscaling:DescribeAutoScalingGroups\"} 2",
            "autoscaler_cloud_provider_errors_total{kind=\"access_denied\",action=\"autoscaling:SetDesiredCapacity\"} 1",
            "autoscaler_cloud_provider_errors_total{kind=\"unknown_group\",action=\"\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
    }
}
