//! One partition's log: record batches kept byte for byte as the producer sent
//! them (only `base_offset` is rewritten), in segments that roll at the topic's
//! segment size, with time and size retention removing whole old segments.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

/// Bytes of `batch_len`'s own preamble (`base_offset` i64 + `batch_len` i32).
const BATCH_PREAMBLE: usize = 12;
/// `batch_len` counts the header (45 bytes) and the records.
const MIN_BATCH_LEN: i32 = 45;

/// A batch as it arrived, checked just enough to be stored and served.
#[derive(Debug, Clone)]
pub(crate) struct IncomingBatch {
    bytes: Bytes,
    /// `last_offset_delta + 1`; 0 for an empty batch.
    pub(crate) records: i64,
    /// Attribute bits 0–2 (None 0, Gzip 1, Snappy 2, Lz4 3, Zstd 4).
    pub(crate) codec: u8,
}

impl IncomingBatch {
    /// Splits a produce entry's record-set bytes into batches.
    pub(crate) fn split(mut rest: Bytes) -> Result<Vec<IncomingBatch>, String> {
        let mut batches = Vec::new();
        while !rest.is_empty() {
            if rest.len() < BATCH_PREAMBLE {
                return Err(format!("{} trailing bytes are not a batch", rest.len()));
            }
            let batch_len = read_i32(&rest, 8);
            if batch_len < MIN_BATCH_LEN {
                return Err(format!("batch_len {batch_len} is shorter than a batch header"));
            }
            let total = BATCH_PREAMBLE + batch_len as usize;
            if rest.len() < total {
                return Err(format!("batch of {total} bytes cut at {}", rest.len()));
            }
            let bytes = rest.split_to(total);
            let attributes = read_i16(&bytes, 21);
            let last_offset_delta = read_i32(&bytes, 23);
            batches.push(IncomingBatch {
                records: i64::from(last_offset_delta.max(-1)) + 1,
                codec: (attributes & 0x07) as u8,
                bytes,
            });
        }
        Ok(batches)
    }

    /// Size on the wire and in the log.
    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }
}

fn read_i32(bytes: &[u8], at: usize) -> i32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    i32::from_be_bytes(word)
}

fn read_i16(bytes: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([bytes[at], bytes[at + 1]])
}

/// A stored batch.
#[derive(Debug, Clone)]
pub(crate) struct StoredBatch {
    pub(crate) base_offset: i64,
    pub(crate) records: i64,
    pub(crate) bytes: Bytes,
}

impl StoredBatch {
    fn end(&self) -> i64 {
        self.base_offset + self.records
    }
}

#[derive(Debug)]
struct Segment {
    base_offset: i64,
    batches: Vec<StoredBatch>,
    bytes: u64,
    last_write: Instant,
}

impl Segment {
    fn new(base_offset: i64, now: Instant) -> Self {
        Self {
            base_offset,
            batches: Vec::new(),
            bytes: 0,
            last_write: now,
        }
    }
}

/// Storage limits of a partition, from its topic.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LogLimits {
    pub(crate) segment_bytes: u64,
    pub(crate) max_partition_bytes: u64,
    pub(crate) retention: Duration,
}

/// What a fetch from one offset finds.
#[derive(Debug)]
pub(crate) enum Slice {
    /// The offset is below the log start.
    Evicted { next_available: i64 },
    /// The offset is past the log end.
    BeyondEnd { leo: i64 },
    /// The offset is the log end: nothing to send yet.
    AtEnd,
    /// Bytes from the batch containing the offset, up to the end of its
    /// segment, cut at `max_bytes` even inside a batch: the stored batches
    /// (shared, not copied), the last one possibly cut short.
    Records { parts: Vec<Bytes>, end: i64 },
}

/// A partition's log.
#[derive(Debug)]
pub(crate) struct PartitionLog {
    segments: VecDeque<Segment>,
    leo: i64,
    bytes: u64,
    limits: LogLimits,
}

impl PartitionLog {
    pub(crate) fn new(limits: LogLimits, now: Instant) -> Self {
        Self {
            segments: VecDeque::from([Segment::new(0, now)]),
            leo: 0,
            bytes: 0,
            limits,
        }
    }

    /// The log end offset (with one replica also the high watermark).
    pub(crate) fn leo(&self) -> i64 {
        self.leo
    }

    /// The first offset still stored.
    pub(crate) fn start(&self) -> i64 {
        self.segments.front().map_or(self.leo, |s| s.base_offset)
    }

    /// Bytes stored.
    pub(crate) fn size(&self) -> u64 {
        self.bytes
    }

    pub(crate) fn limits(&self) -> LogLimits {
        self.limits
    }

    /// Appends a batch at the log end; returns its base offset.
    pub(crate) fn append(&mut self, batch: &IncomingBatch, now: Instant) -> i64 {
        let base_offset = self.leo;
        let len = batch.len() as u64;
        let needs_roll = self
            .segments
            .back()
            .is_none_or(|s| s.bytes > 0 && s.bytes + len > self.limits.segment_bytes);
        if needs_roll {
            self.segments.push_back(Segment::new(base_offset, now));
        }
        let mut bytes = BytesMut::from(&batch.bytes[..]);
        bytes[..8].copy_from_slice(&base_offset.to_be_bytes());
        let stored = StoredBatch {
            base_offset,
            records: batch.records,
            bytes: bytes.freeze(),
        };
        if let Some(segment) = self.segments.back_mut() {
            segment.bytes += len;
            segment.last_write = now;
            segment.batches.push(stored);
        }
        self.bytes += len;
        self.leo += batch.records;
        base_offset
    }

    /// What a stream fetch from `from` gets, at most `max_bytes` bytes.
    pub(crate) fn slice(&self, from: i64, max_bytes: i32) -> Slice {
        if from < self.start() {
            return Slice::Evicted {
                next_available: self.start(),
            };
        }
        if from > self.leo {
            return Slice::BeyondEnd { leo: self.leo };
        }
        if from == self.leo {
            return Slice::AtEnd;
        }
        let index = self.segments.partition_point(|s| s.base_offset <= from);
        let Some(segment) = index.checked_sub(1).and_then(|i| self.segments.get(i)) else {
            return Slice::AtEnd;
        };
        let end = self.segments.get(index).map_or(self.leo, |next| next.base_offset);
        let first = segment.batches.partition_point(|b| b.end() <= from);
        let mut room = usize::try_from(max_bytes).unwrap_or(0);
        let mut parts = Vec::new();
        for batch in &segment.batches[first..] {
            if room == 0 {
                break;
            }
            let take = room.min(batch.bytes.len());
            parts.push(batch.bytes.slice(..take));
            room -= take;
        }
        Slice::Records { parts, end }
    }

    /// Every stored batch, oldest first.
    pub(crate) fn batches(&self) -> impl Iterator<Item = &StoredBatch> {
        self.segments.iter().flat_map(|s| s.batches.iter())
    }

    /// Removes old segments: inactive ones idle longer than the retention
    /// time, then the oldest inactive ones while the partition is over its
    /// size. The active segment always stays. Returns the records removed.
    pub(crate) fn enforce_retention(&mut self, now: Instant) -> i64 {
        let start = self.start();
        while self.segments.len() > 1 {
            let Some(oldest) = self.segments.front() else { break };
            let expired = now.saturating_duration_since(oldest.last_write) > self.limits.retention;
            let oversized = self.bytes > self.limits.max_partition_bytes;
            if !expired && !oversized {
                break;
            }
            if let Some(removed) = self.segments.pop_front() {
                self.bytes -= removed.bytes;
            }
        }
        self.start() - start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(records: i32, payload: usize) -> IncomingBatch {
        let batch_len = 45 + payload as i32;
        let mut bytes = vec![0u8; 12 + batch_len as usize];
        bytes[8..12].copy_from_slice(&batch_len.to_be_bytes());
        bytes[23..27].copy_from_slice(&(records - 1).to_be_bytes());
        IncomingBatch::split(Bytes::from(bytes)).expect("valid batch").remove(0)
    }

    fn total(parts: &[Bytes]) -> usize {
        parts.iter().map(Bytes::len).sum()
    }

    fn limits(segment_bytes: u64) -> LogLimits {
        LogLimits {
            segment_bytes,
            max_partition_bytes: u64::MAX,
            retention: Duration::from_secs(60),
        }
    }

    #[test]
    fn appends_assign_dense_offsets_and_rewrite_base_offset() {
        let now = Instant::now();
        let mut log = PartitionLog::new(limits(1 << 30), now);
        assert_eq!(log.append(&batch(3, 10), now), 0);
        assert_eq!(log.append(&batch(2, 10), now), 3);
        assert_eq!(log.leo(), 5);
        let second = log.batches().nth(1).expect("two batches");
        assert_eq!(&second.bytes[..8], &3i64.to_be_bytes());
    }

    #[test]
    fn slice_starts_at_the_containing_batch_and_cuts_through_a_batch() {
        let now = Instant::now();
        let mut log = PartitionLog::new(limits(1 << 30), now);
        log.append(&batch(3, 100), now);
        log.append(&batch(3, 100), now);
        match log.slice(4, 200) {
            Slice::Records { parts, end } => {
                assert_eq!(end, 6);
                assert_eq!(total(&parts), 157, "the whole second batch fits");
                assert_eq!(&parts[0][..8], &3i64.to_be_bytes());
            }
            other => panic!("unexpected {other:?}"),
        }
        match log.slice(0, 200) {
            Slice::Records { parts, .. } => {
                assert_eq!(parts.len(), 2);
                assert_eq!(total(&parts), 200, "cut inside the second batch");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(log.slice(6, 100), Slice::AtEnd));
        assert!(matches!(log.slice(7, 100), Slice::BeyondEnd { leo: 6 }));
    }

    #[test]
    fn fetches_stop_at_the_end_of_a_segment() {
        let now = Instant::now();
        let mut log = PartitionLog::new(limits(320), now);
        log.append(&batch(1, 100), now);
        log.append(&batch(1, 100), now);
        log.append(&batch(1, 100), now);
        match log.slice(0, 10_000) {
            Slice::Records { parts, end } => {
                assert_eq!(end, 2);
                assert_eq!(total(&parts), 314);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn retention_removes_old_inactive_segments_only() {
        let start = Instant::now();
        let mut log = PartitionLog::new(limits(300), start);
        for _ in 0..5 {
            log.append(&batch(2, 100), start);
        }
        assert_eq!(log.enforce_retention(start + Duration::from_secs(30)), 0);
        assert_eq!(log.enforce_retention(start + Duration::from_secs(61)), 8);
        assert_eq!(log.start(), 8);
        assert_eq!(log.leo(), 10);
        assert!(matches!(log.slice(3, 1000), Slice::Evicted { next_available: 8 }));
    }

    #[test]
    fn size_retention_keeps_the_partition_under_its_maximum() {
        let now = Instant::now();
        let mut log = PartitionLog::new(
            LogLimits {
                max_partition_bytes: 400,
                ..limits(200)
            },
            now,
        );
        for _ in 0..5 {
            log.append(&batch(1, 100), now);
        }
        assert_eq!(log.enforce_retention(now), 3);
        assert!(log.size() <= 400);
    }

    #[test]
    fn malformed_batches_are_refused_with_a_reason() {
        assert!(IncomingBatch::split(Bytes::from_static(&[0; 5])).is_err());
        let mut short = vec![0u8; 20];
        short[8..12].copy_from_slice(&100i32.to_be_bytes());
        assert!(IncomingBatch::split(Bytes::from(short)).is_err());
    }
}
