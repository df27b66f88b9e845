//! The Fluvio deployment end to end: the connector binaries as child processes
//! (`--config`, `--secrets`, `FLV_PROFILE_PATH`) against the test cluster
//! (`crates/fluvio-testbed`, the real wire protocol) and both emulators.
//! `cargo test --workspace --test fluvio -- --nocapture` prints the figures.

mod common;
#[path = "fluvio/crash.rs"]
mod crash;
#[path = "fluvio/deployment.rs"]
mod deployment;
#[path = "fluvio/smartmodule.rs"]
mod smartmodule;

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

/// Issue 8 §11: the SPU cuts a frame at the fetch size wherever it falls, so
/// a sink more than one fetch behind re-read a cut batch on almost every
/// frame at the old 4 MiB default. A backlog between 4 MiB and the default
/// fetch size is read at the defaults without a single re-read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_below_the_default_fetch_size_is_read_without_gap_rereads() {
    let events = 12_000;
    let d = Deployment::start(Setup::new(events, 1, TopicSpec::partitions(1))).await;
    let source = d.spawn(Role::Source);
    d.wait_topic_keys(1, events as usize, Duration::from_secs(120)).await;
    assert_eq!(source.terminate(Duration::from_secs(10)), Some(0), "source exit");
    let backlog: u64 = d.cluster.batches(TOPIC, 0).iter().map(|b| b.bytes as u64).sum();
    assert!(
        backlog > 4 * 1024 * 1024 && backlog < falcon_lake::topic::fluvio::DEFAULT_MAX_BYTES,
        "the backlog ({backlog} bytes) lies between the old and the default fetch size"
    );
    let sink = d.spawn(Role::Sink);
    let expected = d.expected().await;
    d.wait_delivered(&expected, Duration::from_secs(120)).await;
    assert_eq!(sink.terminate(Duration::from_secs(10)), Some(0), "sink exit");
    let rereads: Vec<String> = d
        .log(Role::Sink)
        .lines()
        .filter(|l| l.contains("stream skipped records"))
        .map(str::to_string)
        .collect();
    assert!(
        rereads.is_empty(),
        "a {backlog}-byte backlog read with gap re-reads:\n{}",
        rereads.join("\n")
    );
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

/// On a real SC a partition's `base_offset` stays 0 after retention deleted
/// segments (the test cluster does the same): a replay from offset 0 must
/// start at the log start the SPU reports, read everything retention left,
/// and exit 0, not wait for records that no longer exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_after_retention_reads_what_is_left() {
    let topic = TopicSpec {
        partitions: 1,
        retention: "10s",
        segment_size: Some("256KiB"),
    };
    let d = Deployment::start(Setup::new(3_000, 1, topic)).await;
    let source = d.spawn(Role::Source);
    d.wait_topic_keys(1, 3_000, Duration::from_secs(60)).await;
    assert_eq!(source.terminate(Duration::from_secs(10)), Some(0));
    d.cluster.advance_clock(Duration::from_secs(3_600));
    let removed = d.cluster.run_retention();
    let bounds = d.cluster.partition_bounds(TOPIC, 0).expect("partition");
    assert!(
        removed > 0 && bounds.start > 0,
        "retention deleted the oldest segments: {bounds:?}"
    );
    let left = bounds.end - bounds.start;
    let (code, stderr) = replay(&d, &["--from-offset", "0"], || async {}).await;
    eprintln!("replay after retention removed {removed} records: exit {code:?}\n{stderr}");
    assert_eq!(code, Some(0), "a replay of what retention left succeeds");
    assert!(
        stderr.contains(&format!("read {left} of {left} records")),
        "the replay reads from the log start ({}) to the end ({}): {stderr}",
        bounds.start,
        bounds.end
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

/// Issue 8 §4: on a topic of 2 partitions, Falcon partition `p` lives only in
/// topic partition `p mod 2` (3 Falcon partitions, so two share one), and a
/// restarted source resumes each exactly where it stopped: nothing is
/// appended twice. Events generated after the restart are waited for; each
/// Falcon partition's resent events would come before its new ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn falcon_partitions_map_to_topic_partitions_and_recover_exactly() {
    let (first, more) = (1_500u64, 600u64);
    let mut setup = Setup::new(first, 3, TopicSpec::partitions(2));
    // The emulator's tenant, as an MSSP's member CID (any case, CCID suffix).
    setup.source_falcon_extra = format!("  member_cid: {}-A1\n", setup.falcon.cid.to_uppercase());
    let mut d = Deployment::start(setup).await;
    let source = d.spawn(Role::Source);
    d.wait_topic_keys(2, first as usize, Duration::from_secs(120)).await;
    assert_eq!(source.terminate(Duration::from_secs(30)), Some(0), "source exit");
    let source = d.spawn(Role::Source);
    d.falcon.state.append_generated(more);
    d.wait_topic_keys(2, (first + more) as usize, Duration::from_secs(120))
        .await;
    assert_eq!(source.terminate(Duration::from_secs(30)), Some(0), "source exit");
    for topic_partition in 0..2u32 {
        let records = d.topic_records(TOPIC, topic_partition);
        assert!(!records.is_empty(), "topic partition {topic_partition} is used");
        for record in records {
            let key =
                falcon_lake::audit::SourceKey::decode(record.key.as_deref().unwrap_or_default()).expect("a source key");
            assert_eq!(
                key.partition % 2,
                topic_partition,
                "Falcon partition {} found in topic partition {topic_partition}",
                key.partition
            );
        }
    }
    let keys = d.topic_keys(2);
    let distinct: std::collections::HashSet<_> = keys.iter().collect();
    assert_eq!(
        keys.len() - distinct.len(),
        0,
        "records appended twice across the restart\nsource log tail:\n{}",
        tail(&d.log(Role::Source), 40)
    );
    assert!(distinct.len() as u64 >= first + more);

    // A source of another member CID on the same topic is refused at start.
    let before = d.topic_keys(2).len();
    let other = "fedcba9876543210fedcba9876543210";
    d.write_source_config(&TopicSpec::partitions(2), &format!("  member_cid: {other}\n"));
    let mut refused = d.spawn(Role::Source);
    let mut exit = None;
    eventually("the other tenant's source to exit", Duration::from_secs(60), || {
        exit = refused.exited();
        std::future::ready(exit.is_some())
    })
    .await;
    assert_eq!(exit, Some(Some(1)), "exit code of the refused source");
    let log = d.log(Role::Source);
    assert!(
        log.contains(&format!("holds events of CID {}", d.falcon.state.config.cid)) && log.contains(other),
        "the refusal names both CIDs:\n{}",
        tail(&log, 10)
    );
    assert_eq!(d.topic_keys(2).len(), before, "nothing written by the refused source");
}

/// Issue 8 §7: a sink started before the source does not create the raw topic
/// (it would have 1 partition); it waits, `paused` on `/health`, and delivers
/// once the source has created the topic with its 2 partitions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_started_first_waits_for_the_source_s_topic() {
    let d = Deployment::start(Setup::new(1_000, 2, TopicSpec::partitions(2))).await;
    let sink = d.spawn(Role::Sink);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let health = d.health(Role::Sink).await;
        if let Some((503, body)) = &health {
            if body["stages"]["sink"]
                .as_str()
                .is_some_and(|s| s.starts_with("paused: waiting for topic"))
            {
                break;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the sink does not report that it waits for the topic: {health:?}\nsink log tail:\n{}",
            tail(&d.log(Role::Sink), 30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !d.cluster.topics().iter().any(|t| t == TOPIC),
        "the sink created the raw topic"
    );
    assert!(d.log(Role::Sink).contains("waiting for the source to create it"));
    let source = d.spawn(Role::Source);
    d.wait_topic_keys(2, 1_000, Duration::from_secs(120)).await;
    assert!(
        d.cluster.records(TOPIC, 1).is_ok_and(|r| !r.is_empty()),
        "the topic has the source's 2 partitions"
    );
    let expected = d.expected().await;
    d.wait_delivered(&expected, Duration::from_secs(120)).await;
    assert_eq!(source.terminate(Duration::from_secs(30)), Some(0), "source exit");
    assert_eq!(sink.terminate(Duration::from_secs(30)), Some(0), "sink exit");
}
