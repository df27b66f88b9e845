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
    let raw = h.topic_records("falcon-events").await;
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
        let offset = letter["offset"].as_u64().expect("offset");
        let source = raw
            .iter()
            .find(|r| r.offset == offset)
            .expect("the letter's raw record");
        assert_eq!(
            letter["record"].as_str().map(str::as_bytes),
            Some(source.value.as_ref()),
            "a publish-stage dead letter carries its raw record: {letter}"
        );
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

// ---------------------------------------------------------------------------
// The sink stage on its own: a real SQLite log holding the Falcon emulator's
// events, the real SmartModule chain, a real publisher signing SigV4 against
// the CloudTrail emulator. Faults come from wrappers around the real parts.

mod sink_stage {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use anyhow::Result;
    use serde_json::Value;
    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;

    use super::common::*;
    use super::{falcon, WAIT};
    use falcon_lake::pipeline::metrics::{serve, MetricsServer, MetricsSources, PipelineMetrics};
    use falcon_lake::pipeline::sink::{run_sink, Deliver, SinkEnd, SinkParts, SinkToken, Transform};
    use falcon_lake::publish::{FatalError, PublishItem, PublishMetrics, Publisher, Settlement};
    use falcon_lake::topic::sqlite::{SqliteCommitter, SqliteLog, SqliteReader, SqliteTopic};
    use falcon_lake::topic::{NewRecord, OffsetCommitter, StartFrom, TopicReader, TopicRecord, TopicWriter};
    use falcon_lake::transform::{ChainOutput, InputRecord, TransformChain};

    /// Both emulators, and the raw topic filled with every Falcon event.
    pub struct Rig {
        pub h: Harness,
        pub raw: SqliteTopic,
        pub dead_letters: SqliteTopic,
        pub expected: BTreeMap<String, String>,
        pub records: u64,
        pub metrics: Arc<PipelineMetrics>,
        pub publish_metrics: Arc<PublishMetrics>,
    }

    impl Rig {
        pub async fn new(events: u64, cloudtrail: falcon_lake::emulate::cloudtrail::CloudTrailEmulatorConfig) -> Self {
            let h = Harness::start(falcon(events, 1), cloudtrail, "").await;
            let config = h.load();
            let log = SqliteLog::open(&config.storage_path(), config.storage.sync).expect("log");
            let raw = log.topic(config.topic()).expect("topic");
            let dead_letters = log.topic(&config.dead_letter_topic()).expect("dlq");
            let lines = h.falcon_control.falcon_events(0).await;
            let records = lines.len() as u64;
            raw.append(
                lines
                    .into_iter()
                    .map(|(offset, line)| NewRecord {
                        key: Some(falcon_lake::audit::SourceKey::new(0, offset).encode().into()),
                        value: line.into(),
                    })
                    .collect(),
            )
            .await
            .expect("append");
            let expected = h.expected().await;
            Self {
                h,
                raw,
                dead_letters,
                expected,
                records,
                metrics: Arc::new(PipelineMetrics::default()),
                publish_metrics: Arc::new(PublishMetrics::default()),
            }
        }

        pub async fn reader(&self) -> SqliteReader {
            let consumer = self.h.load().meta.consumer_id();
            self.raw
                .reader(Some(&consumer), StartFrom::Beginning)
                .await
                .expect("reader")
        }

        pub fn committer(&self) -> SqliteCommitter {
            self.raw.committer(&self.h.load().meta.consumer_id())
        }

        pub async fn chain(&self) -> TransformChain {
            let config = self.h.load();
            falcon_lake::transform::load_chain(&config.transforms, &config.base_dir, None)
                .await
                .expect("chain")
        }

        pub async fn publisher(&self) -> Publisher {
            Publisher::new(
                &self.h.load().destination,
                Some(test_credentials()),
                self.publish_metrics.clone(),
            )
            .await
            .expect("publisher")
        }

        /// Waits until every expected event is stored and every record committed.
        pub async fn wait_all_committed(&self) {
            self.h.wait_delivered(&self.expected, WAIT).await;
            let deadline = tokio::time::Instant::now() + WAIT;
            while self.h.committed().await != Some(self.records - 1) {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the sink did not commit to the end"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }

        /// `/health` and `/metrics` of this rig's stage metrics.
        pub async fn serve(&self) -> MetricsServer {
            let sources = MetricsSources {
                pipeline: self.metrics.clone(),
                falcon: None,
                publisher: Some(self.publish_metrics.clone()),
            };
            serve("127.0.0.1:0".parse().expect("addr"), sources)
                .await
                .expect("serve")
        }

        /// Runs the sink at the default settings until `cancel`.
        pub async fn run(
            &self,
            reader: impl TopicReader + 'static,
            committer: &impl OffsetCommitter,
            chain: impl Transform,
            publisher: impl Deliver,
            cancel: CancellationToken,
        ) -> Result<SinkEnd> {
            let parts = SinkParts {
                reader,
                committer: Some(committer),
                dead_letters: &self.dead_letters,
                inspect: Some(&self.raw),
                topic: self.raw.name().to_string(),
            };
            let settings = self.h.load().sink;
            run_sink(parts, chain, publisher, &settings, &self.metrics, false, cancel).await
        }
    }

    /// `/health` of `server`: (HTTP status, body).
    pub async fn health(server: &MetricsServer) -> (u16, Value) {
        let http = reqwest::Client::builder().no_proxy().build().expect("client");
        let response = http
            .get(format!("http://{}/health", server.addr))
            .send()
            .await
            .expect("health");
        let status = response.status().as_u16();
        (status, response.json().await.expect("json"))
    }

    /// A reader that panics on its `n`th read.
    struct PanickingReader {
        inner: SqliteReader,
        reads_left: usize,
    }

    impl TopicReader for PanickingReader {
        async fn next_batch(&mut self, max: usize, wait: Duration) -> Result<Vec<TopicRecord>> {
            if self.reads_left == 0 {
                panic!("injected: the topic reader panics");
            }
            self.reads_left -= 1;
            self.inner.next_batch(max, wait).await
        }

        fn positions(&self) -> Vec<(u32, u64)> {
            self.inner.positions()
        }
    }

    /// A chain that panics on its `n`th batch.
    struct PanickingChain {
        inner: TransformChain,
        batches_left: usize,
    }

    impl Transform for PanickingChain {
        fn process(&mut self, records: &[InputRecord<'_>]) -> Result<ChainOutput> {
            if self.batches_left == 0 {
                panic!("injected: the SmartModule thread panics");
            }
            self.batches_left -= 1;
            self.inner.process(records)
        }
    }

    /// A publisher that panics after passing on `n` settlements.
    struct PanickingPublisher {
        inner: Publisher,
        settlements_left: usize,
    }

    impl Deliver for PanickingPublisher {
        async fn deliver(
            self,
            input: mpsc::Receiver<PublishItem<SinkToken>>,
            settled: mpsc::Sender<Settlement<SinkToken>>,
        ) -> Result<(), FatalError> {
            let (tx, mut rx) = mpsc::channel(16);
            let inner = tokio::spawn(self.inner.deliver(input, tx));
            let mut left = self.settlements_left;
            while let Some(settlement) = rx.recv().await {
                if left == 0 {
                    inner.abort();
                    panic!("injected: the publisher panics");
                }
                left -= 1;
                let _ = settled.send(settlement).await;
            }
            inner.await.expect("inner publisher")
        }
    }

    /// A panic in any stage stops the sink with an error naming the stage, and
    /// `/health` answers 503 (issue 9 §3: it used to end `Ok`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_panicking_stage_stops_the_sink_with_an_error_naming_it() {
        for stage in ["reader", "smartmodule", "publisher"] {
            let rig = Rig::new(3_000, cloudtrail_emulator_config()).await;
            let server = rig.serve().await;
            let committer = rig.committer();
            let (reader, chain, publisher) = (rig.reader().await, rig.chain().await, rig.publisher().await);
            let cancel = CancellationToken::new();
            let run = match stage {
                "reader" => {
                    let reader = PanickingReader {
                        inner: reader,
                        reads_left: 3,
                    };
                    tokio::time::timeout(WAIT, rig.run(reader, &committer, chain, publisher, cancel)).await
                }
                "smartmodule" => {
                    let chain = PanickingChain {
                        inner: chain,
                        batches_left: 2,
                    };
                    tokio::time::timeout(WAIT, rig.run(reader, &committer, chain, publisher, cancel)).await
                }
                _ => {
                    let publisher = PanickingPublisher {
                        inner: publisher,
                        settlements_left: 150,
                    };
                    tokio::time::timeout(WAIT, rig.run(reader, &committer, chain, publisher, cancel)).await
                }
            };
            let end = run.unwrap_or_else(|_| panic!("{stage}: the sink neither stopped nor reported the panic"));
            let message = match end {
                Ok(end) => panic!("{stage}: a panic ended the sink with Ok({end:?})"),
                Err(e) => format!("{e:#}"),
            };
            let named = match stage {
                "reader" => "topic reader",
                "smartmodule" => "SmartModule",
                _ => "publisher",
            };
            assert!(
                message.contains(named) && message.contains("panicked"),
                "{stage}: {message}"
            );
            let (status, body) = health(&server).await;
            assert_eq!(status, 503, "{stage}: /health {body}");
            assert_eq!(body["status"], "failed", "{stage}: {body}");
            assert!(
                body["stages"]["sink"].as_str().expect("sink state").contains(named),
                "{stage}: {body}"
            );
        }
    }

    /// A committer whose commits fail while `failing` is set.
    struct FlakyCommitter {
        inner: SqliteCommitter,
        failing: Arc<AtomicBool>,
    }

    impl OffsetCommitter for FlakyCommitter {
        async fn commit(&self, offsets: &[(u32, u64)]) -> Result<()> {
            anyhow::ensure!(!self.failing.load(Ordering::SeqCst), "injected: the commit fails");
            self.inner.commit(offsets).await
        }

        async fn committed(&self) -> Result<Vec<(u32, u64)>> {
            self.inner.committed().await
        }
    }

    /// While commits fail, the reader stops at `sink.window` records past the
    /// last durable commit (issue 8 §5), and catches up once they succeed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn the_window_holds_while_commits_fail() {
        let rig = Rig::new(8_000, cloudtrail_emulator_config()).await;
        let window = rig.h.load().sink.window as u64;
        assert!(rig.records > 3 * window, "{} records", rig.records);
        let failing = Arc::new(AtomicBool::new(true));
        let committer = FlakyCommitter {
            inner: rig.committer(),
            failing: failing.clone(),
        };
        let cancel = CancellationToken::new();
        let (reader, chain, publisher) = (rig.reader().await, rig.chain().await, rig.publisher().await);
        let run = rig.run(reader, &committer, chain, publisher, cancel.clone());
        let check = async {
            // Give the reader time to run past the window if it could.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
            while tokio::time::Instant::now() < deadline {
                let consumed = rig.metrics.consumed.get();
                assert!(
                    consumed <= window,
                    "{consumed} records read while no commit succeeded (window {window})"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert!(rig.metrics.consumed.get() > 0, "the sink read something");
            assert_eq!(rig.h.committed().await, None, "nothing committed yet");
            failing.store(false, Ordering::SeqCst);
            rig.wait_all_committed().await;
            cancel.cancel();
        };
        let (end, ()) = tokio::join!(run, check);
        end.expect("clean stop");
    }

    /// The lag gauge counts from the stored offsets: a restarted sink with
    /// nothing to do reports 0 (issue 8 §6: it reported the whole topic).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn the_lag_gauge_counts_from_the_stored_offsets() {
        let rig = Rig::new(2_000, cloudtrail_emulator_config()).await;
        for run in ["first", "restarted"] {
            let cancel = CancellationToken::new();
            let committer = rig.committer();
            let (reader, chain, publisher) = (rig.reader().await, rig.chain().await, rig.publisher().await);
            let metrics = rig.metrics.clone();
            let sink = rig.run(reader, &committer, chain, publisher, cancel.clone());
            let check = async {
                rig.wait_all_committed().await;
                // The gauge is refreshed every second.
                tokio::time::sleep(Duration::from_millis(2_500)).await;
                let lag = metrics.consumer_lag.get();
                cancel.cancel();
                lag
            };
            let (end, lag) = tokio::join!(sink, check);
            end.expect("clean stop");
            assert_eq!(
                lag, 0,
                "{run} run: everything is committed, yet the lag gauge reads {lag}"
            );
            metrics.consumer_lag.set(-1);
        }
    }

    /// A reader whose stream ends after `records` records (as a Fluvio stream
    /// can), until `resume` is set.
    struct EndingReader {
        inner: SqliteReader,
        records_left: usize,
        resume: Arc<AtomicBool>,
    }

    impl TopicReader for EndingReader {
        async fn next_batch(&mut self, max: usize, wait: Duration) -> Result<Vec<TopicRecord>> {
            if self.resume.load(Ordering::SeqCst) {
                return self.inner.next_batch(max, wait).await;
            }
            if self.records_left == 0 {
                tokio::time::sleep(wait).await;
                return Ok(Vec::new());
            }
            let batch = self.inner.next_batch(max.min(self.records_left), wait).await?;
            self.records_left -= batch.len();
            Ok(batch)
        }

        fn positions(&self) -> Vec<(u32, u64)> {
            self.inner.positions()
        }
    }

    /// A partition with lag that is not read is reported on `/health` as
    /// stalled (503), and recovers when reading resumes (issue 8 §3).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_stalled_partition_is_reported_on_health() {
        let rig = Rig::new(3_000, cloudtrail_emulator_config()).await;
        let server = rig.serve().await;
        let resume = Arc::new(AtomicBool::new(false));
        let reader = EndingReader {
            inner: rig.reader().await,
            records_left: 1_000,
            resume: resume.clone(),
        };
        let committer = rig.committer();
        let cancel = CancellationToken::new();
        let (chain, publisher) = (rig.chain().await, rig.publisher().await);
        let sink = rig.run(reader, &committer, chain, publisher, cancel.clone());
        let check = async {
            let (status, body) = health(&server).await;
            assert_eq!(status, 200, "{body}");
            let deadline = tokio::time::Instant::now() + Duration::from_secs(50);
            let body = loop {
                let (status, body) = health(&server).await;
                if status == 503 {
                    break body;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "/health still {status} 50 s after reading stopped with records left: {body}"
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            };
            assert_eq!(body["status"], "stalled", "{body}");
            assert_eq!(body["partitions"]["0"]["stalled"], true, "{body}");
            assert!(body["partitions"]["0"]["lag"].as_u64().expect("lag") > 0, "{body}");
            resume.store(true, Ordering::SeqCst);
            rig.h.wait_delivered(&rig.expected, WAIT).await;
            let deadline = tokio::time::Instant::now() + WAIT;
            loop {
                let (status, body) = health(&server).await;
                if status == 200 {
                    assert_eq!(body["status"], "ok", "{body}");
                    break;
                }
                assert!(tokio::time::Instant::now() < deadline, "still {status}: {body}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            cancel.cancel();
        };
        let (end, ()) = tokio::join!(sink, check);
        end.expect("clean stop");
    }
}

/// Trace-level logs of a whole `falcon-lake run`, with AWS credentials that
/// include a session token, never contain the AWS secret access key, the
/// session token, the Falcon client secret or a Falcon token.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trace_logs_of_a_whole_run_hold_no_secret() {
    const SESSION_TOKEN: &str = "FwoGZXIvYXdzEFalconLakeTestSessionToken0123456789abcdefSESSION";
    let mut f = falcon(600, 1);
    f.refresh_interval = 2;
    let h = Harness::start(f, cloudtrail_emulator_config(), "").await;
    let expected = h.expected().await;
    let log_path = h.dir.path().join("trace.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    // Everything at trace level except the wasm compiler's IR dumps (millions
    // of lines about the module's code, which sees no credential).
    let filter = "trace,cranelift_codegen=info,cranelift_frontend=info,wasmtime_cranelift=info";
    let mut child = ChildGuard(
        h.command("run")
            .env("AWS_SESSION_TOKEN", SESSION_TOKEN)
            .env("RUST_LOG", filter)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn"),
    );
    h.wait_delivered(&expected, WAIT).await;
    // A session refresh (with the bearer token), then a token re-request.
    let deadline = tokio::time::Instant::now() + WAIT;
    while !std::fs::read_to_string(&log_path)
        .expect("logs")
        .contains("session refreshed")
    {
        assert!(tokio::time::Instant::now() < deadline, "no session refresh");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    h.falcon_control.post("_emulator/tokens/expire", "").await;
    h.falcon_control.post("_emulator/events/generate?count=50", "").await;
    let expected = h.expected().await;
    h.wait_delivered(&expected, WAIT).await;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status();
    let status = child.0.wait().expect("exit");
    assert!(status.success(), "{status:?}");
    let logs = std::fs::read_to_string(&log_path).expect("logs");
    for sign in [
        "aws_sigv4",
        "aws_smithy_runtime",
        "hyper",
        "x-amz-security-token",
        "token issued",
        "session refreshed",
    ] {
        assert!(logs.contains(sign), "the trace logs show {sign}");
    }
    for (secret, what) in [
        (SECRET_ACCESS_KEY, "the AWS secret access key"),
        (SESSION_TOKEN, "the AWS session token"),
        (CLIENT_SECRET, "the Falcon client secret"),
        ("client_secret=", "a Falcon token request body"),
    ] {
        assert!(!logs.contains(secret), "{what} appears in the trace logs");
    }
    let lower = logs.to_ascii_lowercase();
    for scheme in ["bearer ", "token "] {
        let leaked = lower.match_indices(scheme).any(|(at, _)| {
            logs[at + scheme.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .count()
                >= 20
        });
        assert!(!leaked, "a Falcon token follows {scheme:?} in the trace logs");
    }
}

/// A child process killed when the test ends, passed or failed.
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A sink that stops with an error stops `falcon-lake run` with a non-zero
/// exit status and the reason, and the source with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_sink_exits_run_non_zero() {
    let h = Harness::start(falcon(300, 1), cloudtrail_emulator_config(), "").await;
    let good = std::fs::read_to_string(&h.config).expect("config");
    let unknown = "arn:aws:cloudtrail:us-east-1:111122223333:channel/ffffffff-0000-0000-0000-000000000000";
    std::fs::write(&h.config, good.replace(CHANNEL_ARN, unknown)).expect("config");
    let log_path = h.dir.path().join("run.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut child = ChildGuard(
        h.command("run")
            .stdin(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn"),
    );
    let deadline = std::time::Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still running after the sink failed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let stderr = std::fs::read_to_string(&log_path).expect("log");
    assert!(!status.success(), "exit status {status:?}");
    assert!(
        stderr.contains("the CloudTrail sink stopped") && stderr.contains("ChannelNotFound"),
        "{stderr}"
    );
}
