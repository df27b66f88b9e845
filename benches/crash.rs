//! Duplicates per crash at the default settings: the embedded pipeline
//! (`falcon-lake run`, a child process, default config) delivers a backlog of
//! user-activity events into the CloudTrail emulator at `--tps 100
//! --latency-ms 50` (the quota), and is killed with SIGKILL at random moments
//! while it delivers, then restarted, at least 10 times. Prints kills, missing
//! and duplicates per kill. The floor is what is in flight at the kill, about
//! rate × latency = 10,000 events/s × 50 ms = 500; the goal is ≤ 600.
//!
//! `cargo bench --bench crash [-- EVENTS KILLS]` (defaults 200,000 and 12).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::Rng;

use falcon_lake::emulate::cloudtrail::{CloudTrailEmulator, CloudTrailEmulatorConfig};
use falcon_lake::emulate::falcon::{FalconEmulator, FalconEmulatorConfig, Mix};
use falcon_lake::emulate::lock;
use falcon_lake::emulate::pipeline_config::EmulatedConfig;

const CHANNEL: &str = "arn:aws:cloudtrail:us-east-1:111122223333:channel/bench";
const KEY: &str = "AKIABENCHMARK0000001";
const SECRET: &str = "BenchmarkSecretAccessKey0123456789abcdef";
const CLIENT_ID: &str = "0123456789abcdef0123456789abcdef";
const CLIENT_SECRET: &str = "BenchmarkFalconClientSecret0123456789abc";

fn main() -> anyhow::Result<()> {
    let mut numbers = std::env::args().skip(1).filter_map(|a| a.parse::<u64>().ok());
    let events = numbers.next().unwrap_or(200_000);
    let kills = numbers.next().unwrap_or(12) as usize;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(crash(events, kills))
}

struct Setup {
    _falcon: FalconEmulator,
    cloudtrail: CloudTrailEmulator,
    dir: tempfile::TempDir,
}

async fn setup(events: u64) -> anyhow::Result<Setup> {
    let mut falcon = FalconEmulatorConfig::new(CLIENT_ID, CLIENT_SECRET);
    falcon.events = events;
    falcon.mix = Mix::Audit;
    falcon.partitions = 2;
    let falcon = FalconEmulator::start(falcon).await?;
    let mut cloudtrail = CloudTrailEmulatorConfig::new(CHANNEL, KEY, SECRET);
    cloudtrail.tps = 100.0;
    cloudtrail.latency_ms = 50;
    let cloudtrail = CloudTrailEmulator::start(cloudtrail).await?;
    let dir = tempfile::tempdir()?;
    let wasm = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("smartmodules/falcon-audit-to-cloudtrail/target/wasm32-wasip1/release/falcon_audit_to_cloudtrail.wasm");
    anyhow::ensure!(wasm.exists(), "{} is missing: run `make wasm`", wasm.display());
    let config = EmulatedConfig {
        name: "crash",
        falcon_url: falcon.url(),
        client_id: CLIENT_ID,
        cloudtrail_url: cloudtrail.url(),
        channel_arn: CHANNEL,
        wasm: &wasm,
        db: Path::new("log.db"),
        sync: "full",
        extra_falcon: "",
        extra_cloudtrail: "",
        extra: "",
    }
    .yaml();
    std::fs::write(dir.path().join("config.yaml"), config)?;
    std::fs::write(
        dir.path().join("secrets.txt"),
        format!("FALCON_CLIENT_SECRET={CLIENT_SECRET}\n"),
    )?;
    Ok(Setup {
        _falcon: falcon,
        cloudtrail,
        dir,
    })
}

fn spawn(setup: &Setup) -> anyhow::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(setup.dir.path().join("pipeline.log"))?;
    Ok(Command::new(env!("CARGO_BIN_EXE_falcon-lake"))
        .current_dir(setup.dir.path())
        .args(["run", "--config", "config.yaml", "--secrets", "secrets.txt"])
        .env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?)
}

/// Stored records, distinct ids, and duplicates (stored beyond the first time).
fn counts(setup: &Setup) -> (usize, usize, u64) {
    let store = lock(&setup.cloudtrail.state.store);
    let duplicates = store.ids.values().map(|n| u64::from(n.saturating_sub(1))).sum();
    (store.records.len(), store.ids.len(), duplicates)
}

fn stored(setup: &Setup) -> usize {
    lock(&setup.cloudtrail.state.store).records.len()
}

/// Waits until more than `than` records are stored; false after `timeout`.
async fn grows(setup: &Setup, than: usize, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while stored(setup) <= than {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    true
}

async fn crash(events: u64, kills: usize) -> anyhow::Result<()> {
    let setup = setup(events).await?;
    let began = Instant::now();
    let mut rng = rand::rng();
    // Duplicates stored so far, sampled after each kill: the duplicates of kill
    // i are the ones stored during the run after it.
    let mut after_kill = Vec::new();
    while after_kill.len() < kills {
        let mut child = spawn(&setup)?;
        anyhow::ensure!(
            grows(&setup, stored(&setup), Duration::from_secs(60)).await,
            "no delivery within 60 s of a start"
        );
        // Let the restart's re-deliveries land, then kill at a random moment,
        // right after a store.
        tokio::time::sleep(Duration::from_millis(rng.random_range(700..2_500))).await;
        let mid_delivery = grows(&setup, stored(&setup), Duration::from_secs(5)).await;
        child.kill()?;
        child.wait()?;
        let (stored_now, distinct, duplicates) = counts(&setup);
        anyhow::ensure!(
            mid_delivery && (distinct as u64) < events,
            "the backlog was delivered after {} kills ({stored_now} stored): use more events",
            after_kill.len()
        );
        after_kill.push(duplicates);
    }
    let mut child = spawn(&setup)?;
    let deadline = Instant::now() + Duration::from_secs(events / 1_000 + 120);
    while (counts(&setup).1 as u64) < events {
        anyhow::ensure!(Instant::now() < deadline, "timed out delivering the rest");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
    let elapsed = began.elapsed();
    let (records, distinct, duplicates) = counts(&setup);
    after_kill.push(duplicates);
    let per_kill: Vec<u64> = after_kill.windows(2).map(|w| w[1] - w[0]).collect();
    let missing = events.saturating_sub(distinct as u64);
    println!(
        "crash: {kills} kills (SIGKILL mid-delivery) over {elapsed:.1?}; {events} events, {records} stored, {distinct} distinct"
    );
    println!(
        "crash: {kills} kills, {missing} missing, {duplicates} duplicates = {:.0} per kill (goal ≤ 600; floor ≈ rate × latency = 500)",
        duplicates as f64 / kills as f64
    );
    println!(
        "crash: duplicates after each kill: {per_kill:?} (max {})",
        per_kill.iter().max().copied().unwrap_or(0)
    );
    Ok(())
}
