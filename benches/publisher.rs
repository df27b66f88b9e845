//! Publisher throughput against the CloudTrail emulator at `--tps 100 --latency-ms 50`:
//! delivered events/s as a fraction of the 10,000 events/s the quota allows
//! (100 requests/s × 100 events).
//!
//! `cargo bench --bench publisher [-- EVENTS]` (default 50,000). Target: ≥ 0.95.

use std::sync::Arc;
use std::time::{Duration, Instant};

use falcon_lake::cloudtrail::CloudTrailConfig;
use falcon_lake::emulate::cloudtrail::{CloudTrailEmulator, CloudTrailEmulatorConfig};
use falcon_lake::publish::{Outcome, PublishItem, PublishMetrics, Publisher};

const CHANNEL: &str = "arn:aws:cloudtrail:us-east-1:111122223333:channel/bench";
const KEY: &str = "AKIABENCHMARK0000001";
const SECRET: &str = "BenchmarkSecretAccessKey0123456789abcdef";

fn main() -> anyhow::Result<()> {
    let events: u64 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(50_000);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(events))
}

async fn run(events: u64) -> anyhow::Result<()> {
    let mut emulator_config = CloudTrailEmulatorConfig::new(CHANNEL, KEY, SECRET);
    emulator_config.tps = 100.0;
    emulator_config.latency_ms = 50;
    let emulator = CloudTrailEmulator::start(emulator_config).await?;
    let mut config = CloudTrailConfig::new(CHANNEL);
    config.aws.endpoint_url = Some(emulator.url().clone());
    let metrics = Arc::new(PublishMetrics::default());
    let creds = aws_sdk_cloudtraildata::config::Credentials::new(KEY, SECRET, None, None, "bench");
    let publisher = Publisher::new(&config, Some(creds), metrics.clone()).await?;
    let (tx, rx) = tokio::sync::mpsc::channel(4_096);
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel(4_096);
    let began = Instant::now();
    let run = tokio::spawn(publisher.run(rx, out_tx));
    tokio::spawn(async move {
        for i in 0..events {
            let event_data = serde_json::json!({
                "version": "1.0",
                "userIdentity": {"type": "User", "principalId": format!("user{i}@example.com")},
                "eventSource": "crowdstrike",
                "eventName": "userAuthenticate",
                "eventTime": "2026-01-01T00:00:00Z",
                "UID": format!("c_0_{i}"),
                "additionalEventData": {"raw": {"pad": "x".repeat(600)}},
            })
            .to_string();
            if tx
                .send(PublishItem {
                    id: format!("c_0_{i}"),
                    event_data,
                    record_time_ms: None,
                    token: i,
                })
                .await
                .is_err()
            {
                break;
            }
        }
    });
    let mut delivered = 0u64;
    while let Some(settlement) = out_rx.recv().await {
        if matches!(settlement.outcome, Outcome::Delivered { .. }) {
            delivered += 1;
        }
    }
    let elapsed = began.elapsed();
    run.await??;
    let rate = delivered as f64 / elapsed.as_secs_f64();
    println!("publisher: {delivered} of {events} events delivered in {elapsed:.2?}");
    println!(
        "publisher: {rate:.0} events/s = {:.3} of the 10,000 events/s quota (target 0.95)",
        rate / 10_000.0
    );
    println!(
        "publisher: {} requests, {} throttled, mean latency {:?}",
        metrics.requests.get(),
        metrics.throttled.get(),
        metrics.latency.mean()
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
    Ok(())
}
