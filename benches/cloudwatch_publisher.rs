//! Publisher throughput into the CloudWatch Logs emulator (`--latency-ms 50`,
//! the default 800 requests/s quota), at the default settings (10,000 events
//! or 1 MiB per request, 4 requests in flight, 50 requests/s), and with
//! requests of 500 events for comparison, measured in one run. Prints events/s
//! and requests/s; the bound at the defaults is 4 in flight × 10,000 events
//! per 50 ms round trip, far above what a Falcon tenant's audit events need.
//!
//! `cargo bench --bench cloudwatch_publisher [-- EVENTS]` (default 200,000).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use falcon_lake::cloudwatch::CloudWatchConfig;
use falcon_lake::emulate::cloudwatch::{CloudWatchEmulator, CloudWatchEmulatorConfig};
use falcon_lake::publish::{Outcome, PublishItem, PublishMetrics, Publisher};

const KEY: &str = "AKIABENCHMARK0000001";
const SECRET: &str = "BenchmarkSecretAccessKey0123456789abcdef";

fn main() -> anyhow::Result<()> {
    let events: u64 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(200_000);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        run(events, None).await?;
        run(events / 4, Some(500)).await
    })
}

/// An OCSF Authentication event of about 350 bytes.
fn message(i: u64, time_ms: i64) -> String {
    serde_json::json!({
        "class_uid": 3002, "category_uid": 3, "activity_id": 1, "type_uid": 300201, "severity_id": 1,
        "status_id": if i.is_multiple_of(7) { 2 } else { 1 },
        "time": time_ms,
        "metadata": {"uid": format!("0123456789abcdef_0_{i}"), "version": "1.5.0",
                     "product": {"name": "Falcon", "vendor_name": "CrowdStrike"}},
        "user": {"name": format!("user{}@example.com", i % 500)},
        "service": {"name": "CrowdStrike Authentication"},
        "src_endpoint": {"ip": "198.51.100.7"},
    })
    .to_string()
}

async fn run(events: u64, batch_events: Option<usize>) -> anyhow::Result<()> {
    let mut emulator_config = CloudWatchEmulatorConfig::new(KEY, SECRET);
    emulator_config.latency_ms = 50;
    emulator_config.log_streams = vec!["/falcon-lake/bench:bench".to_string()];
    let emulator = CloudWatchEmulator::start(emulator_config).await?;
    let mut config = CloudWatchConfig::new("/falcon-lake/bench", "bench");
    config.aws.endpoint_url = Some(emulator.url().clone());
    config.aws.region = Some("us-east-1".to_string());
    if let Some(n) = batch_events {
        config.publish.batch_max_events = n;
    }
    let metrics = Arc::new(PublishMetrics::default());
    let creds = aws_credential_types::Credentials::new(KEY, SECRET, None, None, "bench");
    let publisher = Publisher::new(&config, Some(creds), metrics.clone()).await?;
    let (tx, rx) = tokio::sync::mpsc::channel(8_192);
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel(8_192);
    let began = Instant::now();
    let run = tokio::spawn(publisher.run(rx, out_tx));
    tokio::spawn(async move {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        for i in 0..events {
            let item = PublishItem {
                id: format!("0123456789abcdef_0_{i}"),
                event_data: message(i, now - 3_600_000 + (i % 3_600_000) as i64),
                record_time_ms: None,
                token: i,
            };
            if tx.send(item).await.is_err() {
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
    let requests = metrics.requests.get();
    let label = batch_events.map_or_else(|| "defaults".to_string(), |n| format!("{n} events/request"));
    println!("cloudwatch publisher ({label}): {delivered} of {events} events delivered in {elapsed:.2?}");
    println!(
        "cloudwatch publisher ({label}): {:.0} events/s, {:.1} requests/s, {:.0} events/request, mean latency {:?}, {} throttled",
        delivered as f64 / elapsed.as_secs_f64(),
        requests as f64 / elapsed.as_secs_f64(),
        delivered as f64 / requests.max(1) as f64,
        metrics.latency.mean(),
        metrics.throttled.get()
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
    Ok(())
}
