//! Consumer offsets, kept by the SPU that leads `consumer-offset-0` (here the
//! only SPU), keyed by (partition, consumer id). They outlive SPU restarts.

use std::time::{SystemTime, UNIX_EPOCH};

use fluvio_protocol::record::ReplicaKey;

use super::State;

/// A stored consumer offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StoredOffset {
    /// The last record handed to the application.
    pub(crate) offset: i64,
    /// Seconds since the Unix epoch.
    pub(crate) modified_time: u64,
}

impl State {
    /// Stores an offset as given (no monotonicity check, like the real SPU).
    pub(crate) fn store_consumer_offset(&mut self, replica: ReplicaKey, consumer_id: String, offset: i64) {
        let modified_time = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        self.consumer_offsets
            .insert((replica, consumer_id), StoredOffset { offset, modified_time });
    }

    /// Stored offsets matching the exact filters, of partitions that exist.
    pub(crate) fn consumer_offsets(
        &self,
        replica: Option<&ReplicaKey>,
        consumer_id: Option<&str>,
    ) -> Vec<(ReplicaKey, String, StoredOffset)> {
        self.consumer_offsets
            .iter()
            .filter(|((r, id), _)| {
                replica.is_none_or(|want| want == r)
                    && consumer_id.is_none_or(|want| want == id)
                    && self.partitions.contains_key(r)
            })
            .map(|((r, id), stored)| (r.clone(), id.clone(), *stored))
            .collect()
    }

    /// Forgets an offset; a missing one is not an error.
    pub(crate) fn delete_consumer_offset(&mut self, replica: ReplicaKey, consumer_id: String) {
        self.consumer_offsets.remove(&(replica, consumer_id));
    }
}
