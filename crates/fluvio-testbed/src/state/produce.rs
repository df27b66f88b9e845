//! Appending produced batches (protocol spec §4.2, checks in the real SPU's
//! order).

use fluvio_controlplane_metadata::topic::CompressionAlgorithm;
use fluvio_protocol::link::ErrorCode;
use fluvio_protocol::record::ReplicaKey;

use super::State;
use crate::log::IncomingBatch;

/// What one produce entry got.
#[derive(Debug)]
pub(crate) struct Appended {
    /// The LEO before the entry's first batch (0 when nothing was written).
    pub(crate) base_offset: i64,
    pub(crate) log_start: i64,
}

impl State {
    /// Appends one produce entry's batches, all or none.
    pub(crate) fn produce(
        &mut self,
        key: &ReplicaKey,
        batches: &[IncomingBatch],
        max_request_bytes: u64,
    ) -> Result<Appended, ErrorCode> {
        let allowed = self.topic_spec(&key.topic).map(|t| t.get_compression_type().clone());
        let Some(partition) = self.partitions.get(key) else {
            return Err(ErrorCode::TopicNotFound);
        };
        let log_start = partition.log.start();
        if batches.iter().all(|b| b.records == 0) {
            return Ok(Appended {
                base_offset: 0,
                log_start,
            });
        }
        let allowed = allowed.unwrap_or(CompressionAlgorithm::Any);
        if batches.iter().any(|b| !codec_allowed(&allowed, b.codec)) {
            return Err(ErrorCode::CompressionError);
        }
        let entry_bytes: u64 = batches.iter().map(|b| b.len() as u64).sum();
        let segment_bytes = partition.log.limits().segment_bytes;
        if entry_bytes > max_request_bytes || batches.iter().any(|b| b.len() as u64 > segment_bytes) {
            return Err(ErrorCode::MessageTooLarge);
        }
        let now = self.now();
        let Some(partition) = self.partitions.get_mut(key) else {
            return Err(ErrorCode::TopicNotFound);
        };
        let base_offset = partition.log.leo();
        for batch in batches.iter().filter(|b| b.records > 0) {
            partition.log.append(batch, now);
        }
        partition.leo.send_replace(partition.log.leo());
        self.publish_partition(key);
        Ok(Appended { base_offset, log_start })
    }
}

/// The topic's compression setting against a batch's codec bits (which number
/// Zstd 4, unlike the topic enum). `Any` takes every known codec.
fn codec_allowed(topic: &CompressionAlgorithm, codec: u8) -> bool {
    let batch = match codec {
        0 => CompressionAlgorithm::None,
        1 => CompressionAlgorithm::Gzip,
        2 => CompressionAlgorithm::Snappy,
        3 => CompressionAlgorithm::Lz4,
        4 => CompressionAlgorithm::Zstd,
        _ => return false,
    };
    *topic == CompressionAlgorithm::Any || *topic == batch
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_takes_every_codec_and_a_fixed_codec_only_itself() {
        assert!(codec_allowed(&CompressionAlgorithm::Any, 4));
        assert!(codec_allowed(&CompressionAlgorithm::Zstd, 4));
        assert!(!codec_allowed(&CompressionAlgorithm::Gzip, 0));
        assert!(!codec_allowed(&CompressionAlgorithm::None, 1));
        assert!(!codec_allowed(&CompressionAlgorithm::Any, 5));
    }
}
