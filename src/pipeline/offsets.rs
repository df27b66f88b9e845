//! Which raw offsets may be committed: a raw record is settled when every audit
//! event it produced is delivered or dead-lettered (a record that produced
//! none is settled at once), and offsets are committed only over a prefix of
//! settled records, in read order. A later record settling first waits for the
//! earlier ones, so no unsettled record is ever committed; tracking each record
//! (not each read batch) lets the commit follow deliveries closely, which keeps
//! what a crash re-delivers near what was in flight.

use std::collections::{BTreeMap, VecDeque};

/// The highest offset of each partition among `offsets`, by partition.
pub fn max_per_partition(offsets: impl IntoIterator<Item = (u32, u64)>) -> Vec<(u32, u64)> {
    let mut max: BTreeMap<u32, u64> = BTreeMap::new();
    for (partition, offset) in offsets {
        let entry = max.entry(partition).or_insert(offset);
        *entry = (*entry).max(offset);
    }
    max.into_iter().collect()
}

/// A settled prefix of one partition, ready to commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    /// The topic partition.
    pub partition: u32,
    /// Its last settled offset.
    pub offset: u64,
    /// Raw records of the partition the offset covers.
    pub records: usize,
}

impl Settled {
    /// `records` raw records of `partition`, up to `offset`.
    pub fn new(partition: u32, offset: u64, records: usize) -> Self {
        Self {
            partition,
            offset,
            records,
        }
    }
}

/// One raw record read and not yet committed.
#[derive(Debug, Clone, Copy)]
struct Pending {
    partition: u32,
    offset: u64,
    /// Its audit events not settled yet.
    events: usize,
}

/// Tracks raw records from read to commit. Records get consecutive ids in read
/// order, so a record is found by its id in constant time.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    records: VecDeque<Pending>,
    /// Id of `records[0]`.
    first_id: u64,
}

impl OffsetTracker {
    /// Adds records read, in order, each with no event to settle yet; returns
    /// the id of the first (the others follow consecutively).
    pub fn open(&mut self, records: impl IntoIterator<Item = (u32, u64)>) -> u64 {
        let id = self.first_id + self.records.len() as u64;
        self.records
            .extend(records.into_iter().map(|(partition, offset)| Pending {
                partition,
                offset,
                events: 0,
            }));
        id
    }

    /// Record `id` produced one more event to settle before it may be committed.
    pub fn hold(&mut self, id: u64) {
        if let Some(record) = self.get(id) {
            record.events += 1;
        }
    }

    /// One event of record `id` is settled.
    pub fn settle(&mut self, id: u64) {
        if let Some(record) = self.get(id) {
            record.events = record.events.saturating_sub(1);
        }
    }

    fn get(&mut self, id: u64) -> Option<&mut Pending> {
        let index = usize::try_from(id.checked_sub(self.first_id)?).ok()?;
        self.records.get_mut(index)
    }

    /// Removes the settled prefix; returns, per partition, the offset to
    /// commit and how many records it covers.
    pub fn take_committable(&mut self) -> Vec<Settled> {
        let mut last: BTreeMap<u32, Settled> = BTreeMap::new();
        while let Some(record) = self.records.front().filter(|r| r.events == 0).copied() {
            self.records.pop_front();
            self.first_id += 1;
            let entry = last
                .entry(record.partition)
                .or_insert(Settled::new(record.partition, record.offset, 0));
            entry.offset = entry.offset.max(record.offset);
            entry.records += 1;
        }
        last.into_values().collect()
    }

    /// Raw records read and not yet taken for a commit.
    pub fn uncommitted(&self) -> usize {
        self.records.len()
    }

    /// True when nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settled(partition: u32, offset: u64, records: usize) -> Settled {
        Settled::new(partition, offset, records)
    }

    #[test]
    fn commits_only_a_settled_prefix() {
        let mut t = OffsetTracker::default();
        let a = t.open((0..10).map(|o| (0, o)));
        t.hold(a);
        t.hold(a + 9);
        let b = t.open((10..20).map(|o| (0, o)));
        t.hold(b + 3);
        let c = t.open((20..30).map(|o| (0, o)).chain((0..5).map(|o| (1, o))));
        assert_eq!((a, b, c), (0, 10, 20));
        assert_eq!(t.uncommitted(), 35);
        t.settle(b + 3);
        assert_eq!(t.take_committable(), Vec::<Settled>::new(), "record 0 is still open");
        t.settle(a);
        assert_eq!(
            t.take_committable(),
            [settled(0, 8, 9)],
            "the prefix up to the record still open"
        );
        t.settle(a + 9);
        assert_eq!(
            t.take_committable(),
            [settled(0, 29, 21), settled(1, 4, 5)],
            "everything settled"
        );
        assert!(t.is_empty());
        assert_eq!(t.uncommitted(), 0);
    }

    #[test]
    fn ids_stay_valid_across_commits() {
        let mut t = OffsetTracker::default();
        let a = t.open([(0, 0), (0, 1)]);
        t.hold(a + 1);
        assert_eq!(t.take_committable(), [settled(0, 0, 1)]);
        let b = t.open([(0, 2)]);
        assert_eq!(b, 2);
        t.hold(b);
        t.settle(a + 1);
        assert_eq!(t.take_committable(), [settled(0, 1, 1)]);
        t.settle(b);
        t.settle(b);
        assert_eq!(t.take_committable(), [settled(0, 2, 1)]);
        t.settle(b);
        t.hold(99);
        assert!(t.is_empty(), "settling a committed or unknown id changes nothing");
    }

    #[test]
    fn records_without_events_commit_at_once() {
        let mut t = OffsetTracker::default();
        t.open((0..6).map(|o| (0, o)));
        assert_eq!(t.take_committable(), [settled(0, 5, 6)]);
        assert_eq!(t.take_committable(), Vec::<Settled>::new());
    }
}
