//! The source stage: Falcon events into the raw topic, unchanged, keyed with the
//! [`SourceKey`] contract; rejected lines into the dead-letter topic.
//!
//! An append that fails is retried (the same batch) until it succeeds; nothing
//! is dropped. While it fails (a full disk, an unreachable cluster) the stage
//! reports itself `paused: …` on `/health`, and the bounded queue makes the
//! Falcon client stop reading until the append goes through. Should the
//! process die with a batch only in memory, the cursor recovered from the topic
//! makes the client read it again from Falcon.
//!
//! A batch's dead letters are made durable *before* its events: the cursor is
//! recovered from the raw topic, so once an event is there, everything Falcon
//! sent before it must already be kept somewhere. A crash between the two
//! appends then costs at most a repeated dead letter, never a lost line.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::audit::SourceKey;
use crate::backoff::Backoff;
use crate::falcon::{CursorStore, FalconClient, FalconError, FalconRecord, FeedItem};
use crate::pipeline::deadletter::{cut, DeadLetter, Origin, Stage, SAMPLE_BYTES};
use crate::pipeline::metrics::PipelineMetrics;
use crate::topic::{NewRecord, TopicWriter};

/// Most items gathered into one append.
const MAX_APPEND: usize = 5_000;

/// Batches the client may have waiting for the writer. Each holds the network
/// chunk its events are sliced from, so this bounds the source's memory
/// (about 16 × 64 KiB) while the writer is busy; a deeper queue only buys RAM.
const QUEUED_BATCHES: usize = 16;

/// Runs the Falcon client and writes what it delivers until `cancel` fires,
/// then writes what is still buffered. Returns an error only for what the
/// client cannot retry (e.g. rejected credentials at start-up).
pub async fn run_source<W: TopicWriter, D: TopicWriter>(
    client: &FalconClient,
    cursors: &dyn CursorStore,
    raw: &W,
    dead_letters: &D,
    metrics: &Arc<PipelineMetrics>,
    cancel: CancellationToken,
) -> Result<(), FalconError> {
    let (tx, rx) = mpsc::channel::<Vec<FeedItem>>(QUEUED_BATCHES);
    metrics.set_stage("source", "running");
    let writing = write_all(rx, raw, dead_letters, metrics, cancel.clone());
    let (reading, ()) = tokio::join!(client.run(cursors, tx, cancel), writing);
    match &reading {
        Ok(()) => metrics.set_stage("source", "stopped"),
        Err(e) => metrics.set_stage("source", format!("failed: {e}")),
    }
    reading
}

/// Appends everything received until the channel closes (the client stopped).
/// A stop while an append keeps failing gives up that batch and every later
/// one: none of them is in the raw topic, so the recovered cursor is before
/// them and the next start reads them from Falcon again.
async fn write_all<W: TopicWriter, D: TopicWriter>(
    mut rx: mpsc::Receiver<Vec<FeedItem>>,
    raw: &W,
    dead_letters: &D,
    metrics: &Arc<PipelineMetrics>,
    cancel: CancellationToken,
) {
    while let Some(first) = rx.recv().await {
        let mut items = first;
        // Group commit: take whatever else is already waiting.
        while items.len() < MAX_APPEND {
            match rx.try_recv() {
                Ok(more) => items.extend(more),
                Err(_) => break,
            }
        }
        let (events, rejected) = split(items, raw.max_record_bytes(), dead_letters.max_record_bytes());
        // Dead letters first: see the module documentation.
        if !rejected.is_empty() {
            let count = rejected.len() as u64;
            if !append_or_pause(dead_letters, rejected, "dead-letter topic", metrics, &cancel).await {
                return given_up(events.len() as u64 + count);
            }
            metrics.rejected.add(count);
            metrics.dead_letters_written.add(count);
        }
        if !events.is_empty() {
            let count = events.len() as u64;
            if !append_or_pause(raw, events, "raw topic", metrics, &cancel).await {
                return given_up(count);
            }
            metrics.read.add(count);
        }
    }
}

fn given_up(records: u64) {
    tracing::warn!(
        records,
        "stopping while the topic refuses appends: the records not written will be read from Falcon again at \
         the next start"
    );
}

/// Appends until the topic accepts the batch (true), showing the source as
/// paused on `/health` while it does not; false when `cancel` fired while the
/// append was failing. A healthy append always finishes, so a normal shutdown
/// still writes what it has.
async fn append_or_pause<W: TopicWriter>(
    writer: &W,
    records: Vec<NewRecord>,
    what: &str,
    metrics: &Arc<PipelineMetrics>,
    cancel: &CancellationToken,
) -> bool {
    let failing = AtomicBool::new(false);
    let retrying = append_retrying(writer, records, what, |failure| match failure {
        Some(error) => {
            let state = pause_state(error, what);
            if !failing.swap(true, Ordering::Relaxed) {
                tracing::error!(
                    error = format!("{error:#}"),
                    "source paused: {state}; retrying, nothing is lost (Falcon waits)"
                );
            }
            metrics.set_stage("source", format!("paused: {state}"));
        }
        None if failing.load(Ordering::Relaxed) => {
            tracing::info!("the {what} accepts appends again; the source goes on");
            metrics.set_stage("source", "running");
        }
        None => {}
    });
    let stopped_while_failing = async {
        cancel.cancelled().await;
        while !failing.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::select! {
        () = retrying => true,
        () = stopped_while_failing => false,
    }
}

/// What `/health` says while appends fail.
fn pause_state(error: &anyhow::Error, what: &str) -> String {
    if crate::topic::is_storage_full(error) {
        format!("disk full (the {what} cannot grow)")
    } else {
        format!("cannot append to the {what}: {error:#}")
    }
}

/// Events as raw records, rejected lines (and events too large for the raw
/// topic) as dead letters.
fn split(
    items: Vec<FeedItem>,
    raw_limit: Option<usize>,
    dead_letter_limit: Option<usize>,
) -> (Vec<NewRecord>, Vec<NewRecord>) {
    let mut events = Vec::with_capacity(items.len());
    let mut rejected = Vec::new();
    for item in items {
        let letter = match item {
            FeedItem::Event(event) => {
                let key = SourceKey::new(event.partition, event.offset).encode();
                let size = key.len() + event.raw.len();
                match raw_limit.filter(|limit| size > *limit) {
                    None => {
                        events.push(NewRecord {
                            key: Some(Bytes::from(key)),
                            value: event.raw,
                        });
                        continue;
                    }
                    Some(limit) => too_large(event, size, limit),
                }
            }
            FeedItem::Rejected(line) => DeadLetter {
                stage: Stage::Source,
                code: "RejectedLine".to_string(),
                reason: line.reason,
                origin: Origin::Feed {
                    partition: line.partition,
                    previous_offset: line.previous_offset,
                },
                key: None,
                raw: Some(line.raw),
                event: None,
            },
        };
        rejected.push(letter.into_record(dead_letter_limit));
    }
    (events, rejected)
}

/// The dead letter of an event the raw topic cannot hold (Fluvio limits a
/// produce request to 32 MiB by default; Falcon events can be larger).
fn too_large(event: FalconRecord, size: usize, limit: usize) -> DeadLetter {
    tracing::error!(
        partition = event.partition,
        offset = event.offset,
        bytes = size,
        limit,
        "event too large for the topic; dead-lettered (Falcon keeps it about 7 days at this partition and offset)"
    );
    DeadLetter {
        stage: Stage::Source,
        code: "EventTooLarge".to_string(),
        reason: format!(
            "event of {size} bytes is larger than the {limit} bytes a record of the topic may have; kept here cut \
             to its first {SAMPLE_BYTES} bytes (Falcon keeps it about 7 days at this partition and offset)"
        ),
        origin: Origin::Event {
            partition: event.partition,
            offset: event.offset,
        },
        key: Some(Bytes::from(SourceKey::new(event.partition, event.offset).encode())),
        raw: Some(cut(&event.raw, SAMPLE_BYTES)),
        event: None,
    }
}

/// Appends, retrying with back-off until the topic accepts the batch.
pub async fn append_until_done<W: TopicWriter>(writer: &W, records: Vec<NewRecord>, what: &str) {
    append_retrying(writer, records, what, |_| {}).await;
}

/// Appends, retrying with back-off; `observe` sees each failure, then `None`
/// once the batch is in.
async fn append_retrying<W: TopicWriter>(
    writer: &W,
    records: Vec<NewRecord>,
    what: &str,
    mut observe: impl FnMut(Option<&anyhow::Error>) + Send,
) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    loop {
        match writer.append(records.clone()).await {
            Ok(()) => {
                observe(None);
                return;
            }
            Err(e) => {
                observe(Some(&e));
                let delay = backoff.next_delay();
                tracing::error!(
                    error = format!("{e:#}"),
                    records = records.len(),
                    delay_ms = delay.as_millis() as u64,
                    "appending to the {what} failed; retrying"
                );
                tokio::time::sleep(delay).await;
            }
        }
    }
}
