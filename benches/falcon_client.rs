//! Falcon client throughput: reads N generated events from the emulator over
//! loopback and prints events/s. Events of the realistic mix average ~730 B, so
//! they are padded to at least 1 KiB (`--min-event-bytes`), the size the target
//! is stated for. The emulator runs on its own thread; the client and a consumer
//! counting events share one thread (one core).
//!
//! `cargo bench --bench falcon_client [-- EVENTS [MIN_EVENT_BYTES]]` (defaults
//! 500,000 and 1,024). Target: ≥ 100,000 events/s.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use falcon_lake::emulate::falcon::{FalconEmulator, FalconEmulatorConfig};
use falcon_lake::falcon::{FalconClient, FalconConfig, FalconMetrics, FeedItem, NoCursors};
use falcon_lake::secret::Secret;

fn main() -> anyhow::Result<()> {
    let mut numbers = std::env::args().skip(1).filter_map(|a| a.parse::<u64>().ok());
    let events = numbers.next().unwrap_or(500_000);
    let min_event_bytes = numbers.next().unwrap_or(1_024) as usize;
    let (url_tx, url_rx) = std::sync::mpsc::channel();
    let emulator_thread = std::thread::spawn(move || -> anyhow::Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(async move {
            let mut config = FalconEmulatorConfig::new("bench-client", "bench-secret-bench-secret-bench-secret-00");
            config.events = events;
            config.min_event_bytes = min_event_bytes;
            let began = Instant::now();
            let emulator = FalconEmulator::start(config).await?;
            eprintln!("generated {events} events in {:.1?}", began.elapsed());
            url_tx.send(emulator.url().clone())?;
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok::<_, anyhow::Error>(())
        })
    });
    let url = url_rx.recv()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (count, bytes, elapsed) = runtime.block_on(read_all(url, events))?;
    let per_second = count as f64 / elapsed.as_secs_f64();
    println!(
        "falcon client: {count} events, {:.0} bytes/event on average",
        bytes as f64 / count as f64
    );
    println!(
        "falcon client: {:.0} events/s ({:.1} MB/s) on one core in {:.2?}",
        per_second,
        bytes as f64 / elapsed.as_secs_f64() / 1e6,
        elapsed
    );
    println!(
        "falcon client: {:.2} x the 100,000 events/s target",
        per_second / 100_000.0
    );
    drop(emulator_thread);
    std::process::exit(0);
}

async fn read_all(url: url::Url, events: u64) -> anyhow::Result<(u64, u64, Duration)> {
    let config = FalconConfig::new(
        url,
        "bench-client",
        Secret::new("bench-secret-bench-secret-bench-secret-00"),
    );
    let metrics = Arc::new(FalconMetrics::default());
    let client = FalconClient::new(config, metrics.clone())?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<FeedItem>>(64);
    let cancel = tokio_util::sync::CancellationToken::new();
    let stop = cancel.clone();
    let count = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let began = Instant::now();
    let run = tokio::spawn(async move { client.run(&NoCursors, tx, stop).await });
    while let Some(batch) = rx.recv().await {
        for item in batch {
            if let FeedItem::Event(e) = item {
                count.fetch_add(1, Ordering::Relaxed);
                bytes.fetch_add(e.raw.len() as u64, Ordering::Relaxed);
            }
        }
        if count.load(Ordering::Relaxed) >= events {
            break;
        }
    }
    let elapsed = began.elapsed();
    cancel.cancel();
    let _ = run.await;
    Ok((count.load(Ordering::Relaxed), bytes.load(Ordering::Relaxed), elapsed))
}
