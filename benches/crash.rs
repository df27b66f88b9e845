//! Duplicates per crash at the default settings: the embedded pipeline
//! (`falcon-lake run`, a child process, default config) delivers a backlog of
//! user-activity events into the CloudTrail emulator at `--tps 100
//! --latency-ms 50` (the quota), and is killed with SIGKILL at random moments
//! while it delivers, then restarted, at least 10 times. Prints kills, missing
//! and duplicates per kill. The floor is what is in flight at the kill, about
//! rate × latency = 10,000 events/s × 50 ms = 500; the goal is ≤ 600.
//!
//! `cargo bench --bench crash [-- EVENTS KILLS]` (defaults 200,000 and 12).

mod common;

use std::time::{Duration, Instant};

use rand::Rng;

use common::{stop, Setup};
use falcon_lake::emulate::falcon::Mix;

fn main() -> anyhow::Result<()> {
    let mut numbers = std::env::args().skip(1).filter_map(|a| a.parse::<u64>().ok());
    let events = numbers.next().unwrap_or(200_000);
    let kills = numbers.next().unwrap_or(12) as usize;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(crash(events, kills))
}

/// Waits until more than `than` records are stored; false after `timeout`.
async fn grows(setup: &Setup, than: usize, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while setup.stored() <= than {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    true
}

async fn crash(events: u64, kills: usize) -> anyhow::Result<()> {
    let setup = Setup::start(events, Mix::Audit, "").await?;
    let began = Instant::now();
    let mut rng = rand::rng();
    // Duplicates stored so far, sampled after each kill: the duplicates of kill
    // i are the ones stored during the run after it.
    let mut after_kill = Vec::new();
    while after_kill.len() < kills {
        let mut child = setup.spawn()?;
        anyhow::ensure!(
            grows(&setup, setup.stored(), Duration::from_secs(60)).await,
            "no delivery within 60 s of a start"
        );
        // Let the restart's re-deliveries land, then kill at a random moment,
        // right after a store.
        tokio::time::sleep(Duration::from_millis(rng.random_range(700..2_500))).await;
        let mid_delivery = grows(&setup, setup.stored(), Duration::from_secs(5)).await;
        child.kill()?;
        child.wait()?;
        let (stored_now, distinct, duplicates) = setup.counts();
        anyhow::ensure!(
            mid_delivery && (distinct as u64) < events,
            "the backlog was delivered after {} kills ({stored_now} stored): use more events",
            after_kill.len()
        );
        after_kill.push(duplicates);
    }
    let mut child = setup.spawn()?;
    let deadline = Instant::now() + Duration::from_secs(events / 1_000 + 120);
    while (setup.counts().1 as u64) < events {
        anyhow::ensure!(Instant::now() < deadline, "timed out delivering the rest");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop(&mut child);
    let elapsed = began.elapsed();
    let (records, distinct, duplicates) = setup.counts();
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
