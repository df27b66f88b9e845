//! Making the sink's settled offsets durable without holding up the sink.
//!
//! A commit runs beside the sink loop, which goes on publishing and settling
//! meanwhile; each partition has its own commits, at most one in flight, and
//! whatever settles during it is committed right after. A partition whose
//! commit is slow (its replica slow or far away) holds up only itself, so a
//! crash re-sends that partition's settled records, not every partition's. A failed commit is retried with
//! back-off; the records it covers stay counted against the window until a
//! commit of them is durable.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::pipeline::offsets::Settled;
use crate::topic::OffsetCommitter;

/// First delay before a failed commit is tried again; doubles up to the max.
const RETRY_FIRST: Duration = Duration::from_millis(100);
/// Longest delay between commit attempts.
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Offsets that became durable, with the raw records they cover.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Durable {
    /// Last durable offset per partition.
    pub offsets: Vec<(u32, u64)>,
    /// Raw records newly covered; their window permits come back.
    pub records: usize,
}

/// One partition's offsets on their way to a durable commit.
#[derive(Debug)]
struct Slot {
    /// Settled and not yet handed to a commit: offset and records covered.
    waiting: Option<(u64, usize)>,
    /// Records covered by the commit in flight, if one is.
    in_flight: Option<usize>,
    retry_at: Option<Instant>,
    backoff: Backoff,
    failures: u32,
}

impl Default for Slot {
    fn default() -> Self {
        Self {
            waiting: None,
            in_flight: None,
            retry_at: None,
            backoff: Backoff::new(RETRY_FIRST, RETRY_MAX),
            failures: 0,
        }
    }
}

impl Slot {
    fn wait_for(&mut self, offset: u64, records: usize) {
        self.waiting = Some(match self.waiting {
            Some((o, r)) => (o.max(offset), r + records),
            None => (offset, records),
        });
    }

    fn ready(&self, now: Instant) -> bool {
        self.waiting.is_some() && self.in_flight.is_none() && self.retry_at.is_none_or(|at| at <= now)
    }
}

/// What one partition's commit did.
struct Attempt {
    settled: Settled,
    result: Result<()>,
}

/// The sink's commits: started as offsets settle, finished beside the loop.
pub struct Commits<'a, C> {
    /// `None` for replays, which commit nothing: settled is durable at once.
    committer: Option<&'a C>,
    slots: BTreeMap<u32, Slot>,
    running: FuturesUnordered<BoxFuture<'a, Attempt>>,
}

impl<'a, C: OffsetCommitter> Commits<'a, C> {
    /// Commits through `committer`; without one, nothing is stored.
    pub fn new(committer: Option<&'a C>) -> Self {
        Self {
            committer,
            slots: BTreeMap::new(),
            running: FuturesUnordered::new(),
        }
    }

    /// Takes settled prefixes; starts a commit of every partition ready.
    /// Without a committer they are durable at once, and returned.
    pub fn settled(&mut self, settled: Vec<Settled>) -> Option<Durable> {
        if settled.is_empty() {
            return None;
        }
        if self.committer.is_none() {
            return Some(Durable {
                offsets: settled.iter().map(|s| (s.partition, s.offset)).collect(),
                records: settled.iter().map(|s| s.records).sum(),
            });
        }
        for s in settled {
            self.slots.entry(s.partition).or_default().wait_for(s.offset, s.records);
        }
        self.start_ready(Instant::now());
        None
    }

    /// Raw records settled and not durably committed.
    pub fn pending(&self) -> usize {
        self.slots
            .values()
            .map(|s| s.waiting.map_or(0, |(_, r)| r) + s.in_flight.unwrap_or(0))
            .sum()
    }

    /// Whether nothing is waiting or in flight.
    pub fn is_idle(&self) -> bool {
        self.pending() == 0 && self.running.is_empty()
    }

    /// Whether [`Commits::next`] has anything to wait for.
    pub fn is_busy(&self) -> bool {
        !self.running.is_empty() || self.next_retry().is_some()
    }

    /// Waits for the next commit to end or a retry to fall due; returns what
    /// became durable, if anything. Pending forever when not busy.
    pub async fn next(&mut self) -> Option<Durable> {
        let retry = self.next_retry();
        let ended = tokio::select! {
            attempt = self.running.next(), if !self.running.is_empty() => attempt,
            _ = sleep_until(retry) => None,
        };
        let durable = ended.and_then(|attempt| self.ended(attempt));
        self.start_ready(Instant::now());
        durable
    }

    /// At shutdown: tries what is waiting at once and waits for every commit
    /// until `until`; returns what became durable.
    pub async fn finish(&mut self, until: Instant) -> Durable {
        let mut all = Durable::default();
        for slot in self.slots.values_mut() {
            slot.retry_at = None;
        }
        self.start_ready(Instant::now());
        while !self.is_idle() && Instant::now() < until {
            match tokio::time::timeout_at(until, self.next()).await {
                Ok(Some(durable)) => {
                    all.offsets.extend(durable.offsets);
                    all.records += durable.records;
                }
                Ok(None) if !self.is_busy() => break,
                Ok(None) => {}
                Err(_) => break,
            }
        }
        all
    }

    /// The earliest retry of a partition waiting to be committed.
    fn next_retry(&self) -> Option<Instant> {
        self.slots
            .values()
            .filter(|s| s.waiting.is_some() && s.in_flight.is_none())
            .filter_map(|s| s.retry_at)
            .min()
    }

    /// Starts a commit of every partition that is ready, each on its own:
    /// a partition whose commit is slow must not hold up another's.
    fn start_ready(&mut self, now: Instant) {
        let Some(committer) = self.committer else { return };
        for (&partition, slot) in self.slots.iter_mut().filter(|(_, s)| s.ready(now)) {
            let Some((offset, records)) = slot.waiting.take() else {
                continue;
            };
            slot.in_flight = Some(records);
            slot.retry_at = None;
            let settled = Settled::new(partition, offset, records);
            self.running.push(
                async move {
                    let result = committer.commit(&[(partition, offset)]).await;
                    Attempt { settled, result }
                }
                .boxed(),
            );
        }
    }

    /// Books an ended commit: durable, or back to waiting with back-off.
    fn ended(&mut self, attempt: Attempt) -> Option<Durable> {
        let Attempt { settled: s, result } = attempt;
        let slot = self.slots.entry(s.partition).or_default();
        slot.in_flight = None;
        match result {
            Ok(()) => {
                if slot.failures > 0 {
                    tracing::info!(
                        partition = s.partition,
                        failures = slot.failures,
                        "committing offsets works again"
                    );
                }
                slot.failures = 0;
                slot.backoff.reset();
                Some(Durable {
                    offsets: vec![(s.partition, s.offset)],
                    records: s.records,
                })
            }
            Err(e) => {
                slot.wait_for(s.offset, s.records);
                slot.failures += 1;
                let delay = slot.backoff.next_delay();
                slot.retry_at = Some(Instant::now() + delay);
                tracing::error!(
                    error = format!("{e:#}"),
                    partition = s.partition,
                    records = slot.waiting.map_or(0, |(_, r)| r),
                    failures = slot.failures,
                    retry_ms = delay.as_millis() as u64,
                    "committing offsets failed; reading holds at sink.window until a commit succeeds"
                );
                None
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::fluvio::{two_partition_topic, FluvioCommitter};

    fn settled(partition: u32, offset: u64, records: usize) -> Settled {
        Settled::new(partition, offset, records)
    }

    /// A Fluvio topic of two partitions with records 0..20 in each.
    async fn two_partitions(cluster: &fluvio_testbed::TestCluster) -> FluvioCommitter {
        FluvioCommitter::new(two_partition_topic(cluster, "raw", 20).await, "raw", "sink")
    }

    /// Issue 8 §10: while one partition's commit is held (its replica slow),
    /// the other partition's settled offsets keep becoming durable, so a kill
    /// re-sends only the slow partition's settled records. Before, the sink
    /// awaited each commit of all partitions together.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_held_partition_commit_does_not_hold_up_the_others() {
        let cluster = fluvio_testbed::TestCluster::start().await.expect("test cluster");
        let committer = two_partitions(&cluster).await;
        let mut commits = Commits::new(Some(&committer));
        cluster.hold_fetches("raw", 0);
        assert_eq!(commits.settled(vec![settled(0, 9, 10), settled(1, 9, 10)]), None);
        let patience = Duration::from_secs(30);
        let first = tokio::time::timeout(patience, commits.next())
            .await
            .expect("a commit ends");
        assert_eq!(
            first,
            Some(Durable {
                offsets: vec![(1, 9)],
                records: 10
            })
        );
        commits.settled(vec![settled(1, 19, 10)]);
        let second = tokio::time::timeout(patience, commits.next())
            .await
            .expect("a commit ends");
        assert_eq!(
            second,
            Some(Durable {
                offsets: vec![(1, 19)],
                records: 10
            })
        );
        assert_eq!(commits.pending(), 10, "partition 0's records are still on their way");
        assert_eq!(cluster.consumer_offset("raw", 1, "sink"), Some(19));
        assert_eq!(cluster.consumer_offset("raw", 0, "sink"), None);
        cluster.release_fetches("raw", 0);
        let last = commits.finish(Instant::now() + patience).await;
        assert_eq!(
            last,
            Durable {
                offsets: vec![(0, 9)],
                records: 10
            }
        );
        assert!(commits.is_idle());
        assert_eq!(cluster.consumer_offset("raw", 0, "sink"), Some(9));
    }

    /// Without a committer (replays) settled offsets are durable at once.
    #[tokio::test]
    async fn without_a_committer_settled_is_durable_at_once() {
        let mut commits: Commits<'_, FluvioCommitter> = Commits::new(None);
        let durable = commits.settled(vec![settled(0, 4, 5), settled(2, 7, 3)]);
        assert_eq!(
            durable,
            Some(Durable {
                offsets: vec![(0, 4), (2, 7)],
                records: 8
            })
        );
        assert!(commits.is_idle());
    }
}
