//! Reading Fluvio partitions in order without trusting the stream to be gap-free.
//!
//! The `fluvio` 0.50.1 consumer silently drops a record batch that arrives cut
//! short by the fetch size (`max_bytes`) and goes on with the next response
//! (fixed upstream after 0.50.1: fluvio-community/fluvio#4627). The SPU cuts a
//! frame at `max_bytes` bytes wherever that falls, so while a reader is behind
//! by more than one frame, the end of each frame is such a cut. Fluvio offsets
//! are dense, so each partition's cursor knows the offset it must see next: on
//! a jump it reopens that partition at the missing offset with a larger fetch
//! size. A batch dropped at the very end of the log shows no jump, so an idle
//! reader also compares its position with the partition's end.
//!
//! Reopening, and anything else that can fail, happens only between batches,
//! never while one is being filled: a record taken from a stream is always
//! handed out (issue 8 §1). A followed partition's stream that ends is opened
//! again, never dropped (§3).

use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use fluvio::consumer::{ConsumerConfigExtBuilder, Record};
use fluvio::dataplane::link::ErrorCode;
use fluvio::{Fluvio, Offset};
use futures::{FutureExt, StreamExt};

use super::{open_consumer, partition_bounds, RecordStream};
use crate::topic::{PartitionBounds, TopicReader, TopicRecord};

/// Fetch size a reader starts with. A frame is cut only when more than this
/// lies past the reader, and then almost always inside a batch (the source's
/// batches are the client's 16 KiB), so this is how far behind a reader may
/// be without a re-read: at 32 MiB, about 20,000 Falcon events of 1.5 KB
/// (45,000 of the emulator's mix), past what a restarted sink usually has to
/// catch up on (4 MiB was re-read on nearly every restart). It is also the SPU's largest produce request, so the first frame
/// after a re-read always holds the batch that was cut.
pub const DEFAULT_MAX_BYTES: u64 = 32 * 1024 * 1024;
/// Largest fetch size a reader grows to; above the largest produce request a
/// Fluvio SPU accepts by default (32 MiB), so any batch fits.
const MAX_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// Reopens at one offset before the reader gives up with an error.
const MAX_REOPENS: u32 = 8;
/// How long a reader may sit idle behind the end of a partition before it
/// suspects a dropped batch and reopens.
const IDLE_CHECK: Duration = Duration::from_secs(5);
/// Wait before a failed reopen is tried again.
const REPAIR_RETRY: Duration = Duration::from_secs(1);

/// What a record's offset means for a cursor expecting `next`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The expected record.
    Next,
    /// Already handed out (a reopened stream starts at its batch's start).
    Old,
    /// Records `expected..found` were skipped by the stream.
    Gap {
        /// The offset that should have come.
        expected: u64,
        /// The offset that came.
        found: u64,
    },
}

/// Classifies `offset` for a cursor whose next offset is `next`.
pub fn classify(next: u64, offset: u64) -> Seen {
    match offset.cmp(&next) {
        std::cmp::Ordering::Equal => Seen::Next,
        std::cmp::Ordering::Less => Seen::Old,
        std::cmp::Ordering::Greater => Seen::Gap {
            expected: next,
            found: offset,
        },
    }
}

/// The fetch size after `max_bytes` proved too small, capped.
pub fn grown(max_bytes: u64) -> u64 {
    max_bytes.saturating_mul(2).min(MAX_MAX_BYTES)
}

/// Work a cursor needs before it can be read again; done between batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repair {
    /// The stream skipped records, failed, or stalled: open it again at the
    /// cursor's position (`grow`: with twice the fetch size).
    Reopen { grow: bool },
    /// The stream ended: a range is done if it reached its end, anything else
    /// is opened again.
    Ended,
}

/// One partition's position and stream.
struct Cursor {
    partition: u32,
    next: u64,
    until: Option<u64>,
    max_bytes: u64,
    stream: Option<RecordStream>,
    repair: Option<Repair>,
    /// When a failed repair may be tried again.
    retry_at: Option<Instant>,
    finished: bool,
    reopens: u32,
    last_record: Instant,
}

impl Cursor {
    /// Drops the stream and asks for `repair` before the next read.
    fn needs(&mut self, repair: Repair) {
        self.stream = None;
        self.repair = Some(repair);
    }

    fn finish(&mut self) {
        self.stream = None;
        self.repair = None;
        self.finished = true;
    }
}

/// What one poll of the cursors produced.
enum Event {
    Record(std::result::Result<Record, ErrorCode>),
    Ended,
}

/// Reads a set of partitions in offset order, each from its own position.
pub struct FluvioReader {
    fluvio: Arc<Fluvio>,
    topic: String,
    continuous: bool,
    cursors: Vec<Cursor>,
    turn: usize,
    last_idle_check: Instant,
}

impl std::fmt::Debug for FluvioReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FluvioReader").field("topic", &self.topic).finish()
    }
}

/// Where one partition's reading starts (and, for a range, stops).
#[derive(Debug, Clone, Copy)]
pub struct PartitionStart {
    /// Topic partition.
    pub partition: u32,
    /// First offset to read.
    pub from: u64,
    /// Offset to stop before; `None` follows the partition forever.
    pub until: Option<u64>,
}

impl FluvioReader {
    /// Opens a stream per partition at its `from` offset.
    pub async fn open(
        fluvio: Arc<Fluvio>,
        topic: &str,
        starts: &[PartitionStart],
        max_bytes: u64,
        continuous: bool,
    ) -> Result<Self> {
        anyhow::ensure!(!starts.is_empty(), "no partition of topic {topic} to read");
        let mut cursors = Vec::with_capacity(starts.len());
        for start in starts {
            let done = start.until.is_some_and(|until| start.from >= until);
            // A stream that cannot be opened (the SPU is away) is opened again
            // by the first reads, as after any failure: a sink starting while
            // the SPU restarts waits for it instead of exiting.
            let (stream, repair, retry_at) = if done {
                (None, None, None)
            } else {
                match open_stream(&fluvio, topic, start.partition, start.from, max_bytes, continuous).await {
                    Ok(stream) => (Some(stream), None, None),
                    Err(e) => {
                        tracing::warn!(
                            topic,
                            partition = start.partition,
                            error = format!("{e:#}"),
                            "cannot open the partition's stream yet; trying again"
                        );
                        let retry = Some(Instant::now() + REPAIR_RETRY);
                        (None, Some(Repair::Reopen { grow: false }), retry)
                    }
                }
            };
            cursors.push(Cursor {
                partition: start.partition,
                next: start.from,
                until: start.until,
                max_bytes,
                stream,
                repair,
                retry_at,
                finished: done,
                reopens: 0,
                last_record: Instant::now(),
            });
        }
        Ok(Self {
            fluvio,
            topic: topic.to_string(),
            continuous,
            cursors,
            turn: 0,
            last_idle_check: Instant::now(),
        })
    }

    /// Whether every partition of a range reader has reached its end.
    pub fn finished(&self) -> bool {
        self.cursors.iter().all(|c| c.finished)
    }

    /// Takes, skips or flags one event of cursor `index`. Never fails and
    /// never waits: what needs the cluster is left to [`Self::repair`].
    fn handle(&mut self, index: usize, event: Event, batch: &mut Vec<TopicRecord>) {
        let topic = &self.topic;
        let cursor = &mut self.cursors[index];
        let record = match event {
            Event::Ended => return cursor.needs(Repair::Ended),
            Event::Record(Err(e)) => {
                tracing::warn!(
                    topic = %topic,
                    partition = cursor.partition,
                    offset = cursor.next,
                    error = %e,
                    "the Fluvio stream failed; reading again from the next offset"
                );
                return cursor.needs(Repair::Reopen { grow: true });
            }
            Event::Record(Ok(record)) => record,
        };
        let offset = u64::try_from(record.offset()).unwrap_or(0);
        match classify(cursor.next, offset) {
            Seen::Old => {}
            Seen::Gap { expected, found } => {
                tracing::warn!(
                    topic = %topic,
                    partition = cursor.partition,
                    missing = format!("{expected}..{found}"),
                    max_bytes = cursor.max_bytes,
                    "the Fluvio stream skipped records (a batch cut short by the fetch size); reading them again"
                );
                cursor.needs(Repair::Reopen { grow: true });
            }
            Seen::Next => {
                if cursor.until.is_some_and(|until| offset >= until) {
                    return cursor.finish();
                }
                cursor.next = offset + 1;
                cursor.reopens = 0;
                cursor.last_record = Instant::now();
                batch.push(to_topic_record(cursor.partition, offset, &record));
                if cursor.until.is_some_and(|until| cursor.next >= until) {
                    cursor.finish();
                }
            }
        }
    }

    /// Carries out the repairs that are due. Called only while no record is
    /// held, so a failure here loses nothing; the cursor keeps its repair and
    /// is tried again after [`REPAIR_RETRY`].
    async fn repair(&mut self) -> Result<()> {
        let now = Instant::now();
        for index in 0..self.cursors.len() {
            let cursor = &self.cursors[index];
            let Some(repair) = cursor.repair else {
                continue;
            };
            if cursor.retry_at.is_some_and(|at| at > now) {
                continue;
            }
            let outcome = match repair {
                Repair::Ended => self.ended(index).await,
                Repair::Reopen { grow } => self.reopen(index, grow).await,
            };
            if let Err(e) = outcome {
                self.cursors[index].retry_at = Some(Instant::now() + REPAIR_RETRY);
                return Err(e);
            }
            self.cursors[index].retry_at = None;
        }
        Ok(())
    }

    /// A followed partition's stream that ends is opened again, whatever its
    /// position (a caught-up partition is still followed). A range is done if
    /// it reached its end or the partition's; else it reads on.
    async fn ended(&mut self, index: usize) -> Result<()> {
        if self.continuous {
            tracing::info!(
                topic = %self.topic,
                partition = self.cursors[index].partition,
                offset = self.cursors[index].next,
                "the Fluvio stream ended; following the partition again"
            );
            return self.reopen(index, false).await;
        }
        let bounds = bounds_of(&self.fluvio, &self.topic, self.cursors[index].partition).await?;
        let cursor = &mut self.cursors[index];
        let end = cursor.until.map_or(bounds.next, |until| until.min(bounds.next));
        if cursor.next >= end {
            cursor.finish();
            return Ok(());
        }
        tracing::warn!(
            topic = %self.topic,
            partition = cursor.partition,
            missing = format!("{}..{end}", cursor.next),
            "the Fluvio stream ended before the records it was asked for; reading them again"
        );
        self.reopen(index, true).await
    }

    /// Reopens cursor `index` at its next offset; `grow` doubles the fetch size.
    /// Records deleted by retention meanwhile are reported and skipped.
    async fn reopen(&mut self, index: usize, grow: bool) -> Result<()> {
        let partition = self.cursors[index].partition;
        let bounds = bounds_of(&self.fluvio, &self.topic, partition).await?;
        let cursor = &mut self.cursors[index];
        if cursor.next < bounds.first {
            tracing::error!(
                topic = %self.topic,
                partition,
                lost = format!("{}..{}", cursor.next, bounds.first),
                "records were deleted by the topic's retention before they were read; raise the topic's retention"
            );
            cursor.next = bounds.first;
        }
        if cursor.until.is_some_and(|until| cursor.next >= until) {
            cursor.finish();
            return Ok(());
        }
        // Only reopens that reached the SPU count: an SPU that is away for a
        // while is waited for, a stream that keeps skipping is not.
        if cursor.reopens >= MAX_REOPENS {
            bail!(
                "topic {} partition {partition}: the Fluvio stream keeps skipping offset {} even with a fetch size \
                 of {} bytes",
                self.topic,
                cursor.next,
                cursor.max_bytes
            );
        }
        if grow {
            cursor.max_bytes = grown(cursor.max_bytes);
        }
        let (from, max_bytes) = (cursor.next, cursor.max_bytes);
        let stream = open_stream(&self.fluvio, &self.topic, partition, from, max_bytes, self.continuous).await?;
        let cursor = &mut self.cursors[index];
        cursor.reopens += 1;
        cursor.stream = Some(stream);
        cursor.repair = None;
        cursor.last_record = Instant::now();
        Ok(())
    }

    /// After a quiet spell, flags any partition whose end is past what it read.
    async fn check_idle(&mut self) -> Result<()> {
        if self.last_idle_check.elapsed() < IDLE_CHECK {
            return Ok(());
        }
        self.last_idle_check = Instant::now();
        for index in 0..self.cursors.len() {
            let cursor = &self.cursors[index];
            if cursor.stream.is_none() || cursor.last_record.elapsed() < IDLE_CHECK {
                continue;
            }
            let bounds = bounds_of(&self.fluvio, &self.topic, cursor.partition).await?;
            let cursor = &mut self.cursors[index];
            if cursor.next < bounds.next {
                tracing::warn!(
                    topic = %self.topic,
                    partition = bounds.partition,
                    missing = format!("{}..{}", cursor.next, bounds.next),
                    "records are in the topic but the Fluvio stream delivered none; reading them again"
                );
                cursor.needs(Repair::Reopen { grow: true });
            }
        }
        Ok(())
    }

    /// The next event of any cursor, round-robin so no partition starves.
    fn poll_any(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Option<(usize, Event)>> {
        let count = self.cursors.len();
        let mut open = false;
        for step in 0..count {
            let index = (self.turn + step) % count;
            let Some(stream) = self.cursors[index].stream.as_mut() else {
                continue;
            };
            open = true;
            match stream.poll_next_unpin(cx) {
                Poll::Ready(item) => {
                    self.turn = (index + 1) % count;
                    let event = item.map_or(Event::Ended, Event::Record);
                    return Poll::Ready(Some((index, event)));
                }
                Poll::Pending => {}
            }
        }
        if open {
            Poll::Pending
        } else {
            Poll::Ready(None)
        }
    }

    /// When the earliest postponed repair is due, if any repair is pending.
    fn next_repair(&self) -> Option<Instant> {
        self.cursors
            .iter()
            .filter(|c| c.repair.is_some())
            .map(|c| c.retry_at.unwrap_or_else(Instant::now))
            .min()
    }
}

impl TopicReader for FluvioReader {
    async fn next_batch(&mut self, max: usize, wait: Duration) -> Result<Vec<TopicRecord>> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut batch = Vec::new();
        while batch.is_empty() {
            self.repair().await?;
            let polled = tokio::time::timeout_at(deadline, std::future::poll_fn(|cx| self.poll_any(cx))).await;
            match polled {
                Err(_) => {
                    if self.continuous {
                        self.check_idle().await?;
                    }
                    return Ok(batch);
                }
                // No stream is open: every cursor is finished or waits for a repair.
                Ok(None) => match self.next_repair() {
                    Some(due) if tokio::time::Instant::from_std(due) < deadline => {
                        tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
                    }
                    _ => return Ok(batch),
                },
                Ok(Some((index, event))) => self.handle(index, event, &mut batch),
            }
        }
        while batch.len() < max {
            match std::future::poll_fn(|cx| self.poll_any(cx)).now_or_never() {
                Some(Some((index, event))) => self.handle(index, event, &mut batch),
                _ => break,
            }
        }
        Ok(batch)
    }

    fn positions(&self) -> Vec<(u32, u64)> {
        self.cursors.iter().map(|c| (c.partition, c.next)).collect()
    }
}

/// Bounds of one partition.
async fn bounds_of(fluvio: &Fluvio, topic: &str, partition: u32) -> Result<PartitionBounds> {
    partition_bounds(fluvio, topic)
        .await?
        .into_iter()
        .find(|b| b.partition == partition)
        .ok_or_else(|| anyhow!("topic {topic} has no partition {partition}"))
}

/// A stream of one partition from `from`, with no consumer offset involved.
pub async fn open_stream(
    fluvio: &Fluvio,
    topic: &str,
    partition: u32,
    from: u64,
    max_bytes: u64,
    continuous: bool,
) -> Result<RecordStream> {
    let config = ConsumerConfigExtBuilder::default()
        .topic(topic)
        .partition(partition)
        .offset_start(Offset::absolute(i64::try_from(from)?).map_err(|e| anyhow!("{e}"))?)
        .max_bytes(i32::try_from(max_bytes).unwrap_or(i32::MAX))
        .disable_continuous(!continuous)
        .build()
        .map_err(|e| anyhow!("consumer config: {e}"))?;
    open_consumer(fluvio, config)
        .await
        .with_context(|| format!("reading topic {topic} partition {partition} from offset {from}"))
}

fn to_topic_record(partition: u32, offset: u64, record: &Record) -> TopicRecord {
    TopicRecord {
        partition,
        offset,
        timestamp_ms: record.timestamp(),
        key: record.key().map(Bytes::copy_from_slice),
        value: Bytes::copy_from_slice(record.value()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_taken_skipped_or_reported_as_gaps() {
        assert_eq!(classify(10, 10), Seen::Next);
        assert_eq!(classify(10, 9), Seen::Old);
        assert_eq!(classify(10, 0), Seen::Old);
        assert_eq!(
            classify(10, 1_130),
            Seen::Gap {
                expected: 10,
                found: 1_130
            }
        );
    }

    /// Produces `batches` batches of `per_batch` records of `size` bytes to
    /// partition 0 of `topic` (one batch per flush).
    pub(crate) async fn produce_batches(fluvio: &Fluvio, topic: &str, batches: usize, per_batch: usize, size: usize) {
        let config = fluvio::TopicProducerConfigBuilder::default()
            .batch_size(64 * 1024 * 1024)
            .max_request_size(32 * 1024 * 1024)
            .linger(Duration::from_secs(3600))
            .build()
            .expect("producer config");
        let producer = fluvio
            .topic_producer_with_config(topic, config)
            .await
            .expect("producer");
        for b in 0..batches {
            for r in 0..per_batch {
                let mut value = format!("{b:06}-{r:06}").into_bytes();
                value.resize(size, b'x');
                producer.send(fluvio::RecordKey::NULL, value).await.expect("send");
            }
            producer.flush().await.expect("flush");
        }
    }

    pub(crate) async fn cluster_with_topic(topic: &str, partitions: u32) -> (fluvio_testbed::TestCluster, Arc<Fluvio>) {
        let cluster = fluvio_testbed::TestCluster::start().await.expect("cluster");
        let fluvio = Fluvio::connect_with_config(&fluvio::FluvioClusterConfig::new(cluster.sc_endpoint()))
            .await
            .expect("connect");
        fluvio
            .admin()
            .await
            .create(
                topic.to_string(),
                false,
                fluvio::metadata::topic::TopicSpec::new_computed(partitions, 1, None),
            )
            .await
            .expect("create topic");
        (cluster, Arc::new(fluvio))
    }

    /// Issue 8 §1: an error met while a batch is being filled must not cost the
    /// records already taken from the stream. Frames of 64 KiB cut 50 KiB
    /// batches, so the second frame starts with a gap; the reopen it calls for
    /// fails (the SC is gone). Whatever a call returns, the reader's position
    /// stays one past the last record it handed out.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_error_while_filling_a_batch_loses_no_record() {
        let (cluster, fluvio) = cluster_with_topic("loss", 1).await;
        produce_batches(&fluvio, "loss", 20, 50, 1_000).await;
        let start = PartitionStart {
            partition: 0,
            from: 0,
            until: None,
        };
        let mut reader = FluvioReader::open(fluvio.clone(), "loss", &[start], 64 * 1024, true)
            .await
            .expect("reader");
        let first = reader
            .next_batch(1, Duration::from_secs(10))
            .await
            .expect("first record");
        assert_eq!(first.len(), 1);
        let mut last = first[0].offset;
        // Let the next frame arrive, then take the SC away.
        tokio::time::sleep(Duration::from_millis(500)).await;
        cluster.stop_sc().await.expect("stop sc");
        // Without an SC, admin calls wait for the client's 60 s socket timeout;
        // a call cut short by this test's timeout counts as a failure (the
        // reader must be cancel-safe too).
        let mut errors = 0;
        for _ in 0..3 {
            let call = tokio::time::timeout(
                Duration::from_secs(3),
                reader.next_batch(10_000, Duration::from_secs(2)),
            );
            match call.await.unwrap_or_else(|_| Err(anyhow!("timed out"))) {
                Ok(batch) => {
                    for record in &batch {
                        assert_eq!(record.offset, last + 1, "records in order, none skipped");
                        last = record.offset;
                    }
                }
                Err(_) => errors += 1,
            }
            assert_eq!(
                reader.cursors[0].next,
                last + 1,
                "the position is one past the last record handed out"
            );
        }
        assert!(errors > 0, "the reopen without an SC fails");
        assert!(last >= 50, "the whole first batch was handed out (last offset {last})");
    }

    #[test]
    fn fetch_size_doubles_up_to_the_cap() {
        assert_eq!(grown(DEFAULT_MAX_BYTES), 2 * DEFAULT_MAX_BYTES);
        let mut size = DEFAULT_MAX_BYTES;
        for _ in 0..10 {
            size = grown(size);
        }
        assert_eq!(size, MAX_MAX_BYTES);
        const {
            assert!(
                MAX_MAX_BYTES > 33_554_432,
                "must exceed the SPU's largest produce request"
            )
        };
    }
}
