//! The sink stage: raw records from the topic, through the SmartModule chain
//! (in-process), to CloudTrail; offsets committed only over what is settled.
//!
//! Three parts run concurrently: a reader task that holds one permit per raw
//! record read and not yet durably committed (the window), the chain on its
//! own thread, and this loop, which hands events to the publisher, writes dead
//! letters, and hands the settled prefix to the commits as soon as it grows
//! (`commits.rs`: they run beside the loop, never holding it up). Permits come
//! back only once a commit is durable, so however long commits fail, a crash
//! re-delivers at most `sink.window` records: duplicates, never losses. A stage
//! that panics or ends unexpectedly stops the sink with an error naming it.

use std::any::Any;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::config::sections::SinkConfig;
use crate::pipeline::commits::{Commits, Durable};
use crate::pipeline::deadletter::{DeadLetter, Origin, Stage};
use crate::pipeline::metrics::PipelineMetrics;
use crate::pipeline::offsets::{max_per_partition, OffsetTracker};
use crate::pipeline::progress::Progress;
use crate::pipeline::shutdown::HARD_DEADLINE;
use crate::pipeline::source::append_until_done;
use crate::publish::{FatalError, Outcome, PublishItem, Publisher, Settlement};
use crate::topic::{OffsetCommitter, PartitionBounds, TopicInspect, TopicReader, TopicRecord, TopicWriter};
use crate::transform::{ChainOutput, InputRecord, TransformChain};

/// How long a read waits for new records before looking again.
const READ_WAIT: Duration = Duration::from_millis(200);
/// How often the consumer lag is measured.
const LAG_INTERVAL: Duration = Duration::from_secs(1);
/// How long the last commits may take once the publisher has finished or
/// the drain time is up, within [`SHUTDOWN_BUDGET`].
const COMMIT_FINISH: Duration = Duration::from_secs(5);
/// From the stop request to the sink's end: the process exits at the stop's
/// hard deadline whatever happens, so the last commits get what the drain
/// left of it, with a second to spare for the rest of the stop.
const SHUTDOWN_BUDGET: Duration = HARD_DEADLINE.saturating_sub(Duration::from_secs(1));

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

/// What travels with an audit event through the publisher.
#[derive(Debug, Clone)]
pub struct SinkToken {
    /// The raw record's id in the offset tracker.
    record: u64,
    partition: u32,
    offset: u64,
    key: Option<Bytes>,
    /// The raw record, for a dead letter (shares the read buffer).
    raw: Bytes,
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
/// a stage fails. Failures return `Err` naming the stage, with nothing more
/// committed, and mark the sink failed on `/health`.
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
    let end = async {
        let committed = match parts.committer {
            Some(committer) => committer
                .committed()
                .await
                .context("reading the sink's stored offsets")?,
            None => Vec::new(),
        };
        // A bounded replay stops at its range's end, which is no stall.
        let stall_timeout = (!stop_at_end).then_some(settings.stall_timeout);
        let progress = Progress::new(&committed, &parts.reader.positions(), stall_timeout);
        let mut running = Running::start(parts, chain, publisher, settings, metrics, progress, stop_at_end)?;
        running.run(settings, cancel, stop_at_end).await
    }
    .await;
    match &end {
        Ok(_) => metrics.set_stage("sink", "stopped"),
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "the sink stopped");
            metrics.set_stage("sink", format!("failed: {e:#}"))
        }
    }
    end
}

/// A started sink: its stages running, the loop's state and channels.
struct Running<'a, C, D, I> {
    state: SinkLoop<'a, C>,
    io: LoopIo<'a, D, I>,
    transformed: mpsc::Receiver<Transformed>,
    settled: mpsc::Receiver<Settlement<SinkToken>>,
    publisher: JoinHandle<Result<(), FatalError>>,
    reader_stop: CancellationToken,
}

impl<'a, C: OffsetCommitter, D: TopicWriter, I: TopicInspect> Running<'a, C, D, I> {
    /// Starts the reader task, the SmartModule thread and the publisher.
    fn start<R: TopicReader + 'static>(
        parts: SinkParts<'a, R, C, D, I>,
        chain: impl Transform,
        publisher: impl Deliver,
        settings: &SinkConfig,
        metrics: &Arc<PipelineMetrics>,
        progress: Progress,
        stop_at_end: bool,
    ) -> Result<Self> {
        let permits = Arc::new(Semaphore::new(settings.window));
        let reads = Arc::new(AtomicU64::new(0));
        let reader_stop = CancellationToken::new();
        let (raw_tx, raw_rx) = mpsc::channel::<Vec<TopicRecord>>(4);
        let (done_tx, transformed) = mpsc::channel::<Transformed>(4);
        let reader = tokio::spawn(
            ReadLoop {
                reader: parts.reader,
                permits: permits.clone(),
                batch: settings.read_batch,
                out: raw_tx,
                stop_at_end,
                stop: reader_stop.clone(),
                reads: reads.clone(),
            }
            .run(),
        );
        let transformer = spawn_transformer(chain, raw_rx, done_tx)?;
        let (publish_tx, publish_rx) = mpsc::channel::<PublishItem<SinkToken>>(settings.window.max(100));
        let (settled_tx, settled) = mpsc::channel::<Settlement<SinkToken>>(settings.window.max(100));
        let publisher = tokio::spawn(publisher.deliver(publish_rx, settled_tx));
        metrics.set_stage("sink", "running");
        let state = SinkLoop {
            tracker: OffsetTracker::default(),
            outbox: VecDeque::new(),
            publish: Some(publish_tx),
            publisher_ended_early: false,
            commits: Commits::new(parts.committer),
            progress,
            reads,
            stages: Stages {
                reader: Some(reader),
                transformer: Some(transformer),
            },
            permits,
            metrics: metrics.clone(),
            topic: parts.topic,
        };
        let io = LoopIo {
            dead_letters: parts.dead_letters,
            inspect: parts.inspect,
        };
        Ok(Self {
            state,
            io,
            transformed,
            settled,
            publisher,
            reader_stop,
        })
    }

    /// Runs the loop, then stops the stages; a publisher failure is the sink's.
    async fn run(&mut self, settings: &SinkConfig, cancel: CancellationToken, stop_at_end: bool) -> Result<SinkEnd> {
        let end = self
            .state
            .run(
                &self.io,
                settings,
                &mut self.transformed,
                &mut self.settled,
                cancel,
                self.reader_stop.clone(),
                stop_at_end,
            )
            .await;
        self.reader_stop.cancel();
        if let Some(reader) = self.state.stages.reader.take() {
            reader.abort();
        }
        let publisher_result = finish_publisher(&mut self.publisher).await;
        match (end, publisher_result) {
            (Err(e), _) => Err(e),
            (Ok(_), Err(e)) => Err(e),
            (Ok(_), Ok(())) if self.state.publisher_ended_early => Err(anyhow!("the publisher stopped unexpectedly")),
            (Ok(end), Ok(())) => Ok(end),
        }
    }
}

/// Waits for the publisher (aborting it if it is still running after the
/// drain); its fatal error or panic is the sink's error.
async fn finish_publisher(task: &mut JoinHandle<Result<(), FatalError>>) -> Result<()> {
    if !task.is_finished() {
        task.abort();
    }
    match task.await {
        Ok(result) => result.map_err(|fatal| anyhow!(fatal)),
        Err(e) if e.is_panic() => Err(anyhow!("the publisher panicked: {}", panic_message(&*e.into_panic()))),
        // Aborted above: the drain is over and what it held stays uncommitted.
        Err(_) => Ok(()),
    }
}

/// The text of a panic payload.
fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_string())
}

/// How the reader task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadEnd {
    /// Told to stop, or its output closed.
    Stopped,
    /// The input ran dry and the sink reads to the end only (`stop_at_end`).
    End,
}

/// The reader task: reads batches while the window has room.
struct ReadLoop<R> {
    reader: R,
    permits: Arc<Semaphore>,
    batch: usize,
    out: mpsc::Sender<Vec<TopicRecord>>,
    stop_at_end: bool,
    stop: CancellationToken,
    /// Reads completed, for stall detection.
    reads: Arc<AtomicU64>,
}

impl<R: TopicReader> ReadLoop<R> {
    async fn run(mut self) -> ReadEnd {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        loop {
            let permit = tokio::select! {
                _ = self.stop.cancelled() => return ReadEnd::Stopped,
                p = self.permits.clone().acquire_many_owned(self.batch as u32) => match p {
                    Ok(p) => p,
                    Err(_) => return ReadEnd::Stopped,
                },
            };
            let records = tokio::select! {
                _ = self.stop.cancelled() => return ReadEnd::Stopped,
                r = self.reader.next_batch(self.batch, READ_WAIT) => r,
            };
            self.reads.fetch_add(1, Ordering::Relaxed);
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
                if self.stop_at_end {
                    return ReadEnd::End;
                }
                continue;
            }
            // Keep one permit per record read; they come back on a durable commit.
            permit.forget();
            self.permits.add_permits(self.batch - records.len());
            if self.out.send(records).await.is_err() {
                return ReadEnd::Stopped;
            }
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

/// The reader task and the SmartModule thread, watched for how they end.
struct Stages {
    reader: Option<JoinHandle<ReadEnd>>,
    transformer: Option<std::thread::JoinHandle<()>>,
}

impl Stages {
    /// The transformed records ended: fine at the end of a bounded read, an
    /// error naming the stage otherwise.
    async fn input_ended(&mut self, stop_at_end: bool) -> Result<()> {
        // The thread ended first (its output closed): a panic there is the cause.
        if let Some(thread) = self.transformer.take() {
            let joined = tokio::task::spawn_blocking(move || thread.join())
                .await
                .map_err(|e| anyhow!("waiting for the SmartModule thread: {e}"))?;
            if let Err(panic) = joined {
                bail!("the SmartModule thread panicked: {}", panic_message(&*panic));
            }
        }
        // The thread's input closed, so the reader task has ended.
        let Some(reader) = self.reader.take() else {
            bail!("the topic reader stopped unexpectedly");
        };
        match reader.await {
            Ok(ReadEnd::End) if stop_at_end => Ok(()),
            Ok(_) => bail!("the topic reader stopped unexpectedly"),
            Err(e) if e.is_panic() => bail!("the topic reader panicked: {}", panic_message(&*e.into_panic())),
            Err(e) => bail!("the topic reader task failed: {e}"),
        }
    }
}

/// What the loop writes to.
struct LoopIo<'a, D, I> {
    dead_letters: &'a D,
    inspect: Option<&'a I>,
}

/// The sink loop's state.
struct SinkLoop<'a, C> {
    tracker: OffsetTracker,
    outbox: VecDeque<PublishItem<SinkToken>>,
    /// Closed on shutdown, so the publisher finishes what it has and ends.
    publish: Option<mpsc::Sender<PublishItem<SinkToken>>>,
    /// The publisher ended while its input was still open.
    publisher_ended_early: bool,
    commits: Commits<'a, C>,
    progress: Progress,
    reads: Arc<AtomicU64>,
    stages: Stages,
    permits: Arc<Semaphore>,
    metrics: Arc<PipelineMetrics>,
    topic: String,
}

impl<C: OffsetCommitter> SinkLoop<'_, C> {
    #[allow(clippy::too_many_arguments)]
    async fn run<D: TopicWriter, I: TopicInspect>(
        &mut self,
        io: &LoopIo<'_, D, I>,
        settings: &SinkConfig,
        transformed: &mut mpsc::Receiver<Transformed>,
        settled: &mut mpsc::Receiver<Settlement<SinkToken>>,
        cancel: CancellationToken,
        reader_stop: CancellationToken,
        stop_at_end: bool,
    ) -> Result<SinkEnd> {
        let mut draining_until: Option<Instant> = None;
        // When the stop was asked for; bounds the last commits.
        let mut stop_asked: Option<Instant> = None;
        let mut input_open = true;
        let mut lag_checked = Instant::now();
        // The gauge's read runs beside the loop: against a cluster whose SPU
        // is away it can take a minute, and delivery must not wait for it.
        let mut bounds_read = start_bounds_read(io.inspect);
        loop {
            let publish = self.publish.clone();
            tokio::select! {
                biased;
                _ = cancel.cancelled(), if draining_until.is_none() => {
                    tracing::info!(in_flight = self.tracker.uncommitted(), "stopping the sink: settling what is in flight");
                    reader_stop.cancel();
                    self.outbox.clear();
                    self.publish = None;
                    stop_asked = Some(Instant::now());
                    draining_until = Some(Instant::now() + settings.drain_timeout);
                    self.metrics.set_stage("sink", "draining");
                }
                // Before the busy branches, which would otherwise starve it.
                durable = self.commits.next(), if self.commits.is_busy() => {
                    if let Some(durable) = durable {
                        self.durable(durable);
                    }
                }
                first = settled.recv() => match first {
                    Some(first) => self.settlements(first, settled, io.dead_letters).await,
                    // The publisher ended: drained after shutdown, or stopped by a
                    // fatal error or a panic (which the caller reports).
                    None => {
                        self.publisher_ended_early = self.publish.is_some();
                        self.finish_commits(last_commits_until(stop_asked)).await;
                        return Ok(SinkEnd::Stopped { abandoned: self.abandoned() });
                    }
                },
                batch = transformed.recv(), if draining_until.is_none() && input_open => match batch {
                    Some(batch) => self.transformed(batch, io.dead_letters).await?,
                    None => {
                        self.stages.input_ended(stop_at_end).await?;
                        input_open = false;
                        if self.outbox.is_empty() {
                            self.publish = None;
                        }
                    }
                },
                permit = reserve(publish.as_ref()), if !self.outbox.is_empty() && publish.is_some() => {
                    if let (Ok(permit), Some(item)) = (permit, self.outbox.pop_front()) {
                        permit.send(item);
                        self.forward_ready();
                    }
                    if !input_open && self.outbox.is_empty() {
                        self.publish = None;
                    }
                }
                bounds = next_bounds(&mut bounds_read), if bounds_read.is_some() => {
                    bounds_read = None;
                    self.update_progress(bounds);
                }
                // Wakes an idle loop so the lag gauge follows the topic's end.
                _ = tokio::time::sleep_until(lag_checked + LAG_INTERVAL), if draining_until.is_none() && bounds_read.is_none() => {}
                _ = sleep_until(draining_until), if draining_until.is_some() => {
                    self.finish_commits(last_commits_until(stop_asked)).await;
                    let abandoned = self.abandoned();
                    tracing::warn!(abandoned, "drain time is up; unsettled records stay uncommitted and are read again on restart");
                    return Ok(SinkEnd::Stopped { abandoned });
                }
            }
            self.take_settled();
            if bounds_read.is_none() && lag_checked.elapsed() >= LAG_INTERVAL {
                bounds_read = start_bounds_read(io.inspect);
                lag_checked = Instant::now();
            }
            let settled_all = self.tracker.is_empty() && self.commits.is_idle();
            if !input_open && settled_all && self.outbox.is_empty() {
                return Ok(SinkEnd::Finished);
            }
        }
    }

    /// Hands the publisher every queued event it has room for now: one loop
    /// turn per event cost more than the event's own work.
    fn forward_ready(&mut self) {
        let Some(publish) = self.publish.as_ref() else { return };
        while !self.outbox.is_empty() {
            let Ok(permit) = publish.try_reserve() else { return };
            if let Some(item) = self.outbox.pop_front() {
                permit.send(item);
            }
        }
    }

    /// Raw records read and not durably committed.
    fn abandoned(&self) -> usize {
        self.tracker.uncommitted() + self.commits.pending()
    }

    /// Tracks a transformed batch's records and queues its events.
    async fn transformed<D: TopicWriter>(&mut self, batch: Transformed, dead_letters: &D) -> Result<()> {
        let output = batch.output.map_err(|e| e.context("the SmartModule chain failed"))?;
        let records = batch.records;
        if records.is_empty() {
            return Ok(());
        }
        self.metrics.consumed.add(records.len() as u64);
        for (partition, offset) in max_per_partition(records.iter().map(|r| (r.partition, r.offset))) {
            self.progress.read(partition, offset);
        }
        let first = self.tracker.open(records.iter().map(|r| (r.partition, r.offset)));
        let mut letters = Vec::new();
        for failure in &output.failures {
            self.metrics.transform_failures.inc();
            letters.push(dead_letter_for(
                &records[failure.index],
                &self.topic,
                Stage::Transform,
                "TransformFailed",
                &failure.reason,
                None,
            ));
        }
        let mut emitted = vec![false; records.len()];
        let mut forwarded = 0;
        for out in output.outputs {
            // Without a hint the source is unknown: tie the event to the
            // batch's first record, so none of the batch is committed before
            // the event settles.
            let index = out.source_hint.filter(|i| *i < records.len()).unwrap_or(0);
            let source = &records[index];
            match audit_event(out.key, out.value) {
                Ok((id, event_data)) => {
                    emitted[index] = true;
                    forwarded += 1;
                    let record = first + index as u64;
                    self.tracker.hold(record);
                    let token = SinkToken {
                        record,
                        partition: source.partition,
                        offset: source.offset,
                        key: source.key.clone(),
                        raw: source.value.clone(),
                    };
                    self.outbox.push_back(PublishItem {
                        id,
                        event_data,
                        record_time_ms: Some(source.timestamp_ms),
                        token,
                    });
                }
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
        let emitted = emitted.iter().filter(|e| **e).count();
        let filtered = records.len().saturating_sub(emitted + output.failures.len());
        self.metrics.filtered.add(filtered as u64);
        self.metrics.forwarded.add(forwarded);
        // Dead letters are durable before their records can be committed (the
        // loop commits only after this returns).
        if !letters.is_empty() {
            write_dead_letters(dead_letters, letters, &self.metrics).await;
        }
        self.metrics.uncommitted.set(self.abandoned() as i64);
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
                    raw: Some(t.raw.clone()),
                    event: Some((settlement.id.clone(), settlement.event_data.clone().unwrap_or_default())),
                });
            }
        }
        // Dead letters are durable before their events count as settled.
        if !letters.is_empty() {
            write_dead_letters(dead_letters, letters, &self.metrics).await;
        }
        for settlement in batch {
            self.tracker.settle(settlement.token.record);
        }
    }

    /// Hands the settled prefix to the commits; permits come back only once a
    /// commit of it is durable, so while commits fail the reader holds at
    /// the window.
    fn take_settled(&mut self) {
        let settled = self.tracker.take_committable();
        if let Some(durable) = self.commits.settled(settled) {
            self.durable(durable);
        }
        self.metrics.uncommitted.set(self.abandoned() as i64);
    }

    /// Books offsets made durable.
    fn durable(&mut self, durable: Durable) {
        self.progress.committed(&durable.offsets);
        self.permits.add_permits(durable.records);
        self.metrics.uncommitted.set(self.abandoned() as i64);
    }

    /// At shutdown: commits what is settled, waiting at most until `until`.
    async fn finish_commits(&mut self, until: Instant) {
        self.take_settled();
        let durable = self.commits.finish(until).await;
        self.durable(durable);
    }

    /// Each partition's lag and stall state for `/metrics` and `/health`,
    /// from the topic's bounds.
    fn update_progress(&mut self, bounds: Result<Vec<PartitionBounds>>) {
        match bounds {
            Ok(bounds) => {
                let partitions = self
                    .progress
                    .update(&bounds, self.reads.load(Ordering::Relaxed), Instant::now());
                self.metrics.set_partitions(partitions);
            }
            Err(e) => tracing::debug!(
                error = format!("{e:#}"),
                "reading the topic's bounds for the lag gauge failed"
            ),
        }
    }
}

/// How long the last commits may run: [`COMMIT_FINISH`], and after a stop
/// request no later than its [`SHUTDOWN_BUDGET`].
fn last_commits_until(stop_asked: Option<Instant>) -> Instant {
    let until = Instant::now() + COMMIT_FINISH;
    match stop_asked {
        Some(asked) => until.min(asked + SHUTDOWN_BUDGET),
        None => until,
    }
}

/// A read of the topic's bounds for the lag gauge, running beside the loop.
type BoundsRead<'a> = BoxFuture<'a, Result<Vec<PartitionBounds>>>;

fn start_bounds_read<I: TopicInspect>(inspect: Option<&I>) -> Option<BoundsRead<'_>> {
    inspect.map(|inspect| inspect.bounds().boxed())
}

/// The bounds read's result; pending while there is none.
async fn next_bounds(read: &mut Option<BoundsRead<'_>>) -> Result<Vec<PartitionBounds>> {
    match read {
        Some(read) => read.as_mut().await,
        None => std::future::pending().await,
    }
}

/// Writes dead letters until they are durable.
async fn write_dead_letters<D: TopicWriter>(dead_letters: &D, letters: Vec<DeadLetter>, metrics: &PipelineMetrics) {
    let count = letters.len() as u64;
    let limit = dead_letters.max_record_bytes();
    let records = letters.into_iter().map(|letter| letter.into_record(limit)).collect();
    append_until_done(dead_letters, records, "dead-letter topic").await;
    metrics.dead_letters_written.add(count);
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
