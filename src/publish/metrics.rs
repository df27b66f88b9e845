//! Counters of the publisher, rendered under the destination's operation name
//! (`falcon_lake_put_audit_events_*`, `falcon_lake_put_log_events_*`).

use std::sync::OnceLock;

use crate::metrics::{render_value, Counter, Gauge, Histogram};

/// What the publisher has done.
#[derive(Debug, Default)]
pub struct PublishMetrics {
    /// The destination's metric name part (`put_audit_events`), set when the
    /// publisher is built.
    operation: OnceLock<&'static str>,
    /// Requests completed (any outcome).
    pub requests: Counter,
    /// Requests that failed as a whole.
    pub request_failures: Counter,
    /// Requests answered with throttling.
    pub throttled: Counter,
    /// Whole requests scheduled again.
    pub request_retries: Counter,
    /// Single events scheduled again after a per-event transient failure.
    pub event_retries: Counter,
    /// Events stored by the destination.
    pub delivered: Counter,
    /// Events dead-lettered.
    pub dead_lettered: Counter,
    /// Requests in flight (waiting for the rate limit or for the service).
    pub in_flight: Gauge,
    /// Latency of requests.
    pub latency: Histogram,
}

impl PublishMetrics {
    /// Names the operation the metrics are rendered under (first call wins).
    pub fn set_operation(&self, name: &'static str) {
        let _ = self.operation.set(name);
    }

    /// The operation's metric name part.
    pub fn operation(&self) -> &'static str {
        self.operation.get().copied().unwrap_or("publish")
    }

    /// Appends the publisher's metrics in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let op = self.operation();
        let counters: [(String, &str, u64); 6] = [
            (
                "falcon_lake_events_dead_lettered_total".to_string(),
                "Audit events the destination refused (dead-lettered)",
                self.dead_lettered.get(),
            ),
            (
                "falcon_lake_retries_total".to_string(),
                "Sends retried (whole requests and single events)",
                self.request_retries.get() + self.event_retries.get(),
            ),
            (
                format!("falcon_lake_{op}_requests_total"),
                "Requests completed",
                self.requests.get(),
            ),
            (
                format!("falcon_lake_{op}_failures_total"),
                "Requests that failed as a whole",
                self.request_failures.get(),
            ),
            (
                format!("falcon_lake_{op}_throttled_total"),
                "Requests throttled",
                self.throttled.get(),
            ),
            (
                "falcon_lake_event_retries_total".to_string(),
                "Single events resent after a per-event transient failure",
                self.event_retries.get(),
            ),
        ];
        for (name, help, value) in counters {
            render_value(out, &name, "counter", help, value);
        }
        render_value(
            out,
            &format!("falcon_lake_{op}_in_flight"),
            "gauge",
            "Requests in flight",
            self.in_flight.get(),
        );
        self.latency.render(
            out,
            &format!("falcon_lake_{op}_seconds"),
            "Request latency (batch latency)",
        );
    }
}
