//! The source's cursor, recovered from the topic itself: the last offset written
//! for each Falcon partition, read from record keys. No side state file can
//! disagree with the topic.
//!
//! Each topic partition is scanned back from its end in windows that double
//! from [`FIRST_WINDOW`] up to [`MAX_WINDOW`] records, reading keys only
//! ([`TopicInspect::scan_keys`]), so memory stays bounded however far back a
//! Falcon partition's last event is, or when it is not in the topic at all (a
//! new or quiet partition: the whole topic partition is scanned, once, and the
//! answer kept). Records of one Falcon partition are appended in increasing
//! offset order, so the newest window that holds a Falcon partition holds its
//! last offset.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use tokio::sync::Mutex;

use crate::audit::SourceKey;
use crate::falcon::{CursorStore, HeldRuns};
use crate::topic::fluvio::topic_partition_of;
use crate::topic::{PartitionBounds, TopicInspect};

/// First window scanned back from the end of each topic partition.
const FIRST_WINDOW: u64 = 1_000;
/// Largest window: the scan's step, not a limit on how far back it goes.
const MAX_WINDOW: u64 = 65_536;

/// A [`CursorStore`] reading the raw topic.
#[derive(Debug)]
pub struct TopicCursors<T> {
    topic: T,
    scans: Mutex<Option<Vec<PartitionScan>>>,
    runs: Mutex<Option<RunsByPartition>>,
}

/// Falcon partition → the offset ranges the topic holds of it.
type RunsByPartition = HashMap<u32, Vec<(u64, u64)>>;

/// How far back one topic partition has been read, and what was found there.
#[derive(Debug)]
struct PartitionScan {
    /// Topic partition.
    partition: u32,
    /// Oldest retained offset.
    first: u64,
    /// Everything from here to the end has been scanned.
    scanned_down_to: u64,
    /// Next window size.
    window: u64,
    /// Falcon partition → last offset written to this topic partition.
    found: HashMap<u32, u64>,
    /// Records whose keys were read, for [`TopicCursors::keys_read`].
    keys_read: u64,
}

impl PartitionScan {
    fn new(bounds: &PartitionBounds) -> Self {
        Self {
            partition: bounds.partition,
            first: bounds.first,
            scanned_down_to: bounds.next,
            window: FIRST_WINDOW,
            found: HashMap::new(),
            keys_read: 0,
        }
    }

    fn exhausted(&self) -> bool {
        self.scanned_down_to <= self.first
    }

    /// Scans further back until `falcon_partition` is found or the topic
    /// partition is exhausted; returns its last offset here, if any.
    async fn last_of<T: TopicInspect>(&mut self, topic: &T, falcon_partition: u32) -> anyhow::Result<Option<u64>> {
        while !self.found.contains_key(&falcon_partition) && !self.exhausted() {
            let end = self.scanned_down_to;
            let start = end.saturating_sub(self.window).max(self.first);
            let mut newest: HashMap<u32, u64> = HashMap::new();
            let mut keys = 0u64;
            let mut visit = |_offset: u64, key: Option<&[u8]>| {
                keys += 1;
                if let Some(key) = key.and_then(|k| SourceKey::decode(k).ok()) {
                    let entry = newest.entry(key.partition).or_insert(key.offset);
                    *entry = (*entry).max(key.offset);
                }
            };
            topic.scan_keys(self.partition, start, end, &mut visit).await?;
            self.keys_read += keys;
            // Scanning backwards, the first window a Falcon partition shows up
            // in holds its last offset; later (older) windows never override it.
            for (partition, offset) in newest {
                self.found.entry(partition).or_insert(offset);
            }
            self.scanned_down_to = start;
            self.window = self.window.saturating_mul(2).min(MAX_WINDOW);
        }
        Ok(self.found.get(&falcon_partition).copied())
    }
}

impl<T: TopicInspect> TopicCursors<T> {
    /// Cursors of `topic`.
    pub fn new(topic: T) -> Self {
        Self {
            topic,
            scans: Mutex::new(None),
            runs: Mutex::new(None),
        }
    }

    /// The last offset of `falcon_partition` in the topic. The source writes
    /// Falcon partition `p` only to topic partition `p mod N`
    /// ([`topic_partition_of`]), in order, so that partition alone answers,
    /// exactly, whatever N is. Only when it holds nothing of `p` (a topic
    /// written before that mapping, by Fluvio's key hash) are the others read,
    /// and the newest offset any of them holds answers.
    async fn find(&self, falcon_partition: u32) -> anyhow::Result<Option<u64>> {
        let mut guard = self.scans.lock().await;
        if guard.is_none() {
            let bounds = self.topic.bounds().await?;
            *guard = Some(bounds.iter().map(PartitionScan::new).collect());
        }
        let scans: &mut Vec<PartitionScan> = guard.get_or_insert_with(Vec::new);
        let count = u32::try_from(scans.len()).unwrap_or(u32::MAX);
        let home = topic_partition_of(falcon_partition, count);
        let (mut at_home, mut others): (Vec<_>, Vec<_>) = scans.iter_mut().partition(|s| s.partition == home);
        for scan in at_home.iter_mut() {
            if let Some(last) = scan.last_of(&self.topic, falcon_partition).await? {
                return Ok(Some(last));
            }
        }
        let mut newest = None;
        for scan in others.iter_mut() {
            newest = newest.max(scan.last_of(&self.topic, falcon_partition).await?);
        }
        Ok(newest)
    }

    /// What the topic holds of `falcon_partition`, as ranges of offsets written
    /// in one go (a feed appends every event it serves, in order, so a run
    /// from `first` to `last` means the topic holds all Falcon served between).
    /// A run ends where offsets go back (a start at `earliest` or an offset
    /// appended older events after newer ones). This reads every key of the
    /// topic once (only when a start position asks for it), keeping only the
    /// runs.
    async fn held(&self, falcon_partition: u32) -> anyhow::Result<HeldRuns> {
        let mut guard = self.runs.lock().await;
        if guard.is_none() {
            let began = std::time::Instant::now();
            let mut runs = RunsByPartition::new();
            let mut keys = 0u64;
            for bounds in self.topic.bounds().await? {
                // Runs never span topic partitions: each is scanned on its own.
                let mut current: HashMap<u32, (u64, u64)> = HashMap::new();
                let mut visit = |_offset: u64, key: Option<&[u8]>| {
                    keys += 1;
                    let Some(key) = key.and_then(|k| SourceKey::decode(k).ok()) else {
                        return;
                    };
                    match current.get_mut(&key.partition) {
                        Some(run) if key.offset > run.1 => run.1 = key.offset,
                        Some(run) => {
                            runs.entry(key.partition).or_default().push(*run);
                            *run = (key.offset, key.offset);
                        }
                        None => {
                            current.insert(key.partition, (key.offset, key.offset));
                        }
                    }
                };
                self.topic
                    .scan_keys(bounds.partition, bounds.first, bounds.next, &mut visit)
                    .await?;
                for (partition, run) in current {
                    runs.entry(partition).or_default().push(run);
                }
            }
            tracing::info!(
                keys,
                elapsed_ms = began.elapsed().as_millis() as u64,
                "read the topic's keys to skip what it already holds"
            );
            *guard = Some(runs);
        }
        let runs = guard.as_ref().and_then(|r| r.get(&falcon_partition)).cloned();
        Ok(HeldRuns::new(runs.unwrap_or_default()))
    }

    /// Keys read so far over every topic partition (what recovery has cost).
    pub async fn keys_read(&self) -> u64 {
        self.scans.lock().await.iter().flatten().map(|s| s.keys_read).sum()
    }
}

impl<T: TopicInspect> CursorStore for TopicCursors<T> {
    fn held_runs(&self, partition: u32) -> Pin<Box<dyn Future<Output = anyhow::Result<HeldRuns>> + Send + '_>> {
        Box::pin(self.held(partition))
    }

    fn last_written(&self, partition: u32) -> Pin<Box<dyn Future<Output = anyhow::Result<Option<u64>>> + Send + '_>> {
        Box::pin(async move {
            let began = std::time::Instant::now();
            let last = self.find(partition).await?;
            let keys_read = self.keys_read().await;
            tracing::debug!(
                partition,
                ?last,
                keys_read,
                elapsed_ms = began.elapsed().as_millis() as u64,
                "recovered the cursor from the topic"
            );
            Ok(last)
        })
    }
}

/// Refuses a raw topic another tenant writes. A record key carries only the
/// Falcon partition and offset, so two sources (one per member CID, for an
/// MSSP) writing one topic would recover each other's cursors. The newest
/// record of each topic partition names its tenant (`metadata.customerIDString`);
/// a topic holding another than `member_cid` is refused with the CIDs named. Costs one record per topic partition.
pub async fn check_single_tenant<T: TopicInspect>(
    topic: &T,
    name: &str,
    member_cid: Option<&str>,
) -> anyhow::Result<()> {
    let mut found: Vec<String> = Vec::new();
    for bounds in topic.bounds().await? {
        if bounds.next <= bounds.first {
            continue;
        }
        let newest = topic.read_range(bounds.partition, bounds.next - 1, bounds.next).await?;
        for cid in newest.iter().filter_map(|r| tenant_of(&r.value)) {
            if !found.contains(&cid) {
                found.push(cid);
            }
        }
    }
    let mine = member_cid.map(normalise_cid);
    if let Some(other) = mine.as_ref().and_then(|m| found.iter().find(|c| *c != m)) {
        anyhow::bail!(
            "topic {name} holds events of CID {other}, but this source reads member CID {}: \
             two tenants must not share a raw topic (their cursors would mix); give this source a topic of its own (meta.topic)",
            mine.as_deref().unwrap_or_default()
        );
    }
    // Without `member_cid` several CIDs prove nothing: one stream carries the
    // events of a parent CID and its children (the emulator's mix does too), and
    // refusing them stopped a restarted source.
    Ok(())
}

/// The CID a raw Falcon event belongs to, lowercased, without a CCID's
/// `-checksum` suffix.
fn tenant_of(value: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Event {
        metadata: Metadata,
    }
    #[derive(serde::Deserialize)]
    struct Metadata {
        #[serde(rename = "customerIDString")]
        customer_id: String,
    }
    let event: Event = serde_json::from_slice(value).ok()?;
    Some(normalise_cid(&event.metadata.customer_id))
}

fn normalise_cid(cid: &str) -> String {
    let cid = cid.trim();
    cid.split_once('-').map_or(cid, |(cid, _)| cid).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::sqlite::{SqliteLog, SyncMode};
    use crate::topic::{NewRecord, TopicRecord, TopicWriter};
    use bytes::Bytes;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn record(partition: u32, offset: u64) -> NewRecord {
        NewRecord {
            key: Some(Bytes::from(SourceKey::new(partition, offset).encode())),
            value: Bytes::from_static(b"{}"),
        }
    }

    #[tokio::test]
    async fn finds_each_partition_s_last_offset() {
        let dir = tempfile::tempdir().expect("dir");
        let log = SqliteLog::open(&dir.path().join("log.db"), SyncMode::Normal).expect("open");
        let topic = log.topic("raw").expect("topic");
        let mut records = vec![record(1, 7)];
        records.extend((100..3_100).map(|offset| record(0, offset)));
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

    /// A topic that counts what recovery asks of it: whole records must never
    /// be read, and no key scan may span more than the largest window.
    struct Counting<T> {
        inner: T,
        largest_scan: AtomicU64,
        records_read: AtomicU64,
    }

    impl<T: TopicInspect> TopicInspect for Counting<T> {
        async fn bounds(&self) -> anyhow::Result<Vec<PartitionBounds>> {
            self.inner.bounds().await
        }

        async fn read_range(&self, partition: u32, from: u64, to: u64) -> anyhow::Result<Vec<TopicRecord>> {
            let records = self.inner.read_range(partition, from, to).await?;
            self.records_read.fetch_add(records.len() as u64, Ordering::Relaxed);
            Ok(records)
        }

        async fn scan_keys(
            &self,
            partition: u32,
            from: u64,
            to: u64,
            visit: &mut (dyn FnMut(u64, Option<&[u8]>) + Send),
        ) -> anyhow::Result<()> {
            self.largest_scan.fetch_max(to - from, Ordering::Relaxed);
            self.inner.scan_keys(partition, from, to, visit).await
        }
    }

    /// Issue 9 §2: a Falcon partition absent from a large topic is looked for
    /// in bounded key-only windows, once.
    #[tokio::test]
    async fn an_absent_partition_costs_bounded_key_reads_once() {
        let dir = tempfile::tempdir().expect("dir");
        let log = SqliteLog::open(&dir.path().join("log.db"), SyncMode::Normal).expect("open");
        let topic = log.topic("raw").expect("topic");
        let total = 300_000u64;
        for chunk in (0..total).collect::<Vec<_>>().chunks(50_000) {
            topic
                .append(chunk.iter().map(|o| record(0, 1_000 + o)).collect())
                .await
                .expect("append");
        }
        let counting = Counting {
            inner: topic,
            largest_scan: AtomicU64::new(0),
            records_read: AtomicU64::new(0),
        };
        let cursors = TopicCursors::new(counting);
        assert_eq!(cursors.last_written(0).await.expect("scan"), Some(1_000 + total - 1));
        assert_eq!(cursors.last_written(5).await.expect("scan"), None, "absent");
        assert_eq!(cursors.keys_read().await, total, "every key read once");
        assert_eq!(cursors.last_written(6).await.expect("scan"), None, "also absent");
        assert_eq!(
            cursors.keys_read().await,
            total,
            "the answer is kept, not scanned again"
        );
        assert!(cursors.topic.largest_scan.load(Ordering::Relaxed) <= MAX_WINDOW);
        assert_eq!(cursors.topic.records_read.load(Ordering::Relaxed), 0, "no values read");
    }

    fn event(cid: &str, offset: u64) -> NewRecord {
        NewRecord {
            key: Some(Bytes::from(SourceKey::new(0, offset).encode())),
            value: Bytes::from(format!(
                r#"{{"metadata":{{"customerIDString":"{cid}","offset":{offset}}},"event":{{}}}}"#
            )),
        }
    }

    /// Issue 8 §4: a raw topic another tenant writes is refused, naming both CIDs.
    #[tokio::test]
    async fn a_topic_of_another_tenant_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let log = SqliteLog::open(&dir.path().join("log.db"), SyncMode::Normal).expect("open");
        let topic = log.topic("raw").expect("topic");
        check_single_tenant(&topic, "raw", Some("AAAA"))
            .await
            .expect("an empty topic is anyone's");
        topic.append(vec![event("aaaa", 1)]).await.expect("append");
        check_single_tenant(&topic, "raw", Some("AAAA-1F"))
            .await
            .expect("its own CID, any case, CCID suffix");
        check_single_tenant(&topic, "raw", None).await.expect("one tenant");
        let refused = check_single_tenant(&topic, "raw", Some("bbbb"))
            .await
            .expect_err("another tenant");
        let text = refused.to_string();
        assert!(
            text.contains("aaaa") && text.contains("bbbb") && text.contains("meta.topic"),
            "{text}"
        );
    }
}
