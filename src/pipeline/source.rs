//! The source stage: Falcon events into the raw topic, unchanged, keyed with the
//! [`SourceKey`] contract; rejected lines into the dead-letter topic.
//!
//! An append that fails is retried (the same batch) until it succeeds; nothing
//! is dropped. Should the process die with a batch only in memory, the cursor
//! recovered from the topic makes the client read it again from Falcon.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::audit::SourceKey;
use crate::backoff::Backoff;
use crate::falcon::{CursorStore, FalconClient, FalconError, FeedItem};
use crate::pipeline::deadletter::{DeadLetter, Origin, Stage};
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
    let writing = write_all(rx, raw, dead_letters, metrics);
    let (reading, ()) = tokio::join!(client.run(cursors, tx, cancel), writing);
    match &reading {
        Ok(()) => metrics.set_stage("source", "stopped"),
        Err(e) => metrics.set_stage("source", format!("failed: {e}")),
    }
    reading
}

/// Appends everything received until the channel closes (the client stopped).
async fn write_all<W: TopicWriter, D: TopicWriter>(
    mut rx: mpsc::Receiver<Vec<FeedItem>>,
    raw: &W,
    dead_letters: &D,
    metrics: &Arc<PipelineMetrics>,
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
        let (events, rejected) = split(items);
        if !events.is_empty() {
            let count = events.len() as u64;
            append_until_done(raw, events, "raw topic").await;
            metrics.read.add(count);
        }
        if !rejected.is_empty() {
            let count = rejected.len() as u64;
            append_until_done(dead_letters, rejected, "dead-letter topic").await;
            metrics.rejected.add(count);
            metrics.dead_letters_written.add(count);
        }
    }
}

/// Events as raw records, rejected lines as dead letters.
fn split(items: Vec<FeedItem>) -> (Vec<NewRecord>, Vec<NewRecord>) {
    let mut events = Vec::with_capacity(items.len());
    let mut rejected = Vec::new();
    for item in items {
        match item {
            FeedItem::Event(event) => events.push(NewRecord {
                key: Some(Bytes::from(SourceKey::new(event.partition, event.offset).encode())),
                value: event.raw,
            }),
            FeedItem::Rejected(line) => rejected.push(
                DeadLetter {
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
                }
                .into_record(),
            ),
        }
    }
    (events, rejected)
}

/// Appends, retrying with back-off until the topic accepts the batch.
pub async fn append_until_done<W: TopicWriter>(writer: &W, records: Vec<NewRecord>, what: &str) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    loop {
        match writer.append(records.clone()).await {
            Ok(()) => return,
            Err(e) => {
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
