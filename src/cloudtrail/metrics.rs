//! Counters of the CloudTrail publisher.

use crate::metrics::{Counter, Gauge, Histogram};

/// What the publisher has done.
#[derive(Debug, Default)]
pub struct CloudTrailMetrics {
    /// `PutAuditEvents` requests completed (any outcome).
    pub requests: Counter,
    /// Requests that failed as a whole.
    pub request_failures: Counter,
    /// Requests answered with throttling.
    pub throttled: Counter,
    /// Whole requests scheduled again.
    pub request_retries: Counter,
    /// Single events scheduled again after a per-event `Throttling`/`InternalFailure`.
    pub event_retries: Counter,
    /// Events stored by CloudTrail.
    pub delivered: Counter,
    /// Events dead-lettered.
    pub dead_lettered: Counter,
    /// Requests in flight (waiting for the rate limit or for CloudTrail).
    pub in_flight: Gauge,
    /// Latency of `PutAuditEvents` requests.
    pub latency: Histogram,
}
