//! A model of the Kubernetes HorizontalPodAutoscaler (`autoscaling/v2`) for resource
//! utilization metrics: the replica calculator and the `behavior` normalization
//! (stabilization windows, then rate policies), with the controller's semantics.
//!
//! Pure and deterministic: `now` is a parameter, nothing reads a clock.
//!
//! What is reproduced (facts from the Kubernetes documentation and the behaviour of the
//! `podautoscaler` controller):
//! - the ratio `currentUtilization / targetUtilization`, with utilization an integer
//!   percentage of the pods' requests (`sum(usage) * 100 / sum(requests)`, truncated);
//! - tolerance (default 0.1): no change while `|ratio - 1| <= tolerance`;
//! - `desired = ceil(ratio * readyPods)`; when scaling up, not-yet-ready pods count as 0%
//!   and pods without metrics as 0%; when scaling down, pods without metrics count as
//!   100%; the change is dropped if that re-balancing flips its direction or lands in
//!   the tolerance;
//! - `minReplicas`/`maxReplicas`, and "scaling disabled" when the target has 0 replicas;
//! - stabilization: the stored (unstabilized) recommendations of the last
//!   `stabilizationWindowSeconds` bound the result: the *minimum* over the scale-up
//!   window, the *maximum* over the scale-down window (defaults 0 s and 300 s);
//! - rate policies: `Pods` adds/removes a fixed count and `Percent` a share of the
//!   replicas at the start of the period (replicas now, minus what was added, plus what
//!   was removed within `periodSeconds`); `Percent` rounds up when scaling up and down
//!   (truncates the replica count) when scaling down; `selectPolicy` `Max` (default)
//!   takes the policy allowing the largest change, `Min` the smallest, `Disabled` none;
//! - defaults: scale-up `Percent 100 / 15 s` and `Pods 4 / 15 s` with `Max`; scale-down
//!   `Percent 100 / 15 s`.
//!
//! Where it lives, and why: [`crate::Autoscaler::decide`] never calls it, the simulator
//! does (it drives every replayed Deployment). It stays in the core's public API rather
//! than beside the simulator because it has the core's properties (sans-IO, `now` as a
//! parameter, no dependency beyond serde), because embedders use it on its own (a
//! controller that forecasts the replicas an HPA will ask for, or a recording replayed
//! with changed HPA settings, the "record and tune" issue), and because node-level
//! stabilization ("time since the last upscale", the same window rule) is meant to reuse
//! its windows instead of growing a second copy in the engine.

use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use thiserror::Error;

/// The default tolerance (`--horizontal-pod-autoscaler-tolerance`).
pub const DEFAULT_TOLERANCE: f64 = 0.1;

/// The kind of a rate policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScalingPolicyType {
    /// A fixed number of pods per period.
    Pods,
    /// A percentage of the replicas at the start of the period.
    Percent,
}

/// One rate policy (`behavior.scaleUp.policies[]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ScalingPolicy {
    /// `Pods` or `Percent`.
    #[serde(rename = "type")]
    pub policy_type: ScalingPolicyType,
    /// Pods, or percent.
    pub value: u32,
    /// Length of the period the change is measured over, in seconds (1..=1800).
    pub period_seconds: u32,
}

/// How the policies of one direction combine (`selectPolicy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SelectPolicy {
    /// The policy allowing the largest change (default).
    #[default]
    Max,
    /// The policy allowing the smallest change.
    Min,
    /// No scaling in this direction.
    Disabled,
}

/// The rules of one direction (`behavior.scaleUp` or `behavior.scaleDown`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ScalingRules {
    /// Stabilization window in seconds; `None` takes the direction's default
    /// (0 s up, 300 s down).
    pub stabilization_window_seconds: Option<u32>,
    /// How policies combine.
    pub select_policy: SelectPolicy,
    /// Rate policies; empty takes the direction's defaults.
    pub policies: Vec<ScalingPolicy>,
}

/// `spec.behavior`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Behavior {
    /// Scale-up rules.
    pub scale_up: ScalingRules,
    /// Scale-down rules.
    pub scale_down: ScalingRules,
}

impl Behavior {
    fn up_window(&self) -> Duration {
        Duration::from_secs(u64::from(
            self.scale_up.stabilization_window_seconds.unwrap_or(0),
        ))
    }

    fn down_window(&self) -> Duration {
        Duration::from_secs(u64::from(
            self.scale_down.stabilization_window_seconds.unwrap_or(300),
        ))
    }

    fn up_policies(&self) -> Vec<ScalingPolicy> {
        if self.scale_up.policies.is_empty() {
            vec![
                ScalingPolicy {
                    policy_type: ScalingPolicyType::Percent,
                    value: 100,
                    period_seconds: 15,
                },
                ScalingPolicy {
                    policy_type: ScalingPolicyType::Pods,
                    value: 4,
                    period_seconds: 15,
                },
            ]
        } else {
            self.scale_up.policies.clone()
        }
    }

    fn down_policies(&self) -> Vec<ScalingPolicy> {
        if self.scale_down.policies.is_empty() {
            vec![ScalingPolicy {
                policy_type: ScalingPolicyType::Percent,
                value: 100,
                period_seconds: 15,
            }]
        } else {
            self.scale_down.policies.clone()
        }
    }
}

/// An HPA's spec, reduced to one resource-utilization metric.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HpaSpec {
    /// `minReplicas` (default 1).
    #[serde(default = "one")]
    pub min_replicas: u32,
    /// `maxReplicas`.
    pub max_replicas: u32,
    /// `target.averageUtilization`, percent of the pods' requests.
    pub target_utilization: u32,
    /// `behavior`.
    #[serde(default)]
    pub behavior: Behavior,
    /// The controller's tolerance (default 0.1).
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
}

fn one() -> u32 {
    1
}

fn default_tolerance() -> f64 {
    DEFAULT_TOLERANCE
}

/// An HPA spec that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HpaError {
    /// `maxReplicas` below `minReplicas`.
    #[error("maxReplicas {max} is below minReplicas {min}")]
    MaxBelowMin {
        /// min.
        min: u32,
        /// max.
        max: u32,
    },
    /// A target of 0%.
    #[error("target utilization must be above 0%")]
    ZeroTarget,
    /// A policy with a period outside 1..=1800 s or a value of 0.
    #[error("{direction} policy {index}: value must be > 0 and periodSeconds within 1..=1800")]
    BadPolicy {
        /// `scaleUp` or `scaleDown`.
        direction: &'static str,
        /// Index in the list.
        index: usize,
    },
    /// A stabilization window above one hour.
    #[error("{0} stabilizationWindowSeconds must be at most 3600")]
    BadWindow(&'static str),
}

impl HpaSpec {
    /// Checks the spec like the API server's validation does.
    pub fn validate(&self) -> Result<(), HpaError> {
        if self.max_replicas < self.min_replicas {
            return Err(HpaError::MaxBelowMin {
                min: self.min_replicas,
                max: self.max_replicas,
            });
        }
        if self.target_utilization == 0 {
            return Err(HpaError::ZeroTarget);
        }
        for (direction, rules) in [
            ("scaleUp", &self.behavior.scale_up),
            ("scaleDown", &self.behavior.scale_down),
        ] {
            if rules.stabilization_window_seconds.is_some_and(|w| w > 3600) {
                return Err(HpaError::BadWindow(direction));
            }
            for (index, p) in rules.policies.iter().enumerate() {
                if p.value == 0 || p.period_seconds == 0 || p.period_seconds > 1800 {
                    return Err(HpaError::BadPolicy { direction, index });
                }
            }
        }
        Ok(())
    }
}

/// What the metrics pipeline reports about the target's pods for one resource.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceMetrics {
    /// Ready pods with a metric.
    pub ready: u32,
    /// Sum of the ready pods' usage (e.g. CPU millicores).
    pub ready_usage: u64,
    /// Sum of the ready pods' requests, same unit.
    pub ready_requests: u64,
    /// Pods not ready yet (pending, or started but not ready); their metrics are ignored.
    pub unready: u32,
    /// Ready pods without a metric.
    pub missing: u32,
    /// Request of one pod (used for unready and missing pods).
    pub pod_request: u64,
}

fn utilization_ratio(usage: u64, requests: u64, target: u32) -> f64 {
    if requests == 0 {
        return 0.0;
    }
    // Integer percent, truncated, as the metrics client computes it.
    let percent = (u128::from(usage) * 100 / u128::from(requests)) as f64;
    percent / f64::from(target)
}

/// The replica calculator for a resource-utilization target: the raw recommendation,
/// before stabilization, rate policies and min/max.
pub fn replicas_for_utilization(
    current_replicas: u32,
    m: &ResourceMetrics,
    target_utilization: u32,
    tolerance: f64,
) -> u32 {
    if m.ready == 0 || target_utilization == 0 {
        // No metric at all: the controller reports an error and keeps the replicas.
        return current_replicas;
    }
    let ratio = utilization_ratio(m.ready_usage, m.ready_requests, target_utilization);
    let scale_up_with_unready = m.unready > 0 && ratio > 1.0;
    if !scale_up_with_unready && m.missing == 0 {
        if (1.0 - ratio).abs() <= tolerance {
            return current_replicas;
        }
        return (ratio * f64::from(m.ready)).ceil() as u32;
    }
    let mut usage = m.ready_usage;
    let mut requests = m.ready_requests;
    let mut count = m.ready;
    if m.missing > 0 {
        let missing_requests = u64::from(m.missing) * m.pod_request;
        requests += missing_requests;
        if ratio < 1.0 {
            // Scaling down: assume the missing pods use 100% of their request.
            usage += missing_requests;
        }
        count += m.missing;
    }
    if scale_up_with_unready {
        requests += u64::from(m.unready) * m.pod_request;
        count += m.unready;
    }
    let new_ratio = utilization_ratio(usage, requests, target_utilization);
    if (1.0 - new_ratio).abs() <= tolerance
        || (ratio < 1.0 && new_ratio > 1.0)
        || (ratio > 1.0 && new_ratio < 1.0)
    {
        return current_replicas;
    }
    let new_replicas = (new_ratio * f64::from(count)).ceil() as u32;
    if (new_ratio < 1.0 && new_replicas > current_replicas)
        || (new_ratio > 1.0 && new_replicas < current_replicas)
    {
        return current_replicas;
    }
    new_replicas
}

/// Why the HPA settled on its result (the `ScalingLimited` / `AbleToScale` reasons).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Limit {
    /// The recommendation was applied as computed.
    DesiredWithinRange,
    /// The target has 0 replicas and `minReplicas` > 0: autoscaling is off.
    ScalingDisabled,
    /// Clamped to `maxReplicas`.
    TooManyReplicas,
    /// Clamped to `minReplicas`.
    TooFewReplicas,
    /// Held back by a scale-up rate policy.
    ScaleUpLimit,
    /// Held back by a scale-down rate policy.
    ScaleDownLimit,
}

/// The result of one reconciliation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recommendation {
    /// Replicas to set.
    pub replicas: u32,
    /// The raw recommendation of the replica calculator.
    pub raw: u32,
    /// After the stabilization windows.
    pub stabilized: u32,
    /// What limited the result.
    pub limit: Limit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Stamped {
    at: Timestamp,
    value: u32,
}

/// One HPA object with the controller's memory of past recommendations and scale events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hpa {
    spec: HpaSpec,
    recommendations: Vec<Stamped>,
    scale_up_events: Vec<Stamped>,
    scale_down_events: Vec<Stamped>,
}

impl Hpa {
    /// An HPA with a validated spec and no history.
    pub fn new(spec: HpaSpec) -> Result<Self, HpaError> {
        spec.validate()?;
        Ok(Hpa {
            spec,
            recommendations: Vec::new(),
            scale_up_events: Vec::new(),
            scale_down_events: Vec::new(),
        })
    }

    /// The spec.
    pub fn spec(&self) -> &HpaSpec {
        &self.spec
    }

    /// One sync of the controller at `now` (every 15 s in Kubernetes): computes the raw
    /// recommendation from `metrics`, then normalizes it. When the result differs from
    /// `current_replicas` the caller must scale the target to it (the scale event is
    /// recorded here, as the controller does after a successful rescale).
    pub fn reconcile(
        &mut self,
        now: Timestamp,
        current_replicas: u32,
        metrics: &ResourceMetrics,
    ) -> Recommendation {
        let raw = replicas_for_utilization(
            current_replicas,
            metrics,
            self.spec.target_utilization,
            self.spec.tolerance,
        );
        self.reconcile_with_desired(now, current_replicas, raw)
    }

    /// Like [`Hpa::reconcile`], with the raw recommendation already computed (for any
    /// metric type, or the maximum over several metrics).
    pub fn reconcile_with_desired(
        &mut self,
        now: Timestamp,
        current_replicas: u32,
        raw: u32,
    ) -> Recommendation {
        let (min, max) = (self.spec.min_replicas, self.spec.max_replicas);
        let (replicas, stabilized, limit) = if current_replicas == 0 && min != 0 {
            (0, 0, Limit::ScalingDisabled)
        } else if current_replicas > max {
            (max, raw, Limit::TooManyReplicas)
        } else if current_replicas < min {
            (min, raw, Limit::TooFewReplicas)
        } else {
            let stabilized = self.stabilize(now, current_replicas, raw);
            let (r, l) = self.apply_rate(now, current_replicas, stabilized);
            (r, stabilized, l)
        };
        if replicas != current_replicas && limit != Limit::ScalingDisabled {
            self.record_scale_event(now, current_replicas, replicas);
        }
        Recommendation {
            replicas,
            raw,
            stabilized,
            limit,
        }
    }

    fn stabilize(&mut self, now: Timestamp, current: u32, desired: u32) -> u32 {
        let up_window = self.spec.behavior.up_window();
        let down_window = self.spec.behavior.down_window();
        let mut up = desired;
        let mut down = desired;
        for r in &self.recommendations {
            // Strictly after `now - window`, as the controller's `time.After(cutoff)`.
            if now.since(r.at) < up_window {
                up = up.min(r.value);
            }
            if now.since(r.at) < down_window {
                down = down.max(r.value);
            }
        }
        let longest = up_window.max(down_window);
        self.recommendations.retain(|r| now.since(r.at) < longest);
        self.recommendations.push(Stamped {
            at: now,
            value: desired,
        });
        current.max(up).min(down)
    }

    fn change_in_period(events: &[Stamped], period: u32, now: Timestamp) -> u32 {
        let period = Duration::from_secs(u64::from(period));
        events
            .iter()
            .filter(|e| e.at + period > now)
            .map(|e| e.value)
            .sum()
    }

    fn period_start(&self, p: &ScalingPolicy, current: u32, now: Timestamp) -> i64 {
        let added = Self::change_in_period(&self.scale_up_events, p.period_seconds, now);
        let removed = Self::change_in_period(&self.scale_down_events, p.period_seconds, now);
        i64::from(current) - i64::from(added) + i64::from(removed)
    }

    fn apply_rate(&self, now: Timestamp, current: u32, desired: u32) -> (u32, Limit) {
        let b = &self.spec.behavior;
        let (min, max) = (self.spec.min_replicas, self.spec.max_replicas);
        if desired > current {
            let limit = match b.scale_up.select_policy {
                SelectPolicy::Disabled => i64::from(current),
                select => {
                    let proposals = b.up_policies().into_iter().map(|p| {
                        let start = self.period_start(&p, current, now);
                        match p.policy_type {
                            ScalingPolicyType::Pods => start + i64::from(p.value),
                            ScalingPolicyType::Percent => {
                                (start as f64 * (1.0 + f64::from(p.value) / 100.0)).ceil() as i64
                            }
                        }
                    });
                    if select == SelectPolicy::Min {
                        proposals.min().unwrap_or(i64::from(current))
                    } else {
                        proposals.max().unwrap_or(i64::from(current))
                    }
                }
            };
            let limit = limit.max(i64::from(current));
            let (allowed, why) = if i64::from(max) > limit {
                (limit as u32, Limit::ScaleUpLimit)
            } else {
                (max, Limit::TooManyReplicas)
            };
            if desired > allowed {
                return (allowed, why);
            }
        } else if desired < current {
            let limit = match b.scale_down.select_policy {
                SelectPolicy::Disabled => i64::from(current),
                select => {
                    let proposals = b.down_policies().into_iter().map(|p| {
                        let start = self.period_start(&p, current, now);
                        match p.policy_type {
                            ScalingPolicyType::Pods => start - i64::from(p.value),
                            // Truncation, as the controller's int32 conversion.
                            ScalingPolicyType::Percent => {
                                (start as f64 * (1.0 - f64::from(p.value) / 100.0)) as i64
                            }
                        }
                    });
                    if select == SelectPolicy::Min {
                        proposals.max().unwrap_or(i64::from(current))
                    } else {
                        proposals.min().unwrap_or(i64::from(current))
                    }
                }
            };
            let limit = limit.min(i64::from(current));
            let (allowed, why) = if i64::from(min) < limit {
                (limit.max(0) as u32, Limit::ScaleDownLimit)
            } else {
                (min, Limit::TooFewReplicas)
            };
            if desired < allowed {
                return (allowed, why);
            }
        }
        (desired, Limit::DesiredWithinRange)
    }

    fn record_scale_event(&mut self, now: Timestamp, from: u32, to: u32) {
        let longest = |rules: &[ScalingPolicy]| {
            Duration::from_secs(u64::from(
                rules.iter().map(|p| p.period_seconds).max().unwrap_or(0),
            ))
        };
        let up_keep = longest(&self.spec.behavior.up_policies());
        let down_keep = longest(&self.spec.behavior.down_policies());
        self.scale_up_events.retain(|e| e.at + up_keep > now);
        self.scale_down_events.retain(|e| e.at + down_keep > now);
        if to > from {
            self.scale_up_events.push(Stamped {
                at: now,
                value: to - from,
            });
        } else if from > to {
            self.scale_down_events.push(Stamped {
                at: now,
                value: from - to,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(min: u32, max: u32, target: u32) -> HpaSpec {
        HpaSpec {
            min_replicas: min,
            max_replicas: max,
            target_utilization: target,
            behavior: Behavior::default(),
            tolerance: DEFAULT_TOLERANCE,
        }
    }

    /// `ready` pods of 100m request each, all at `percent` utilization.
    fn metrics(ready: u32, percent: u64) -> ResourceMetrics {
        ResourceMetrics {
            ready,
            ready_usage: u64::from(ready) * percent,
            ready_requests: u64::from(ready) * 100,
            unready: 0,
            missing: 0,
            pod_request: 100,
        }
    }

    fn t(s: u64) -> Timestamp {
        Timestamp::from_secs(s)
    }

    fn policy(policy_type: ScalingPolicyType, value: u32, period_seconds: u32) -> ScalingPolicy {
        ScalingPolicy {
            policy_type,
            value,
            period_seconds,
        }
    }

    // Documentation, algorithm details: metric 200m for a 100m target doubles the
    // replicas; 50m halves them; within the 0.1 tolerance nothing happens.
    #[test]
    fn docs_ratio_examples() {
        assert_eq!(replicas_for_utilization(4, &metrics(4, 200), 100, 0.1), 8);
        assert_eq!(replicas_for_utilization(4, &metrics(4, 50), 100, 0.1), 2);
        assert_eq!(replicas_for_utilization(4, &metrics(4, 109), 100, 0.1), 4);
        assert_eq!(replicas_for_utilization(4, &metrics(4, 91), 100, 0.1), 4);
        assert_eq!(replicas_for_utilization(4, &metrics(4, 112), 100, 0.1), 5);
        // ceil(current * metric / target): 3 pods at 70% for a 50% target -> ceil(4.2) = 5.
        assert_eq!(replicas_for_utilization(3, &metrics(3, 70), 50, 0.1), 5);
    }

    #[test]
    fn utilization_is_an_integer_percent() {
        // 4 pods, 100m each, 439m used in all: 109.75% -> 109% -> within tolerance.
        let m = ResourceMetrics {
            ready_usage: 439,
            ..metrics(4, 0)
        };
        assert_eq!(replicas_for_utilization(4, &m, 100, 0.1), 4);
    }

    #[test]
    fn unready_pods_count_as_zero_when_scaling_up() {
        // 2 ready pods at 200% and 2 pending: the pending ones count as 0%, so the
        // ratio is 1.0 over 4 pods: no change.
        let mut m = metrics(2, 200);
        m.unready = 2;
        assert_eq!(replicas_for_utilization(4, &m, 100, 0.1), 4);
        // 2 ready at 300% + 2 unready -> 150% over 4 -> 6.
        let mut m = metrics(2, 300);
        m.unready = 2;
        assert_eq!(replicas_for_utilization(4, &m, 100, 0.1), 6);
        // Unready pods do not hold back a scale-down.
        let mut m = metrics(2, 20);
        m.unready = 2;
        assert_eq!(replicas_for_utilization(4, &m, 100, 0.1), 1);
    }

    #[test]
    fn missing_metrics_dampen_in_both_directions() {
        // Scale-down: missing pods assumed at 100% -> (2*50 + 2*100)/4 = 75% -> 3.
        let mut m = metrics(2, 50);
        m.missing = 2;
        assert_eq!(replicas_for_utilization(4, &m, 100, 0.1), 3);
        // Scale-up: missing pods assumed at 0% -> (2*150)/4 = 75%: direction flips, keep.
        let mut m = metrics(2, 150);
        m.missing = 2;
        assert_eq!(replicas_for_utilization(4, &m, 100, 0.1), 4);
    }

    #[test]
    fn default_scale_up_is_double_or_plus_four_per_15s() {
        let mut h = Hpa::new(spec(1, 100, 50)).unwrap();
        // 1 pod at 500% of a 50% target wants 10: the limit is max(1*2, 1+4) = 5.
        let r = h.reconcile(t(0), 1, &metrics(1, 500));
        assert_eq!((r.raw, r.replicas, r.limit), (10, 5, Limit::ScaleUpLimit));
        // Within the same 15 s period the +4 are already used: start is 1 again.
        let r = h.reconcile_with_desired(t(10), 5, 40);
        assert_eq!(r.replicas, 5);
        // A new period starts from 5: max(10, 9) = 10.
        let r = h.reconcile_with_desired(t(15), 5, 40);
        assert_eq!(r.replicas, 10);
    }

    // Documentation, "scaling policies": Pods 4/60s and Percent 10/60s for scale-down;
    // with 80 replicas scaling to 10, the first step removes 8 (the percent policy
    // allows more), the next from 72 removes 8 (10% of 72 = 7.2, rounded up).
    #[test]
    fn docs_scale_down_policies_example() {
        let mut s = spec(1, 100, 50);
        s.behavior.scale_down = ScalingRules {
            stabilization_window_seconds: Some(0),
            select_policy: SelectPolicy::Max,
            policies: vec![
                policy(ScalingPolicyType::Pods, 4, 60),
                policy(ScalingPolicyType::Percent, 10, 60),
            ],
        };
        let mut h = Hpa::new(s).unwrap();
        let r = h.reconcile_with_desired(t(0), 80, 10);
        assert_eq!((r.replicas, r.limit), (72, Limit::ScaleDownLimit));
        // 30 s later, same period: nothing more may go.
        assert_eq!(h.reconcile_with_desired(t(30), 72, 10).replicas, 72);
        let r = h.reconcile_with_desired(t(60), 72, 10);
        assert_eq!(r.replicas, 64);
        // Below 40 replicas the Pods policy allows more: 4 at a time.
        let mut h = Hpa::new(h.spec().clone()).unwrap();
        assert_eq!(h.reconcile_with_desired(t(0), 30, 10).replicas, 26);
    }

    #[test]
    fn select_policy_min_and_disabled() {
        let mut s = spec(1, 100, 50);
        s.behavior.scale_down = ScalingRules {
            stabilization_window_seconds: Some(0),
            select_policy: SelectPolicy::Min,
            policies: vec![
                policy(ScalingPolicyType::Pods, 4, 60),
                policy(ScalingPolicyType::Percent, 10, 60),
            ],
        };
        let mut h = Hpa::new(s.clone()).unwrap();
        assert_eq!(h.reconcile_with_desired(t(0), 80, 10).replicas, 76);
        s.behavior.scale_down.select_policy = SelectPolicy::Disabled;
        let mut h = Hpa::new(s).unwrap();
        let r = h.reconcile_with_desired(t(0), 80, 10);
        assert_eq!((r.replicas, r.limit), (80, Limit::ScaleDownLimit));
    }

    // Documentation: "Percent 900 per 60 s" lets the replicas grow tenfold per minute.
    #[test]
    fn docs_percent_900_scale_up() {
        let mut s = spec(1, 1000, 50);
        s.behavior.scale_up.policies = vec![policy(ScalingPolicyType::Percent, 900, 60)];
        let mut h = Hpa::new(s).unwrap();
        assert_eq!(h.reconcile_with_desired(t(0), 10, 500).replicas, 100);
        assert_eq!(h.reconcile_with_desired(t(30), 100, 500).replicas, 100);
        assert_eq!(h.reconcile_with_desired(t(60), 100, 500).replicas, 500);
    }

    // Documentation, stabilization window: the highest recommendation of the last
    // 300 s is used for scale-down; scale-up uses the lowest over its window.
    #[test]
    fn scale_down_stabilization_takes_the_max_over_the_window() {
        let mut h = Hpa::new(spec(1, 100, 50)).unwrap();
        assert_eq!(h.reconcile_with_desired(t(0), 10, 10).replicas, 10);
        assert_eq!(h.reconcile_with_desired(t(15), 10, 4).replicas, 10);
        assert_eq!(h.reconcile_with_desired(t(120), 10, 6).replicas, 10);
        // t=0's 10 leaves the window after 300 s; the highest left is 6 (t=120).
        let r = h.reconcile_with_desired(t(301), 10, 3);
        assert_eq!((r.stabilized, r.replicas), (6, 6));
        // t=120's 6 leaves at 421: the highest is then 3.
        assert_eq!(h.reconcile_with_desired(t(421), 6, 3).replicas, 3);
    }

    #[test]
    fn scale_up_stabilization_takes_the_min_over_the_window() {
        let mut s = spec(1, 100, 50);
        s.behavior.scale_up.stabilization_window_seconds = Some(60);
        let mut h = Hpa::new(s).unwrap();
        assert_eq!(h.reconcile_with_desired(t(0), 4, 4).replicas, 4);
        assert_eq!(h.reconcile_with_desired(t(15), 4, 8).replicas, 4);
        assert_eq!(h.reconcile_with_desired(t(30), 4, 6).replicas, 4);
        // t=0's 4 is out of the window at 61: min(8, 6, 7) = 6.
        assert_eq!(h.reconcile_with_desired(t(61), 4, 7).replicas, 6);
    }

    #[test]
    fn min_max_and_disabled_target() {
        let mut h = Hpa::new(spec(2, 10, 50)).unwrap();
        assert_eq!(
            h.reconcile_with_desired(t(0), 0, 5).limit,
            Limit::ScalingDisabled
        );
        assert_eq!(h.reconcile_with_desired(t(0), 0, 5).replicas, 0);
        assert_eq!(h.reconcile_with_desired(t(0), 12, 12).replicas, 10);
        assert_eq!(h.reconcile_with_desired(t(0), 1, 1).replicas, 2);
        let mut h = Hpa::new(spec(2, 10, 50)).unwrap();
        let r = h.reconcile_with_desired(t(100), 8, 40);
        assert_eq!((r.replicas, r.limit), (10, Limit::TooManyReplicas));
        let mut s = spec(3, 10, 50);
        s.behavior.scale_down.stabilization_window_seconds = Some(0);
        let mut h = Hpa::new(s).unwrap();
        let r = h.reconcile_with_desired(t(100), 8, 1);
        assert_eq!((r.replicas, r.limit), (3, Limit::TooFewReplicas));
    }

    #[test]
    fn bad_specs_are_rejected() {
        assert!(matches!(
            Hpa::new(spec(5, 2, 50)),
            Err(HpaError::MaxBelowMin { .. })
        ));
        assert_eq!(Hpa::new(spec(1, 2, 0)).unwrap_err(), HpaError::ZeroTarget);
        let mut s = spec(1, 2, 50);
        s.behavior.scale_up.policies = vec![policy(ScalingPolicyType::Pods, 1, 0)];
        assert!(Hpa::new(s).unwrap_err().to_string().contains("scaleUp"));
    }

    #[test]
    fn behavior_reads_kubernetes_yaml() {
        let yaml = "minReplicas: 2\nmaxReplicas: 20\ntargetUtilization: 60\nbehavior:\n  scaleDown:\n    stabilizationWindowSeconds: 1800\n    policies:\n    - type: Pods\n      value: 5\n      periodSeconds: 60\n";
        let s: HpaSpec = serde_yaml_ng::from_str(yaml).unwrap();
        assert_eq!(
            s.behavior.scale_down.stabilization_window_seconds,
            Some(1800)
        );
        assert_eq!(s.behavior.scale_down.policies[0].value, 5);
        let bad = "maxReplicas: 2\ntargetUtilization: 60\nbehaviour: {}\n";
        assert!(serde_yaml_ng::from_str::<HpaSpec>(bad).is_err());
    }
}
