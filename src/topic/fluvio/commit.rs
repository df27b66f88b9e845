//! Committing exact consumer offsets on Fluvio.
//!
//! A Fluvio consumer can only commit "the last record it yielded". The sink keeps
//! several requests in flight and must commit exactly the prefix it has settled,
//! so each partition has a second, lagging stream under the consumer's id that is
//! advanced to the settled offset and committed there. Like any 0.50.1 stream it
//! can skip a batch (see `reader.rs`); it then reopens at the offset to commit.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use fluvio::consumer::{ConsumerConfigExtBuilder, OffsetManagementStrategy};
use fluvio::{Fluvio, Offset};
use futures::StreamExt;
use tokio::sync::Mutex;

use super::reader::{classify, grown, Seen, DEFAULT_MAX_BYTES};
use super::{committed_offsets, open_consumer, partition_log_start, RecordStream};
use crate::topic::OffsetCommitter;

/// Reopens at one offset before a commit fails.
const MAX_REOPENS: u32 = 8;

/// One partition's lagging stream and the last offset it yielded.
struct Lagging {
    stream: RecordStream,
    seen: Option<u64>,
    /// The last offset committed and flushed through this stream.
    flushed: Option<u64>,
    max_bytes: u64,
}

/// One partition's lagging stream, once opened; locked while it commits.
type LaggingSlot = Arc<Mutex<Option<Lagging>>>;

/// Commits exact offsets through lagging per-partition streams.
pub struct FluvioCommitter {
    fluvio: Arc<Fluvio>,
    topic: String,
    consumer: String,
    /// Each partition locked on its own, so commits of other partitions
    /// need not wait for a slow one.
    lagging: std::sync::Mutex<HashMap<u32, LaggingSlot>>,
}

impl std::fmt::Debug for FluvioCommitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FluvioCommitter")
            .field("topic", &self.topic)
            .field("consumer", &self.consumer)
            .finish()
    }
}

impl FluvioCommitter {
    /// A committer of `consumer`'s offsets on `topic`.
    pub fn new(fluvio: Arc<Fluvio>, topic: &str, consumer: &str) -> Self {
        Self {
            fluvio,
            topic: topic.to_string(),
            consumer: consumer.to_string(),
            lagging: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// A stream under the consumer's id that starts exactly at `from`.
    /// A record retention has deleted cannot be yielded, so it cannot be
    /// committed: that fails at once (the client would retry an evicted offset
    /// for seconds, holding the sink); the next commit past the log start
    /// stores the position.
    async fn open(&self, partition: u32, from: u64, max_bytes: u64) -> Result<Lagging> {
        let first = partition_log_start(&self.fluvio, &self.topic, partition).await?;
        if from < first {
            bail!(
                "partition {partition}: record {from} was deleted by the topic's retention (log start {first}) before \
                 its offset could be committed"
            );
        }
        let config = ConsumerConfigExtBuilder::default()
            .topic(self.topic.clone())
            .partition(partition)
            .offset_consumer(self.consumer.clone())
            .offset_start(Offset::absolute(i64::try_from(from)?).map_err(|e| anyhow!("{e}"))?)
            .offset_strategy(OffsetManagementStrategy::Manual)
            .max_bytes(i32::try_from(max_bytes).unwrap_or(i32::MAX))
            .build()
            .map_err(|e| anyhow!("consumer config: {e}"))?;
        let stream = open_consumer(&self.fluvio, config)
            .await
            .context("opening the committing stream")?;
        Ok(Lagging {
            stream,
            seen: None,
            flushed: None,
            max_bytes,
        })
    }

    /// Advances `lagging` until it has yielded exactly `offset`, reopening it
    /// there when the stream skips past.
    async fn advance(&self, partition: u32, lagging: &mut Lagging, offset: u64) -> Result<()> {
        let mut reopens = 0;
        while lagging.seen.is_none_or(|s| s < offset) {
            let record = lagging
                .stream
                .next()
                .await
                .ok_or_else(|| anyhow!("the committing stream of partition {partition} ended"))?
                .map_err(|e| anyhow!("reading the committing stream: {e}"))?;
            let got = u64::try_from(record.offset()).unwrap_or(0);
            // Only the target matters here: a record past it means the stream
            // skipped the target, so it cannot become "the last one yielded".
            if let Seen::Gap { expected, found } = classify(offset, got) {
                tracing::warn!(
                    topic = %self.topic,
                    partition,
                    missing = format!("{expected}..{found}"),
                    max_bytes = lagging.max_bytes,
                    "the committing stream skipped records (a batch cut short by the fetch size); reading them again"
                );
                reopens += 1;
                if reopens > MAX_REOPENS {
                    bail!("partition {partition}: record {offset} cannot be read back to commit it");
                }
                *lagging = self.open(partition, offset, grown(lagging.max_bytes)).await?;
                continue;
            }
            lagging.seen = Some(got);
        }
        Ok(())
    }
}

impl FluvioCommitter {
    /// Commits `offset` of one partition through its lagging stream (`taken`,
    /// or a new one); returns the stream for the next commit.
    async fn commit_partition(&self, taken: Option<Lagging>, partition: u32, offset: u64) -> Result<Lagging> {
        let mut lagging = match taken {
            Some(lagging) => lagging,
            None => self.open(partition, offset, DEFAULT_MAX_BYTES).await?,
        };
        if lagging.flushed.is_some_and(|f| f >= offset) {
            return Ok(lagging);
        }
        self.advance(partition, &mut lagging, offset).await?;
        lagging
            .stream
            .offset_commit()
            .await
            .map_err(|e| anyhow!("committing offset {offset}: {e}"))?;
        lagging
            .stream
            .offset_flush()
            .await
            .map_err(|e| anyhow!("flushing offset {offset}: {e}"))?;
        lagging.flushed = lagging.seen;
        Ok(lagging)
    }
}

impl FluvioCommitter {
    fn slot(&self, partition: u32) -> LaggingSlot {
        let mut all = self.lagging.lock().unwrap_or_else(|p| p.into_inner());
        all.entry(partition).or_default().clone()
    }

    /// Commits one partition through its slot.
    async fn commit_one(&self, partition: u32, offset: u64) -> Result<()> {
        let slot = self.slot(partition);
        let mut held = slot.lock().await;
        // A failed stream may stay broken (an SPU restart closes its
        // session: "sending into a closed channel" on every flush) and may
        // have advanced without a flush: it is dropped, and the next commit
        // opens a fresh one at its offset.
        let lagging = self.commit_partition(held.take(), partition, offset).await?;
        *held = Some(lagging);
        Ok(())
    }
}

impl OffsetCommitter for FluvioCommitter {
    /// Partitions are committed side by side: each is a round trip or more,
    /// and one after another they made a commit of 3 partitions take up to
    /// half a second.
    async fn commit(&self, offsets: &[(u32, u64)]) -> Result<()> {
        let started = std::time::Instant::now();
        let work = offsets
            .iter()
            .map(|&(partition, offset)| self.commit_one(partition, offset));
        let outcomes = futures::future::join_all(work).await;
        if let Some(e) = outcomes.into_iter().find_map(|o| o.err()) {
            return Err(e);
        }
        tracing::debug!(
            ?offsets,
            elapsed_us = started.elapsed().as_micros() as u64,
            "committed consumer offsets"
        );
        Ok(())
    }

    async fn committed(&self) -> Result<Vec<(u32, u64)>> {
        let mut offsets: Vec<(u32, u64)> = committed_offsets(&self.fluvio, &self.topic, &self.consumer)
            .await?
            .into_iter()
            .collect();
        offsets.sort_unstable();
        Ok(offsets)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::topic::fluvio::two_partition_topic;

    /// Waits until `done` holds, for at most `patience`.
    async fn eventually(patience: Duration, mut done: impl FnMut() -> bool) -> bool {
        let started = Instant::now();
        while !done() {
            if started.elapsed() > patience {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// Issue 8 §10: a partition whose commit is slow (its replica slow or far
    /// away) must not hold back the others' commits, or a kill re-sends every
    /// partition's settled records instead of that one's. Before, partitions
    /// were committed one after another.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_partition_does_not_hold_back_the_others_commits() {
        let cluster = fluvio_testbed::TestCluster::start().await.expect("test cluster");
        let fluvio = two_partition_topic(&cluster, "slow", 10).await;
        let committer = Arc::new(FluvioCommitter::new(fluvio, "slow", "sink"));
        cluster.hold_fetches("slow", 0);
        let commit = tokio::spawn({
            let committer = committer.clone();
            async move { committer.commit(&[(0, 9), (1, 9)]).await }
        });
        let other_committed = eventually(Duration::from_secs(30), || {
            cluster.consumer_offset("slow", 1, "sink") == Some(9)
        })
        .await;
        assert_eq!(cluster.consumer_offset("slow", 0, "sink"), None, "partition 0 is held");
        cluster.release_fetches("slow", 0);
        assert!(
            other_committed,
            "partition 1's offset was not stored while partition 0's commit was held"
        );
        let result = tokio::time::timeout(Duration::from_secs(60), commit)
            .await
            .expect("the commit ends once partition 0 is served")
            .expect("commit task");
        result.expect("commit");
        assert_eq!(cluster.consumer_offset("slow", 0, "sink"), Some(9));
    }
}
