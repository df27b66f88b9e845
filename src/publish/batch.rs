//! Accumulating prepared events into batches within a destination's limits
//! (events and bytes per request), closed when full or when they have waited
//! `linger`. The same event submitted twice while its batch is open is sent
//! once and settles both submissions.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::publish::destination::{BatchLimits, Prepared};

/// One event on its way, with every submission it settles.
#[derive(Debug)]
pub struct Pending<T> {
    /// The event as the destination prepared it.
    pub event: Prepared,
    /// Callers' tokens (several when the same event was submitted more than once).
    pub tokens: Vec<T>,
    /// Sends so far that ended in a retryable failure.
    pub attempts: u32,
}

impl<T> Pending<T> {
    /// A first submission.
    pub fn new(event: Prepared, token: T) -> Self {
        Self {
            event,
            tokens: vec![token],
            attempts: 0,
        }
    }
}

/// The events of an open batch.
#[derive(Debug)]
pub struct Batch<T> {
    /// Events, in arrival order.
    pub entries: Vec<Pending<T>>,
    /// Bytes, counted as the destination counts them.
    pub bytes: usize,
    /// Id → index of the first entry with that id.
    by_id: HashMap<String, usize>,
}

impl<T> Batch<T> {
    fn new(limits: &BatchLimits) -> Self {
        Self {
            entries: Vec::new(),
            bytes: limits.overhead_bytes,
            by_id: HashMap::new(),
        }
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when it holds no event.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Accumulates events into batches.
#[derive(Debug)]
pub struct Batcher<T> {
    limits: BatchLimits,
    current: Batch<T>,
    opened_at: Option<Instant>,
}

impl<T> Batcher<T> {
    /// A batcher within `limits`.
    pub fn new(limits: BatchLimits) -> Self {
        Self {
            limits,
            current: Batch::new(&limits),
            opened_at: None,
        }
    }

    /// Adds an event; returns the previous batch when this event did not fit in it.
    pub fn push(&mut self, mut pending: Pending<T>) -> Option<Batch<T>> {
        if let Some(&index) = self.current.by_id.get(&pending.event.id) {
            let existing = &mut self.current.entries[index];
            if existing.event.body == pending.event.body {
                existing.tokens.append(&mut pending.tokens);
                existing.attempts = existing.attempts.min(pending.attempts);
                return None;
            }
        }
        let fits = self.current.len() < self.limits.max_events
            && self.current.bytes + pending.event.wire_bytes <= self.limits.max_bytes;
        let full = if fits { None } else { self.take() };
        self.add(pending);
        full
    }

    fn add(&mut self, pending: Pending<T>) {
        if self.current.is_empty() {
            self.opened_at = Some(Instant::now());
        }
        self.current.bytes += pending.event.wire_bytes;
        let index = self.current.entries.len();
        self.current.by_id.entry(pending.event.id.clone()).or_insert(index);
        self.current.entries.push(pending);
    }

    /// True when the current batch cannot take another event.
    pub fn is_full(&self) -> bool {
        self.current.len() >= self.limits.max_events
    }

    /// Takes the current batch, if it holds anything.
    pub fn take(&mut self) -> Option<Batch<T>> {
        self.opened_at = None;
        let batch = std::mem::replace(&mut self.current, Batch::new(&self.limits));
        (!batch.is_empty()).then_some(batch)
    }

    /// When the current batch is due to be sent, given `linger`.
    pub fn deadline(&self, linger: Duration) -> Option<Instant> {
        self.opened_at.map(|t| t + linger)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, body: &str, wire_bytes: usize) -> Prepared {
        Prepared {
            id: id.to_string(),
            body: body.to_string(),
            timestamp_ms: 0,
            wire_bytes,
        }
    }

    const LIMITS: BatchLimits = BatchLimits {
        max_events: 100,
        max_bytes: 10_000,
        overhead_bytes: 18,
    };

    #[test]
    fn closes_batches_at_the_event_limit() {
        let mut b = Batcher::new(LIMITS);
        let mut full = Vec::new();
        for i in 0..250 {
            if let Some(batch) = b.push(Pending::new(event(&format!("e{i}"), "{}", 10), i)) {
                full.push(batch.len());
            }
        }
        assert_eq!(full, vec![100, 100]);
        assert_eq!(b.take().map(|b| b.len()), Some(50));
        assert!(b.take().is_none());
    }

    #[test]
    fn closes_batches_before_the_byte_limit() {
        let mut b = Batcher::new(LIMITS);
        let mut batches = Vec::new();
        for i in 0..30 {
            batches.extend(b.push(Pending::new(event(&format!("e{i}"), "{}", 1_000), i)));
        }
        batches.extend(b.take());
        assert_eq!(batches.iter().map(Batch::len).collect::<Vec<_>>(), vec![9, 9, 9, 3]);
        assert!(batches.iter().all(|b| b.bytes <= 10_000));
        assert!(LIMITS.too_large(9_983) && !LIMITS.too_large(9_982));
    }

    #[test]
    fn the_same_event_twice_is_one_entry_a_different_one_is_kept() {
        let mut b = Batcher::new(LIMITS);
        assert!(b.push(Pending::new(event("a", "{}", 10), 1)).is_none());
        assert!(b.push(Pending::new(event("a", "{}", 10), 2)).is_none());
        assert!(b.push(Pending::new(event("a", "{\"v\":2}", 10), 3)).is_none());
        let batch = b.take().expect("batch");
        assert_eq!(batch.len(), 2);
        assert_eq!(batch.entries[0].tokens, vec![1, 2]);
        assert_eq!(batch.entries[1].tokens, vec![3]);
    }
}
