//! Carrying out decisions: `SetDesiredCapacity` as a compare-and-set against a fresh read,
//! and `TerminateInstanceInAutoScalingGroup`, both idempotent and safe to retry.

use crate::api::{Api, GroupQuery, Op};
use crate::discovery::ASG_PAGE_SIZE;
use crate::error::AwsError;
use autoscaler_core::Decision;
use aws_sdk_autoscaling::types::AutoScalingGroup;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What happened to one action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Desired capacity changed.
    Applied {
        /// ASG name.
        group: String,
        /// Desired capacity before.
        from: u32,
        /// Desired capacity now.
        to: u32,
    },
    /// Desired capacity was set, but not to the requested value.
    Clamped {
        /// ASG name.
        group: String,
        /// Desired capacity before.
        from: u32,
        /// What the decision asked for.
        requested: u32,
        /// What was set.
        to: u32,
        /// Why (max size, running instances, min size).
        why: String,
    },
    /// The group already had the requested capacity (a retry, or nothing to do).
    AlreadyApplied {
        /// ASG name.
        group: String,
        /// Its desired capacity.
        desired: u32,
    },
    /// Someone else changed the desired capacity since the decision's snapshot: nothing
    /// was written, the next round decides again from fresh state.
    Conflict {
        /// ASG name.
        group: String,
        /// The desired capacity the decision was based on.
        expected: u32,
        /// What AWS has now.
        actual: u32,
    },
    /// An instance is being terminated.
    Terminated {
        /// Instance id.
        instance_id: String,
        /// Whether the desired capacity was decremented.
        decremented: bool,
    },
    /// The instance was already gone or terminating (a retry).
    AlreadyTerminated {
        /// Instance id.
        instance_id: String,
    },
    /// A decision variant this adapter does not carry out yet.
    Unsupported {
        /// The decision, for the log.
        decision: String,
    },
    /// The call failed; the error names the cause.
    Failed {
        /// ASG name or instance id.
        target: String,
        /// The error.
        error: AwsError,
    },
}

#[derive(Clone, Copy, Debug)]
struct Fresh {
    desired: u32,
    min: u32,
    max: u32,
    active: u32,
}

fn fresh_of(g: &AutoScalingGroup) -> Fresh {
    let n = |v: Option<i32>| v.and_then(|v| u32::try_from(v).ok()).unwrap_or(0);
    let active = g
        .instances()
        .iter()
        .filter(|i| {
            i.lifecycle_state().is_some_and(|s| {
                let s = s.as_str();
                s.starts_with("Pending") || s.starts_with("InService")
            })
        })
        .count() as u32;
    Fresh {
        desired: n(g.desired_capacity()),
        min: n(g.min_size()),
        max: n(g.max_size()),
        active,
    }
}

/// Carries out decisions.
#[derive(Debug)]
pub struct Actuator {
    api: Arc<Api>,
}

impl Actuator {
    /// An actuator over `api`.
    pub fn new(api: Arc<Api>) -> Self {
        Actuator { api }
    }

    async fn read(&self, names: Vec<String>) -> Result<BTreeMap<String, Fresh>, AwsError> {
        let mut fresh = BTreeMap::new();
        for chunk in names.chunks(ASG_PAGE_SIZE as usize) {
            for g in self
                .api
                .describe_groups(GroupQuery::Names(chunk.to_vec()), ASG_PAGE_SIZE)
                .await?
            {
                if let Some(name) = g.auto_scaling_group_name() {
                    fresh.insert(name.to_string(), fresh_of(&g));
                }
            }
        }
        Ok(fresh)
    }

    /// Carries out the decisions of a round, in order. One `DescribeAutoScalingGroups`
    /// reads the groups involved; each change is checked against it:
    /// - a scale-up whose base (`new_target - delta`) is not AWS's desired capacity any
    ///   more is a [`Outcome::Conflict`] (someone else changed it), unless AWS already
    ///   has at least `new_target` ([`Outcome::AlreadyApplied`]: a retry);
    /// - a target above the ASG's max size is clamped to it;
    /// - a revert never goes below the instances AWS has pending or in service, nor
    ///   below the min size.
    pub async fn apply(&self, decisions: &[Decision]) -> Vec<Outcome> {
        let mut names: Vec<String> = decisions
            .iter()
            .filter_map(|d| d.group().map(str::to_string))
            .collect();
        names.sort();
        names.dedup();
        if names.is_empty() {
            return Vec::new();
        }
        let mut fresh = match self.read(names).await {
            Ok(f) => f,
            Err(error) => {
                return decisions
                    .iter()
                    .map(|d| Outcome::Failed {
                        target: d.group().unwrap_or_default().to_string(),
                        error: error.clone(),
                    })
                    .collect()
            }
        };
        let mut outcomes = Vec::new();
        for d in decisions {
            let Some(group) = d.group().map(str::to_string) else {
                outcomes.push(Outcome::Unsupported {
                    decision: format!("{d:?}"),
                });
                continue;
            };
            let Some(state) = fresh.get(&group).copied() else {
                outcomes.push(Outcome::Failed {
                    target: group.clone(),
                    error: AwsError::UnknownGroup(group),
                });
                continue;
            };
            let (base, requested, up) = match d {
                Decision::ScaleUp {
                    delta, new_target, ..
                } => (new_target.saturating_sub(*delta), *new_target, true),
                Decision::RevertScaleUp {
                    cancelled,
                    new_target,
                    ..
                } => (new_target + cancelled, *new_target, false),
                // Node removals are `terminate`'s; the placeholder is Kubernetes's.
                Decision::RemoveNode { .. } | Decision::SetOverprovisioning { .. } => {
                    outcomes.push(Outcome::Unsupported {
                        decision: format!("{d:?}"),
                    });
                    continue;
                }
            };
            if (up && state.desired >= requested) || (!up && state.desired == requested) {
                outcomes.push(Outcome::AlreadyApplied {
                    group,
                    desired: state.desired,
                });
                continue;
            }
            if state.desired != base {
                self.api.metrics().record_external_change();
                tracing::warn!(
                    group,
                    expected = base,
                    actual = state.desired,
                    "desired capacity changed by someone else; not writing this round"
                );
                outcomes.push(Outcome::Conflict {
                    group,
                    expected: base,
                    actual: state.desired,
                });
                continue;
            }
            let (to, why) = if up {
                if requested > state.max {
                    (state.max, format!("ASG max size is {}", state.max))
                } else {
                    (requested, String::new())
                }
            } else {
                let floor = state.active.max(state.min);
                if requested < floor {
                    (
                        floor,
                        format!(
                            "{} instances are pending or in service (min size {})",
                            state.active, state.min
                        ),
                    )
                } else {
                    (requested, String::new())
                }
            };
            if to == state.desired {
                outcomes.push(Outcome::Clamped {
                    group,
                    from: state.desired,
                    requested,
                    to,
                    why,
                });
                continue;
            }
            match self.set_desired(&group, to).await {
                Ok(()) => {
                    tracing::info!(
                        group,
                        from = state.desired,
                        to,
                        reason = d.reason(),
                        "desired capacity set"
                    );
                    if let Some(f) = fresh.get_mut(&group) {
                        f.desired = to;
                    }
                    outcomes.push(if to == requested {
                        Outcome::Applied {
                            group,
                            from: state.desired,
                            to,
                        }
                    } else {
                        Outcome::Clamped {
                            group,
                            from: state.desired,
                            requested,
                            to,
                            why,
                        }
                    });
                }
                Err(error) => outcomes.push(Outcome::Failed {
                    target: group,
                    error,
                }),
            }
        }
        outcomes
    }

    async fn set_desired(&self, group: &str, desired: u32) -> Result<(), AwsError> {
        let desired = i32::try_from(desired)
            .map_err(|_| AwsError::Config(format!("desired capacity {desired} is too large")))?;
        self.api
            .call(
                Op::SetDesiredCapacity,
                self.api
                    .autoscaling
                    .set_desired_capacity()
                    .auto_scaling_group_name(group)
                    .desired_capacity(desired)
                    .honor_cooldown(false)
                    .send(),
            )
            .await
            .map(|_| ())
    }

    /// Terminates one instance of a group, decrementing the desired capacity when
    /// `decrement` (so the group does not replace it). Retrying after success is safe:
    /// an instance AWS no longer has in a group reports [`Outcome::AlreadyTerminated`].
    ///
    /// One `DescribeAutoScalingInstances` first checks that the instance is still in a
    /// group and not already terminating, so a retry never reaches the mutating call.
    pub async fn terminate(&self, instance_id: &str, decrement: bool) -> Outcome {
        let current = self
            .api
            .call(
                Op::DescribeAutoScalingInstances,
                self.api
                    .autoscaling
                    .describe_auto_scaling_instances()
                    .instance_ids(instance_id)
                    .send(),
            )
            .await;
        match current {
            Ok(out) => {
                let live = out.auto_scaling_instances().iter().any(|i| {
                    i.instance_id() == Some(instance_id)
                        && i.lifecycle_state().is_some_and(|s| {
                            !(s.starts_with("Terminat") || s.starts_with("Detach"))
                        })
                });
                if !live {
                    return Outcome::AlreadyTerminated {
                        instance_id: instance_id.to_string(),
                    };
                }
            }
            Err(error) => {
                return Outcome::Failed {
                    target: instance_id.to_string(),
                    error,
                }
            }
        }
        let result = self
            .api
            .call(
                Op::TerminateInstanceInAutoScalingGroup,
                self.api
                    .autoscaling
                    .terminate_instance_in_auto_scaling_group()
                    .instance_id(instance_id)
                    .should_decrement_desired_capacity(decrement)
                    .send(),
            )
            .await;
        match result {
            Ok(_) => {
                tracing::info!(instance_id, decrement, "instance terminating");
                Outcome::Terminated {
                    instance_id: instance_id.to_string(),
                    decremented: decrement,
                }
            }
            Err(AwsError::Api { message, .. } | AwsError::Validation { message, .. })
                if message.contains("not found")
                    || message.contains("No managed instance")
                    || message.contains("is in terminal state")
                    || message.contains("Terminating") =>
            {
                Outcome::AlreadyTerminated {
                    instance_id: instance_id.to_string(),
                }
            }
            Err(error) => Outcome::Failed {
                target: instance_id.to_string(),
                error,
            },
        }
    }
}
