//! Carrying out decisions: `SetDesiredCapacity` as a compare-and-set against a recent
//! read, and `TerminateInstanceInAutoScalingGroup`, both idempotent and safe to retry.
//!
//! The read the compare-and-set checks against is the round's own scan when it returned
//! less than [`DEFAULT_MAX_VIEW_AGE`] ago (see [`Actuator::remember_scan`]), otherwise one
//! `DescribeAutoScalingGroups` of just the groups being changed. A second describe per
//! round put up to a second (moto, 5,000 instances) between a pending pod and its
//! `SetDesiredCapacity`, and AWS has no conditional write anyway: the check narrows the
//! window in which another writer's change is overwritten, it cannot close it.

use crate::api::{Api, GroupQuery, Op};
use crate::discovery::{Scan, ASG_PAGE_SIZE};
use crate::error::AwsError;
use autoscaler_core::Decision;
use aws_sdk_autoscaling::types::AutoScalingGroup;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long after it returned a scan may stand in for a fresh read of a group's sizes. The
/// round's decisions come from that scan, so within this age a change made by someone
/// else after the scan is not seen before the write (the next round's scan sees it);
/// cluster-autoscaler writes from a cache it refreshes far less often.
pub const DEFAULT_MAX_VIEW_AGE: Duration = Duration::from_secs(10);

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

/// Settings of actuation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActuationConfig {
    /// How long a scan stands in for a fresh read before a `SetDesiredCapacity`
    /// ([`DEFAULT_MAX_VIEW_AGE`]; [`Duration::ZERO`] reads every group fresh).
    pub max_view_age: Duration,
}

impl Default for ActuationConfig {
    fn default() -> Self {
        ActuationConfig {
            max_view_age: DEFAULT_MAX_VIEW_AGE,
        }
    }
}

/// The groups' sizes as a scan read them, and when the scan started.
#[derive(Debug)]
struct View {
    /// When the scan started: our writes after it are laid over its sizes.
    read_at: Instant,
    /// When the scan returned: its age for [`Actuator::max_view_age`] counts from here.
    answered_at: Instant,
    groups: BTreeMap<String, Fresh>,
}

/// Carries out decisions.
#[derive(Debug)]
pub struct Actuator {
    api: Arc<Api>,
    /// The latest scan's sizes, kept up to date with our own writes.
    view: Mutex<Option<View>>,
    max_view_age: Duration,
    /// Our writes of the last [`Self::max_view_age`]: a scan that started before one
    /// (a background refresh overlapping a round) does not know it, so the write is laid
    /// over the scan's sizes. `None`: the outcome is unknown (a failed call, a
    /// terminate that decremented some group): the group, or with `"*"` every group,
    /// is read fresh.
    writes: Mutex<Vec<(Instant, String, Option<u32>)>>,
}

/// The group name that stands for every group in [`Actuator::writes`].
const EVERY_GROUP: &str = "*";

impl Actuator {
    /// An actuator over `api`, trusting a scan for [`DEFAULT_MAX_VIEW_AGE`].
    pub fn new(api: Arc<Api>) -> Self {
        Actuator {
            api,
            view: Mutex::new(None),
            max_view_age: DEFAULT_MAX_VIEW_AGE,
            writes: Mutex::new(Vec::new()),
        }
    }

    /// Trusts a scan for `age` instead ([`Duration::ZERO`]: always read fresh).
    pub fn with_max_view_age(mut self, age: Duration) -> Self {
        self.max_view_age = age;
        self
    }

    /// Keeps `scan`'s sizes (desired, min, max, instances pending or in service) as the
    /// base of the compare-and-set for [`Self::apply`] while it is young: for the view
    /// age after this call (the scan's return). `read_at` is when the scan started.
    /// Counted from the start, a scan slower than the view age (a slow endpoint, a
    /// large cluster) was too old on arrival, and every write read its group again.
    /// Writes we made after `read_at` are laid over the scan's sizes, so a scan that
    /// overlapped them does not undo what the compare-and-set knows.
    pub fn remember_scan(&self, scan: &Scan, read_at: Instant) {
        let mut groups: BTreeMap<String, Fresh> = scan
            .groups
            .iter()
            .map(|g| {
                let fresh = Fresh {
                    desired: g.group.target_size,
                    min: g.asg_min_size,
                    max: g.asg_max_size,
                    active: g.group.current_instances.unwrap_or(g.group.target_size),
                };
                (g.group.name.clone(), fresh)
            })
            .collect();
        let mut writes = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        writes.retain(|(at, _, _)| at.elapsed() <= self.max_view_age);
        for (_, group, desired) in writes.iter().filter(|(at, _, _)| *at >= read_at) {
            match desired {
                _ if group == EVERY_GROUP => groups.clear(),
                Some(d) => {
                    if let Some(f) = groups.get_mut(group) {
                        f.desired = *d;
                    }
                }
                None => {
                    groups.remove(group);
                }
            }
        }
        drop(writes);
        let mut view = self.lock_view();
        // Two scans may overlap (a round's and a background one): the newer one stays.
        if view.as_ref().is_none_or(|v| v.read_at <= read_at) {
            *view = Some(View {
                read_at,
                answered_at: Instant::now(),
                groups,
            });
        }
    }

    fn lock_view(&self) -> std::sync::MutexGuard<'_, Option<View>> {
        self.view.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The sizes of `names` a young scan holds; the rest are returned for a fresh read.
    fn sizes_in_view(&self, names: Vec<String>) -> (BTreeMap<String, Fresh>, Vec<String>) {
        let view = self.lock_view();
        let young = view
            .as_ref()
            .filter(|v| v.answered_at.elapsed() <= self.max_view_age);
        let Some(view) = young else {
            return (BTreeMap::new(), names);
        };
        let (known, unknown): (Vec<String>, Vec<String>) =
            names.into_iter().partition(|n| view.groups.contains_key(n));
        let known = known
            .into_iter()
            .map(|n| {
                let fresh = view.groups[&n];
                (n, fresh)
            })
            .collect();
        (known, unknown)
    }

    /// Records what we just did to a group in the view (`None`: the group's state is not
    /// known any more, read it fresh next time).
    fn update_view(&self, group: &str, desired: Option<u32>) {
        self.writes.lock().unwrap_or_else(|e| e.into_inner()).push((
            Instant::now(),
            group.to_string(),
            desired,
        ));
        if group == EVERY_GROUP {
            *self.lock_view() = None;
            return;
        }
        if let Some(view) = self.lock_view().as_mut() {
            match desired {
                Some(d) => {
                    if let Some(f) = view.groups.get_mut(group) {
                        f.desired = d;
                    }
                }
                None => {
                    view.groups.remove(group);
                }
            }
        }
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

    /// Carries out the decisions of a round, in order. The groups' sizes come from the
    /// latest scan if it is young (see the module docs), else from one
    /// `DescribeAutoScalingGroups` of the groups involved; each change is checked
    /// against them:
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
        let (mut fresh, unknown) = self.sizes_in_view(names);
        let read = if unknown.is_empty() {
            Ok(BTreeMap::new())
        } else {
            self.read(unknown).await
        };
        match read {
            Ok(read) => fresh.extend(read),
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
                    self.update_view(&group, Some(to));
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
                Err(error) => {
                    // The write may or may not have happened: read it fresh next time.
                    self.update_view(&group, None);
                    outcomes.push(Outcome::Failed {
                        target: group,
                        error,
                    })
                }
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
                if decrement {
                    // Some group's desired capacity went down by one: read fresh.
                    self.update_view(EVERY_GROUP, None);
                }
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
