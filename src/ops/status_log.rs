//! The sink's durable state: small JSON records in the `<topic>-status` topic
//! (a topic of the embedded log, or of the Fluvio cluster), so `falcon-lake
//! status` can tell, from any machine and after any crash, whether the sink is
//! running, when it last delivered, and why it stopped.
//!
//! A running sink writes a record when it starts, after deliveries (at most
//! every [`PROGRESS_EVERY`]), as a heartbeat every [`HEARTBEAT_EVERY`], and one
//! last record when it stops (`stopped`, or `failed` with the error). Records
//! carry the all-time last delivery forward, so the newest record says it all.

use std::future::Future;
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::ops::{format_ms, now_ms};
use crate::topic::{NewRecord, TopicInspect, TopicWriter};

/// Longest time between two records of a running sink.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(30);
/// Shortest time between two records written for progress alone.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// How often the delivery counter is looked at.
const POLL: Duration = Duration::from_secs(1);

/// One status record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusRecord {
    /// `running`, `stopped` or `failed`.
    pub state: String,
    /// When it was written.
    pub at: String,
    /// The same, epoch milliseconds.
    pub at_ms: i64,
    /// When this sink process started, epoch milliseconds.
    pub started_ms: i64,
    /// `meta.name`.
    pub instance: String,
    /// Host name of the process.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// Events delivered by this process.
    pub delivered_since_start: u64,
    /// The last successful delivery (of any process), epoch milliseconds.
    #[serde(default)]
    pub last_delivery_ms: Option<i64>,
    /// The same, as text.
    #[serde(default)]
    pub last_delivery: Option<String>,
    /// Seconds between heartbeats of a running sink (staleness is judged by it).
    pub heartbeat_seconds: u64,
    /// Why the sink failed (`failed` only).
    #[serde(default)]
    pub error: Option<String>,
}

impl StatusRecord {
    /// Parses a record's value.
    pub fn parse(value: &[u8]) -> Option<Self> {
        serde_json::from_slice(value).ok()
    }

    fn to_record(&self) -> NewRecord {
        NewRecord {
            key: Some(Bytes::from(self.instance.clone())),
            value: Bytes::from(serde_json::to_vec(self).unwrap_or_default()),
        }
    }
}

/// Where the records go, and where the previous ones are read back from.
pub struct StatusLog<'a, W, I> {
    /// Appends to the status topic.
    pub writer: &'a W,
    /// Reads the status topic.
    pub inspect: &'a I,
    /// `meta.name`.
    pub instance: String,
}

/// The newest record of the status topic, if any.
pub async fn latest<I: TopicInspect>(inspect: &I) -> Result<Option<StatusRecord>> {
    let Some(bounds) = inspect.bounds().await?.into_iter().find(|b| b.partition == 0) else {
        return Ok(None);
    };
    if bounds.next <= bounds.first {
        return Ok(None);
    }
    let records = inspect.read_range(0, bounds.next - 1, bounds.next).await?;
    Ok(records.last().and_then(|r| StatusRecord::parse(&r.value)))
}

/// How a sink run ended, as the status log records it.
pub trait RunEnd {
    /// `None` for a clean stop, else the error text.
    fn failure(&self) -> Option<String>;
}

impl<T> RunEnd for Result<T> {
    fn failure(&self) -> Option<String> {
        self.as_ref().err().map(|e| format!("{e:#}"))
    }
}

/// Runs `sink` while recording its state; returns what `sink` returned.
/// `delivered` reads the count of events this process delivered so far.
/// Writing a record never stops or slows the sink: a failed write is logged.
pub async fn recorded<W, I, F>(log: StatusLog<'_, W, I>, delivered: impl Fn() -> u64, sink: F) -> F::Output
where
    W: TopicWriter,
    I: TopicInspect,
    F: Future,
    F::Output: RunEnd,
{
    let mut state = Recorder::start(&log).await;
    state.write(&log, "running", None).await;
    tokio::pin!(sink);
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let end = loop {
        tokio::select! {
            end = &mut sink => break end,
            _ = tick.tick() => state.observe(&log, delivered()).await,
        }
    };
    state.delivered(delivered());
    let failure = end.failure();
    let final_state = if failure.is_some() { "failed" } else { "stopped" };
    state.write(&log, final_state, failure).await;
    end
}

/// What the recorder tracks between records.
struct Recorder {
    started_ms: i64,
    host: String,
    delivered: u64,
    last_delivery_ms: Option<i64>,
    written_at: tokio::time::Instant,
    written_delivered: u64,
}

impl Recorder {
    async fn start<W, I: TopicInspect>(log: &StatusLog<'_, W, I>) -> Self {
        let previous = match latest(log.inspect).await {
            Ok(previous) => previous,
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), "cannot read the previous status record");
                None
            }
        };
        Self {
            started_ms: now_ms(),
            host: host_name(),
            delivered: 0,
            last_delivery_ms: previous.and_then(|p| p.last_delivery_ms),
            written_at: tokio::time::Instant::now(),
            written_delivered: 0,
        }
    }

    fn delivered(&mut self, count: u64) {
        if count > self.delivered {
            self.delivered = count;
            self.last_delivery_ms = Some(now_ms());
        }
    }

    async fn observe<W: TopicWriter, I>(&mut self, log: &StatusLog<'_, W, I>, count: u64) {
        self.delivered(count);
        let since = self.written_at.elapsed();
        let progressed = self.delivered > self.written_delivered;
        if since >= HEARTBEAT_EVERY || (progressed && since >= PROGRESS_EVERY) {
            self.write(log, "running", None).await;
        }
    }

    async fn write<W: TopicWriter, I>(&mut self, log: &StatusLog<'_, W, I>, state: &str, error: Option<String>) {
        let at_ms = now_ms();
        let record = StatusRecord {
            state: state.to_string(),
            at: format_ms(at_ms),
            at_ms,
            started_ms: self.started_ms,
            instance: log.instance.clone(),
            host: self.host.clone(),
            pid: std::process::id(),
            delivered_since_start: self.delivered,
            last_delivery_ms: self.last_delivery_ms,
            last_delivery: self.last_delivery_ms.map(format_ms),
            heartbeat_seconds: HEARTBEAT_EVERY.as_secs(),
            error,
        };
        self.written_at = tokio::time::Instant::now();
        self.written_delivered = self.delivered;
        if let Err(e) = log.writer.append(vec![record.to_record()]).await {
            tracing::warn!(error = format!("{e:#}"), "writing a status record failed");
        }
    }
}

/// This machine's name (for telling instances apart in `status`).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::sqlite::{SqliteLog, SyncMode};
    use std::sync::atomic::{AtomicU64, Ordering};

    #[tokio::test(start_paused = true)]
    async fn records_start_progress_and_the_end() {
        let dir = tempfile::tempdir().expect("dir");
        let log = SqliteLog::open(&dir.path().join("log.db"), SyncMode::Normal).expect("open");
        let topic = log.topic("t-status").expect("topic");
        let delivered = AtomicU64::new(0);
        let status = || StatusLog {
            writer: &topic,
            inspect: &topic,
            instance: "sink-a".to_string(),
        };
        let run = async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            delivered.store(5, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_secs(15)).await;
            Err::<(), _>(anyhow::anyhow!("ChannelNotFound: the channel is gone"))
        };
        let end = recorded(status(), || delivered.load(Ordering::Relaxed), run).await;
        assert!(end.is_err());
        let records: Vec<StatusRecord> = topic
            .read_range(0, 0, u64::MAX)
            .await
            .expect("read")
            .iter()
            .filter_map(|r| StatusRecord::parse(&r.value))
            .collect();
        assert!(records.len() >= 3, "{records:?}");
        assert_eq!(records[0].state, "running");
        assert_eq!(records[0].last_delivery_ms, None);
        let last = records.last().expect("last");
        assert_eq!(last.state, "failed");
        assert!(last.error.as_deref().is_some_and(|e| e.contains("ChannelNotFound")));
        assert_eq!(last.delivered_since_start, 5);
        let delivered_at = last.last_delivery_ms.expect("a delivery was seen");

        // A later run carries the last delivery forward before it delivers anything.
        let quiet = async { Ok::<(), anyhow::Error>(()) };
        recorded(status(), || 0, quiet).await.expect("clean");
        let newest = latest(&topic).await.expect("read").expect("record");
        assert_eq!(newest.state, "stopped");
        assert_eq!(newest.last_delivery_ms, Some(delivered_at));
        assert_eq!(newest.error, None);
    }
}
