//! Crash test: `falcon-lake run` as a child process, killed with SIGKILL at
//! random moments while 50,000 events stream in, restarted each time. At the
//! end nothing is missing, and duplicates stay within the sink's window (the
//! records it holds uncommitted) per kill. Prints the figures
//! (`cargo test --test crash -- --nocapture`).

mod common;

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::Rng;

use common::*;

const EVENTS: u64 = 50_000;
const KILLS: usize = 10;
/// `sink.window` in the config below: the most records uncommitted at a kill.
const WINDOW: u64 = 1_000;

fn spawn(h: &Harness, log: &std::path::Path) -> Child {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    h.command("run")
        .stdout(Stdio::null())
        .stderr(out.try_clone().expect("log"))
        .spawn()
        .expect("spawn falcon-lake run")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_at_random_moments_loses_nothing() {
    let mut falcon = falcon_emulator_config();
    falcon.events = EVENTS;
    falcon.rate = 4_000.0;
    falcon.partitions = 2;
    let mut cloudtrail = cloudtrail_emulator_config();
    cloudtrail.latency_ms = 20;
    let h = Harness::start(
        falcon,
        cloudtrail,
        &format!("sink:\n  window: {WINDOW}\n  read_batch: 200\n"),
    )
    .await;
    let log = h.dir.path().join("pipeline.log");
    let began = Instant::now();
    let mut kills = 0;
    let mut rng = rand::rng();
    while kills < KILLS
        || h.falcon
            .state
            .stats
            .events_appended
            .load(std::sync::atomic::Ordering::Relaxed)
            < EVENTS
    {
        let mut child = spawn(&h, &log);
        tokio::time::sleep(Duration::from_millis(rng.random_range(400..1_500))).await;
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        kills += 1;
    }
    let expected = h.expected().await;
    let mut child = spawn(&h, &log);
    h.wait_delivered(&expected, Duration::from_secs(180)).await;
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
    let elapsed = began.elapsed();

    let stored = h.stored().await;
    let missing = expected.keys().filter(|id| !stored.contains_key(*id)).count();
    let duplicates: u64 = stored.values().map(|n| n.saturating_sub(1)).sum();
    let unexpected = stored.keys().filter(|id| !expected.contains_key(*id)).count();
    let raw = h.topic_records("falcon-events").await;
    let keys: Vec<_> = raw.iter().map(|r| r.key.clone().expect("key")).collect();
    let unique: HashSet<_> = keys.iter().collect();
    eprintln!("crash test: {kills} kills (SIGKILL) over {elapsed:.1?}");
    eprintln!(
        "crash test: {} Falcon events read into the topic ({} distinct), {} audit events expected",
        raw.len(),
        unique.len(),
        expected.len()
    );
    eprintln!(
        "crash test: {} stored, {missing} missing, {duplicates} duplicates = {:.1} per kill ({:.2} PutAuditEvents batches of 100 per kill; bound: {WINDOW} records per kill)",
        stored.values().sum::<u64>(),
        duplicates as f64 / kills as f64,
        duplicates as f64 / kills as f64 / 100.0
    );
    assert!(raw.len() as u64 >= EVENTS, "a run of at least {EVENTS} events");
    assert_eq!(missing, 0, "nothing may be missing");
    assert_eq!(unexpected, 0);
    assert_eq!(
        unique.len(),
        keys.len(),
        "the source resumed exactly after the last event it wrote, every time"
    );
    // By construction a kill re-delivers at most the window; the requirement is
    // at most one PutAuditEvents batch (100 events) per kill.
    assert!(
        duplicates <= kills as u64 * WINDOW,
        "{duplicates} duplicates exceed one window per kill"
    );
    assert!(
        duplicates <= kills as u64 * 100,
        "{duplicates} duplicates exceed one batch of 100 per kill"
    );
}
