//! Helpers shared by the integration tests: emulators on loopback, the client
//! run in the background, and the emulators' control APIs over HTTP.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use falcon_lake::emulate::falcon::{FalconEmulator, FalconEmulatorConfig};
use falcon_lake::emulate::pipeline_config::EmulatedConfig;
use falcon_lake::falcon::{CursorStore, FalconClient, FalconConfig, FalconError, FalconMetrics, FeedItem};
use falcon_lake::secret::Secret;

/// Credentials every test emulator accepts.
pub const CLIENT_ID: &str = "0123456789abcdef0123456789abcdef";
/// The secret every test uses; tests search logs for it.
pub const CLIENT_SECRET: &str = "TopSecretClientSecretValue0123456789abcd";

/// An emulator config with the test credentials and fast keep-alives.
pub fn falcon_emulator_config() -> FalconEmulatorConfig {
    let mut config = FalconEmulatorConfig::new(CLIENT_ID, CLIENT_SECRET);
    config.keepalive = Duration::from_millis(200);
    config
}

/// A client config for `url` with short timeouts and back-offs.
pub fn client_config(url: &url::Url) -> FalconConfig {
    let mut config = FalconConfig::new(url.clone(), CLIENT_ID, Secret::new(CLIENT_SECRET));
    config.idle_timeout = Duration::from_secs(5);
    config.request_timeout = Duration::from_secs(5);
    config.reconnect_backoff_max = Duration::from_millis(500);
    config.discovery_backoff_max = Duration::from_millis(500);
    config.rate_limit_wait = Duration::from_secs(1);
    config
}

/// Cursors from a fixed map.
#[derive(Debug, Default, Clone)]
pub struct MapCursors(pub HashMap<u32, u64>);

impl CursorStore for MapCursors {
    fn last_written(&self, partition: u32) -> Pin<Box<dyn Future<Output = anyhow::Result<Option<u64>>> + Send + '_>> {
        let last = self.0.get(&partition).copied();
        Box::pin(async move { Ok(last) })
    }
}

/// A client running in the background, collecting what it delivers.
pub struct RunningClient {
    pub items: Arc<Mutex<Vec<FeedItem>>>,
    pub metrics: Arc<FalconMetrics>,
    pub cancel: CancellationToken,
    pub task: JoinHandle<Result<(), FalconError>>,
}

impl RunningClient {
    /// Starts `config` with `cursors`.
    pub fn start(config: FalconConfig, cursors: MapCursors) -> Self {
        let metrics = Arc::new(FalconMetrics::default());
        let client = FalconClient::new(config, metrics.clone()).expect("valid client config");
        let (tx, mut rx) = mpsc::channel::<Vec<FeedItem>>(64);
        let items = Arc::new(Mutex::new(Vec::new()));
        let sink = items.clone();
        tokio::spawn(async move {
            while let Some(batch) = rx.recv().await {
                sink.lock().expect("lock").extend(batch);
            }
        });
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        let task = tokio::spawn(async move { client.run(&cursors, tx, stop).await });
        Self {
            items,
            metrics,
            cancel,
            task,
        }
    }

    /// Events delivered so far as (partition, offset, raw).
    pub fn events(&self) -> Vec<(u32, u64, Vec<u8>)> {
        self.items
            .lock()
            .expect("lock")
            .iter()
            .filter_map(|i| match i {
                FeedItem::Event(e) => Some((e.partition, e.offset, e.raw.to_vec())),
                FeedItem::Rejected(_) => None,
            })
            .collect()
    }

    /// Rejected lines so far.
    pub fn rejected(&self) -> Vec<falcon_lake::falcon::RejectedLine> {
        self.items
            .lock()
            .expect("lock")
            .iter()
            .filter_map(|i| match i {
                FeedItem::Rejected(r) => Some(r.clone()),
                FeedItem::Event(_) => None,
            })
            .collect()
    }

    /// A counter of the client.
    pub fn counter(&self, name: &str) -> u64 {
        self.metrics
            .snapshot()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
            .unwrap_or(0)
    }

    /// Stops the client and returns how `run` ended.
    pub async fn stop(self) -> Result<(), FalconError> {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("client stops within 10 s")
            .expect("client task")
    }
}

/// Waits until `condition` holds, polling; panics with `what` after `timeout`.
pub async fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The emulators' control APIs over HTTP.
pub struct Control {
    http: reqwest::Client,
    base: url::Url,
}

impl Control {
    /// Control API of the emulator at `base`.
    pub fn new(base: &url::Url) -> Self {
        Self {
            http: reqwest::Client::builder().no_proxy().build().expect("client"),
            base: base.clone(),
        }
    }

    fn url(&self, path: &str) -> url::Url {
        self.base.join(path).expect("url")
    }

    /// The CloudTrail emulator's stored ids and how often each was stored.
    pub async fn stored_ids(&self) -> BTreeMap<String, u64> {
        let ids = self.get("_emulator/ids").await;
        ids["ids"]
            .as_object()
            .expect("ids")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().expect("count")))
            .collect()
    }

    /// POSTs `body` to a control path, asserting success.
    pub async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> Value {
        let response = self
            .http
            .post(self.url(path))
            .body(body)
            .send()
            .await
            .expect("control request");
        let status = response.status();
        let text = response.text().await.expect("control body");
        assert!(status.is_success(), "{path}: HTTP {status}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// GETs a control path as JSON.
    pub async fn get(&self, path: &str) -> Value {
        let response = self.http.get(self.url(path)).send().await.expect("control request");
        assert!(response.status().is_success(), "{path}: HTTP {}", response.status());
        response.json().await.expect("json")
    }

    /// Queues a Falcon emulator fault.
    pub async fn fault(&self, fault: Value) {
        self.post("_emulator/faults", fault.to_string()).await;
    }

    /// A counter from `/_emulator/stats`.
    pub async fn stat(&self, name: &str) -> u64 {
        self.get("_emulator/stats").await[name].as_u64().unwrap_or(0)
    }

    /// Every event of a Falcon emulator partition as (offset, line).
    pub async fn falcon_events(&self, partition: u32) -> Vec<(u64, String)> {
        let listed = self
            .get(&format!("_emulator/events?partition={partition}&limit=10000000"))
            .await;
        listed["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| {
                (
                    e["offset"].as_u64().expect("offset"),
                    e["line"].as_str().expect("line").to_string(),
                )
            })
            .collect()
    }
}

/// Logs to the test output, filtered by `RUST_LOG` (nothing when unset).
pub fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "off".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// Starts a Falcon emulator.
pub async fn start_falcon(config: FalconEmulatorConfig) -> (FalconEmulator, Control) {
    init_logs();
    let emulator = FalconEmulator::start(config).await.expect("emulator starts");
    let control = Control::new(emulator.url());
    (emulator, control)
}

/// The channel of the CloudTrail test emulators.
pub const CHANNEL_ARN: &str = "arn:aws:cloudtrail:us-east-1:111122223333:channel/0f4a2b3c-1d2e-4f50-8a6b-7c8d9e0f1a2b";
/// The channel owner.
pub const OWNER: &str = "111122223333";
/// Access key the CloudTrail test emulators accept.
pub const ACCESS_KEY_ID: &str = "AKIAFALCONLAKETEST01";
/// Its secret; tests search logs for it.
pub const SECRET_ACCESS_KEY: &str = "FalconLakeTestSecretAccessKey0123456789x";

/// The CloudTrail emulator config of the tests.
pub fn cloudtrail_emulator_config() -> falcon_lake::emulate::cloudtrail::CloudTrailEmulatorConfig {
    falcon_lake::emulate::cloudtrail::CloudTrailEmulatorConfig::new(CHANNEL_ARN, ACCESS_KEY_ID, SECRET_ACCESS_KEY)
}

/// Starts a CloudTrail emulator.
pub async fn start_cloudtrail(
    config: falcon_lake::emulate::cloudtrail::CloudTrailEmulatorConfig,
) -> (falcon_lake::emulate::cloudtrail::CloudTrailEmulator, Control) {
    init_logs();
    let emulator = falcon_lake::emulate::cloudtrail::CloudTrailEmulator::start(config)
        .await
        .expect("emulator starts");
    let control = Control::new(emulator.url());
    (emulator, control)
}

/// A publisher config for the emulator at `url`, with short back-offs.
pub fn publisher_config(url: &url::Url) -> falcon_lake::cloudtrail::CloudTrailConfig {
    let mut config = falcon_lake::cloudtrail::CloudTrailConfig::new(CHANNEL_ARN);
    config.aws.endpoint_url = Some(url.clone());
    config.publish.retry_initial_backoff = Duration::from_millis(20);
    config.publish.retry_max_backoff = Duration::from_millis(300);
    config.publish.linger = Duration::from_millis(20);
    config.publish.request_timeout = Duration::from_secs(5);
    config
}

/// The test credentials.
pub fn test_credentials() -> aws_sdk_cloudtraildata::config::Credentials {
    aws_sdk_cloudtraildata::config::Credentials::new(ACCESS_KEY_ID, SECRET_ACCESS_KEY, None, None, "falcon-lake-tests")
}

/// A valid `eventData` (without `recipientAccountId`, as the SmartModule emits it).
pub fn event_data(i: u64, padding: usize) -> String {
    serde_json::json!({
        "version": "1.0",
        "userIdentity": {"type": "User", "principalId": format!("user{i}@example.com")},
        "eventSource": "crowdstrike",
        "eventName": "userAuthenticate",
        "eventTime": "2026-01-01T00:00:00Z",
        "UID": format!("cid_0_{i}"),
        "requestParameters": {"padding": "p".repeat(padding)},
    })
    .to_string()
}

/// `count` valid items with ids `cid_0_<i>` and tokens `i`.
pub fn items(count: u64, padding: usize) -> Vec<falcon_lake::publish::PublishItem<u64>> {
    (0..count)
        .map(|i| falcon_lake::publish::PublishItem {
            id: format!("cid_0_{i}"),
            event_data: event_data(i, padding),
            record_time_ms: None,
            token: i,
        })
        .collect()
}

/// What one publisher run produced.
pub struct Published {
    pub result: Result<(), falcon_lake::publish::FatalError>,
    pub settlements: Vec<falcon_lake::publish::Settlement<u64>>,
    pub metrics: Arc<falcon_lake::publish::PublishMetrics>,
}

impl Published {
    /// Tokens of delivered events.
    pub fn delivered(&self) -> Vec<u64> {
        let mut tokens: Vec<u64> = self
            .settlements
            .iter()
            .filter(|s| matches!(s.outcome, falcon_lake::publish::Outcome::Delivered { .. }))
            .map(|s| s.token)
            .collect();
        tokens.sort_unstable();
        tokens
    }

    /// (token, code, message) of dead-lettered events.
    pub fn dead(&self) -> Vec<(u64, String, String)> {
        self.settlements
            .iter()
            .filter_map(|s| match &s.outcome {
                falcon_lake::publish::Outcome::DeadLettered { code, message } => {
                    Some((s.token, code.clone(), message.clone()))
                }
                falcon_lake::publish::Outcome::Delivered { .. } => None,
            })
            .collect()
    }
}

/// Publishes `items` with `config` (any destination) and the test
/// credentials; returns when the publisher ends (all settled, or a fatal error).
pub async fn publish(
    config: impl falcon_lake::publish::ConnectDestination,
    items: Vec<falcon_lake::publish::PublishItem<u64>>,
) -> Published {
    let metrics = Arc::new(falcon_lake::publish::PublishMetrics::default());
    let publisher = falcon_lake::publish::Publisher::new(&config, Some(test_credentials()), metrics.clone())
        .await
        .expect("publisher");
    run_publisher(publisher, metrics, items).await
}

/// Runs a built publisher over `items`; returns when it ends.
pub async fn run_publisher(
    publisher: falcon_lake::publish::Publisher,
    metrics: Arc<falcon_lake::publish::PublishMetrics>,
    items: Vec<falcon_lake::publish::PublishItem<u64>>,
) -> Published {
    let (in_tx, in_rx) = mpsc::channel(1024);
    let (out_tx, mut out_rx) = mpsc::channel(1024);
    let run = tokio::spawn(publisher.run(in_rx, out_tx));
    let feeder = tokio::spawn(async move {
        for item in items {
            if in_tx.send(item).await.is_err() {
                break;
            }
        }
    });
    let mut settlements = Vec::new();
    while let Some(s) = out_rx.recv().await {
        settlements.push(s);
    }
    let result = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("publisher ends")
        .expect("task");
    feeder.abort();
    Published {
        result,
        settlements,
        metrics,
    }
}

/// The built SmartModule (the test command builds it first).
pub fn module_wasm() -> std::path::PathBuf {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("smartmodules/falcon-audit-to-cloudtrail/target/wasm32-wasip1/release/falcon_audit_to_cloudtrail.wasm");
    assert!(
        path.exists(),
        "{} is missing: run `make wasm` (the test command does)",
        path.display()
    );
    path
}

/// Both emulators and a config directory for one pipeline.
pub struct Harness {
    pub falcon: FalconEmulator,
    pub falcon_control: Control,
    pub cloudtrail: falcon_lake::emulate::cloudtrail::CloudTrailEmulator,
    pub cloudtrail_control: Control,
    pub dir: tempfile::TempDir,
    pub config: std::path::PathBuf,
    pub secrets: std::path::PathBuf,
}

impl Harness {
    /// Starts the emulators and writes `config.yaml` (with `extra` appended) and `secrets.txt`.
    pub async fn start(
        falcon: FalconEmulatorConfig,
        cloudtrail: falcon_lake::emulate::cloudtrail::CloudTrailEmulatorConfig,
        extra: &str,
    ) -> Self {
        Self::start_with(falcon, cloudtrail, "", extra).await
    }

    /// Like [`Harness::start`], with `cloudtrail_extra` lines added to the `cloudtrail` section.
    pub async fn start_with(
        falcon: FalconEmulatorConfig,
        cloudtrail: falcon_lake::emulate::cloudtrail::CloudTrailEmulatorConfig,
        cloudtrail_extra: &str,
        extra: &str,
    ) -> Self {
        let extra_cloudtrail = format!(
            "  linger: 20ms\n  retry_initial_backoff: 20ms\n  retry_max_backoff: 300ms\n  request_timeout: 5s\n{cloudtrail_extra}"
        );
        Self::build(falcon, cloudtrail, "normal", &extra_cloudtrail, extra).await
    }

    /// The sink and the log at their defaults (`sync: full`, the default window
    /// and publisher settings); only the Falcon client's back-offs are shortened.
    pub async fn start_at_defaults(
        falcon: FalconEmulatorConfig,
        cloudtrail: falcon_lake::emulate::cloudtrail::CloudTrailEmulatorConfig,
        extra: &str,
    ) -> Self {
        Self::build(falcon, cloudtrail, "full", "", extra).await
    }

    async fn build(
        falcon: FalconEmulatorConfig,
        cloudtrail: falcon_lake::emulate::cloudtrail::CloudTrailEmulatorConfig,
        sync: &str,
        extra_cloudtrail: &str,
        extra: &str,
    ) -> Self {
        let (falcon, falcon_control) = start_falcon(falcon).await;
        let (cloudtrail, cloudtrail_control) = start_cloudtrail(cloudtrail).await;
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("config.yaml");
        let secrets = dir.path().join("secrets.txt");
        std::fs::write(&secrets, format!("FALCON_CLIENT_SECRET={CLIENT_SECRET}\n")).expect("secrets");
        let wasm = module_wasm();
        let text = EmulatedConfig {
            name: "e2e",
            falcon_url: falcon.url(),
            client_id: CLIENT_ID,
            cloudtrail_url: cloudtrail.url(),
            channel_arn: CHANNEL_ARN,
            wasm: &wasm,
            db: std::path::Path::new("log.db"),
            sync,
            extra_falcon: "  idle_timeout: 5s\n  reconnect_backoff_max: 500ms\n  discovery_backoff_max: 500ms\n",
            extra_cloudtrail,
            extra,
        }
        .yaml();
        std::fs::write(&config, text).expect("config");
        Self {
            falcon,
            falcon_control,
            cloudtrail,
            cloudtrail_control,
            dir,
            config,
            secrets,
        }
    }

    /// `falcon-lake <subcommand>` on this config as a child process, with the
    /// test AWS credentials and no instance-metadata lookups.
    pub fn command(&self, subcommand: &str) -> std::process::Command {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_falcon-lake"));
        command
            .args([subcommand, "--config"])
            .arg(&self.config)
            .arg("--secrets")
            .arg(&self.secrets)
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("RUST_LOG", "warn");
        command
    }

    /// The config as the pipeline loads it.
    pub fn load(&self) -> falcon_lake::config::embedded::EmbeddedConfig {
        let store = falcon_lake::config::secrets::SecretStore::File(self.secrets.clone());
        falcon_lake::config::embedded::EmbeddedConfig::load(&self.config, &store).expect("valid config")
    }

    /// Builds the pipeline in-process with the test AWS credentials.
    pub async fn pipeline(&self) -> falcon_lake::pipeline::embedded::EmbeddedPipeline {
        falcon_lake::pipeline::embedded::EmbeddedPipeline::build(self.load(), Some(test_credentials()))
            .await
            .expect("pipeline builds")
    }

    /// Every (id, eventData) the Falcon emulator's events map to, with default parameters.
    pub async fn expected(&self) -> BTreeMap<String, String> {
        let mut events = Vec::new();
        let partitions = self.falcon.state.partitions.len() as u32;
        for partition in 0..partitions {
            for (offset, line) in self.falcon_control.falcon_events(partition).await {
                events.push((partition, offset, line));
            }
        }
        expected_audit_events(events)
    }

    /// Ids the CloudTrail emulator stored and how often.
    pub async fn stored(&self) -> BTreeMap<String, u64> {
        self.cloudtrail_control.stored_ids().await
    }

    /// Waits until every id in `expected` is stored.
    pub async fn wait_delivered(&self, expected: &BTreeMap<String, String>, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let stored = self.stored().await;
            let missing = expected.keys().filter(|id| !stored.contains_key(*id)).count();
            if missing == 0 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{missing} of {} events still missing",
                expected.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The sink's committed offset in the embedded log.
    pub async fn committed(&self) -> Option<u64> {
        let config = self.load();
        let log =
            falcon_lake::topic::sqlite::SqliteLog::open(&config.storage_path(), config.storage.sync).expect("log");
        log.topic(config.topic())
            .expect("topic")
            .committed(&config.meta.consumer_id())
            .await
            .expect("committed")
    }

    /// Records of a topic of the embedded log.
    pub async fn topic_records(&self, topic: &str) -> Vec<falcon_lake::topic::TopicRecord> {
        use falcon_lake::topic::TopicInspect;
        let config = self.load();
        let log =
            falcon_lake::topic::sqlite::SqliteLog::open(&config.storage_path(), config.storage.sync).expect("log");
        log.topic(topic)
            .expect("topic")
            .read_range(0, 0, u64::MAX)
            .await
            .expect("records")
    }
}

/// The (id, eventData) of the audit events that Falcon events (partition,
/// offset, line) map to with the module's default parameters.
pub fn expected_audit_events(events: impl IntoIterator<Item = (u32, u64, String)>) -> BTreeMap<String, String> {
    let mapper = falcon_lake::audit::Mapper::new(falcon_lake::audit::MappingParams::default());
    let mut expected = BTreeMap::new();
    for (partition, offset, line) in events {
        let key = falcon_lake::audit::SourceKey::new(partition, offset).encode();
        let ctx = falcon_lake::audit::RecordContext {
            key: Some(&key),
            timestamp_ms: 0,
        };
        if let falcon_lake::audit::Outcome::Emit(audit) = mapper.map(&ctx, line.as_bytes()) {
            expected.insert(audit.id, audit.event_data);
        }
    }
    expected
}
