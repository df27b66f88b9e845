//! The sink stage: raw records from the topic, through the SmartModule chain
//! (in-process), to CloudTrail; offsets committed only over what is settled.
//!
//! Three parts run concurrently: a reader task that holds one permit per
//! uncommitted raw record (the window), the chain on its own thread, and this
//! loop, which hands events to the publisher, writes dead letters, and commits
//! the settled prefix. A crash re-delivers at most the window: duplicates, never
//! losses.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};
use bytes::Bytes;
use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::cloudtrail::{FatalError, Outcome, PublishItem, Publisher, Settlement};
use crate::config::sections::SinkConfig;
use crate::pipeline::deadletter::{DeadLetter, Origin, Stage};
use crate::pipeline::metrics::PipelineMetrics;
use crate::pipeline::offsets::{max_per_partition, OffsetTracker};
use crate::pipeline::source::append_until_done;
use crate::topic::{OffsetCommitter, TopicInspect, TopicReader, TopicRecord, TopicWriter};
use crate::transform::{ChainOutput, InputRecord, TransformChain};

/// The transform stage as the sink drives it: a batch of raw records in, the
/// emitted records and per-record failures out. [`TransformChain`] is the one
/// the pipelines use; the trait is the seam a test uses to make the stage fail.
pub trait Transform: Send + 'static {
    /// Processes one batch; `Err` only for what stops the sink.
    fn process(&mut self, records: &[InputRecord<'_>]) -> Result<ChainOutput>;
}

impl Transform for TransformChain {
    fn process(&mut self, records: &[InputRecord<'_>]) -> Result<ChainOutput> {
        TransformChain::process(self, records)
    }
}

/// The delivery stage the sink hands audit events to: it settles every event it
/// accepts (delivered or dead-lettered) until its input closes, or stops on a
/// fatal error. [`Publisher`] is the CloudTrail one.
pub trait Deliver: Send + 'static {
    /// Runs until `input` closes and everything is settled, or a fatal error.
    fn deliver(
        self,
        input: mpsc::Receiver<PublishItem<SinkToken>>,
        settled: mpsc::Sender<Settlement<SinkToken>>,
    ) -> impl Future<Output = Result<(), FatalError>> + Send + 'static;
}

impl Deliver for Publisher {
    fn deliver(
        self,
        input: mpsc::Receiver<PublishItem<SinkToken>>,
        settled: mpsc::Sender<Settlement<SinkToken>>,
    ) -> impl Future<Output = Result<(), FatalError>> + Send + 'static {
        self.run(input, settled)
    }
}

/// How long a read waits for new records before looking again.
const READ_WAIT: Duration = Duration::from_millis(200);

/// What travels with an audit event through the publisher.
#[derive(Debug, Clone)]
pub struct SinkToken {
    unit: u64,
    partition: u32,
    offset: u64,
    key: Option<Bytes>,
}

/// A transformed batch.
struct Transformed {
    records: Vec<TopicRecord>,
    output: Result<ChainOutput>,
}

/// How the sink ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkEnd {
    /// Stopped on request; everything settled was committed.
    Stopped {
        /// Raw records left uncommitted (they are read again on the next start).
        abandoned: usize,
    },
    /// The input ended (bounded replays) and everything was settled.
    Finished,
}

/// The parts of a sink.
pub struct SinkParts<'a, R, C, D, I> {
    /// Raw records in.
    pub reader: R,
    /// Where settled offsets go (`None` for replays, which commit nothing).
    pub committer: Option<&'a C>,
    /// Dead letters out.
    pub dead_letters: &'a D,
    /// For the lag gauge.
    pub inspect: Option<&'a I>,
    /// Raw topic name, for dead letters.
    pub topic: String,
}

/// Runs the sink until `cancel` fires, the reader runs dry (`stop_at_end`), or
/// a fatal error. Fatal errors return `Err` with nothing more committed.
pub async fn run_sink<R, C, D, I>(
    parts: SinkParts<'_, R, C, D, I>,
    chain: impl Transform,
    publisher: impl Deliver,
    settings: &SinkConfig,
    metrics: &Arc<PipelineMetrics>,
    stop_at_end: bool,
    cancel: CancellationToken,
) -> Result<SinkEnd>
where
    R: TopicReader + 'static,
    C: OffsetCommitter,
    D: TopicWriter,
    I: TopicInspect,
{
    let SinkParts {
        reader,
        committer,
        dead_letters,
        inspect,
        topic,
    } = parts;
    let permits = Arc::new(Semaphore::new(settings.window));
    let reader_stop = CancellationToken::new();
    let (raw_tx, raw_rx) = mpsc::channel::<Vec<TopicRecord>>(4);
    let (done_tx, done_rx) = mpsc::channel::<Transformed>(4);
    let reader = tokio::spawn(read_loop(
        reader,
        permits.clone(),
        settings.read_batch,
        raw_tx,
        stop_at_end,
        reader_stop.clone(),
    ));
    let transformer = spawn_transformer(chain, raw_rx, done_tx)?;
    let (publish_tx, publish_rx) = mpsc::channel::<PublishItem<SinkToken>>(settings.window.max(100));
    let (settled_tx, settled_rx) = mpsc::channel::<Settlement<SinkToken>>(settings.window.max(100));
    let publisher_task = tokio::spawn(publisher.deliver(publish_rx, settled_tx));
    metrics.set_stage("sink", "running");
    let mut state = SinkLoop {
        tracker: OffsetTracker::default(),
        outbox: VecDeque::new(),
        publish: Some(publish_tx),
        uncommitted_offsets: None,
        committed: Default::default(),
        permits,
        metrics: metrics.clone(),
        topic,
    };
    let io = LoopIo {
        committer,
        dead_letters,
        inspect,
    };
    let end = state
        .run(&io, settings, done_rx, settled_rx, cancel, reader_stop.clone())
        .await;
    reader_stop.cancel();
    reader.abort();
    let publisher_result = finish_publisher(publisher_task).await;
    drop(transformer);
    let end = match (end, publisher_result) {
        (Err(e), _) => Err(e),
        (Ok(_), Err(fatal)) => Err(anyhow!(fatal)),
        (Ok(end), Ok(())) => Ok(end),
    };
    match &end {
        Ok(_) => metrics.set_stage("sink", "stopped"),
        Err(e) => metrics.set_stage("sink", format!("failed: {e:#}")),
    }
    end
}

async fn finish_publisher(task: tokio::task::JoinHandle<Result<(), FatalError>>) -> Result<(), FatalError> {
    if !task.is_finished() {
        task.abort();
    }
    match task.await {
        Ok(result) => result,
        Err(_) => Ok(()),
    }
}

/// Reads batches while the window has room; stops at the end when asked to.
async fn read_loop<R: TopicReader>(
    mut reader: R,
    permits: Arc<Semaphore>,
    batch: usize,
    out: mpsc::Sender<Vec<TopicRecord>>,
    stop_at_end: bool,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    loop {
        let permit = tokio::select! {
            _ = stop.cancelled() => return,
            p = permits.clone().acquire_many_owned(batch as u32) => match p { Ok(p) => p, Err(_) => return },
        };
        let records = tokio::select! {
            _ = stop.cancelled() => return,
            r = reader.next_batch(batch, READ_WAIT) => r,
        };
        let records = match records {
            Ok(records) => records,
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::error!(
                    error = format!("{e:#}"),
                    delay_ms = delay.as_millis() as u64,
                    "reading the topic failed; retrying"
                );
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        backoff.reset();
        if records.is_empty() {
            if stop_at_end {
                return;
            }
            continue;
        }
        // Keep one permit per record read; they come back on commit.
        permit.forget();
        permits.add_permits(batch - records.len());
        if out.send(records).await.is_err() {
            return;
        }
    }
}

/// Runs the chain on its own thread (wasm execution is CPU-bound and blocking).
fn spawn_transformer(
    mut chain: impl Transform,
    mut input: mpsc::Receiver<Vec<TopicRecord>>,
    output: mpsc::Sender<Transformed>,
) -> Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("smartmodule".to_string())
        .spawn(move || {
            while let Some(records) = input.blocking_recv() {
                let inputs: Vec<InputRecord<'_>> = records
                    .iter()
                    .map(|r| InputRecord {
                        key: r.key.as_deref(),
                        value: &r.value,
                        timestamp_ms: r.timestamp_ms,
                    })
                    .collect();
                let result = chain.process(&inputs);
                if output
                    .blocking_send(Transformed {
                        records,
                        output: result,
                    })
                    .is_err()
                {
                    return;
                }
            }
        })
        .map_err(|e| anyhow!("starting the SmartModule thread: {e}"))
}

/// What the loop writes to.
struct LoopIo<'a, C, D, I> {
    committer: Option<&'a C>,
    dead_letters: &'a D,
    inspect: Option<&'a I>,
}

/// The sink loop's state.
struct SinkLoop {
    tracker: OffsetTracker,
    outbox: VecDeque<PublishItem<SinkToken>>,
    /// Closed on shutdown, so the publisher finishes what it has and ends.
    publish: Option<mpsc::Sender<PublishItem<SinkToken>>>,
    uncommitted_offsets: Option<Vec<(u32, u64)>>,
    /// Last offset committed per partition (this run), for the lag gauge.
    committed: std::collections::BTreeMap<u32, u64>,
    permits: Arc<Semaphore>,
    metrics: Arc<PipelineMetrics>,
    topic: String,
}

/// How often the consumer lag is measured.
const LAG_INTERVAL: Duration = Duration::from_secs(1);

impl SinkLoop {
    async fn run<C: OffsetCommitter, D: TopicWriter, I: TopicInspect>(
        &mut self,
        io: &LoopIo<'_, C, D, I>,
        settings: &SinkConfig,
        mut transformed: mpsc::Receiver<Transformed>,
        mut settled: mpsc::Receiver<Settlement<SinkToken>>,
        cancel: CancellationToken,
        reader_stop: CancellationToken,
    ) -> Result<SinkEnd> {
        let mut draining_until: Option<Instant> = None;
        let mut input_open = true;
        let mut lag_checked = Instant::now();
        loop {
            let publish = self.publish.clone();
            tokio::select! {
                biased;
                _ = cancel.cancelled(), if draining_until.is_none() => {
                    tracing::info!(in_flight = self.tracker.uncommitted(), "stopping the sink: settling what is in flight");
                    reader_stop.cancel();
                    self.outbox.clear();
                    self.publish = None;
                    draining_until = Some(Instant::now() + settings.drain_timeout);
                    self.metrics.set_stage("sink", "draining");
                }
                first = settled.recv() => match first {
                    Some(first) => self.settlements(first, &mut settled, io.dead_letters).await,
                    // The publisher ended: drained after shutdown, or stopped by a
                    // fatal error (which the caller reports).
                    None => {
                        self.commit(io.committer).await;
                        return Ok(SinkEnd::Stopped { abandoned: self.tracker.uncommitted() });
                    }
                },
                batch = transformed.recv(), if draining_until.is_none() && input_open => match batch {
                    Some(batch) => self.transformed(batch, io.dead_letters).await?,
                    None => {
                        input_open = false;
                        if self.outbox.is_empty() {
                            self.publish = None;
                        }
                    }
                },
                permit = reserve(publish.as_ref()), if !self.outbox.is_empty() && publish.is_some() => {
                    if let (Ok(permit), Some(item)) = (permit, self.outbox.pop_front()) {
                        permit.send(item);
                    }
                    if !input_open && self.outbox.is_empty() {
                        self.publish = None;
                    }
                }
                // Wakes an idle loop so the lag gauge follows the topic's end.
                _ = tokio::time::sleep_until(lag_checked + LAG_INTERVAL), if draining_until.is_none() => {}
                _ = sleep_until(draining_until), if draining_until.is_some() => {
                    let abandoned = self.tracker.uncommitted();
                    tracing::warn!(abandoned, "drain time is up; unsettled records stay uncommitted and are read again on restart");
                    self.commit(io.committer).await;
                    return Ok(SinkEnd::Stopped { abandoned });
                }
            }
            self.commit(io.committer).await;
            if lag_checked.elapsed() >= LAG_INTERVAL {
                self.update_lag(io.inspect).await;
                lag_checked = Instant::now();
            }
            if !input_open && self.tracker.is_empty() && self.outbox.is_empty() {
                return Ok(SinkEnd::Finished);
            }
        }
    }

    /// Opens a unit for a transformed batch and queues its events.
    async fn transformed<D: TopicWriter>(&mut self, batch: Transformed, dead_letters: &D) -> Result<()> {
        let output = batch.output.map_err(|e| e.context("the SmartModule chain failed"))?;
        let records = batch.records;
        self.metrics.consumed.add(records.len() as u64);
        let mut letters = Vec::new();
        for failure in &output.failures {
            let record = &records[failure.index];
            self.metrics.transform_failures.inc();
            letters.push(dead_letter_for(
                record,
                &self.topic,
                Stage::Transform,
                "TransformFailed",
                &failure.reason,
                None,
            ));
        }
        let mut items = Vec::with_capacity(output.outputs.len());
        for out in output.outputs {
            let source = &records[out.source_hint.unwrap_or(records.len() - 1).min(records.len() - 1)];
            match audit_event(out.key, out.value) {
                Ok((id, event_data)) => items.push((source, id, event_data)),
                Err((reason, id, event_data)) => letters.push(dead_letter_for(
                    source,
                    &self.topic,
                    Stage::Transform,
                    "InvalidOutput",
                    &reason,
                    Some((id, event_data)),
                )),
            }
        }
        let emitted_sources: std::collections::HashSet<(u32, u64)> =
            items.iter().map(|(s, _, _)| (s.partition, s.offset)).collect();
        let filtered = records
            .len()
            .saturating_sub(emitted_sources.len() + output.failures.len());
        self.metrics.filtered.add(filtered as u64);
        self.metrics.forwarded.add(items.len() as u64);
        if !letters.is_empty() {
            self.write_dead_letters(dead_letters, letters).await;
        }
        let unit = self.tracker.open(last_offsets(&records), records.len(), items.len());
        for (source, id, event_data) in items {
            let token = SinkToken {
                unit,
                partition: source.partition,
                offset: source.offset,
                key: source.key.clone(),
            };
            self.outbox.push_back(PublishItem { id, event_data, token });
        }
        self.metrics.uncommitted.set(self.tracker.uncommitted() as i64);
        Ok(())
    }

    /// Handles `first` and every other settlement already waiting.
    async fn settlements<D: TopicWriter>(
        &mut self,
        first: Settlement<SinkToken>,
        more: &mut mpsc::Receiver<Settlement<SinkToken>>,
        dead_letters: &D,
    ) {
        let mut batch = vec![first];
        while let Ok(next) = more.try_recv() {
            batch.push(next);
        }
        let mut letters = Vec::new();
        for settlement in &batch {
            if let Outcome::DeadLettered { code, message } = &settlement.outcome {
                let t = &settlement.token;
                letters.push(DeadLetter {
                    stage: Stage::Publish,
                    code: code.clone(),
                    reason: message.clone(),
                    origin: Origin::Topic {
                        topic: self.topic.clone(),
                        partition: t.partition,
                        offset: t.offset,
                    },
                    key: t.key.clone(),
                    raw: None,
                    event: Some((settlement.id.clone(), settlement.event_data.clone().unwrap_or_default())),
                });
            }
        }
        // Dead letters are durable before their events count as settled.
        if !letters.is_empty() {
            self.write_dead_letters(dead_letters, letters).await;
        }
        for settlement in batch {
            self.tracker.settle(settlement.token.unit);
        }
    }

    async fn write_dead_letters<D: TopicWriter>(&self, dead_letters: &D, letters: Vec<DeadLetter>) {
        let count = letters.len() as u64;
        let limit = dead_letters.max_record_bytes();
        let records = letters.into_iter().map(|letter| letter.into_record(limit)).collect();
        append_until_done(dead_letters, records, "dead-letter topic").await;
        self.metrics.dead_letters_written.add(count);
    }

    /// Commits the settled prefix (retrying a failed commit next time).
    async fn commit<C: OffsetCommitter>(&mut self, committer: Option<&C>) {
        let before = self.tracker.uncommitted();
        if let Some(offsets) = self.tracker.take_committable() {
            let pending = self.uncommitted_offsets.take().unwrap_or_default();
            self.uncommitted_offsets = Some(max_per_partition(pending.into_iter().chain(offsets)));
        }
        let released = before - self.tracker.uncommitted();
        if released > 0 {
            self.permits.add_permits(released);
        }
        self.metrics.uncommitted.set(self.tracker.uncommitted() as i64);
        let (Some(committer), Some(offsets)) = (committer, self.uncommitted_offsets.as_ref()) else {
            self.uncommitted_offsets = None;
            return;
        };
        match committer.commit(offsets).await {
            Ok(()) => {
                self.committed.extend(offsets.iter().copied());
                self.uncommitted_offsets = None;
            }
            Err(e) => tracing::error!(error = format!("{e:#}"), "committing offsets failed; will retry"),
        }
    }

    async fn update_lag<I: TopicInspect>(&self, inspect: Option<&I>) {
        let Some(inspect) = inspect else { return };
        if let Ok(bounds) = inspect.bounds().await {
            let lag: u64 = bounds
                .iter()
                .map(|b| {
                    let next_unsettled = self.committed.get(&b.partition).map_or(b.first, |c| c + 1);
                    b.next.saturating_sub(next_unsettled.max(b.first))
                })
                .sum();
            self.metrics.consumer_lag.set(lag as i64);
        }
    }
}

/// The last offset of each partition in `records`.
fn last_offsets(records: &[TopicRecord]) -> Vec<(u32, u64)> {
    max_per_partition(records.iter().map(|r| (r.partition, r.offset)))
}

/// An emitted record as an audit event: key = id, value = eventData (UTF-8).
fn audit_event(key: Option<Vec<u8>>, value: Vec<u8>) -> Result<(String, String), (String, String, String)> {
    let event_data = String::from_utf8(value).map_err(|e| {
        let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
        (
            "the SmartModule emitted an eventData that is not UTF-8".to_string(),
            String::new(),
            text,
        )
    })?;
    match key.map(String::from_utf8) {
        Some(Ok(id)) => Ok((id, event_data)),
        Some(Err(_)) => Err((
            "the SmartModule emitted a key (the AuditEvent id) that is not UTF-8".to_string(),
            String::new(),
            event_data,
        )),
        None => Err((
            "the SmartModule emitted a record without a key (the AuditEvent id)".to_string(),
            String::new(),
            event_data,
        )),
    }
}

fn dead_letter_for(
    record: &TopicRecord,
    topic: &str,
    stage: Stage,
    code: &str,
    reason: &str,
    event: Option<(String, String)>,
) -> DeadLetter {
    DeadLetter {
        stage,
        code: code.to_string(),
        reason: reason.to_string(),
        origin: Origin::Topic {
            topic: topic.to_string(),
            partition: record.partition,
            offset: record.offset,
        },
        key: record.key.clone(),
        raw: Some(record.value.clone()),
        event,
    }
}

async fn reserve(
    sender: Option<&mpsc::Sender<PublishItem<SinkToken>>>,
) -> Result<mpsc::Permit<'_, PublishItem<SinkToken>>, mpsc::error::SendError<()>> {
    match sender {
        Some(sender) => sender.reserve().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
