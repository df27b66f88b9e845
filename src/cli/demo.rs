//! `falcon-lake demo`: both emulators on free loopback ports, the whole embedded
//! pipeline between them, a wait until every expected audit event is stored in
//! the CloudTrail emulator, and a summary.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use rand::Rng;
use tokio_util::sync::CancellationToken;

use crate::audit::{Mapper, MappingParams, Outcome, RecordContext, SourceKey};
use crate::config::connector::ConnectorFile;
use crate::config::embedded::{EmbeddedConfig, SECTIONS};
use crate::config::secrets::SecretStore;
use crate::emulate::cloudtrail::{CloudTrailEmulator, CloudTrailEmulatorConfig};
use crate::emulate::falcon::{FalconEmulator, FalconEmulatorConfig};
use crate::emulate::lock;
use crate::emulate::pipeline_config::{EmulatedConfig, CLIENT_SECRET_NAME};
use crate::pipeline::embedded::EmbeddedPipeline;
use crate::secret::Secret;

/// Where `make wasm` puts the SmartModule.
pub const DEFAULT_WASM: &str =
    "smartmodules/falcon-audit-to-cloudtrail/target/wasm32-wasip1/release/falcon_audit_to_cloudtrail.wasm";
const CHANNEL: &str = "arn:aws:cloudtrail:us-east-1:111122223333:channel/2d1e6a59-8a2c-4a3e-9b5f-0f7a5c1d9e10";

/// `demo` arguments.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Falcon events to generate (every type; about a third are user activity).
    #[arg(long, default_value_t = 5_000)]
    pub events: u64,
    /// Falcon partitions.
    #[arg(long, default_value_t = 2)]
    pub partitions: u32,
    /// The SmartModule to run.
    #[arg(long, default_value = DEFAULT_WASM)]
    pub wasm: PathBuf,
    /// Keep the embedded log in this file (default: a temporary one).
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Give up after this long.
    #[arg(long, value_parser = crate::config::units::parse_duration, default_value = "5m")]
    pub timeout: Duration,
}

/// Runs the demo and prints the summary.
pub async fn run(args: DemoArgs) -> Result<()> {
    let wasm = std::fs::canonicalize(&args.wasm).with_context(|| {
        format!(
            "the SmartModule {} is missing: build it with `make wasm` (or run `make demo`)",
            args.wasm.display()
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
    let falcon = FalconEmulator::start(falcon).await?;
    let mut cloudtrail = CloudTrailEmulatorConfig::new(CHANNEL, access_key.clone(), aws_secret.expose());
    cloudtrail.latency_ms = 20;
    let cloudtrail = CloudTrailEmulator::start(cloudtrail).await?;
    println!("falcon emulator:     {}", falcon.url());
    println!("cloudtrail emulator: {}", cloudtrail.url());

    let temp = tempfile::tempdir().context("creating a temporary directory")?;
    let db = args.db.clone().unwrap_or_else(|| temp.path().join("demo.db"));
    let config = demo_config(&client_id, &client_secret, falcon.url(), cloudtrail.url(), &wasm, &db)?;
    let expected = expected_ids(&falcon);
    println!(
        "{} events generated; {} are user-activity audit events to deliver",
        args.events,
        expected.len()
    );

    let credentials =
        aws_sdk_cloudtraildata::config::Credentials::new(&access_key, aws_secret.expose(), None, None, "demo");
    let pipeline = EmbeddedPipeline::build(config, Some(credentials)).await?;
    let metrics = pipeline.metrics();
    let cancel = CancellationToken::new();
    let began = Instant::now();
    let running = tokio::spawn(pipeline.run(cancel.clone()));
    let delivered = wait_for(&cloudtrail, &expected, args.timeout, &running).await;
    let elapsed = began.elapsed();
    cancel.cancel();
    let stopped = running.await.context("the pipeline task")?;
    let delivered = delivered?;
    stopped?;

    let (stored, duplicates) = {
        let store = lock(&cloudtrail.state.store);
        (store.records.len(), store.ids.values().filter(|n| **n > 1).count())
    };
    let p = &metrics.pipeline;
    let dead = metrics.cloudtrail.as_ref().map_or(0, |c| c.dead_lettered.get())
        + p.transform_failures.get()
        + p.rejected.get();
    println!();
    println!("summary");
    println!("  events read from Falcon:   {}", p.read.get());
    println!("  rejected lines:            {}", p.rejected.get());
    println!("  filtered (not selected):   {}", p.filtered.get());
    println!("  forwarded as audit events: {}", p.forwarded.get());
    println!(
        "  delivered to CloudTrail:   {delivered} of {} expected ({stored} stored, {duplicates} ids stored twice)",
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
    cloudtrail: &url::Url,
    wasm: &std::path::Path,
    db: &std::path::Path,
) -> Result<EmbeddedConfig> {
    let text = EmulatedConfig {
        name: "falcon-lake-demo",
        falcon_url: falcon,
        client_id,
        cloudtrail_url: cloudtrail,
        channel_arn: CHANNEL,
        wasm,
        db,
        sync: "normal",
        extra_falcon: "  app_id: falcon-lake-demo\n",
        extra_cloudtrail: "",
        extra: "",
    }
    .yaml();
    let store = SecretStore::Map(BTreeMap::from([(CLIENT_SECRET_NAME.to_string(), secret.clone())]));
    let file = ConnectorFile::parse(&text, std::path::Path::new("demo.yaml"), &store, &SECTIONS)?;
    EmbeddedConfig::from_file(file)
}

/// Ids of the audit events the emulator's events map to (default parameters).
pub fn expected_ids(falcon: &FalconEmulator) -> HashSet<String> {
    let mapper = Mapper::new(MappingParams::default());
    let mut ids = HashSet::new();
    for (partition, log) in falcon.state.partitions.iter().enumerate() {
        for event in log.read(0, usize::MAX) {
            let key = SourceKey::new(partition as u32, event.offset).encode();
            if let Outcome::Emit(audit) = mapper.map(
                &RecordContext {
                    key: Some(&key),
                    timestamp_ms: 0,
                },
                &event.line,
            ) {
                ids.insert(audit.id);
            }
        }
    }
    ids
}

/// Waits until every expected id is stored; returns how many are.
async fn wait_for(
    cloudtrail: &CloudTrailEmulator,
    expected: &HashSet<String>,
    timeout: Duration,
    running: &tokio::task::JoinHandle<Result<()>>,
) -> Result<usize> {
    let deadline = Instant::now() + timeout;
    loop {
        let delivered = {
            let store = lock(&cloudtrail.state.store);
            store.ids.keys().filter(|(_, id)| expected.contains(id)).count()
        };
        if delivered >= expected.len() {
            return Ok(delivered);
        }
        if running.is_finished() {
            bail!(
                "the pipeline stopped early with {delivered} of {} events delivered",
                expected.len()
            );
        }
        if Instant::now() >= deadline {
            bail!("timed out with {delivered} of {} events delivered", expected.len());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
