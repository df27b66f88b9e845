//! End-to-end benchmark of the embedded pipeline (`falcon-lake run`, a child
//! process) between the emulators at `--tps 100 --latency-ms 50`:
//!
//! 1. throughput: N user-activity events; delivered events/s as a fraction of
//!    the 10,000 events/s the quota allows (goal ≥ 0.9);
//! 2. memory: peak RSS of the pipeline while a backlog of 1,000,000 events
//!    flows in (goal ≤ 64 MiB).
//!
//! `cargo bench --bench pipeline [-- THROUGHPUT_EVENTS BACKLOG_EVENTS]`
//! (defaults 100,000 and 1,000,000).

mod common;

use std::time::{Duration, Instant};

use common::{stop, Setup};
use falcon_lake::emulate::falcon::Mix;

fn main() -> anyhow::Result<()> {
    let mut numbers = std::env::args().skip(1).filter_map(|a| a.parse::<u64>().ok());
    let throughput_events = numbers.next().unwrap_or(100_000);
    let backlog_events = numbers.next().unwrap_or(1_000_000);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        throughput(throughput_events).await?;
        memory(backlog_events).await
    })
}

/// Peak resident memory of `pid` so far (VmHWM), in bytes.
fn peak_rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

async fn throughput(events: u64) -> anyhow::Result<()> {
    let setup = Setup::start(events, Mix::Audit, "").await?;
    let started = Instant::now();
    let mut child = setup.spawn()?;
    let mut first: Option<Instant> = None;
    let deadline = Instant::now() + Duration::from_secs(events / 1_000 + 120);
    while (setup.stored() as u64) < events {
        if first.is_none() && setup.stored() > 0 {
            first = Some(Instant::now());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "timed out with {} of {events} delivered",
            setup.stored()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let done = Instant::now();
    let rss = peak_rss(child.id());
    stop(&mut child);
    let steady = done - first.unwrap_or(started);
    let rate = events as f64 / steady.as_secs_f64();
    println!("pipeline throughput: {events} user-activity events delivered");
    println!(
        "pipeline throughput: {rate:.0} events/s from first to last delivery = {:.3} of the 10,000 events/s quota (goal 0.9); {:.0} events/s including start-up",
        rate / 10_000.0,
        events as f64 / (done - started).as_secs_f64()
    );
    println!("pipeline throughput: peak RSS {:.1} MiB", rss as f64 / 1_048_576.0);
    Ok(())
}

async fn memory(backlog: u64) -> anyhow::Result<()> {
    let began = Instant::now();
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let metrics = format!("metrics:\n  address: 127.0.0.1:{metrics_port}\n");
    let setup = Setup::start(backlog, Mix::Realistic, &metrics).await?;
    println!("memory: {backlog} events generated in {:.1?}", began.elapsed());
    let mut child = setup.spawn()?;
    let http = reqwest::Client::builder().no_proxy().build()?;
    let url = format!("http://127.0.0.1:{metrics_port}/metrics");
    let started = Instant::now();
    let mut read = 0;
    while read < backlog {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Ok(text) = http.get(&url).send().await.and_then(|r| r.error_for_status()) {
            let text = text.text().await.unwrap_or_default();
            read = text
                .lines()
                .find_map(|l| l.strip_prefix("falcon_lake_events_read_total "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(read);
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "the source read only {read} events in 10 minutes"
        );
    }
    let ingest = started.elapsed();
    // Let the sink work through the backlog for a while too.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let rss = peak_rss(child.id());
    let delivered = setup.stored();
    stop(&mut child);
    drop(setup.falcon);
    println!(
        "memory: the source read {read} events in {ingest:.1?} ({:.0} events/s into the log)",
        read as f64 / ingest.as_secs_f64()
    );
    println!("memory: {delivered} audit events delivered so far; backlog still in the log");
    println!(
        "memory: peak RSS {:.1} MiB = {:.2} of the 64 MiB goal",
        rss as f64 / 1_048_576.0,
        rss as f64 / (64.0 * 1_048_576.0)
    );
    Ok(())
}
