//! HorizontalPodAutoscalers (`autoscaling/v2`), read from the controller's HPA cache:
//! - every round, the CPU utilization each HPA last wrote in its status becomes a
//!   [`WorkloadLoad`] of the snapshot (scale-down evicts where siblings have room);
//! - with `--record-dir`, what each HPA's controller sees (its CPU target, bounds,
//!   behavior, replicas and utilization), so a recording can be replayed through the
//!   HPA model with other settings (`autoscaler-sim replay --hpa`).

use autoscaler_core::hpa::{
    Behavior, ScalingPolicy, ScalingPolicyType, ScalingRules, SelectPolicy,
};
use autoscaler_core::recording::{HpaSettings, ObservedHpa};
use autoscaler_core::WorkloadLoad;
use k8s_openapi::api::autoscaling::v2::{
    HPAScalingRules, HorizontalPodAutoscaler, HorizontalPodAutoscalerBehavior,
};
use kube::runtime::reflector::Store;

/// The HPAs of the controller's cache (needs `list`/`watch` on
/// `horizontalpodautoscalers.autoscaling`; without it there are none, scale-down ranks
/// evictions by replica count and recordings hold no HPAs).
#[derive(Clone)]
pub struct HpaWatch {
    store: Store<HorizontalPodAutoscaler>,
}

impl HpaWatch {
    /// Reads this cache.
    pub fn new(store: Store<HorizontalPodAutoscaler>) -> HpaWatch {
        HpaWatch { store }
    }

    /// Every HPA now, as the recording keeps it.
    pub fn observations(&self) -> Vec<ObservedHpa> {
        self.store
            .state()
            .iter()
            .filter_map(|h| observe(h))
            .collect()
    }

    /// The measured load of every HPA-scaled workload now.
    pub fn workload_loads(&self) -> Vec<WorkloadLoad> {
        self.store
            .state()
            .iter()
            .filter_map(|h| workload_load(&observe(h)?))
            .collect()
    }
}

/// A workload's load from its HPA's status (`None` before the HPA measured CPU).
pub fn workload_load(o: &ObservedHpa) -> Option<WorkloadLoad> {
    Some(WorkloadLoad {
        namespace: o.settings.namespace.clone(),
        target_kind: o.settings.target_kind.clone(),
        target_name: o.settings.target_name.clone(),
        cpu_utilization_percent: o.cpu_utilization?,
    })
}

fn count(n: Option<i32>) -> u32 {
    n.map_or(0, |n| u32::try_from(n).unwrap_or(0))
}

fn rules(r: &HPAScalingRules) -> ScalingRules {
    ScalingRules {
        stabilization_window_seconds: r
            .stabilization_window_seconds
            .and_then(|w| u32::try_from(w).ok()),
        select_policy: match r.select_policy.as_deref() {
            Some("Min") => SelectPolicy::Min,
            Some("Disabled") => SelectPolicy::Disabled,
            _ => SelectPolicy::Max,
        },
        policies: r
            .policies
            .iter()
            .flatten()
            .map(|p| ScalingPolicy {
                policy_type: if p.type_ == "Percent" {
                    ScalingPolicyType::Percent
                } else {
                    ScalingPolicyType::Pods
                },
                value: u32::try_from(p.value).unwrap_or(0),
                period_seconds: u32::try_from(p.period_seconds).unwrap_or(0),
            })
            .collect(),
    }
}

fn behavior(b: &HorizontalPodAutoscalerBehavior) -> Behavior {
    Behavior {
        scale_up: b.scale_up.as_ref().map(rules).unwrap_or_default(),
        scale_down: b.scale_down.as_ref().map(rules).unwrap_or_default(),
    }
}

/// The recording's view of one HPA (`None` without a name or namespace).
pub fn observe(h: &HorizontalPodAutoscaler) -> Option<ObservedHpa> {
    let spec = h.spec.as_ref()?;
    let is_cpu = |t: &str, name: Option<&str>| t == "Resource" && name == Some("cpu");
    let cpu_target_utilization = spec.metrics.iter().flatten().find_map(|m| {
        let r = m.resource.as_ref()?;
        if !is_cpu(&m.type_, Some(&r.name)) || r.target.type_ != "Utilization" {
            return None;
        }
        u32::try_from(r.target.average_utilization?).ok()
    });
    let status = h.status.as_ref();
    let cpu_utilization = status
        .and_then(|s| s.current_metrics.as_ref())
        .into_iter()
        .flatten()
        .find_map(|m| {
            let r = m.resource.as_ref()?;
            if !is_cpu(&m.type_, Some(&r.name)) {
                return None;
            }
            u32::try_from(r.current.average_utilization?).ok()
        });
    Some(ObservedHpa {
        settings: HpaSettings {
            namespace: h.metadata.namespace.clone()?,
            name: h.metadata.name.clone()?,
            target_kind: spec.scale_target_ref.kind.clone(),
            target_name: spec.scale_target_ref.name.clone(),
            min_replicas: u32::try_from(spec.min_replicas.unwrap_or(1)).unwrap_or(1),
            max_replicas: u32::try_from(spec.max_replicas).unwrap_or(0),
            cpu_target_utilization,
            behavior: spec.behavior.as_ref().map(behavior),
        },
        current_replicas: count(status.and_then(|s| s.current_replicas)),
        desired_replicas: count(status.map(|s| s.desired_replicas)),
        cpu_utilization,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_hpa_object_becomes_its_recorded_settings_and_status() {
        let h: HorizontalPodAutoscaler = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 2, "maxReplicas": 30,
                "metrics": [
                    {"type": "Resource", "resource": {"name": "memory", "target": {"type": "Utilization", "averageUtilization": 90}}},
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}
                ],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 120, "selectPolicy": "Min",
                    "policies": [{"type": "Percent", "value": 10, "periodSeconds": 60}]}}
            },
            "status": {
                "currentReplicas": 4, "desiredReplicas": 6,
                "currentMetrics": [
                    {"type": "Resource", "resource": {"name": "memory", "current": {"averageUtilization": 40}}},
                    {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 88, "averageValue": "440m"}}}
                ]
            }
        }))
        .unwrap();
        let o = observe(&h).unwrap();
        assert_eq!(o.settings.target_kind, "Deployment");
        assert_eq!((o.settings.min_replicas, o.settings.max_replicas), (2, 30));
        assert_eq!(
            o.settings.cpu_target_utilization,
            Some(60),
            "the cpu metric, not memory"
        );
        let b = o.settings.behavior.clone().unwrap();
        assert_eq!(b.scale_down.stabilization_window_seconds, Some(120));
        assert_eq!(b.scale_down.select_policy, SelectPolicy::Min);
        assert_eq!(
            b.scale_down.policies[0].policy_type,
            ScalingPolicyType::Percent
        );
        assert_eq!(
            b.scale_up,
            ScalingRules::default(),
            "unset: Kubernetes' defaults"
        );
        assert_eq!((o.current_replicas, o.desired_replicas), (4, 6));
        assert_eq!(o.cpu_utilization, Some(88));
        let load = workload_load(&o).unwrap();
        assert_eq!(
            (load.namespace.as_str(), load.target_kind.as_str()),
            ("shop", "Deployment")
        );
        assert_eq!(
            (load.target_name.as_str(), load.cpu_utilization_percent),
            ("web", 88)
        );
    }

    #[test]
    fn an_hpa_without_status_or_cpu_target_is_kept_without_them() {
        let h: HorizontalPodAutoscaler = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "q", "namespace": "jobs"},
            "spec": {
                "scaleTargetRef": {"kind": "StatefulSet", "name": "q"},
                "maxReplicas": 5,
                "metrics": [{"type": "External", "external": {"metric": {"name": "queue"}, "target": {"type": "Value", "value": "10"}}}]
            }
        }))
        .unwrap();
        let o = observe(&h).unwrap();
        assert_eq!(o.settings.min_replicas, 1, "Kubernetes' default");
        assert_eq!(o.settings.cpu_target_utilization, None);
        assert_eq!(o.settings.behavior, None);
        assert_eq!(
            (o.current_replicas, o.desired_replicas, o.cpu_utilization),
            (0, 0, None)
        );
        assert_eq!(workload_load(&o), None, "no measurement, no load");
    }
}
