//! The sink's progress per topic partition: the consumer lag counted from the
//! stored offsets, and whether reading a partition has stalled.
//!
//! Lag is counted per partition from the last durable commit, which a new
//! process reads from the backend at start; where the consumer has none yet,
//! from where the reader started. A partition is *stalled* when it has records
//! past the last one read, and none has been read for `stall_timeout` although
//! the reader kept asking for records (a reader held back by the window, while
//! CloudTrail is slow, does not ask, and is not stalled).

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::topic::PartitionBounds;

/// Reads the reader must have completed, without progress on a partition that
/// has records, before that partition counts as stalled.
const MIN_READS: u64 = 3;

/// One partition as `/health` and `/metrics` report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct PartitionHealth {
    /// Records in the partition after the last durable commit.
    pub lag: u64,
    /// Records are waiting, yet none was read for the stall timeout.
    pub stalled: bool,
}

/// Since when a partition has records to read without any being read.
#[derive(Debug, Clone, Copy)]
struct Waiting {
    since: Instant,
    /// The reader's completed reads at `since`.
    reads: u64,
    /// The partition's next offset to read at `since`.
    next: u64,
}

/// Per-partition commit and read positions of one sink.
#[derive(Debug)]
pub struct Progress {
    /// Last durably committed offset.
    committed: BTreeMap<u32, u64>,
    /// Where the reader started, for partitions without a commit.
    started: BTreeMap<u32, u64>,
    /// Next offset to read (one past the last record read).
    next_read: BTreeMap<u32, u64>,
    waiting: BTreeMap<u32, Waiting>,
    stalled: BTreeMap<u32, bool>,
    /// `None`: no stall detection (a bounded replay).
    stall_timeout: Option<Duration>,
}

impl Progress {
    /// Progress from the stored offsets and the reader's start positions.
    pub fn new(committed: &[(u32, u64)], started: &[(u32, u64)], stall_timeout: Option<Duration>) -> Self {
        let committed: BTreeMap<u32, u64> = committed.iter().copied().collect();
        let started: BTreeMap<u32, u64> = started.iter().copied().collect();
        let mut next_read: BTreeMap<u32, u64> = committed.iter().map(|(p, o)| (*p, o + 1)).collect();
        next_read.extend(started.iter().map(|(p, o)| (*p, *o)));
        Self {
            committed,
            started,
            next_read,
            waiting: BTreeMap::new(),
            stalled: BTreeMap::new(),
            stall_timeout,
        }
    }

    /// Offsets made durable.
    pub fn committed(&mut self, offsets: &[(u32, u64)]) {
        for &(partition, offset) in offsets {
            let entry = self.committed.entry(partition).or_insert(offset);
            *entry = (*entry).max(offset);
        }
    }

    /// A record was read.
    pub fn read(&mut self, partition: u32, offset: u64) {
        let entry = self.next_read.entry(partition).or_insert(offset + 1);
        *entry = (*entry).max(offset + 1);
    }

    /// Lag and stall state of every partition in `bounds`, given the reader's
    /// completed reads so far. Logs a partition that stalls or recovers.
    pub fn update(&mut self, bounds: &[PartitionBounds], reads: u64, now: Instant) -> BTreeMap<u32, PartitionHealth> {
        bounds
            .iter()
            .map(|b| (b.partition, self.update_one(b, reads, now)))
            .collect()
    }

    fn update_one(&mut self, b: &PartitionBounds, reads: u64, now: Instant) -> PartitionHealth {
        let p = b.partition;
        let base = self
            .committed
            .get(&p)
            .map(|c| c + 1)
            .or_else(|| self.started.get(&p).copied())
            .unwrap_or(b.first)
            .max(b.first);
        let lag = b.next.saturating_sub(base);
        let next = self.next_read.get(&p).copied().unwrap_or(base).max(b.first);
        let stalled = match self.stall_timeout {
            Some(timeout) => self.stalled_now(p, b.next > next, next, timeout, reads, now),
            None => false,
        };
        let was = self.stalled.insert(p, stalled).unwrap_or(false);
        if stalled && !was {
            tracing::error!(
                partition = p,
                waiting = b.next - next,
                next_offset = next,
                "a topic partition has records to read but none was read within sink.stall_timeout; /health reports it stalled"
            );
        } else if was && !stalled {
            tracing::info!(partition = p, "the stalled topic partition is being read again");
        }
        PartitionHealth { lag, stalled }
    }

    /// Whether `partition`, whose next offset to read is `next`, has waited
    /// with records to read (`behind`) for `timeout` of reads.
    fn stalled_now(
        &mut self,
        partition: u32,
        behind: bool,
        next: u64,
        timeout: Duration,
        reads: u64,
        now: Instant,
    ) -> bool {
        if !behind {
            self.waiting.remove(&partition);
            return false;
        }
        let waiting = self.waiting.entry(partition).or_insert(Waiting {
            since: now,
            reads,
            next,
        });
        if waiting.next != next {
            *waiting = Waiting {
                since: now,
                reads,
                next,
            };
        }
        now.duration_since(waiting.since) >= timeout && reads.saturating_sub(waiting.reads) >= MIN_READS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STALL: Duration = Duration::from_secs(30);
    const ON: Option<Duration> = Some(STALL);

    fn bounds(partition: u32, first: u64, next: u64) -> PartitionBounds {
        PartitionBounds { partition, first, next }
    }

    #[test]
    fn lag_counts_every_partition_from_the_stored_offsets() {
        // A new process, everything committed on a 2-partition topic.
        let mut p = Progress::new(&[(0, 14_999), (1, 15_065)], &[(0, 15_000), (1, 15_066)], ON);
        let now = Instant::now();
        let health = p.update(&[bounds(0, 0, 15_000), bounds(1, 0, 15_066)], 0, now);
        assert_eq!(health[&0].lag + health[&1].lag, 0);
        // Commits of one partition leave the other's count alone.
        let health = p.update(&[bounds(0, 0, 15_100), bounds(1, 0, 15_066)], 0, now);
        assert_eq!((health[&0].lag, health[&1].lag), (100, 0));
        p.committed(&[(0, 15_049)]);
        let health = p.update(&[bounds(0, 0, 15_100), bounds(1, 0, 15_066)], 0, now);
        assert_eq!((health[&0].lag, health[&1].lag), (50, 0));
    }

    #[test]
    fn without_a_commit_lag_counts_from_where_reading_started() {
        let mut p = Progress::new(&[], &[(0, 40), (1, 0)], ON);
        let health = p.update(&[bounds(0, 0, 50), bounds(1, 5, 8)], 0, Instant::now());
        assert_eq!(
            (health[&0].lag, health[&1].lag),
            (10, 3),
            "retention moved partition 1's start"
        );
        let mut unknown = Progress::new(&[], &[], ON);
        assert_eq!(unknown.update(&[bounds(0, 5, 8)], 0, Instant::now())[&0].lag, 3);
    }

    #[test]
    fn a_partition_waiting_while_the_reader_reads_stalls() {
        let mut p = Progress::new(&[], &[(0, 0), (1, 0)], ON);
        let start = Instant::now();
        let b = [bounds(0, 0, 100), bounds(1, 0, 100)];
        assert!(!p.update(&b, 0, start)[&0].stalled);
        p.read(1, 99);
        let later = start + STALL;
        let health = p.update(&b, 10, later);
        assert!(health[&0].stalled, "partition 0 was not read for 30 s of reads");
        assert!(!health[&1].stalled, "partition 1 is caught up");
        p.read(0, 0);
        assert!(!p.update(&b, 11, later)[&0].stalled, "reading again clears it");
    }

    #[test]
    fn a_reader_held_back_by_the_window_is_not_stalled() {
        let mut p = Progress::new(&[], &[(0, 0)], ON);
        let start = Instant::now();
        let b = [bounds(0, 0, 100)];
        p.update(&b, 7, start);
        assert!(!p.update(&b, 20, start + STALL / 2)[&0].stalled, "not yet 30 s");
        let mut held = Progress::new(&[], &[(0, 0)], ON);
        held.update(&b, 7, start);
        assert!(
            !held.update(&b, 8, start + STALL * 2)[&0].stalled,
            "one read in 60 s: held back"
        );
        assert!(
            held.update(&b, 10, start + STALL * 2)[&0].stalled,
            "three reads in 60 s, none of it"
        );
    }
}
