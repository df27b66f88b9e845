//! The source stage (Falcon → raw topic and dead letters) against the Falcon
//! emulator and real SQLite logs: what is durable in which order, a full disk,
//! logs that cannot be opened, cursor recovery, start positions and restarts
//! while Falcon still holds the appId.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use common::*;
use falcon_lake::audit::SourceKey;
use falcon_lake::falcon::{FalconClient, FalconConfig, FalconError, FalconMetrics, StartPosition};
use falcon_lake::pipeline::metrics::{MetricsSources, PipelineMetrics};
use falcon_lake::pipeline::recovery::TopicCursors;
use falcon_lake::pipeline::source::run_source;
use falcon_lake::topic::sqlite::{SqliteLog, SqliteTopic, SyncMode};
use falcon_lake::topic::TopicInspect;

const WAIT: Duration = Duration::from_secs(30);

/// A source stage running in the background.
struct RunningSource {
    metrics: Arc<PipelineMetrics>,
    falcon: Arc<FalconMetrics>,
    cancel: CancellationToken,
    task: JoinHandle<Result<(), FalconError>>,
}

impl RunningSource {
    fn start(config: FalconConfig, raw: SqliteTopic, dead_letters: SqliteTopic) -> Self {
        let metrics = Arc::new(PipelineMetrics::default());
        let falcon = Arc::new(FalconMetrics::default());
        let client = FalconClient::new(config, falcon.clone()).expect("valid client config");
        let cancel = CancellationToken::new();
        let (stage_metrics, stop) = (metrics.clone(), cancel.clone());
        let task = tokio::spawn(async move {
            let cursors = TopicCursors::new(raw.clone());
            run_source(&client, &cursors, &raw, &dead_letters, &stage_metrics, stop).await
        });
        Self {
            metrics,
            falcon,
            cancel,
            task,
        }
    }

    fn stage(&self) -> String {
        self.metrics.health().stages.get("source").cloned().unwrap_or_default()
    }

    async fn stop(self) -> Result<(), FalconError> {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the source stops within 10 s")
            .expect("source task")
    }
}

fn open(dir: &std::path::Path, file: &str) -> SqliteLog {
    SqliteLog::open(&dir.join(file), SyncMode::Full).expect("open the log")
}

/// (partition, offset) of every raw record, in topic order.
async fn raw_keys(topic: &SqliteTopic) -> Vec<(u32, u64)> {
    topic
        .read_range(0, 0, u64::MAX)
        .await
        .expect("read")
        .iter()
        .map(|r| {
            let key = SourceKey::decode(r.key.as_deref().expect("key")).expect("source key");
            (key.partition, key.offset)
        })
        .collect()
}

/// Distinct offsets of the events (JSON objects) the emulator holds for `partition`.
async fn event_offsets(control: &Control, partition: u32) -> Vec<u64> {
    let mut offsets: Vec<u64> = control
        .falcon_events(partition)
        .await
        .into_iter()
        .filter(|(_, line)| serde_json::from_str::<serde_json::Value>(line).is_ok_and(|v| v.is_object()))
        .map(|(offset, _)| offset)
        .collect();
    offsets.dedup();
    offsets
}

/// Asserts the raw topic holds each of the emulator's events exactly once, up
/// to the last one it holds (the `streamStopped` event of the last connection
/// comes after the source stopped reading).
async fn assert_each_event_once(control: &Control, raw: &SqliteTopic, partition: u32) {
    let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
    for (p, offset) in raw_keys(raw).await {
        if p == partition {
            *counts.entry(offset).or_default() += 1;
        }
    }
    let last = counts.keys().next_back().copied().unwrap_or(0);
    let mut expected = event_offsets(control, partition).await;
    expected.retain(|offset| *offset <= last);
    let missing: Vec<&u64> = expected.iter().filter(|o| !counts.contains_key(o)).collect();
    let repeated: Vec<(&u64, &usize)> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(missing.is_empty(), "missing from the raw topic: {missing:?}");
    assert!(repeated.is_empty(), "stored more than once: {repeated:?}");
    assert_eq!(counts.len(), expected.len(), "events the emulator never served");
}

/// Caps a log at the pages it has now: the next append needing a page fails
/// with SQLITE_FULL, as on a full disk.
async fn fill(log: &SqliteLog) {
    let pages = log.cap_pages(None).await.expect("page count");
    log.cap_pages(Some(pages)).await.expect("cap");
}

async fn wait_for(what: &str, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !condition().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Issue 9 §1: a batch's rejected lines must be durable before its events. With
/// the dead-letter log full, no event after a rejected line may reach the raw
/// topic (the cursor would pass the line); a restart once space is back
/// dead-letters the line and stores every event once.
#[tokio::test]
async fn dead_letters_are_durable_before_the_events_after_them() {
    let mut config = falcon_emulator_config();
    config.events = 0;
    let (emulator, control) = start_falcon(config).await;
    control.post("_emulator/events/generate?count=10", "").await;
    let junk = format!("not json {}", "x".repeat(20_000));
    control.post("_emulator/events?partition=0&raw=true", junk).await;
    control.post("_emulator/events/generate?count=10", "").await;
    let line_follows = event_offsets(&control, 0).await[9];

    let dir = tempfile::tempdir().expect("dir");
    let (raw_log, dlq_log) = (open(dir.path(), "raw.db"), open(dir.path(), "dlq.db"));
    let raw = raw_log.topic("raw").expect("topic");
    let dlq = dlq_log.topic("raw-dlq").expect("topic");
    fill(&dlq_log).await;

    let source = RunningSource::start(client_config(emulator.url()), raw.clone(), dlq.clone());
    wait_for("every line served", async || control.stat("events_served").await >= 21).await;
    // Whatever the stage does with the batch, it has had time to do it.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let written = raw_keys(&raw).await;
    assert!(
        written.iter().all(|(_, offset)| *offset <= line_follows),
        "events after the rejected line reached the raw topic before its dead letter: {written:?}"
    );
    assert!(
        source.stage().starts_with("paused: disk full"),
        "stage: {}",
        source.stage()
    );
    source.stop().await.expect("a stop while paused ends the stage");

    dlq_log.cap_pages(None).await.expect("space returns");
    let source = RunningSource::start(client_config(emulator.url()), raw.clone(), dlq.clone());
    wait_for("the dead letter", async || {
        !dlq.read_range(0, 0, u64::MAX).await.expect("read").is_empty()
    })
    .await;
    wait_for("every event", async || raw_keys(&raw).await.len() >= 21).await;
    source.stop().await.expect("clean stop");
    let letters = dlq.read_range(0, 0, u64::MAX).await.expect("read");
    assert_eq!(letters.len(), 1, "one dead letter");
    let letter: serde_json::Value = serde_json::from_slice(&letters[0].value).expect("json");
    assert_eq!(letter["code"], "RejectedLine");
    assert!(letter["record"].as_str().is_some_and(|r| r.starts_with("not json")));
    assert_each_event_once(&control, &raw, 0).await;
}

/// Issue 9 §9: a full log pauses the source (on `/health` with 503 and in the
/// log), loses nothing, and goes on by itself when space returns.
#[tokio::test]
async fn a_full_disk_pauses_the_source_until_space_returns() {
    let mut config = falcon_emulator_config();
    config.events = 200;
    let (emulator, control) = start_falcon(config).await;
    let dir = tempfile::tempdir().expect("dir");
    let log = open(dir.path(), "log.db");
    let (raw, dlq) = (log.topic("raw").expect("topic"), log.topic("raw-dlq").expect("topic"));
    let source = RunningSource::start(client_config(emulator.url()), raw.clone(), dlq);
    wait_for("the backlog", async || raw_keys(&raw).await.len() >= 201).await;
    fill(&log).await;
    control.post("_emulator/events/generate?count=2000", "").await;
    wait_for("the pause", async || source.stage().starts_with("paused")).await;
    assert_eq!(source.stage(), "paused: disk full (the raw topic cannot grow)");

    let sources = MetricsSources {
        pipeline: source.metrics.clone(),
        falcon: Some(source.falcon.clone()),
        publisher: None,
    };
    let server = falcon_lake::pipeline::metrics::serve("127.0.0.1:0".parse().expect("addr"), sources)
        .await
        .expect("serve");
    let health = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
        .get(format!("http://{}/health", server.addr))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), 503, "a paused source is not healthy");
    let body: serde_json::Value = health.json().await.expect("json");
    assert_eq!(body["status"], "paused", "{body}");

    let stored = raw_keys(&raw).await.len();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(raw_keys(&raw).await.len(), stored, "nothing is appended while full");
    log.cap_pages(None).await.expect("space returns");
    wait_for("every event", async || raw_keys(&raw).await.len() >= 2_201).await;
    wait_for("running again", async || source.stage() == "running").await;
    source.stop().await.expect("clean stop");
    assert_each_event_once(&control, &raw, 0).await;
}

/// Issue 9 §9: a log that cannot be used fails at start with an error naming
/// the file and what is wrong with it.
#[test]
fn an_unusable_log_is_named_at_start() {
    let dir = tempfile::tempdir().expect("dir");
    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![0x5a_u8; 64 * 1024]).expect("write");
    let error = format!("{:#}", SqliteLog::open(&garbage, SyncMode::Full).expect_err("garbage"));
    assert!(error.contains(&garbage.display().to_string()), "{error}");
    assert!(error.contains("not a SQLite database or it is corrupt"), "{error}");

    // A directory stands for an unreadable file (tests may run as root, which
    // reads files whatever their mode).
    let directory = dir.path().join("a-directory.db");
    std::fs::create_dir(&directory).expect("mkdir");
    let error = format!(
        "{:#}",
        SqliteLog::open(&directory, SyncMode::Full).expect_err("directory")
    );
    assert!(error.contains(&directory.display().to_string()), "{error}");
    assert!(error.contains("is a directory"), "{error}");
}

/// Issue 9 §4: `start: earliest` and an explicit offset append only what the
/// topic does not hold yet. A source started at an offset, then restarted at
/// `earliest`, backfills the older events once; a later start at an offset
/// inside what is held appends only new events.
#[tokio::test]
async fn earliest_and_offsets_skip_what_the_topic_holds() {
    let mut config = falcon_emulator_config();
    config.events = 300;
    let (emulator, control) = start_falcon(config).await;
    let log = event_offsets(&control, 0).await;
    let dir = tempfile::tempdir().expect("dir");
    let sqlite = open(dir.path(), "log.db");
    let (raw, dlq) = (
        sqlite.topic("raw").expect("topic"),
        sqlite.topic("raw-dlq").expect("topic"),
    );

    let mut from_offset = client_config(emulator.url());
    from_offset.start = StartPosition::Offset(log[100]);
    let source = RunningSource::start(from_offset, raw.clone(), dlq.clone());
    wait_for("the events from the offset", async || raw_keys(&raw).await.len() >= 200).await;
    source.stop().await.expect("clean stop");
    assert_eq!(raw_keys(&raw).await[0].1, log[100]);

    let mut earliest = client_config(emulator.url());
    earliest.start = StartPosition::Earliest;
    let source = RunningSource::start(earliest, raw.clone(), dlq.clone());
    wait_for("the backfill", async || {
        raw_keys(&raw).await.iter().any(|(_, offset)| *offset == log[0])
    })
    .await;
    control.post("_emulator/events/generate?count=50", "").await;
    let newest = *event_offsets(&control, 0).await.last().expect("events");
    wait_for("the new events", async || {
        raw_keys(&raw).await.iter().any(|(_, offset)| *offset == newest)
    })
    .await;
    let skipped = source
        .falcon
        .already_in_topic
        .load(std::sync::atomic::Ordering::Relaxed);
    source.stop().await.expect("clean stop");
    assert_each_event_once(&control, &raw, 0).await;
    assert!(skipped >= 200, "{skipped} held events skipped");

    let mut inside = client_config(emulator.url());
    inside.start = StartPosition::Offset(log[50]);
    let source = RunningSource::start(inside, raw.clone(), dlq);
    control.post("_emulator/events/generate?count=10", "").await;
    let newest = *event_offsets(&control, 0).await.last().expect("events");
    wait_for("the newest events", async || {
        raw_keys(&raw).await.iter().any(|(_, offset)| *offset == newest)
    })
    .await;
    source.stop().await.expect("clean stop");
    assert_each_event_once(&control, &raw, 0).await;
}
