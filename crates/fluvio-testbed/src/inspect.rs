//! What tests may look at directly (most should observe through the client).

use anyhow::{Context, Result};
use bytes::Bytes;
use fluvio_protocol::record::{Batch, RawRecords};
use fluvio_protocol::Decoder;

use crate::log::StoredBatch;

/// A partition's bounds: the log start (first offset still stored) and the
/// log end (LEO, equal to the high watermark with one replica).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionBounds {
    pub start: i64,
    pub end: i64,
}

/// A stored batch, as the producer sent it (with its assigned base offset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchInfo {
    pub base_offset: i64,
    pub records: i64,
    /// Bytes on the wire and in the log.
    pub bytes: usize,
    /// Codec bits of the batch attributes (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub codec: u8,
}

impl From<&StoredBatch> for BatchInfo {
    fn from(batch: &StoredBatch) -> Self {
        let codec = batch.bytes.get(22).map_or(0, |low| low & 0x07);
        Self {
            base_offset: batch.base_offset,
            records: batch.records,
            bytes: batch.bytes.len(),
            codec,
        }
    }
}

/// A stored record, decoded (and decompressed) from its batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    /// Milliseconds since the epoch (batch first timestamp + delta), −1 if unset.
    pub timestamp: i64,
}

/// Decodes every record of a stored batch.
pub(crate) fn decode_batch(batch: &StoredBatch) -> Result<Vec<StoredRecord>> {
    let mut src = std::io::Cursor::new(Bytes::clone(&batch.bytes));
    let raw = crate::frame::guarded(|| Batch::<RawRecords>::decode_from(&mut src, 0))
        .with_context(|| format!("decoding the batch at offset {}", batch.base_offset))?;
    let base_timestamp = raw.get_base_timestamp();
    let records = raw
        .memory_records()
        .with_context(|| format!("decompressing the batch at offset {}", batch.base_offset))?;
    Ok(records
        .into_iter()
        .map(|record| StoredRecord {
            offset: batch.base_offset + record.preamble.offset_delta(),
            timestamp: if base_timestamp < 0 {
                -1
            } else {
                base_timestamp + record.timestamp_delta()
            },
            key: record.key().map(|k| k.as_ref().to_vec()),
            value: record.value().as_ref().to_vec(),
        })
        .collect())
}
