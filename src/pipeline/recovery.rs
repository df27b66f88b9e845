//! The source's cursor, recovered from the topic itself: the last offset written
//! for each Falcon partition, read from record keys, scanning back from the end
//! in growing windows. No side state file can disagree with the topic.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use tokio::sync::Mutex;

use crate::audit::SourceKey;
use crate::falcon::CursorStore;
use crate::topic::TopicInspect;

/// First window scanned back from the end of each topic partition.
const FIRST_WINDOW: u64 = 1_000;

/// A [`CursorStore`] reading the raw topic.
#[derive(Debug)]
pub struct TopicCursors<T> {
    topic: T,
    scan: Mutex<Scan>,
}

/// How far back the topic has been read, and what was found.
#[derive(Debug, Default)]
struct Scan {
    /// Falcon partition → last offset written.
    found: HashMap<u32, u64>,
    /// Topic partition → (next offset to scan down from, first offset, window),
    /// filled on the first call.
    remaining: Option<Vec<(u32, u64, u64, u64)>>,
}

impl<T: TopicInspect> TopicCursors<T> {
    /// Cursors of `topic`.
    pub fn new(topic: T) -> Self {
        Self {
            topic,
            scan: Mutex::new(Scan::default()),
        }
    }

    /// Scans further back until `partition` is found or the topic is exhausted;
    /// later calls continue where this one stopped.
    async fn find(&self, partition: u32) -> anyhow::Result<Option<u64>> {
        let mut scan = self.scan.lock().await;
        if let Some(last) = scan.found.get(&partition) {
            return Ok(Some(*last));
        }
        if scan.remaining.is_none() {
            let bounds = self.topic.bounds().await?;
            scan.remaining = Some(
                bounds
                    .iter()
                    .map(|b| (b.partition, b.next, b.first, FIRST_WINDOW))
                    .collect(),
            );
        }
        let Scan { found, remaining } = &mut *scan;
        for (topic_partition, end, first, window) in remaining.iter_mut().flatten() {
            while *end > *first && !found.contains_key(&partition) {
                let start = end.saturating_sub(*window).max(*first);
                for record in self.topic.read_range(*topic_partition, start, *end).await? {
                    if let Some(key) = record.key.as_deref().and_then(|k| SourceKey::decode(k).ok()) {
                        // Scanning backwards, the first window a Falcon partition
                        // shows up in holds its last offset: keep that window's maximum.
                        let entry = found.entry(key.partition).or_insert(key.offset);
                        *entry = (*entry).max(key.offset);
                    }
                }
                *end = start;
                *window = window.saturating_mul(2);
            }
        }
        Ok(found.get(&partition).copied())
    }
}

impl<T: TopicInspect> CursorStore for TopicCursors<T> {
    fn last_written(&self, partition: u32) -> Pin<Box<dyn Future<Output = anyhow::Result<Option<u64>>> + Send + '_>> {
        Box::pin(self.find(partition))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::sqlite::{SqliteLog, SyncMode};
    use crate::topic::{NewRecord, TopicWriter};
    use bytes::Bytes;

    #[tokio::test]
    async fn finds_each_partition_s_last_offset() {
        let dir = tempfile::tempdir().expect("dir");
        let log = SqliteLog::open(&dir.path().join("log.db"), SyncMode::Normal).expect("open");
        let topic = log.topic("raw").expect("topic");
        let mut records = vec![NewRecord {
            key: Some(Bytes::from(SourceKey::new(1, 7).encode())),
            value: Bytes::from_static(b"{}"),
        }];
        for offset in 100..3_100 {
            records.push(NewRecord {
                key: Some(Bytes::from(SourceKey::new(0, offset).encode())),
                value: Bytes::from_static(b"{}"),
            });
        }
        topic.append(records).await.expect("append");
        let cursors = TopicCursors::new(topic);
        assert_eq!(cursors.last_written(0).await.expect("scan"), Some(3_099));
        assert_eq!(
            cursors.last_written(1).await.expect("scan"),
            Some(7),
            "found after scanning further back"
        );
        assert_eq!(cursors.last_written(2).await.expect("scan"), None);
    }
}
