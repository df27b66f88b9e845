//! A Fluvio deployment for the tests: the test cluster (`fluvio-testbed`), both
//! emulators, and the two connector binaries started as child processes exactly
//! as `cdk deploy` starts them (`--config`, `--secrets`, `FLV_PROFILE_PATH`).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use falcon_lake::emulate::cloudtrail::{CloudTrailEmulator, CloudTrailEmulatorConfig};
use falcon_lake::emulate::falcon::{FalconEmulator, FalconEmulatorConfig};
use fluvio_testbed::TestCluster;

use crate::common::{self, Control, ACCESS_KEY_ID, CHANNEL_ARN, CLIENT_ID, CLIENT_SECRET, SECRET_ACCESS_KEY};

/// The raw topic of every deployment.
pub const TOPIC: &str = "falcon-events";
/// Its dead-letter topic.
pub const DLQ: &str = "falcon-events-dlq";
/// The sink's consumer id.
pub const CONSUMER: &str = "cloudtrail-sink";

/// A connector binary of the workspace, built next to this test.
pub fn connector_binary(name: &str) -> PathBuf {
    // Integration tests live in target/<profile>/deps; binaries one level up.
    let exe = std::env::current_exe().expect("test executable");
    let dir = exe.parent().and_then(Path::parent).expect("target directory");
    let path = dir.join(name);
    // Built with the workspace's test features, as `cargo test --workspace`
    // does (a plain `cargo build -p` resolves other features and rebuilds).
    let how = "build it with `cargo test --workspace` (what `make test` runs), or for this file alone \
               `cargo test --workspace --test fluvio --test contract`";
    let built = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| panic!("{} is missing: {how}", path.display()));
    // The falcon-lake binary is rebuilt with this test whenever the library
    // changes; a connector binary older than it runs stale code.
    let library = std::fs::metadata(env!("CARGO_BIN_EXE_falcon-lake"))
        .and_then(|m| m.modified())
        .expect("falcon-lake binary");
    assert!(
        built + Duration::from_secs(120) >= library,
        "{} is older than the library it is built from: {how}",
        path.display()
    );
    path
}

/// Which connector a child process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Source,
    Sink,
}

impl Role {
    fn binary(self) -> &'static str {
        match self {
            Role::Source => "falcon-event-stream-source",
            Role::Sink => "cloudtrail-lake-sink",
        }
    }
}

/// A running connector process.
pub struct Connector {
    pub role: Role,
    pub child: Child,
    pub started: Instant,
}

impl Connector {
    /// `kill -9`.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the exit (at most `within`); returns the exit code.
    pub fn terminate(mut self, within: Duration) -> Option<i32> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("{} did not exit within {within:?} of SIGTERM", self.role.binary());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The exit code if the process has ended.
    pub fn exited(&mut self) -> Option<Option<i32>> {
        self.child.try_wait().expect("wait").map(|s| s.code())
    }
}

impl Drop for Connector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The topic a deployment's source creates.
#[derive(Debug, Clone)]
pub struct TopicSpec {
    pub partitions: u32,
    /// `retention.time`, e.g. `7d`.
    pub retention: &'static str,
    /// `retention.segment-size`, if set.
    pub segment_size: Option<&'static str>,
}

impl TopicSpec {
    pub fn partitions(partitions: u32) -> Self {
        Self {
            partitions,
            retention: "7d",
            segment_size: None,
        }
    }
}

/// What differs between deployments.
pub struct Setup {
    pub falcon: FalconEmulatorConfig,
    pub cloudtrail: CloudTrailEmulatorConfig,
    pub topic: TopicSpec,
    /// `uses:` lines of the sink's transforms (`None`: the built wasm file).
    pub transforms: Option<String>,
    /// More lines of the source config's `falcon:` section (indented).
    pub source_falcon_extra: String,
    /// More top-level sections of the sink config.
    pub sink_extra: String,
}

impl Setup {
    pub fn new(events: u64, falcon_partitions: u32, topic: TopicSpec) -> Self {
        let mut falcon = common::falcon_emulator_config();
        falcon.events = events;
        falcon.partitions = falcon_partitions;
        Self {
            falcon,
            cloudtrail: common::cloudtrail_emulator_config(),
            topic,
            transforms: None,
            source_falcon_extra: String::new(),
            sink_extra: String::new(),
        }
    }
}

/// The test cluster, both emulators and the connectors' configs.
pub struct Deployment {
    pub cluster: TestCluster,
    pub falcon: FalconEmulator,
    pub falcon_control: Control,
    pub cloudtrail: CloudTrailEmulator,
    pub cloudtrail_control: Control,
    pub dir: tempfile::TempDir,
    pub source_config: PathBuf,
    pub sink_config: PathBuf,
    pub secrets: PathBuf,
    source_metrics: u16,
    sink_metrics: u16,
}

/// A free loopback port (bound, then released for the child to bind).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

impl Deployment {
    /// Starts the cluster and the emulators and writes the configs.
    pub async fn start(setup: Setup) -> Self {
        let cluster = TestCluster::builder()
            .retention_interval(Duration::ZERO)
            .start()
            .await
            .expect("test cluster starts");
        let (falcon, falcon_control) = common::start_falcon(setup.falcon.clone()).await;
        let (cloudtrail, cloudtrail_control) = common::start_cloudtrail(setup.cloudtrail.clone()).await;
        let dir = tempfile::tempdir().expect("temp dir");
        let secrets = dir.path().join("secrets.txt");
        std::fs::write(&secrets, format!("FALCON_CLIENT_SECRET={CLIENT_SECRET}\n")).expect("secrets");
        let mut deployment = Self {
            cluster,
            falcon,
            falcon_control,
            cloudtrail,
            cloudtrail_control,
            source_config: dir.path().join("source.yaml"),
            sink_config: dir.path().join("sink.yaml"),
            secrets,
            dir,
            source_metrics: free_port(),
            sink_metrics: free_port(),
        };
        deployment.write_source_config(&setup.topic, &setup.source_falcon_extra);
        deployment.write_sink_config(setup.transforms.as_deref(), &setup.sink_extra);
        deployment
    }

    /// Writes the source connector's config.
    pub fn write_source_config(&mut self, topic: &TopicSpec, falcon_extra: &str) {
        let segment = topic
            .segment_size
            .map(|s| format!("      segment-size: {s}\n"))
            .unwrap_or_default();
        let text = format!(
            r#"apiVersion: 0.2.0
meta:
  name: falcon-source
  type: falcon-event-stream-source
  version: 0.1.0
  topic:
    meta:
      name: {TOPIC}
    partition:
      count: {partitions}
    retention:
      time: {retention}
{segment}  secrets:
    - name: FALCON_CLIENT_SECRET
falcon:
  base_url: {url}
  client_id: {CLIENT_ID}
  client_secret: "${{{{ secrets.FALCON_CLIENT_SECRET }}}}"
  app_id: falcon-lake-source
  idle_timeout: 5s
  reconnect_backoff_max: 500ms
  discovery_backoff_max: 500ms
{falcon_extra}metrics:
  address: 127.0.0.1:{port}
"#,
            partitions = topic.partitions,
            retention = topic.retention,
            url = self.falcon.url(),
            port = self.source_metrics,
        );
        std::fs::write(&self.source_config, text).expect("source config");
    }

    /// Writes the sink connector's config; `transforms` replaces the default
    /// transform list (the built wasm file).
    pub fn write_sink_config(&mut self, transforms: Option<&str>, extra: &str) {
        let transforms = match transforms {
            Some(t) => t.to_string(),
            None => format!("  - uses: {}\n", common::module_wasm().display()),
        };
        let text = format!(
            r#"apiVersion: 0.2.0
meta:
  name: {CONSUMER}
  type: cloudtrail-lake-sink
  version: 0.1.0
  topic: {TOPIC}
  consumer:
    id: {CONSUMER}
    offset:
      start: beginning
      strategy: manual
cloudtrail:
  channel_arn: {CHANNEL_ARN}
  endpoint_url: {url}
  retry_initial_backoff: 20ms
  retry_max_backoff: 300ms
transforms:
{transforms}metrics:
  address: 127.0.0.1:{port}
{extra}"#,
            url = self.cloudtrail.url(),
            port = self.sink_metrics,
        );
        std::fs::write(&self.sink_config, text).expect("sink config");
    }

    /// The log file of a role (appended across restarts).
    pub fn log_path(&self, role: Role) -> PathBuf {
        self.dir.path().join(format!("{}.log", role.binary()))
    }

    /// A connector's log so far.
    pub fn log(&self, role: Role) -> String {
        std::fs::read_to_string(self.log_path(role)).unwrap_or_default()
    }

    fn environment(&self, command: &mut Command) {
        command
            .env("FLV_PROFILE_PATH", self.cluster.profile_path())
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("AWS_ENDPOINT_URL_CLOUDTRAIL_DATA")
            .env(
                "RUST_LOG",
                std::env::var("CONNECTOR_LOG").unwrap_or_else(|_| "info".to_string()),
            );
    }

    /// Starts a connector as `cdk deploy` would, its output appended to its log.
    pub fn spawn(&self, role: Role) -> Connector {
        let config = match role {
            Role::Source => &self.source_config,
            Role::Sink => &self.sink_config,
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(role))
            .expect("log file");
        let mut command = Command::new(connector_binary(role.binary()));
        command
            .arg("--config")
            .arg(config)
            .arg("--secrets")
            .arg(&self.secrets)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        self.environment(&mut command);
        Connector {
            role,
            child: command.spawn().expect("spawn connector"),
            started: Instant::now(),
        }
    }

    /// `falcon-lake <args>` against the cluster, with the test credentials.
    pub fn falcon_lake(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_falcon-lake"));
        command.args(args).stdin(Stdio::null());
        self.environment(&mut command);
        command.env(
            "RUST_LOG",
            std::env::var("CLI_LOG").unwrap_or_else(|_| "warn".to_string()),
        );
        command
    }

    /// GETs a connector's `/health`: (status, body).
    pub async fn health(&self, role: Role) -> Option<(u16, serde_json::Value)> {
        let port = match role {
            Role::Source => self.source_metrics,
            Role::Sink => self.sink_metrics,
        };
        let http = reqwest::Client::builder().no_proxy().build().expect("client");
        let response = http
            .get(format!("http://127.0.0.1:{port}/health"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(serde_json::Value::Null);
        Some((status, body))
    }

    /// GETs a connector's `/metrics` and returns the sum of a metric's samples.
    pub async fn metric(&self, role: Role, name: &str) -> Option<f64> {
        let port = match role {
            Role::Source => self.source_metrics,
            Role::Sink => self.sink_metrics,
        };
        let http = reqwest::Client::builder().no_proxy().build().expect("client");
        let text = http
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let mut found = None;
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (series, value) = line.rsplit_once(' ')?;
            let metric = series.split('{').next().unwrap_or(series);
            if metric == name {
                *found.get_or_insert(0.0) += value.parse::<f64>().ok()?;
            }
        }
        found
    }

    /// Every Falcon event the emulator holds as (partition, offset, line).
    pub async fn falcon_events(&self) -> Vec<(u32, u64, String)> {
        let mut all = Vec::new();
        for partition in 0..self.falcon.state.partitions.len() as u32 {
            for (offset, line) in self.falcon_control.falcon_events(partition).await {
                all.push((partition, offset, line));
            }
        }
        all
    }

    /// Events the emulator has generated so far.
    pub fn falcon_appended(&self) -> u64 {
        self.falcon
            .state
            .stats
            .events_appended
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The audit events (id → eventData) the emulator's events map to with the
    /// module's default parameters.
    pub async fn expected(&self) -> BTreeMap<String, String> {
        common::expected_audit_events(self.falcon_events().await)
    }

    /// The audit event ids `records` (raw topic records) map to with the
    /// module's default parameters.
    pub fn audit_ids(records: &[fluvio_testbed::StoredRecord]) -> Vec<String> {
        let mapper = falcon_lake::audit::Mapper::new(falcon_lake::audit::MappingParams::default());
        records
            .iter()
            .filter_map(|r| {
                let ctx = falcon_lake::audit::RecordContext {
                    key: r.key.as_deref(),
                    timestamp_ms: r.timestamp,
                };
                match mapper.map(&ctx, &r.value) {
                    falcon_lake::audit::Outcome::Emit(audit) => Some(audit.id),
                    _ => None,
                }
            })
            .collect()
    }

    /// Ids the CloudTrail emulator stored and how often.
    pub async fn stored(&self) -> BTreeMap<String, u64> {
        self.cloudtrail_control.stored_ids().await
    }

    /// Waits until every id of `expected` is stored; panics after `timeout`
    /// with the connectors' last log lines.
    pub async fn wait_delivered(&self, expected: &BTreeMap<String, String>, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let stored = self.stored().await;
            let missing = expected.keys().filter(|id| !stored.contains_key(*id)).count();
            if missing == 0 {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "{missing} of {} events still missing after {timeout:?}\nsource log tail:\n{}\nsink log tail:\n{}",
                    expected.len(),
                    tail(&self.log(Role::Source), 30),
                    tail(&self.log(Role::Sink), 30)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the raw topic holds `count` records in all (distinct keys).
    pub async fn wait_topic_keys(&self, partitions: u32, count: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let keys = self.topic_keys(partitions);
            let distinct: std::collections::HashSet<_> = keys.iter().collect();
            if distinct.len() >= count {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "the topic holds {} distinct keys of {count} after {timeout:?}\nsource log tail:\n{}",
                    distinct.len(),
                    tail(&self.log(Role::Source), 200)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the source has created the raw topic.
    pub async fn wait_topic(&self) {
        eventually("the raw topic", Duration::from_secs(30), || async {
            self.cluster.topics().iter().any(|t| t == TOPIC)
        })
        .await;
    }

    /// Every raw record key, partition by partition, in offset order.
    pub fn topic_keys(&self, partitions: u32) -> Vec<String> {
        (0..partitions)
            .flat_map(|p| self.cluster.records(TOPIC, p).unwrap_or_default())
            .map(|r| String::from_utf8(r.key.unwrap_or_default()).expect("utf-8 key"))
            .collect()
    }

    /// Raw records of one topic partition.
    pub fn topic_records(&self, topic: &str, partition: u32) -> Vec<fluvio_testbed::StoredRecord> {
        self.cluster.records(topic, partition).unwrap_or_default()
    }

    /// A client of the test cluster, in this process.
    pub async fn client(&self) -> fluvio::Fluvio {
        fluvio::Fluvio::connect_with_config(&fluvio::FluvioClusterConfig::new(self.cluster.sc_endpoint()))
            .await
            .expect("connect to the test cluster")
    }
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Waits until `condition` holds (async), polling; panics with `what` after `timeout`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !condition().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
