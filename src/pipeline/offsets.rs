//! Which raw offsets may be committed: a batch of raw records is settled when
//! every audit event it produced is delivered or dead-lettered, and offsets are
//! committed only over a prefix of settled batches. A later batch settling
//! first waits for the earlier ones, so no unsettled record is ever committed.

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

/// One transform batch: the raw records it covers and how many events are unsettled.
#[derive(Debug)]
struct Unit {
    id: u64,
    last_offsets: Vec<(u32, u64)>,
    records: usize,
    pending: usize,
}

/// Tracks batches from read to commit.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    units: VecDeque<Unit>,
    next_id: u64,
    uncommitted: usize,
}

impl OffsetTracker {
    /// Opens a batch of `records` raw records ending at `last_offsets` (per
    /// partition) with `pending` events to settle; returns its id.
    pub fn open(&mut self, last_offsets: Vec<(u32, u64)>, records: usize, pending: usize) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.uncommitted += records;
        self.units.push_back(Unit {
            id,
            last_offsets,
            records,
            pending,
        });
        id
    }

    /// Settles one event of batch `id`.
    pub fn settle(&mut self, id: u64) {
        if let Some(unit) = self.units.iter_mut().find(|u| u.id == id) {
            unit.pending = unit.pending.saturating_sub(1);
        }
    }

    /// Removes the settled prefix and returns the offsets to commit, per partition.
    pub fn take_committable(&mut self) -> Option<Vec<(u32, u64)>> {
        let mut settled = Vec::new();
        while self.units.front().is_some_and(|u| u.pending == 0) {
            let Some(unit) = self.units.pop_front() else { break };
            self.uncommitted -= unit.records;
            settled.extend(unit.last_offsets);
        }
        let offsets = max_per_partition(settled);
        (!offsets.is_empty()).then_some(offsets)
    }

    /// Raw records read and not yet committed.
    pub fn uncommitted(&self) -> usize {
        self.uncommitted
    }

    /// True when nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.units.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_only_a_settled_prefix() {
        let mut t = OffsetTracker::default();
        let a = t.open(vec![(0, 9)], 10, 2);
        let b = t.open(vec![(0, 19)], 10, 1);
        let c = t.open(vec![(0, 29), (1, 4)], 15, 0);
        assert_eq!(t.uncommitted(), 35);
        t.settle(b);
        assert_eq!(t.take_committable(), None, "a is still open");
        t.settle(a);
        assert_eq!(t.take_committable(), None);
        t.settle(a);
        assert_eq!(
            t.take_committable(),
            Some(vec![(0, 29), (1, 4)]),
            "a, b and c all settled"
        );
        assert!(t.is_empty());
        assert_eq!(t.uncommitted(), 0);
        let _ = c;
    }

    #[test]
    fn empty_batches_commit_at_once() {
        let mut t = OffsetTracker::default();
        t.open(vec![(0, 5)], 6, 0);
        assert_eq!(t.take_committable(), Some(vec![(0, 5)]));
        assert_eq!(t.take_committable(), None);
    }
}
