//! Topics: one small interface, two backends. [`sqlite`] is the embedded durable
//! log for one machine; [`fluvio`] is a Fluvio cluster. The pipeline stages are
//! generic over these traits, so the connectors and the embedded runner share
//! every line of stage code.

pub mod fluvio;
pub mod sqlite;

use std::future::Future;
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;

/// A record read from a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRecord {
    /// Topic partition.
    pub partition: u32,
    /// Offset within the partition.
    pub offset: u64,
    /// When it was appended, epoch milliseconds.
    pub timestamp_ms: i64,
    /// Record key.
    pub key: Option<Bytes>,
    /// Record value.
    pub value: Bytes,
}

/// A record to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecord {
    /// Record key.
    pub key: Option<Bytes>,
    /// Record value.
    pub value: Bytes,
}

/// First and next offset of one partition (`next` = one past the last record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionBounds {
    /// Topic partition.
    pub partition: u32,
    /// Oldest retained offset.
    pub first: u64,
    /// Offset the next record will get.
    pub next: u64,
}

/// One consumer's stored offset on one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerPosition {
    /// Consumer id.
    pub consumer: String,
    /// Topic partition.
    pub partition: u32,
    /// Last offset committed (every record up to it is settled).
    pub offset: u64,
    /// When it was last committed, epoch milliseconds (0 when unknown).
    pub updated_ms: i64,
}

/// Appends records.
pub trait TopicWriter: Send + Sync {
    /// Appends `records`; returns once they are durable (acknowledged).
    fn append(&self, records: Vec<NewRecord>) -> impl Future<Output = Result<()>> + Send;

    /// Largest record (key + value bytes) the topic accepts; `None`: no limit.
    fn max_record_bytes(&self) -> Option<usize> {
        None
    }
}

/// Reads records in order, from a start position.
pub trait TopicReader: Send {
    /// Up to `max` next records, waiting at most `wait` for the first one;
    /// an empty batch means nothing new arrived in that time.
    fn next_batch(&mut self, max: usize, wait: Duration) -> impl Future<Output = Result<Vec<TopicRecord>>> + Send;

    /// The offset each partition's next record will have (at least), per
    /// partition read; the sink counts lag from it where nothing is committed.
    fn positions(&self) -> Vec<(u32, u64)> {
        Vec::new()
    }
}

/// Stores a named consumer's offsets.
pub trait OffsetCommitter: Send + Sync {
    /// Records that every record up to and including `offset` of each listed
    /// partition is settled.
    fn commit(&self, offsets: &[(u32, u64)]) -> impl Future<Output = Result<()>> + Send;

    /// The consumer's stored offsets (last settled offset per partition), as a
    /// new process finds them.
    fn committed(&self) -> impl Future<Output = Result<Vec<(u32, u64)>>> + Send;
}

/// Looks at a topic without consuming it.
pub trait TopicInspect: Send + Sync {
    /// Bounds of every partition.
    fn bounds(&self) -> impl Future<Output = Result<Vec<PartitionBounds>>> + Send;
    /// Records of `partition` with offsets in `from..to`.
    fn read_range(&self, partition: u32, from: u64, to: u64) -> impl Future<Output = Result<Vec<TopicRecord>>> + Send;

    /// Hands `visit` the offset and key of each record of `partition` in
    /// `from..to`, in order, holding only a bounded part of the range in memory
    /// (keys, not values, are kept). This default reads [`KEY_SCAN_CHUNK`]
    /// records at a time through [`TopicInspect::read_range`]; backends that
    /// can read keys alone, or stream, do better.
    fn scan_keys<'a>(
        &'a self,
        partition: u32,
        from: u64,
        to: u64,
        visit: &'a mut (dyn FnMut(u64, Option<&[u8]>) + Send),
    ) -> impl Future<Output = Result<()>> + Send + 'a {
        async move {
            let mut start = from;
            while start < to {
                let end = to.min(start.saturating_add(KEY_SCAN_CHUNK));
                for record in self.read_range(partition, start, end).await? {
                    visit(record.offset, record.key.as_deref());
                }
                start = end;
            }
            Ok(())
        }
    }
}

/// Records a key scan reads at a time (see [`TopicInspect::scan_keys`]).
pub const KEY_SCAN_CHUNK: u64 = 1_000;

/// True when `error` says the storage behind a topic is full (SQLite's
/// `SQLITE_FULL`, or `ENOSPC` from the file system): a pause, not a failure.
pub fn is_storage_full(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        if let Some(rusqlite::Error::SqliteFailure(e, _)) = cause.downcast_ref::<rusqlite::Error>() {
            return e.code == rusqlite::ErrorCode::DiskFull;
        }
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::StorageFull || e.raw_os_error() == Some(libc::ENOSPC))
    })
}

/// Where a reader starts when its consumer has no stored offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartFrom {
    /// The oldest retained record.
    #[default]
    Beginning,
    /// Only records appended from now on.
    End,
    /// This offset.
    Absolute(u64),
}

/// Topic names: what both backends accept.
pub fn check_topic_name(name: &str, what: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    anyhow::ensure!(
        ok,
        "{what} {name:?} must be 1 to 63 lower-case letters, digits or '-' (not at either end)"
    );
    Ok(())
}
