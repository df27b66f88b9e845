//! The Fluvio deployment end to end: the connector binaries as child processes
//! (`--config`, `--secrets`, `FLV_PROFILE_PATH`) against the test cluster
//! (`crates/fluvio-testbed`, the real wire protocol) and both emulators.
//! `cargo test --workspace --test fluvio -- --nocapture` prints the figures.

mod common;
#[path = "fluvio/deployment.rs"]
mod deployment;

use std::time::Duration;

use deployment::*;

/// A small deployment delivers everything, once, and both connectors stop
/// cleanly on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_and_sink_deliver_everything_once() {
    let d = Deployment::start(Setup::new(3_000, 2, TopicSpec::partitions(1))).await;
    let source = d.spawn(Role::Source);
    d.wait_topic().await;
    let sink = d.spawn(Role::Sink);
    d.wait_topic_keys(1, 3_000, Duration::from_secs(60)).await;
    let expected = d.expected().await;
    assert!(!expected.is_empty());
    d.wait_delivered(&expected, Duration::from_secs(60)).await;
    assert_eq!(source.terminate(Duration::from_secs(10)), Some(0), "source exit");
    assert_eq!(sink.terminate(Duration::from_secs(10)), Some(0), "sink exit");
    let stored = d.stored().await;
    let duplicates: u64 = stored.values().map(|n| n - 1).sum();
    assert_eq!(duplicates, 0);
    let keys = d.topic_keys(1);
    let distinct: std::collections::HashSet<_> = keys.iter().collect();
    assert_eq!(distinct.len(), keys.len(), "each event once in the topic");
}

/// Runs `falcon-lake replay` with `args` on the sink config as a child process,
/// calling `during` once it has begun delivering; returns (exit code, stderr).
async fn replay<F, Fut>(d: &Deployment, args: &[&str], during: F) -> (Option<i32>, String)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let stderr = d.dir.path().join("replay.stderr");
    let config = d.sink_config.to_str().expect("path").to_string();
    let mut all = vec!["replay", "--config", config.as_str()];
    all.extend_from_slice(args);
    let before = d.cloudtrail_control.stat("stored_events").await;
    let mut child = d
        .falcon_lake(&all)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&stderr).expect("stderr file"))
        .spawn()
        .expect("spawn replay");
    let started = std::time::Instant::now();
    while d.cloudtrail_control.stat("stored_events").await == before && started.elapsed() < Duration::from_secs(60) {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    during().await;
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status.code();
        }
        assert!(started.elapsed() < Duration::from_secs(180), "replay did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    (code, std::fs::read_to_string(&stderr).unwrap_or_default())
}

/// Issue 8 §2, §9: a replay reads its whole range even when the stream pauses
/// (an SPU restart in the middle), prints what it read against what it
/// expected on stderr without a terminal, and every event of the range is
/// delivered once more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_reads_its_whole_range_through_an_spu_restart() {
    let events = 30_000;
    let d = Deployment::start(Setup::new(events, 1, TopicSpec::partitions(1))).await;
    let source = d.spawn(Role::Source);
    d.wait_topic_keys(1, events as usize, Duration::from_secs(120)).await;
    assert_eq!(source.terminate(Duration::from_secs(10)), Some(0));
    let expected = d.expected().await;
    let end = d.cluster.partition_bounds(TOPIC, 0).expect("partition").end;
    let (code, stderr) = replay(&d, &["--from-offset", "0"], || async {
        d.cluster.stop_spu().await.expect("stop spu");
        tokio::time::sleep(Duration::from_secs(2)).await;
        d.cluster.start_spu().await.expect("start spu");
    })
    .await;
    let stored = d.stored().await;
    let missing = expected.keys().filter(|id| !stored.contains_key(*id)).count();
    eprintln!(
        "replay through an SPU restart: exit {code:?}, {missing} of {} missing\n{stderr}",
        expected.len()
    );
    assert_eq!(missing, 0, "every event of the range is replayed");
    assert_eq!(code, Some(0));
    assert!(
        stderr.contains(&format!("read {end} of {end} records")),
        "the summary is printed without a terminal: {stderr}"
    );
}

/// Issue 8 must-show: replay by offset and by time deliver exactly the
/// records of the range, and say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_by_offset_and_by_time_counts_exactly() {
    let d = Deployment::start(Setup::new(2_000, 1, TopicSpec::partitions(1))).await;
    let source = d.spawn(Role::Source);
    d.wait_topic_keys(1, 2_000, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let since = time::OffsetDateTime::now_utc();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    d.falcon_control.post("_emulator/events/generate?count=1000", "").await;
    d.wait_topic_keys(1, 3_000, Duration::from_secs(60)).await;
    assert_eq!(source.terminate(Duration::from_secs(10)), Some(0));
    let records = d.topic_records(TOPIC, 0);
    let since_ms = (since.unix_timestamp_nanos() / 1_000_000) as i64;
    let windowed: Vec<_> = records.iter().filter(|r| r.timestamp >= since_ms).cloned().collect();
    assert!(windowed.len() >= 1_000 && windowed.len() < records.len());

    // By time: exactly the records appended after `since`.
    let since_text = since
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format");
    let (code, stderr) = replay(&d, &["--since", &since_text], || async {}).await;
    assert_eq!(code, Some(0), "{stderr}");
    let all = records.len();
    assert!(
        stderr.contains(&format!(
            "read {all} of {all} records, {} appended in the time window",
            windowed.len()
        )),
        "{stderr}"
    );
    let mut want: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    for id in Deployment::audit_ids(&windowed) {
        *want.entry(id).or_default() += 1;
    }
    assert!(!want.is_empty());
    assert_eq!(d.stored().await, want, "exactly the window's events, once each");

    // By offset: exactly offsets 500..1500, once more.
    let (code, stderr) = replay(&d, &["--from-offset", "500", "--to-offset", "1500"], || async {}).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("offsets 500..1500: read 1000 of 1000 records"),
        "{stderr}"
    );
    for id in Deployment::audit_ids(&records[500..1500]) {
        *want.entry(id).or_default() += 1;
    }
    assert_eq!(d.stored().await, want, "and the offset range's events once more");
}
