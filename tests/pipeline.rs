//! The whole embedded pipeline between both emulators, over loopback HTTP, the
//! SmartModule in wasm, the AWS SDK signing SigV4, the log in SQLite.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use common::*;
use falcon_lake::emulate::falcon::FalconEmulatorConfig;

const WAIT: Duration = Duration::from_secs(90);

fn falcon(events: u64, partitions: u32) -> FalconEmulatorConfig {
    let mut config = falcon_emulator_config();
    config.events = events;
    config.partitions = partitions;
    config.offset_gaps = 0.02;
    config
}

/// Runs the pipeline until every expected event is stored, then stops it.
async fn deliver_all(h: &Harness, expected: &BTreeMap<String, String>) {
    let pipeline = h.pipeline().await;
    let cancel = CancellationToken::new();
    let run = tokio::spawn(pipeline.run(cancel.clone()));
    h.wait_delivered(expected, WAIT).await;
    cancel.cancel();
    run.await.expect("task").expect("clean stop");
}

/// `(partition, offset)` of every record of the raw topic, from its keys.
async fn raw_keys(h: &Harness) -> Vec<(u32, u64)> {
    h.topic_records("falcon-events")
        .await
        .iter()
        .map(|r| {
            let key = falcon_lake::audit::SourceKey::decode(r.key.as_deref().expect("key")).expect("source key");
            (key.partition, key.offset)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delivers_exactly_the_expected_events() {
    let h = Harness::start(falcon(4_000, 2), cloudtrail_emulator_config(), "").await;
    let expected = h.expected().await;
    assert!(expected.len() > 1_000, "{} user-activity events", expected.len());
    deliver_all(&h, &expected).await;

    let stored = h.stored().await;
    assert_eq!(
        stored.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "exactly the expected ids"
    );
    assert!(stored.values().all(|n| *n == 1), "each stored once");
    let events = h.cloudtrail_control.get("_emulator/events").await;
    for event in events["events"].as_array().expect("events") {
        let id = event["id"].as_str().expect("id");
        let mut want: Value = serde_json::from_str(&expected[id]).expect("json");
        want["recipientAccountId"] = json!(OWNER);
        assert_eq!(event["record"]["eventData"], want, "eventData of {id}");
    }
    let raw = raw_keys(&h).await;
    let unique: HashSet<(u32, u64)> = raw.iter().copied().collect();
    assert_eq!(unique.len(), raw.len(), "no Falcon event written twice");
    assert_eq!(h.committed().await, Some(raw.len() as u64 - 1), "everything committed");
    assert!(h.topic_records("falcon-events-dlq").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_resumes_without_loss() {
    let mut slow = cloudtrail_emulator_config();
    slow.tps = 15.0;
    slow.burst = Some(5.0);
    let h = Harness::start(falcon(4_000, 2), slow, "").await;
    let expected = h.expected().await;
    let pipeline = h.pipeline().await;
    let cancel = CancellationToken::new();
    let run = tokio::spawn(pipeline.run(cancel.clone()));
    wait_until_async(&h, |stored| stored >= expected.len() / 4).await;
    cancel.cancel();
    run.await.expect("task").expect("clean stop");
    let first_run = h.stored().await.len();
    assert!(
        first_run < expected.len(),
        "stopped part-way ({first_run} of {})",
        expected.len()
    );

    h.falcon_control.post("_emulator/events/generate?count=1000", "").await;
    let expected = h.expected().await;
    deliver_all(&h, &expected).await;
    let stored = h.stored().await;
    assert!(
        expected.keys().all(|id| stored.contains_key(id)),
        "nothing lost across the restart"
    );
    let duplicates: u64 = stored.values().map(|n| n - 1).sum();
    assert!(duplicates <= 2_000, "duplicates bounded by the window: {duplicates}");
    let raw = raw_keys(&h).await;
    let unique: HashSet<(u32, u64)> = raw.iter().copied().collect();
    assert_eq!(
        unique.len(),
        raw.len(),
        "the source resumed right after the last event it wrote"
    );
}

async fn wait_until_async(h: &Harness, done: impl Fn(usize) -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done(h.stored().await.len()) {
        assert!(tokio::time::Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn survives_faults_across_the_pipeline() {
    let mut f = falcon(3_000, 2);
    f.refresh_interval = 2;
    f.faults = falcon_lake::emulate::falcon::config::parse_fault_rates(
        "truncate=0.002,disconnect=0.002,malformed=0.001,duplicate=0.002",
    )
    .expect("rates");
    let mut ct = cloudtrail_emulator_config();
    ct.tps = 30.0;
    ct.burst = Some(5.0);
    ct.event_failures =
        falcon_lake::emulate::cloudtrail::config::parse_event_rates("throttling=0.05,internal=0.05").expect("rates");
    ct.request_failures =
        falcon_lake::emulate::cloudtrail::config::parse_request_rates("500=0.05,503=0.05").expect("rates");
    let h = Harness::start_with(f, ct, "  batch_max_events: 10\n", "").await;
    let pipeline = h.pipeline().await;
    let metrics = pipeline.metrics();
    let cancel = CancellationToken::new();
    let run = tokio::spawn(pipeline.run(cancel.clone()));
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    h.falcon_control.post("_emulator/sessions/expire", "").await;
    let expected = h.expected().await;
    h.wait_delivered(&expected, WAIT).await;
    cancel.cancel();
    run.await.expect("task").expect("clean stop");

    let stored = h.stored().await;
    assert!(
        stored.values().all(|n| *n == 1),
        "5xx, throttling and per-event failures never store twice"
    );
    let c = metrics.publisher.as_ref().expect("publisher metrics");
    let f = metrics.falcon.as_ref().expect("client metrics");
    let (throttled, request_retries, event_retries) =
        (c.throttled.get(), c.request_retries.get(), c.event_retries.get());
    assert!(
        throttled > 0 && request_retries > 0 && event_retries > 0,
        "{throttled} {request_retries} {event_retries}"
    );
    assert!(
        f.reconnects.load(std::sync::atomic::Ordering::Relaxed) >= 2,
        "disconnects and the expiry reconnected"
    );
    for letter in h.topic_records("falcon-events-dlq").await {
        let value: Value = serde_json::from_slice(&letter.value).expect("json");
        assert_eq!(
            value["stage"], "source",
            "only malformed Falcon lines are dead-lettered: {value}"
        );
        assert!(value["reason"].as_str().expect("reason").contains("not a JSON object"));
    }
    assert_eq!(
        metrics.pipeline.rejected.get() as usize,
        h.topic_records("falcon-events-dlq").await.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_letters_carry_reasons_and_do_not_block() {
    let h = Harness::start(falcon(1_000, 1), cloudtrail_emulator_config(), "").await;
    h.cloudtrail_control
        .post(
            "_emulator/faults?count=5",
            json!({"fault": "event_code", "code": "InvalidData"}).to_string(),
        )
        .await;
    h.falcon_control.fault(json!({"fault": "feed_malformed"})).await;
    let expected = h.expected().await;
    let pipeline = h.pipeline().await;
    let cancel = CancellationToken::new();
    let run = tokio::spawn(pipeline.run(cancel.clone()));
    let deadline = tokio::time::Instant::now() + WAIT;
    while h.stored().await.len() + 5 < expected.len() {
        assert!(tokio::time::Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let raw_count = raw_keys(&h).await.len() as u64;
    while h.committed().await != Some(raw_count - 1) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sink did not commit past the dead letters"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cancel.cancel();
    run.await.expect("task").expect("clean stop");
    let letters: Vec<Value> = h
        .topic_records("falcon-events-dlq")
        .await
        .iter()
        .map(|r| serde_json::from_slice(&r.value).expect("json"))
        .collect();
    let publish: Vec<&Value> = letters.iter().filter(|l| l["stage"] == "publish").collect();
    assert_eq!(publish.len(), 5);
    for letter in &publish {
        assert_eq!(letter["code"], "InvalidData");
        assert!(letter["reason"].as_str().expect("reason").contains("injected"));
        let id = letter["id"].as_str().expect("id");
        assert!(
            expected.contains_key(id) && !h.stored().await.contains_key(id),
            "{id} was dead-lettered, not stored"
        );
        assert!(letter["eventData"].as_str().expect("eventData").contains(id));
        assert!(letter["offset"].as_u64().is_some());
    }
    assert_eq!(
        letters.iter().filter(|l| l["stage"] == "source").count(),
        1,
        "the malformed line"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fatal_channel_error_commits_nothing_and_loses_nothing() {
    let h = Harness::start(falcon(500, 1), cloudtrail_emulator_config(), "").await;
    let good = std::fs::read_to_string(&h.config).expect("config");
    let unknown = "arn:aws:cloudtrail:us-east-1:111122223333:channel/ffffffff-0000-0000-0000-000000000000";
    std::fs::write(&h.config, good.replace(CHANNEL_ARN, unknown)).expect("config");
    let pipeline = h.pipeline().await;
    let err = tokio::time::timeout(WAIT, pipeline.run(CancellationToken::new()))
        .await
        .expect("stops")
        .expect_err("fatal");
    let message = format!("{err:#}");
    assert!(
        message.contains("ChannelNotFound") && message.contains("get-channel"),
        "{message}"
    );
    assert_eq!(h.committed().await, None, "nothing acknowledged");
    assert!(h.stored().await.is_empty());

    std::fs::write(&h.config, good).expect("config");
    let expected = h.expected().await;
    deliver_all(&h, &expected).await;
    assert_eq!(
        h.stored().await.len(),
        expected.len(),
        "after the fix, everything is delivered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replay_backfills_a_range_and_leaves_the_sink_offset() {
    let h = Harness::start(falcon(1_500, 1), cloudtrail_emulator_config(), "").await;
    let expected = h.expected().await;
    deliver_all(&h, &expected).await;
    let committed = h.committed().await;
    let raw = h.topic_records("falcon-events").await;
    let mapper = falcon_lake::audit::Mapper::new(falcon_lake::audit::MappingParams::default());
    let in_range: HashSet<String> = raw
        .iter()
        .filter(|r| (100..400).contains(&r.offset))
        .filter_map(|r| {
            match mapper.map(
                &falcon_lake::audit::RecordContext {
                    key: r.key.as_deref(),
                    timestamp_ms: 0,
                },
                &r.value,
            ) {
                falcon_lake::audit::Outcome::Emit(a) => Some(a.id),
                falcon_lake::audit::Outcome::Skip(_) => None,
            }
        })
        .collect();
    assert!(!in_range.is_empty());

    let status = replay(&h, &["--from-offset", "100", "--to-offset", "400"]);
    assert!(status.success());
    let stored = h.stored().await;
    for (id, count) in &stored {
        let want = if in_range.contains(id) { 2 } else { 1 };
        assert_eq!(*count, want, "{id}");
    }
    assert_eq!(h.committed().await, committed, "the live sink's offset is untouched");

    assert!(replay(&h, &["--since", "2h"]).success());
    assert!(
        h.stored().await.values().all(|n| *n >= 2),
        "--since 2h replays everything"
    );
    assert!(
        !replay(&h, &["--from-offset", "9", "--to-offset", "3"]).success(),
        "an empty range is an error"
    );
}

fn replay(h: &Harness, range: &[&str]) -> std::process::ExitStatus {
    h.command("replay")
        .args(range)
        .stdin(std::process::Stdio::null())
        .status()
        .expect("replay runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_and_health_are_served() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let h = Harness::start(
        falcon(800, 1),
        cloudtrail_emulator_config(),
        &format!("metrics:\n  address: 127.0.0.1:{port}\n"),
    )
    .await;
    let expected = h.expected().await;
    let pipeline = h.pipeline().await;
    let cancel = CancellationToken::new();
    let run = tokio::spawn(pipeline.run(cancel.clone()));
    h.wait_delivered(&expected, WAIT).await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let http = reqwest::Client::builder().no_proxy().build().expect("client");
    let text = http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let value = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from /metrics"))
    };
    assert_eq!(value("falcon_lake_events_delivered_total"), expected.len() as u64);
    assert_eq!(value("falcon_lake_events_forwarded_total"), expected.len() as u64);
    assert_eq!(
        value("falcon_lake_events_read_total"),
        value("falcon_lake_events_forwarded_total") + value("falcon_lake_events_filtered_total")
    );
    assert_eq!(value("falcon_lake_consumer_lag"), 0);
    assert!(value("falcon_lake_put_audit_events_seconds_count") > 0);
    let health = http
        .get(format!("http://127.0.0.1:{port}/health"))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), 200);
    let body: Value = health.json().await.expect("json");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["stages"]["sink"], "running");
    cancel.cancel();
    run.await.expect("task").expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_stops_cleanly_within_ten_seconds() {
    let mut slow = cloudtrail_emulator_config();
    slow.latency_ms = 200;
    let h = Harness::start(falcon(3_000, 1), slow, "").await;
    let mut child = h.command("run").spawn().expect("spawn");
    wait_until_async(&h, |stored| stored >= 100).await;
    let began = std::time::Instant::now();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            began.elapsed() < Duration::from_secs(10),
            "still running 10 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status:?}");
    let committed = h.committed().await.expect("settled events were committed");
    let stored = h.stored().await.len() as u64;
    assert!(committed > 0 && stored > 0);
}
