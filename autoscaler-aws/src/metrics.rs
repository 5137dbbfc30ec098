//! Counters for AWS calls, throttles, latency and events: plain atomics, read with
//! [`Metrics::op`], [`Metrics::events`] and friends. They are exposed on `/metrics` by one
//! renderer, the autoscaler binary's Prometheus collector (`autoscaler_aws_*` families).

use crate::op::Op;
use crate::price_quote::PriceQuote;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

#[derive(Default, Debug)]
struct OpCounters {
    calls: AtomicU64,
    errors: AtomicU64,
    attempts: AtomicU64,
    throttled_attempts: AtomicU64,
    latency_micros_sum: AtomicU64,
    latency_micros_max: AtomicU64,
    rate_limit_wait_micros: AtomicU64,
}

/// Counters of the adapter. Cheap to update from any task.
#[derive(Debug)]
pub struct Metrics {
    ops: Vec<OpCounters>,
    events_received: AtomicU64,
    events_delivered: AtomicU64,
    events_malformed: AtomicU64,
    events_ignored: AtomicU64,
    event_latency_micros_sum: AtomicU64,
    event_latency_micros_max: AtomicU64,
    external_changes: AtomicU64,
    group_errors: AtomicU64,
    on_demand_prices: Mutex<Vec<PriceQuote>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            ops: Op::ALL.iter().map(|_| OpCounters::default()).collect(),
            events_received: AtomicU64::new(0),
            events_delivered: AtomicU64::new(0),
            events_malformed: AtomicU64::new(0),
            events_ignored: AtomicU64::new(0),
            event_latency_micros_sum: AtomicU64::new(0),
            event_latency_micros_max: AtomicU64::new(0),
            external_changes: AtomicU64::new(0),
            group_errors: AtomicU64::new(0),
            on_demand_prices: Mutex::default(),
        }
    }
}

/// Counters of one operation, as read by [`Metrics::op`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpStats {
    /// Logical calls (each may have several attempts).
    pub calls: u64,
    /// Calls that ended in an error.
    pub errors: u64,
    /// HTTP attempts, retries included.
    pub attempts: u64,
    /// Attempts AWS answered with a throttling error.
    pub throttled_attempts: u64,
    /// Sum of call latencies (retries included), microseconds.
    pub latency_micros_sum: u64,
    /// Largest call latency, microseconds.
    pub latency_micros_max: u64,
    /// Time spent waiting for the client-side rate limiter, microseconds.
    pub rate_limit_wait_micros: u64,
}

/// Event counters, as read by [`Metrics::events`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventStats {
    /// SQS messages received.
    pub received: u64,
    /// Core events handed over.
    pub delivered: u64,
    /// Messages that could not be understood (dropped and deleted).
    pub malformed: u64,
    /// Well-formed messages with nothing for the core (e.g. an instance entering `running`).
    pub ignored: u64,
    /// Largest time from SQS receipt to hand-over, microseconds.
    pub latency_micros_max: u64,
    /// Sum of those times, microseconds.
    pub latency_micros_sum: u64,
}

fn max_into(cell: &AtomicU64, v: u64) {
    cell.fetch_max(v, Ordering::Relaxed);
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Metrics {
    pub(crate) fn record_call(&self, op: Op, latency: Duration, wait: Duration, ok: bool) {
        let c = &self.ops[op as usize];
        c.calls.fetch_add(1, Ordering::Relaxed);
        if !ok {
            c.errors.fetch_add(1, Ordering::Relaxed);
        }
        c.latency_micros_sum
            .fetch_add(micros(latency), Ordering::Relaxed);
        max_into(&c.latency_micros_max, micros(latency));
        c.rate_limit_wait_micros
            .fetch_add(micros(wait), Ordering::Relaxed);
    }

    pub(crate) fn record_attempt(&self, op: Op) {
        self.ops[op as usize]
            .attempts
            .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_throttle(&self, op: Op) {
        self.ops[op as usize]
            .throttled_attempts
            .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_received(&self, n: u64) {
        self.events_received.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn record_malformed(&self) {
        self.events_malformed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_ignored(&self) {
        self.events_ignored.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_delivered(&self, latency: Duration) {
        self.events_delivered.fetch_add(1, Ordering::Relaxed);
        self.event_latency_micros_sum
            .fetch_add(micros(latency), Ordering::Relaxed);
        max_into(&self.event_latency_micros_max, micros(latency));
    }

    pub(crate) fn record_external_change(&self) {
        self.external_changes.fetch_add(1, Ordering::Relaxed);
    }

    /// Replaces the on-demand prices of the instance types in use, with sources (each
    /// scan does).
    pub fn record_on_demand_prices(&self, quotes: Vec<PriceQuote>) {
        if let Ok(mut prices) = self.on_demand_prices.lock() {
            *prices = quotes;
        }
    }

    /// The on-demand price and its source (`api`, `table`, `override`, `estimate`) of
    /// each instance type of the latest scan, by type name.
    pub fn on_demand_prices(&self) -> Vec<PriceQuote> {
        self.on_demand_prices
            .lock()
            .map(|p| p.clone())
            .unwrap_or_default()
    }

    pub(crate) fn record_group_errors(&self, n: u64) {
        self.group_errors.fetch_add(n, Ordering::Relaxed);
    }

    /// Counters of one operation.
    pub fn op(&self, op: Op) -> OpStats {
        let c = &self.ops[op as usize];
        OpStats {
            calls: c.calls.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
            attempts: c.attempts.load(Ordering::Relaxed),
            throttled_attempts: c.throttled_attempts.load(Ordering::Relaxed),
            latency_micros_sum: c.latency_micros_sum.load(Ordering::Relaxed),
            latency_micros_max: c.latency_micros_max.load(Ordering::Relaxed),
            rate_limit_wait_micros: c.rate_limit_wait_micros.load(Ordering::Relaxed),
        }
    }

    /// Logical calls over every AWS API except the SQS/EventBridge event path.
    pub fn control_plane_calls(&self) -> u64 {
        Op::ALL
            .iter()
            .filter(|op| op.is_control_plane())
            .map(|&op| self.op(op).calls)
            .sum()
    }

    /// Event counters.
    pub fn events(&self) -> EventStats {
        EventStats {
            received: self.events_received.load(Ordering::Relaxed),
            delivered: self.events_delivered.load(Ordering::Relaxed),
            malformed: self.events_malformed.load(Ordering::Relaxed),
            ignored: self.events_ignored.load(Ordering::Relaxed),
            latency_micros_max: self.event_latency_micros_max.load(Ordering::Relaxed),
            latency_micros_sum: self.event_latency_micros_sum.load(Ordering::Relaxed),
        }
    }

    /// Times someone else changed a group's desired capacity under us.
    pub fn external_changes(&self) -> u64 {
        self.external_changes.load(Ordering::Relaxed)
    }

    /// Per-group problems reported by scans.
    pub fn group_errors(&self) -> u64 {
        self.group_errors.load(Ordering::Relaxed)
    }
}
