//! Crash test: `falcon-lake run` as a child process at the default settings
//! (`sync: full`, the default sink window and publisher), killed with SIGKILL
//! at least 10 times, each time while deliveries are happening, and restarted,
//! while 50,000 events stream in. At the end nothing is missing, and the
//! duplicates stay within what the design bounds: a kill re-delivers at most
//! the records read past the last durable commit, which the window caps at
//! `sink.window`. The figures (duplicates per kill) are printed, not asserted:
//! they depend on the machine (`cargo test --test crash -- --nocapture`).

mod common;

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::Rng;

use common::*;

const EVENTS: u64 = 50_000;
const KILLS: usize = 10;
/// Falcon events generated per second: deliveries go on for about 25 s, long
/// enough for every kill to land while events are being delivered.
const RATE: f64 = 2_000.0;
/// Events added at once when deliveries end before `KILLS` kills landed: about
/// two seconds of delivery at the CloudTrail quota.
const TOP_UP: u64 = 20_000;

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

fn stored_count(h: &Harness) -> usize {
    falcon_lake::emulate::lock(&h.cloudtrail.state.store).records.len()
}

/// Waits until the emulator has stored more than `than`; false after `timeout`.
async fn stored_grows(h: &Harness, than: usize, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while stored_count(h) <= than {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    true
}

fn generated(h: &Harness) -> u64 {
    h.falcon
        .state
        .stats
        .events_appended
        .load(std::sync::atomic::Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_mid_delivery_loses_nothing() {
    let window = falcon_lake::config::sections::SinkConfig::default().window as u64;
    let mut falcon = falcon_emulator_config();
    falcon.events = EVENTS;
    falcon.rate = RATE;
    falcon.partitions = 2;
    let mut cloudtrail = cloudtrail_emulator_config();
    cloudtrail.latency_ms = 50;
    let h = Harness::start_at_defaults(falcon, cloudtrail, "").await;
    let log = h.dir.path().join("pipeline.log");
    let began = Instant::now();
    let mut kills = 0;
    let mut rng = rand::rng();
    while kills < KILLS || generated(&h) < EVENTS {
        let mut child = spawn(&h, &log);
        // Kill only while deliveries are happening: once this run has stored
        // something, after a random while, right after the next store.
        let at_start = stored_count(&h);
        let delivering = stored_grows(&h, at_start, Duration::from_secs(30)).await;
        if delivering {
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..1_500))).await;
        }
        let delivering = delivering && stored_grows(&h, stored_count(&h), Duration::from_secs(5)).await;
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        if delivering {
            kills += 1;
        } else {
            assert!(
                generated(&h) >= EVENTS,
                "no delivery within 30 s of a start while events are still coming; see {}",
                log.display()
            );
            if kills >= KILLS {
                break;
            }
            // Everything was delivered before enough kills landed (restarts are
            // slow on a loaded machine): give the next run a backlog to deliver.
            h.falcon.state.append_generated(TOP_UP);
        }
    }
    let expected = h.expected().await;
    let mut child = spawn(&h, &log);
    h.wait_delivered(&expected, Duration::from_secs(180)).await;
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let status = child.wait().expect("exit");
    let elapsed = began.elapsed();

    let stored = h.stored().await;
    let missing = expected.keys().filter(|id| !stored.contains_key(*id)).count();
    let duplicates: u64 = stored.values().map(|n| n.saturating_sub(1)).sum();
    let unexpected = stored.keys().filter(|id| !expected.contains_key(*id)).count();
    let raw = h.topic_records("falcon-events").await;
    let keys: Vec<_> = raw.iter().map(|r| r.key.clone().expect("key")).collect();
    let unique: HashSet<_> = keys.iter().collect();
    eprintln!(
        "crash test: {kills} kills (SIGKILL mid-delivery) over {elapsed:.1?}; {} Falcon events in the topic ({} distinct)",
        raw.len(),
        unique.len()
    );
    eprintln!(
        "crash test: {kills} kills, {} expected, {missing} missing, {duplicates} duplicates = {:.1} per kill (bound: sink.window = {window} per kill)",
        expected.len(),
        duplicates as f64 / kills as f64
    );
    assert!(status.success(), "the last run stopped cleanly on SIGTERM: {status:?}");
    assert!(raw.len() as u64 >= EVENTS, "a run of at least {EVENTS} events");
    assert!(kills >= KILLS, "{kills} kills mid-delivery");
    assert_eq!(missing, 0, "nothing may be missing");
    assert_eq!(unexpected, 0);
    assert_eq!(
        unique.len(),
        keys.len(),
        "the source resumed exactly after the last event it wrote, every time"
    );
    // A kill re-delivers at most the records read past the last durable commit,
    // which the window caps; each record maps to at most one audit event.
    assert!(
        duplicates <= kills as u64 * window,
        "{duplicates} duplicates exceed one window ({window}) per kill"
    );
}
