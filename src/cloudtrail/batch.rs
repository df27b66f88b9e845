//! Batching of audit events into `PutAuditEvents` requests: at most 100 events
//! and at most a configured number of request-body bytes, never two entries with
//! the same id.

use std::time::Duration;

use tokio::time::Instant;

use crate::audit::json::escaped_len;
use crate::cloudtrail::checksum::event_data_checksum;

/// Most events per request (a CloudTrail quota).
pub const MAX_EVENTS: usize = 100;
/// Largest request body CloudTrail accepts ("up to 1 MB").
pub const MAX_REQUEST_BYTES: usize = 1_000_000;
/// `{"auditEvents":[` and `]}`.
const BODY_OVERHEAD: usize = 18;

/// One event on its way to CloudTrail.
#[derive(Debug, Clone)]
pub struct Entry<T> {
    /// `AuditEvent.id`.
    pub id: String,
    /// `eventData`.
    pub event_data: String,
    /// `eventDataChecksum`.
    pub checksum: String,
    /// Callers' tokens settled by this entry (several when the same event was
    /// submitted more than once).
    pub tokens: Vec<T>,
    /// Sends so far that ended in a retryable per-event failure.
    pub attempts: u32,
    /// Bytes this entry adds to a request body (separator included).
    pub wire_size: usize,
}

impl<T> Entry<T> {
    /// An entry with its checksum and size computed.
    pub fn new(id: String, event_data: String, token: T) -> Self {
        let checksum = event_data_checksum(&event_data);
        let wire_size = entry_size(&id, &event_data, &checksum);
        Self {
            id,
            event_data,
            checksum,
            tokens: vec![token],
            attempts: 0,
            wire_size,
        }
    }
}

/// Length of a base64 SHA-256 checksum.
const CHECKSUM_LEN: usize = 44;

/// Request bytes of an entry for this id and data (its checksum has a fixed length).
pub fn entry_size_for(id: &str, event_data: &str) -> usize {
    entry_size(id, event_data, &"A".repeat(CHECKSUM_LEN))
}

/// `{"id":…,"eventData":…,"eventDataChecksum":…},`
fn entry_size(id: &str, event_data: &str, checksum: &str) -> usize {
    let keys = r#"{"id":,"eventData":,"eventDataChecksum":},"#.len();
    keys + escaped_len(id) + escaped_len(event_data) + escaped_len(checksum)
}

/// How full a request may get.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// Events per request (≤ 100).
    pub max_events: usize,
    /// Request body bytes (≤ 1,000,000).
    pub max_bytes: usize,
}

impl BatchLimits {
    /// True when `entry` could never fit a request on its own.
    pub fn too_large<T>(&self, entry: &Entry<T>) -> bool {
        self.too_large_size(entry.wire_size)
    }

    /// True when an entry of `wire_size` bytes could never fit a request on its own.
    pub fn too_large_size(&self, wire_size: usize) -> bool {
        BODY_OVERHEAD + wire_size > self.max_bytes
    }
}

/// The events of one request.
#[derive(Debug, Clone)]
pub struct Batch<T> {
    /// Entries, each id once.
    pub entries: Vec<Entry<T>>,
    /// Request body size.
    pub bytes: usize,
}

impl<T> Default for Batch<T> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            bytes: BODY_OVERHEAD,
        }
    }
}

impl<T> Batch<T> {
    /// Number of events.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when it holds no event.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Accumulates entries into batches.
#[derive(Debug)]
pub struct Batcher<T> {
    limits: BatchLimits,
    current: Batch<T>,
    opened_at: Option<Instant>,
}

impl<T> Batcher<T> {
    /// A batcher with `limits`.
    pub fn new(limits: BatchLimits) -> Self {
        Self {
            limits,
            current: Batch::default(),
            opened_at: None,
        }
    }

    /// Adds an entry; returns the previous batch when this entry did not fit in it.
    /// The same event (same id and data) joins the entry already batched; a
    /// different event with the same id goes to the next batch, because
    /// CloudTrail rejects a request that repeats an id.
    pub fn push(&mut self, mut entry: Entry<T>) -> Option<Batch<T>> {
        if let Some(existing) = self.current.entries.iter_mut().find(|e| e.id == entry.id) {
            if existing.event_data == entry.event_data {
                existing.tokens.append(&mut entry.tokens);
                return None;
            }
            let full = self.take();
            self.add(entry);
            return full;
        }
        let fits = self.current.len() < self.limits.max_events
            && self.current.bytes + entry.wire_size <= self.limits.max_bytes;
        if fits {
            self.add(entry);
            return None;
        }
        let full = self.take();
        self.add(entry);
        full
    }

    fn add(&mut self, entry: Entry<T>) {
        if self.current.is_empty() {
            self.opened_at = Some(Instant::now());
        }
        self.current.bytes += entry.wire_size;
        self.current.entries.push(entry);
    }

    /// True when the current batch cannot take another event.
    pub fn is_full(&self) -> bool {
        self.current.len() >= self.limits.max_events
    }

    /// Takes the current batch, if it holds anything.
    pub fn take(&mut self) -> Option<Batch<T>> {
        self.opened_at = None;
        let batch = std::mem::take(&mut self.current);
        (!batch.is_empty()).then_some(batch)
    }

    /// When the current batch is due to be sent, given `linger`.
    pub fn deadline(&self, linger: Duration) -> Option<Instant> {
        self.opened_at.map(|t| t + linger)
    }

    /// Events waiting in the current batch.
    pub fn len(&self) -> usize {
        self.current.len()
    }

    /// True when no event is waiting.
    pub fn is_empty(&self) -> bool {
        self.current.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, size: usize) -> Entry<u32> {
        Entry::new(id.to_string(), format!("{{\"x\":\"{}\"}}", "a".repeat(size)), 0)
    }

    #[test]
    fn sizes_match_the_serialised_body() {
        let e = Entry::new(
            "id_1".to_string(),
            "{\"quote\":\"\\\"\",\"nl\":\"\\n\"}".to_string(),
            0u32,
        );
        let body = serde_json::json!({"auditEvents": [{"id": e.id, "eventData": e.event_data, "eventDataChecksum": e.checksum}]});
        assert_eq!(BODY_OVERHEAD + e.wire_size - 1, body.to_string().len());
        assert_eq!(entry_size_for(&e.id, &e.event_data), e.wire_size);
    }

    #[test]
    fn closes_batches_at_100_events() {
        let mut b = Batcher::new(BatchLimits {
            max_events: 100,
            max_bytes: MAX_REQUEST_BYTES,
        });
        let mut full = Vec::new();
        for i in 0..250 {
            if let Some(batch) = b.push(entry(&format!("e{i}"), 10)) {
                full.push(batch.len());
            }
        }
        assert_eq!(full, vec![100, 100]);
        assert_eq!(b.take().map(|b| b.len()), Some(50));
        assert!(b.take().is_none());
    }

    #[test]
    fn closes_batches_before_the_byte_limit() {
        let limits = BatchLimits {
            max_events: 100,
            max_bytes: 900_000,
        };
        let mut b = Batcher::new(limits);
        let mut batches = Vec::new();
        for i in 0..60 {
            if let Some(batch) = b.push(entry(&format!("e{i}"), 20_000)) {
                batches.push(batch);
            }
        }
        batches.extend(b.take());
        assert!(batches.len() >= 2);
        for batch in &batches {
            assert!(batch.bytes <= 900_000, "{}", batch.bytes);
        }
        assert_eq!(batches.iter().map(Batch::len).sum::<usize>(), 60);
        assert!(limits.too_large(&entry("big", 900_000)));
    }

    #[test]
    fn never_repeats_an_id_in_a_batch() {
        let mut b = Batcher::new(BatchLimits {
            max_events: 100,
            max_bytes: MAX_REQUEST_BYTES,
        });
        assert!(b.push(Entry::new("a".into(), "{}".into(), 1)).is_none());
        assert!(
            b.push(Entry::new("a".into(), "{}".into(), 2)).is_none(),
            "same event joins"
        );
        let first = b
            .push(Entry::new("a".into(), "{\"v\":2}".into(), 3))
            .expect("different event closes the batch");
        assert_eq!(first.len(), 1);
        assert_eq!(first.entries[0].tokens, vec![1, 2]);
        assert_eq!(b.take().map(|b| b.entries[0].tokens.clone()), Some(vec![3]));
    }
}
