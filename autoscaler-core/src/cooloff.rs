//! Cool-offs: pools (group, zone, instance type, market) that recently failed to launch
//! and must not be tried again until the cool-off ends.

use crate::events::LaunchFailureReason;
use crate::model::CapacityType;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// A pattern over launch cells; `None` fields match anything. A cell is one
/// (group, market, zone, instance type) combination a group can launch.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PoolKey {
    /// Group, or every group (a market-wide pool).
    pub group: Option<String>,
    /// Market, or both.
    pub capacity_type: Option<CapacityType>,
    /// Zone, or every zone.
    pub zone: Option<String>,
    /// Instance type, or every type.
    pub instance_type: Option<String>,
}

impl PoolKey {
    fn matches(&self, group: &str, capacity_type: CapacityType, zone: &str, itype: &str) -> bool {
        self.group.as_deref().is_none_or(|g| g == group)
            && self.capacity_type.is_none_or(|c| c == capacity_type)
            && self.zone.as_deref().is_none_or(|z| z == zone)
            && self.instance_type.as_deref().is_none_or(|t| t == itype)
    }
}

impl std::fmt::Display for PoolKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let any = "*";
        write!(
            f,
            "{}/{}/{}/{}",
            self.group.as_deref().unwrap_or(any),
            self.capacity_type
                .map(|c| c.to_string())
                .unwrap_or_else(|| any.into()),
            self.zone.as_deref().unwrap_or(any),
            self.instance_type.as_deref().unwrap_or(any)
        )
    }
}

/// One active or expired cool-off.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CoolOff {
    /// Until when the pool is avoided.
    pub until: Timestamp,
    /// Consecutive failures (the cool-off doubles with each).
    pub failures: u32,
    /// Why.
    pub reason: LaunchFailureReason,
    /// When the last failure was reported.
    pub last_failure: Timestamp,
}

/// How long cool-offs last.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoolOffPolicy {
    /// First cool-off (default 3 min).
    #[serde(with = "crate::time::duration_secs")]
    pub initial: Duration,
    /// Ceiling of the exponential growth (default 30 min).
    #[serde(with = "crate::time::duration_secs")]
    pub max: Duration,
    /// A pool that has not failed for this long starts again from `initial` (default 1 h).
    #[serde(with = "crate::time::duration_secs")]
    pub reset_after: Duration,
}

impl Default for CoolOffPolicy {
    fn default() -> Self {
        CoolOffPolicy {
            initial: Duration::from_secs(180),
            max: Duration::from_secs(1800),
            reset_after: Duration::from_secs(3600),
        }
    }
}

/// All cool-offs, keyed by pool pattern.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CoolOffs {
    entries: BTreeMap<PoolKey, CoolOff>,
}

impl CoolOffs {
    /// Records a failure of `key` at `now`; returns the new end of its cool-off.
    pub fn record_failure(
        &mut self,
        key: PoolKey,
        reason: LaunchFailureReason,
        now: Timestamp,
        policy: &CoolOffPolicy,
    ) -> Timestamp {
        let failures = match self.entries.get(&key) {
            Some(prev) if now.since(prev.last_failure) < policy.reset_after => {
                // A report for the same outage (several instances failing at once) does
                // not count as a repeat while the cool-off it caused is still running.
                if now < prev.until && now.since(prev.last_failure) < policy.initial / 2 {
                    prev.failures
                } else {
                    prev.failures.saturating_add(1)
                }
            }
            _ => 1,
        };
        let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(16));
        let length = policy.initial.saturating_mul(factor).min(policy.max);
        let until = now + length;
        self.entries.insert(
            key,
            CoolOff {
                until,
                failures,
                reason,
                last_failure: now,
            },
        );
        until
    }

    /// The active cool-off covering a cell, if any (the one ending last).
    pub fn blocking(
        &self,
        group: &str,
        capacity_type: CapacityType,
        zone: &str,
        instance_type: &str,
        now: Timestamp,
    ) -> Option<(&PoolKey, &CoolOff)> {
        self.entries
            .iter()
            .filter(|(k, c)| c.until > now && k.matches(group, capacity_type, zone, instance_type))
            .max_by_key(|(_, c)| c.until)
    }

    /// Active cool-offs.
    pub fn active(&self, now: Timestamp) -> impl Iterator<Item = (&PoolKey, &CoolOff)> {
        self.entries.iter().filter(move |(_, c)| c.until > now)
    }

    /// Forgets entries that can no longer matter (expired and past `reset_after`).
    pub fn prune(&mut self, now: Timestamp, policy: &CoolOffPolicy) {
        self.entries
            .retain(|_, c| c.until > now || now.since(c.last_failure) < policy.reset_after);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(group: Option<&str>, zone: Option<&str>) -> PoolKey {
        PoolKey {
            group: group.map(str::to_string),
            capacity_type: Some(CapacityType::Spot),
            zone: zone.map(str::to_string),
            instance_type: None,
        }
    }

    #[test]
    fn cool_off_doubles_on_repeats_and_caps() {
        let policy = CoolOffPolicy::default();
        let mut c = CoolOffs::default();
        let ice = LaunchFailureReason::InsufficientInstanceCapacity;
        let t0 = Timestamp::from_secs(1000);
        let u1 = c.record_failure(key(Some("a"), None), ice.clone(), t0, &policy);
        assert_eq!(u1.since(t0), Duration::from_secs(180));
        // A second report 10 s later is the same outage.
        let t1 = t0 + Duration::from_secs(10);
        let u1b = c.record_failure(key(Some("a"), None), ice.clone(), t1, &policy);
        assert_eq!(u1b.since(t1), Duration::from_secs(180));
        // After the cool-off, a new failure doubles it.
        let t2 = u1b + Duration::from_secs(1);
        let u2 = c.record_failure(key(Some("a"), None), ice.clone(), t2, &policy);
        assert_eq!(u2.since(t2), Duration::from_secs(360));
        let mut t = u2;
        let mut last = Duration::ZERO;
        for _ in 0..10 {
            t = t + Duration::from_secs(1);
            let u = c.record_failure(key(Some("a"), None), ice.clone(), t, &policy);
            last = u.since(t);
            t = u;
        }
        assert_eq!(last, policy.max);
    }

    #[test]
    fn resets_after_a_quiet_hour() {
        let policy = CoolOffPolicy::default();
        let mut c = CoolOffs::default();
        let ice = LaunchFailureReason::InsufficientInstanceCapacity;
        let t0 = Timestamp::from_secs(0);
        c.record_failure(key(Some("a"), None), ice.clone(), t0, &policy);
        let later = t0 + Duration::from_secs(4000);
        let u = c.record_failure(key(Some("a"), None), ice, later, &policy);
        assert_eq!(u.since(later), policy.initial);
    }

    #[test]
    fn wildcards_block_matching_cells_only() {
        let policy = CoolOffPolicy::default();
        let mut c = CoolOffs::default();
        let t0 = Timestamp::from_secs(0);
        c.record_failure(
            key(None, Some("us-east-1a")),
            LaunchFailureReason::InsufficientInstanceCapacity,
            t0,
            &policy,
        );
        let now = t0 + Duration::from_secs(1);
        assert!(c
            .blocking("any", CapacityType::Spot, "us-east-1a", "m5.large", now)
            .is_some());
        assert!(c
            .blocking("any", CapacityType::Spot, "us-east-1b", "m5.large", now)
            .is_none());
        assert!(c
            .blocking("any", CapacityType::OnDemand, "us-east-1a", "m5.large", now)
            .is_none());
        let after = t0 + Duration::from_secs(181);
        assert!(c
            .blocking("any", CapacityType::Spot, "us-east-1a", "m5.large", after)
            .is_none());
        c.prune(t0 + Duration::from_secs(7200), &policy);
        assert_eq!(c.active(after).count(), 0);
    }
}
