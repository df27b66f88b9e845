//! Counters of the Falcon client, read by the pipeline's `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

/// Monotonic counters of one Falcon client.
#[derive(Debug, Default)]
pub struct FalconMetrics {
    /// Events handed to the caller.
    pub events: AtomicU64,
    /// Bytes of events handed to the caller.
    pub event_bytes: AtomicU64,
    /// Lines rejected (not a JSON object, no offset, too long).
    pub rejected: AtomicU64,
    /// Events dropped because their offset was not above the last one delivered.
    pub duplicates: AtomicU64,
    /// Blank keep-alive lines received.
    pub keepalives: AtomicU64,
    /// Feed connections opened.
    pub connections: AtomicU64,
    /// Times all feeds were torn down and rebuilt.
    pub reconnects: AtomicU64,
    /// Token requests sent.
    pub token_requests: AtomicU64,
    /// Discovery requests sent.
    pub discoveries: AtomicU64,
    /// Discoveries answered with no streams (appId held elsewhere).
    pub discovery_empty: AtomicU64,
    /// Successful session refreshes.
    pub refreshes: AtomicU64,
    /// Failed session refreshes.
    pub refresh_failures: AtomicU64,
    /// HTTP 429 answers received.
    pub rate_limited: AtomicU64,
    /// Feeds abandoned by the idle watchdog.
    pub idle_timeouts: AtomicU64,
    /// Events skipped because the topic already holds them (`start: earliest` or an offset).
    pub already_in_topic: AtomicU64,
}

impl FalconMetrics {
    /// Adds one to a counter.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Every counter with its name, for exposition.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            ("events", get(&self.events)),
            ("event_bytes", get(&self.event_bytes)),
            ("rejected", get(&self.rejected)),
            ("duplicates", get(&self.duplicates)),
            ("keepalives", get(&self.keepalives)),
            ("connections", get(&self.connections)),
            ("reconnects", get(&self.reconnects)),
            ("token_requests", get(&self.token_requests)),
            ("discoveries", get(&self.discoveries)),
            ("discovery_empty", get(&self.discovery_empty)),
            ("refreshes", get(&self.refreshes)),
            ("refresh_failures", get(&self.refresh_failures)),
            ("rate_limited", get(&self.rate_limited)),
            ("idle_timeouts", get(&self.idle_timeouts)),
            ("already_in_topic", get(&self.already_in_topic)),
        ]
    }
}
