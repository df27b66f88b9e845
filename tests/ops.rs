//! Operating the embedded pipeline: `status` (running, stopped, failing),
//! `dlq list|show|redrive` (redriven once, marked), logs without colours in a
//! file, and the Grafana dashboard's metrics against `/metrics`.

mod common;

use std::collections::BTreeSet;
use std::process::Output;
use std::time::Duration;

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use common::*;
use falcon_lake::emulate::falcon::FalconEmulatorConfig;

const WAIT: Duration = Duration::from_secs(90);

fn falcon(events: u64) -> FalconEmulatorConfig {
    let mut config = falcon_emulator_config();
    config.events = events;
    config
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port()
}

/// Runs `falcon-lake <args…>` on the harness's config; returns its output.
fn cli(h: &Harness, subcommand: &[&str], args: &[&str]) -> Output {
    let mut command = h.command(subcommand[0]);
    // `command` puts `--config` right after the first word; subcommands of `dlq` go before it.
    if subcommand.len() > 1 {
        command = std::process::Command::new(env!("CARGO_BIN_EXE_falcon-lake"));
        command
            .args(subcommand)
            .arg("--config")
            .arg(&h.config)
            .arg("--secrets")
            .arg(&h.secrets)
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("RUST_LOG", "warn");
    }
    command
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("falcon-lake runs")
}

fn json_of(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// Runs the pipeline until `done` holds, then stops it cleanly.
async fn run_until(h: &Harness, done: impl AsyncFn(&Harness) -> bool) {
    let pipeline = h.pipeline().await;
    let cancel = CancellationToken::new();
    let run = tokio::spawn(pipeline.run(cancel.clone()));
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done(h).await {
        assert!(tokio::time::Instant::now() < deadline, "timed out");
        assert!(!run.is_finished(), "the pipeline stopped early");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cancel.cancel();
    run.await.expect("task").expect("clean stop");
}

/// A pipeline whose emulators refuse five events and send one broken line.
async fn with_dead_letters() -> (Harness, std::collections::BTreeMap<String, String>) {
    let port = free_port();
    let h = Harness::start(
        falcon(800),
        cloudtrail_emulator_config(),
        &format!("metrics:\n  address: 127.0.0.1:{port}\n"),
    )
    .await;
    h.cloudtrail_control
        .post(
            "_emulator/faults?count=5",
            json!({"fault": "event_code", "code": "InvalidData"}).to_string(),
        )
        .await;
    h.falcon_control.fault(json!({"fault": "feed_malformed"})).await;
    let expected = h.expected().await;
    (h, expected)
}

async fn settled(h: &Harness, expected: usize) -> bool {
    let raw = h.topic_records("falcon-events").await.len() as u64;
    h.stored().await.len() + 5 >= expected && raw > 0 && h.committed().await == Some(raw - 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_tells_running_from_stopped_and_counts_dead_letters() {
    let (h, expected) = with_dead_letters().await;
    let pipeline = h.pipeline().await;
    let cancel = CancellationToken::new();
    let run = tokio::spawn(pipeline.run(cancel.clone()));
    let deadline = tokio::time::Instant::now() + WAIT;
    while !settled(&h, expected.len()).await {
        assert!(tokio::time::Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let running = cli(&h, &["status"], &["--json"]);
    assert_eq!(
        running.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&running.stdout)
    );
    let report = json_of(&running);
    assert_eq!(report["verdict"]["state"], "running");
    assert_eq!(report["backend"], "embedded");
    assert_eq!(report["sink"]["health"]["status"], 200);
    let last_falcon = h.falcon_control.falcon_events(0).await.last().expect("events").0;
    assert_eq!(report["falcon_partitions"][0]["partition"], 0);
    assert_eq!(report["falcon_partitions"][0]["last_offset"], last_falcon);
    assert_eq!(report["falcon_scan"]["complete"], true);
    let consumer = &report["consumers"][0];
    assert_eq!(consumer["consumer"], "e2e", "the consumer id defaults to meta.name");
    assert_eq!(consumer["lag"], 0);
    assert_eq!(consumer["configured"], true);
    let records = report["topic"]["partitions"][0]["records"].as_u64().expect("records");
    assert_eq!(consumer["committed"].as_u64(), Some(records - 1));
    let letters = &report["dead_letters"];
    assert_eq!(letters["total"], 6);
    let groups = letters["groups"].as_array().expect("groups");
    let publish = groups.iter().find(|g| g["stage"] == "publish").expect("publish group");
    assert_eq!(
        (publish["code"].as_str(), publish["count"].as_u64()),
        (Some("InvalidData"), Some(5))
    );
    assert!(publish["oldest"].as_str().is_some() && publish["newest"].as_str().is_some());
    assert!(groups.iter().any(|g| g["stage"] == "source" && g["count"] == 1));

    cancel.cancel();
    run.await.expect("task").expect("clean stop");
    let stopped = cli(&h, &["status"], &[]);
    assert_eq!(stopped.status.code(), Some(2), "stopped is not healthy");
    let table = String::from_utf8_lossy(&stopped.stdout);
    assert!(table.starts_with("sink: stopped"), "{table}");
    for needle in [
        "last delivery: 20",
        "e2e (this config)",
        "InvalidData",
        "dead letters in falcon-events-dlq: 6",
    ] {
        assert!(table.contains(needle), "{needle:?} missing from\n{table}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_says_failing_after_a_fatal_error() {
    let h = Harness::start(falcon(300), cloudtrail_emulator_config(), "").await;
    let good = std::fs::read_to_string(&h.config).expect("config");
    let unknown = "arn:aws:cloudtrail:us-east-1:111122223333:channel/ffffffff-0000-0000-0000-000000000000";
    std::fs::write(&h.config, good.replace(CHANNEL_ARN, unknown)).expect("config");
    let pipeline = h.pipeline().await;
    let result = tokio::time::timeout(WAIT, pipeline.run(CancellationToken::new()))
        .await
        .expect("stops");
    assert!(result.is_err(), "a missing channel is fatal");
    let failing = cli(&h, &["status"], &["--json"]);
    assert_eq!(failing.status.code(), Some(1));
    let report = json_of(&failing);
    assert_eq!(report["verdict"]["state"], "failing");
    let reason = report["verdict"]["reasons"][0].as_str().expect("reason");
    assert!(reason.contains("ChannelNotFound"), "{reason}");
    assert_eq!(report["sink"]["last_record"]["state"], "failed");
    assert!(report["consumers"][0]["lag"].as_u64().expect("lag") > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dlq_lists_shows_and_redrives_each_letter_once() {
    let (h, expected) = with_dead_letters().await;
    run_until(&h, async |h: &Harness| settled(h, expected.len()).await).await;
    let before = h.stored().await;
    let refused: BTreeSet<String> = expected
        .keys()
        .filter(|id| !before.contains_key(*id))
        .cloned()
        .collect();
    assert_eq!(refused.len(), 5);

    let listed = cli(&h, &["dlq", "list"], &[]);
    assert!(listed.status.success());
    let text = String::from_utf8_lossy(&listed.stdout);
    assert_eq!(text.lines().count(), 7, "a header and six letters:\n{text}");
    assert!(text.contains("InvalidData") && text.contains("RejectedLine"), "{text}");
    let publish = json_of(&cli(&h, &["dlq", "list"], &["--stage", "publish", "--json"]));
    let publish = publish.as_array().expect("array");
    assert_eq!(publish.len(), 5);
    let first = publish[0]["offset"].as_u64().expect("offset").to_string();
    let shown = cli(&h, &["dlq", "show"], &["--offset", &first]);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains("eventData:") && shown.contains("\"eventName\""),
        "{shown}"
    );
    assert!(shown.contains("injected"), "the reason is shown:\n{shown}");
    assert!(cli(&h, &["dlq", "list"], &["--stage", "nonsense"]).status.code() != Some(0));

    let redriven = cli(&h, &["dlq", "redrive"], &[]);
    let summary = String::from_utf8_lossy(&redriven.stderr);
    let report = String::from_utf8_lossy(&redriven.stdout);
    assert_eq!(redriven.status.code(), Some(0), "{summary}\n{report}");
    assert!(summary.contains("6 selected; 5 delivered (5 events)"), "{summary}");
    assert!(
        report.contains("no raw event to redrive"),
        "the source letter says why:\n{report}"
    );
    let after = h.stored().await;
    for id in &refused {
        assert_eq!(after.get(id), Some(&1), "{id} delivered once");
    }
    assert!(
        before.iter().all(|(id, n)| after.get(id) == Some(n)),
        "nothing else resent"
    );

    let again = cli(&h, &["dlq", "redrive"], &[]);
    let summary = String::from_utf8_lossy(&again.stderr);
    assert!(
        summary.contains("1 selected; 0 delivered") && summary.contains("5 already redriven"),
        "{summary}"
    );
    assert_eq!(h.stored().await, after, "a second redrive resends nothing");
    assert_eq!(h.topic_records("falcon-events-dlq").await.len(), 6, "no letter deleted");
    let marked = json_of(&cli(&h, &["dlq", "list"], &["--stage", "publish", "--json"]));
    assert!(marked
        .as_array()
        .expect("array")
        .iter()
        .all(|l| l["redriven"]["outcome"] == "delivered"));
    let status = json_of(&cli(&h, &["status"], &["--json"]));
    assert_eq!(status["dead_letters"]["redriven"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logs_written_to_a_file_carry_no_colours() {
    let h = Harness::start(falcon(300), cloudtrail_emulator_config(), "").await;
    let log_path = h.dir.path().join("falcon-lake.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut child = h
        .command("run")
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stderr(log)
        .spawn()
        .expect("spawn");
    let deadline = tokio::time::Instant::now() + WAIT;
    while h.stored().await.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "nothing delivered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(child.wait().expect("wait").success());
    let text = std::fs::read_to_string(&log_path).expect("log");
    assert!(text.contains(" INFO "), "info lines were logged:\n{text}");
    assert!(!text.contains('\u{1b}'), "no ANSI escape in a file:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_queries_is_served() {
    use falcon_lake::pipeline::metrics::{serve, MetricsSources, PipelineMetrics};
    let publisher = std::sync::Arc::new(falcon_lake::publish::PublishMetrics::default());
    publisher.set_operation("put_audit_events");
    let sources = MetricsSources {
        pipeline: std::sync::Arc::new(PipelineMetrics::default()),
        falcon: Some(Default::default()),
        publisher: Some(publisher),
    };
    let server = serve("127.0.0.1:0".parse().expect("addr"), sources)
        .await
        .expect("serve");
    let text = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
        .get(format!("http://{}/metrics", server.addr))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let served: BTreeSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split([' ', '{']).next())
        .collect();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/falcon-lake.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("dashboard")).expect("json");
    let mut queried = BTreeSet::new();
    collect_exprs(&dashboard, &mut queried);
    assert!(queried.len() >= 10, "the dashboard queries {queried:?}");
    let missing: Vec<&String> = queried.iter().filter(|m| !served.contains(m.as_str())).collect();
    assert!(missing.is_empty(), "queried but not served: {missing:?}");
}

/// Every `falcon_lake_*` metric name in the dashboard's `expr` fields.
fn collect_exprs(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                if key == "expr" {
                    if let Some(expr) = v.as_str() {
                        out.extend(metric_names(expr));
                    }
                }
                collect_exprs(v, out);
            }
        }
        Value::Array(list) => list.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("falcon_lake_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

#[test]
fn the_container_config_loads_from_the_environment() {
    use falcon_lake::config::secrets::SecretStore;
    use falcon_lake::secret::Secret;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/docker/pipeline.yaml");
    let values = [
        ("FALCON_CLIENT_ID", "0123456789abcdef0123456789abcdef"),
        ("FALCON_CLIENT_SECRET", "s"),
        ("FALCON_CLOUD", "eu-1"),
        ("CLOUDTRAIL_CHANNEL_ARN", CHANNEL_ARN),
    ];
    let store = SecretStore::Map(values.iter().map(|(k, v)| (k.to_string(), Secret::new(*v))).collect());
    let config = falcon_lake::config::embedded::EmbeddedConfig::load(&path, &store).expect("valid");
    assert_eq!(config.falcon.api_base().as_str(), "https://api.eu-1.crowdstrike.com/");
    let cloudtrail = config.destination.cloudtrail().expect("a cloudtrail destination");
    assert_eq!(cloudtrail.channel_arn, CHANNEL_ARN);
    assert_eq!(
        config.storage_path(),
        std::path::Path::new("/var/lib/falcon-lake/falcon-lake.db")
    );
    assert_eq!(
        config.transforms[0].uses,
        "/usr/local/share/falcon-lake/falcon_audit_to_cloudtrail.wasm"
    );
    assert!(config.metrics.address.is_some(), "/health for the HEALTHCHECK");
}
