//! What the pipeline benchmarks share: both emulators at CloudTrail's quota
//! (`--tps 100 --latency-ms 50`), and `falcon-lake run` as a child process on
//! an embedded pipeline config at the defaults (`sync: full`).
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};

use falcon_lake::emulate::cloudtrail::{CloudTrailEmulator, CloudTrailEmulatorConfig};
use falcon_lake::emulate::falcon::{FalconEmulator, FalconEmulatorConfig, Mix};
use falcon_lake::emulate::lock;
use falcon_lake::emulate::pipeline_config::EmulatedConfig;

const CHANNEL: &str = "arn:aws:cloudtrail:us-east-1:111122223333:channel/bench";
const KEY: &str = "AKIABENCHMARK0000001";
const SECRET: &str = "BenchmarkSecretAccessKey0123456789abcdef";
const CLIENT_ID: &str = "0123456789abcdef0123456789abcdef";
const CLIENT_SECRET: &str = "BenchmarkFalconClientSecret0123456789abc";

/// The emulators and the pipeline's directory (`config.yaml`, `secrets.txt`, the log).
pub struct Setup {
    pub falcon: FalconEmulator,
    pub cloudtrail: CloudTrailEmulator,
    pub dir: tempfile::TempDir,
}

impl Setup {
    /// `events` Falcon events of `mix` on 2 partitions; `extra` top-level config sections.
    pub async fn start(events: u64, mix: Mix, extra: &str) -> anyhow::Result<Self> {
        let mut falcon = FalconEmulatorConfig::new(CLIENT_ID, CLIENT_SECRET);
        falcon.events = events;
        falcon.mix = mix;
        falcon.partitions = 2;
        let falcon = FalconEmulator::start(falcon).await?;
        let mut cloudtrail = CloudTrailEmulatorConfig::new(CHANNEL, KEY, SECRET);
        cloudtrail.tps = 100.0;
        cloudtrail.latency_ms = 50;
        let cloudtrail = CloudTrailEmulator::start(cloudtrail).await?;
        let dir = tempfile::tempdir()?;
        let wasm = Path::new(env!("CARGO_MANIFEST_DIR")).join(
            "smartmodules/falcon-audit-to-cloudtrail/target/wasm32-wasip1/release/falcon_audit_to_cloudtrail.wasm",
        );
        anyhow::ensure!(wasm.exists(), "{} is missing: run `make wasm`", wasm.display());
        let config = EmulatedConfig {
            name: "bench",
            falcon_url: falcon.url(),
            client_id: CLIENT_ID,
            cloudtrail_url: cloudtrail.url(),
            channel_arn: CHANNEL,
            wasm: &wasm,
            db: Path::new("log.db"),
            sync: "full",
            extra_falcon: "",
            extra_cloudtrail: "",
            extra,
        }
        .yaml();
        std::fs::write(dir.path().join("config.yaml"), config)?;
        std::fs::write(
            dir.path().join("secrets.txt"),
            format!("FALCON_CLIENT_SECRET={CLIENT_SECRET}\n"),
        )?;
        Ok(Self {
            falcon,
            cloudtrail,
            dir,
        })
    }

    /// Starts `falcon-lake run`; its stderr goes to `pipeline.log` in the directory.
    pub fn spawn(&self) -> anyhow::Result<Child> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("pipeline.log"))?;
        Ok(Command::new(env!("CARGO_BIN_EXE_falcon-lake"))
            .current_dir(self.dir.path())
            .args(["run", "--config", "config.yaml", "--secrets", "secrets.txt"])
            .env("AWS_ACCESS_KEY_ID", KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?)
    }

    /// Records the CloudTrail emulator has stored.
    pub fn stored(&self) -> usize {
        lock(&self.cloudtrail.state.store).records.len()
    }

    /// Stored records, distinct ids, and duplicates (stored beyond the first time).
    pub fn counts(&self) -> (usize, usize, u64) {
        let store = lock(&self.cloudtrail.state.store);
        let duplicates = store.ids.values().map(|n| u64::from(n.saturating_sub(1))).sum();
        (store.records.len(), store.ids.len(), duplicates)
    }
}

/// SIGTERM, then waits for the exit.
pub fn stop(child: &mut Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
}
