//! `falcon-lake demo`: the Falcon emulator and a destination emulator
//! (CloudTrail Lake or CloudWatch Logs) on free loopback ports, the whole
//! embedded pipeline between them, a wait until every expected event is
//! stored, and a summary.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use rand::Rng;
use tokio_util::sync::CancellationToken;

use crate::audit::SourceKey;
use crate::config::connector::ConnectorFile;
use crate::config::embedded::{EmbeddedConfig, SECTIONS};
use crate::config::secrets::SecretStore;
use crate::emulate::cloudtrail::{CloudTrailEmulator, CloudTrailEmulatorConfig};
use crate::emulate::cloudwatch::{CloudWatchEmulator, CloudWatchEmulatorConfig};
use crate::emulate::falcon::{FalconEmulator, FalconEmulatorConfig};
use crate::emulate::lock;
use crate::emulate::pipeline_config::{EmulatedCloudWatch, EmulatedConfig, CLIENT_SECRET_NAME};
use crate::pipeline::embedded::EmbeddedPipeline;
use crate::secret::Secret;
use crate::transform::{load_chain, InputRecord};

/// Where `make wasm` puts the CloudTrail SmartModule.
pub const DEFAULT_WASM: &str =
    "smartmodules/falcon-audit-to-cloudtrail/target/wasm32-wasip1/release/falcon_audit_to_cloudtrail.wasm";
/// Where `make wasm` puts the OCSF SmartModule.
pub const OCSF_WASM: &str = "smartmodules/falcon-audit-to-ocsf/target/wasm32-wasip1/release/falcon_audit_to_ocsf.wasm";
const CHANNEL: &str = "arn:aws:cloudtrail:us-east-1:111122223333:channel/2d1e6a59-8a2c-4a3e-9b5f-0f7a5c1d9e10";
const LOG_GROUP: &str = "/falcon-lake/demo";
const LOG_STREAM: &str = "falcon-audit";

/// The destination of the demo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DemoSink {
    /// CloudTrail Lake (`PutAuditEvents`).
    Cloudtrail,
    /// CloudWatch Logs (`PutLogEvents`).
    Cloudwatch,
}

/// The SmartModule of the demo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DemoModule {
    /// `falcon-audit-to-cloudtrail`: Open Audit Events.
    Cloudtrail,
    /// `falcon-audit-to-ocsf`: OCSF.
    Ocsf,
}

/// `demo` arguments.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Falcon events to generate (every type; about a third are user activity).
    #[arg(long, default_value_t = 5_000)]
    pub events: u64,
    /// Falcon partitions.
    #[arg(long, default_value_t = 2)]
    pub partitions: u32,
    /// Where to deliver (default: CloudWatch Logs with `--module ocsf`, else CloudTrail Lake).
    #[arg(long, value_enum)]
    pub sink: Option<DemoSink>,
    /// Which bundled SmartModule to run (`--wasm` overrides it).
    #[arg(long, value_enum, default_value_t = DemoModule::Cloudtrail)]
    pub module: DemoModule,
    /// The SmartModule to run, instead of the bundled one `--module` names.
    #[arg(long)]
    pub wasm: Option<PathBuf>,
    /// Keep the embedded log in this file (default: a temporary one).
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Give up after this long.
    #[arg(long, value_parser = crate::config::units::parse_duration, default_value = "5m")]
    pub timeout: Duration,
}

/// The running destination emulator.
enum Destination {
    CloudTrail(CloudTrailEmulator),
    CloudWatch(CloudWatchEmulator, StoredUids),
}

/// Uids of the messages the CloudWatch emulator stored, counted incrementally
/// (its streams only grow).
#[derive(Default)]
struct StoredUids {
    seen: HashMap<(String, String), usize>,
    counts: HashMap<String, u32>,
}

impl Destination {
    fn url(&self) -> &url::Url {
        match self {
            Self::CloudTrail(e) => e.url(),
            Self::CloudWatch(e, _) => e.url(),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Self::CloudTrail(_) => "CloudTrail",
            Self::CloudWatch(..) => "CloudWatch Logs",
        }
    }

    /// Id → how often it was stored.
    fn stored(&mut self) -> HashMap<String, u32> {
        match self {
            Self::CloudTrail(e) => lock(&e.state.store)
                .ids
                .iter()
                .map(|((_, id), n)| (id.clone(), *n))
                .collect(),
            Self::CloudWatch(e, uids) => {
                for (group, log_group) in lock(&e.state.groups).iter() {
                    for (stream, log_stream) in &log_group.streams {
                        let seen = uids.seen.entry((group.clone(), stream.clone())).or_default();
                        for event in &log_stream.events[*seen..] {
                            if let Some(uid) = uid_of(&event.message) {
                                *uids.counts.entry(uid).or_default() += 1;
                            }
                        }
                        *seen = log_stream.events.len();
                    }
                }
                uids.counts.clone()
            }
        }
    }

    /// Events stored in all.
    fn total(&mut self) -> usize {
        self.stored().values().map(|n| *n as usize).sum()
    }
}

/// The key a stored message carries: OCSF `metadata.uid`, else Open Audit Events `UID`.
fn uid_of(message: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(message).ok()?;
    value["metadata"]["uid"]
        .as_str()
        .or_else(|| value["UID"].as_str())
        .map(str::to_string)
}

/// The destination: the one asked for, else the one the module's format is for.
/// CloudTrail Lake accepts only Open Audit Events, so it would dead-letter
/// every event of the bundled OCSF module: refused up front.
fn sink_of(args: &DemoArgs) -> Result<DemoSink> {
    let bundled_ocsf = args.wasm.is_none() && args.module == DemoModule::Ocsf;
    match args.sink {
        Some(DemoSink::Cloudtrail) if bundled_ocsf => anyhow::bail!(
            "--module ocsf emits OCSF, which CloudTrail Lake rejects (it takes Open Audit Events): \
             use --sink cloudwatch, or --module cloudtrail"
        ),
        Some(sink) => Ok(sink),
        None if bundled_ocsf => Ok(DemoSink::Cloudwatch),
        None => Ok(DemoSink::Cloudtrail),
    }
}

/// Runs the demo and prints the summary.
pub async fn run(args: DemoArgs) -> Result<()> {
    let sink = sink_of(&args)?;
    let module = args.wasm.clone().unwrap_or_else(|| {
        PathBuf::from(match args.module {
            DemoModule::Cloudtrail => DEFAULT_WASM,
            DemoModule::Ocsf => OCSF_WASM,
        })
    });
    let wasm = std::fs::canonicalize(&module).with_context(|| {
        format!(
            "the SmartModule {} is missing: build it with `make wasm` (or run `make demo`)",
            module.display()
        )
    })?;
    let client_id: String = (0..32)
        .map(|_| char::from_digit(rand::rng().random_range(0..16), 16).unwrap_or('0'))
        .collect();
    let client_secret = Secret::new(random_word(40));
    let aws_secret = Secret::new(random_word(40));
    let access_key = format!("AKIA{}", random_word(16).to_uppercase());

    let mut falcon = FalconEmulatorConfig::new(client_id.clone(), client_secret.expose());
    falcon.events = args.events;
    falcon.partitions = args.partitions;
    falcon.keepalive = Duration::from_secs(1);
    falcon.base_time = recent_base_time(args.events);
    let falcon = FalconEmulator::start(falcon).await?;
    let mut destination = start_destination(sink, &access_key, &aws_secret).await?;
    println!("falcon emulator:     {}", falcon.url());
    println!("{} emulator: {}", destination.name().to_lowercase(), destination.url());

    let temp = tempfile::tempdir().context("creating a temporary directory")?;
    let db = args.db.clone().unwrap_or_else(|| temp.path().join("demo.db"));
    let config = demo_config(
        &client_id,
        &client_secret,
        falcon.url(),
        destination.url(),
        sink,
        &wasm,
        &db,
    )?;
    let expected = expected_ids(&config, &falcon).await?;
    println!(
        "{} events generated; {} are audit events to deliver",
        args.events,
        expected.len()
    );

    let credentials = aws_credential_types::Credentials::new(&access_key, aws_secret.expose(), None, None, "demo");
    let pipeline = EmbeddedPipeline::build(config, Some(credentials)).await?;
    let metrics = pipeline.metrics();
    let cancel = CancellationToken::new();
    let began = Instant::now();
    let running = tokio::spawn(pipeline.run(cancel.clone()));
    let delivered = wait_for(&mut destination, &expected, args.timeout, &running).await;
    let elapsed = began.elapsed();
    cancel.cancel();
    let stopped = running.await.context("the pipeline task")?;
    let delivered = delivered?;
    stopped?;

    let stored = destination.stored();
    let total: usize = stored.values().map(|n| *n as usize).sum();
    let twice = stored.values().filter(|n| **n > 1).count();
    let p = &metrics.pipeline;
    let dead =
        metrics.publisher.as_ref().map_or(0, |c| c.dead_lettered.get()) + p.transform_failures.get() + p.rejected.get();
    println!();
    println!("summary");
    println!("  events read from Falcon:   {}", p.read.get());
    println!("  rejected lines:            {}", p.rejected.get());
    println!("  filtered (not selected):   {}", p.filtered.get());
    println!("  forwarded as audit events: {}", p.forwarded.get());
    println!(
        "  delivered to {}: {delivered} of {} expected ({total} stored, {twice} ids stored twice)",
        destination.name(),
        expected.len()
    );
    println!("  dead-lettered:             {dead}");
    println!("  elapsed:                   {:.2?}", elapsed);
    println!(
        "  throughput:                {:.0} events/s read, {:.0} audit events/s delivered",
        p.read.get() as f64 / elapsed.as_secs_f64(),
        delivered as f64 / elapsed.as_secs_f64()
    );
    if delivered != expected.len() {
        bail!(
            "{} expected audit events were not delivered",
            expected.len() - delivered
        );
    }
    Ok(())
}

/// Generated events end about now (4 per second), so none is too old or too
/// new for CloudWatch Logs.
fn recent_base_time(events: u64) -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    now - (events / 4) as i64 - 60
}

async fn start_destination(sink: DemoSink, access_key: &str, secret: &Secret) -> Result<Destination> {
    Ok(match sink {
        DemoSink::Cloudtrail => {
            let mut config = CloudTrailEmulatorConfig::new(CHANNEL, access_key, secret.expose());
            config.latency_ms = 20;
            Destination::CloudTrail(CloudTrailEmulator::start(config).await?)
        }
        DemoSink::Cloudwatch => {
            let mut config = CloudWatchEmulatorConfig::new(access_key, secret.expose());
            config.latency_ms = 20;
            Destination::CloudWatch(CloudWatchEmulator::start(config).await?, StoredUids::default())
        }
    })
}

fn random_word(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// The embedded config of the demo, in the same file format users write.
fn demo_config(
    client_id: &str,
    secret: &Secret,
    falcon: &url::Url,
    destination: &url::Url,
    sink: DemoSink,
    wasm: &Path,
    db: &Path,
) -> Result<EmbeddedConfig> {
    let emulated = EmulatedConfig {
        name: "falcon-lake-demo",
        falcon_url: falcon,
        client_id,
        cloudtrail_url: destination,
        channel_arn: CHANNEL,
        wasm,
        db,
        sync: "normal",
        extra_falcon: "  app_id: falcon-lake-demo\n",
        extra_cloudtrail: "",
        extra: "",
    };
    let text = match sink {
        DemoSink::Cloudtrail => emulated.yaml(),
        DemoSink::Cloudwatch => emulated.yaml_with_cloudwatch(&EmulatedCloudWatch {
            url: destination,
            log_group: LOG_GROUP,
            log_stream: LOG_STREAM,
            extra: "",
        }),
    };
    let store = SecretStore::Map(BTreeMap::from([(CLIENT_SECRET_NAME.to_string(), secret.clone())]));
    let file = ConnectorFile::parse(&text, Path::new("demo.yaml"), &store, &SECTIONS)?;
    EmbeddedConfig::from_file(file)
}

/// Keys of the events the configured SmartModule emits for the emulator's
/// events: what the pipeline must deliver.
async fn expected_ids(config: &EmbeddedConfig, falcon: &FalconEmulator) -> Result<HashSet<String>> {
    let mut chain = load_chain(&config.transforms, &config.base_dir, None).await?;
    let mut ids = HashSet::new();
    for (partition, log) in falcon.state.partitions.iter().enumerate() {
        let events = log.read(0, usize::MAX);
        for chunk in events.chunks(500) {
            let keys: Vec<Vec<u8>> = chunk
                .iter()
                .map(|e| SourceKey::new(partition as u32, e.offset).encode())
                .collect();
            let inputs: Vec<InputRecord<'_>> = chunk
                .iter()
                .zip(&keys)
                .map(|(e, key)| InputRecord {
                    key: Some(key),
                    value: &e.line,
                    timestamp_ms: 0,
                })
                .collect();
            let output = chain.process(&inputs)?;
            ids.extend(
                output
                    .outputs
                    .into_iter()
                    .filter_map(|o| o.key.and_then(|k| String::from_utf8(k).ok())),
            );
        }
    }
    Ok(ids)
}

/// Waits until every expected id is stored; returns how many are.
async fn wait_for(
    destination: &mut Destination,
    expected: &HashSet<String>,
    timeout: Duration,
    running: &tokio::task::JoinHandle<Result<()>>,
) -> Result<usize> {
    let deadline = Instant::now() + timeout;
    loop {
        let delivered = destination.stored().keys().filter(|id| expected.contains(*id)).count();
        if delivered >= expected.len() {
            return Ok(delivered);
        }
        if running.is_finished() {
            bail!(
                "the pipeline stopped early with {delivered} of {} events delivered ({} stored)",
                expected.len(),
                destination.total()
            );
        }
        if Instant::now() >= deadline {
            bail!("timed out with {delivered} of {} events delivered", expected.len());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
