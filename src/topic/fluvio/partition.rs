//! Which topic partition a raw Falcon event goes to. Fluvio's default producer
//! hashes the key, which spreads one Falcon partition's events over every
//! topic partition and breaks the order cursor recovery relies on. Here Falcon
//! partition `p` always goes to topic partition `p mod N` (N: the topic's
//! partition count), so each Falcon partition lives, in order, in exactly one
//! topic partition ([`topic_partition_of`], shared with recovery).

use std::sync::atomic::{AtomicU32, Ordering};

use fluvio::{Partitioner, PartitionerConfig};

use crate::audit::SourceKey;

/// The topic partition that holds Falcon partition `falcon_partition` in a
/// topic of `partitions` partitions.
pub fn topic_partition_of(falcon_partition: u32, partitions: u32) -> u32 {
    falcon_partition % partitions.max(1)
}

/// Keys of the form `<falcon partition>_<offset>` go to their Falcon
/// partition's topic partition; any other key (never written by the source)
/// goes round-robin, as Fluvio does with keyless records.
#[derive(Debug, Default)]
pub struct FalconPartitioner {
    next: AtomicU32,
}

impl Partitioner for FalconPartitioner {
    fn partition(&self, config: &PartitionerConfig, key: Option<&[u8]>, _value: &[u8]) -> u32 {
        let count = config.partition_count();
        match key.and_then(|k| SourceKey::decode(k).ok()) {
            Some(key) => topic_partition_of(key.partition, count),
            None => self.next.fetch_add(1, Ordering::Relaxed) % count.max(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(partition_count: u32) -> PartitionerConfig {
        PartitionerConfig {
            partition_count,
            available_partitions: (0..partition_count).collect(),
        }
    }

    #[test]
    fn a_falcon_partition_always_goes_to_one_topic_partition() {
        let partitioner = FalconPartitioner::default();
        for count in 1..=4 {
            for falcon in 0..9u32 {
                for offset in [0u64, 1, 77, 1_000_003] {
                    let key = SourceKey::new(falcon, offset).encode();
                    assert_eq!(
                        partitioner.partition(&config(count), Some(&key), b"{}"),
                        falcon % count,
                        "falcon partition {falcon}, offset {offset}, {count} topic partitions"
                    );
                }
            }
        }
    }

    #[test]
    fn other_keys_spread_round_robin() {
        let partitioner = FalconPartitioner::default();
        let seen: Vec<u32> = (0..6)
            .map(|_| partitioner.partition(&config(3), Some(b"not-a-source-key"), b"{}"))
            .collect();
        assert_eq!(seen, [0, 1, 2, 0, 1, 2]);
    }
}
