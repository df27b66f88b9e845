//! Issue 8 must-show, the full crash scenario on the Fluvio path: both
//! connector binaries against the test cluster and both emulators at their
//! defaults, three rounds on topics of 1, 2 and 3 partitions, `kill -9` of the
//! source and of the sink at random moments while deliveries happen, an SPU
//! restart mid-run, and a topic whose retention deletes the oldest records
//! while the run goes on.
//!
//! What is asserted is what the design guarantees: nothing missing, nothing
//! appended twice to the topic, at most `sink.window` duplicates per sink kill,
//! and a sink that falls behind retention reporting exactly the range it lost.
//! Figures that depend on timing (duplicates per kill, gap re-reads) are printed.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::{Duration, Instant};

use rand::Rng;

use crate::deployment::*;

/// `sink.window`, the default: what a sink kill may re-deliver at most.
const WINDOW: u64 = 2_000;
/// Raw Falcon events generated per second in every round.
const RATE: f64 = 1_000.0;
/// Kills per round, alternating sink and source.
const KILLS_PER_ROUND: usize = 4;
/// The warning of the reader's and the committer's gap checks (`src/topic/fluvio/`).
const GAP_WARNING: &str = "stream skipped records";
/// The error of a sink whose next records retention deleted.
const RETENTION_ERROR: &str = "records were deleted by the topic's retention";

/// One round: a topic, its Falcon partitions and what happens to it.
struct Round {
    partitions: u32,
    falcon_partitions: u32,
    events: u64,
    spu_restart: bool,
    /// Time retention on small segments, and a sink left behind it at the end.
    retention: bool,
}

/// What a round counted.
#[derive(Default)]
struct Tally {
    source_kills: usize,
    sink_kills: usize,
    expected: usize,
    missing: usize,
    duplicates: u64,
    /// Duplicate ids the emulator gained after each sink kill.
    per_sink_kill: Vec<u64>,
    /// At each sink kill: raw records read and not committed, and audit
    /// events handed to the publisher and not settled (its gauges just before).
    at_sink_kill: Vec<(u64, u64)>,
    gap_rereads: usize,
    /// Raw events Falcon was asked for because a round's ran out before its kills.
    topped_up: u64,
    /// Records retention removed while the connectors ran.
    retained_away: i64,
    /// Audit events a sink behind retention lost (it reported their range).
    lost_behind_retention: usize,
    /// Every record key the topic was seen to hold, by (partition, offset):
    /// retention deletes records, so the topic is observed before each run.
    topic: BTreeMap<(u32, i64), String>,
    /// Bytes of every batch seen, by (partition, base offset).
    batches: BTreeMap<(u32, i64), usize>,
}

impl Tally {
    /// Records what the topic holds now.
    fn observe(&mut self, d: &Deployment, partitions: u32) {
        for p in 0..partitions {
            for r in d.topic_records(TOPIC, p) {
                let key = String::from_utf8(r.key.unwrap_or_default()).expect("utf-8 key");
                self.topic.insert((p, r.offset), key);
            }
            for b in d.cluster.batches(TOPIC, p) {
                self.batches.insert((p, b.base_offset), b.bytes);
            }
        }
    }

    /// Bytes the largest partition was seen to hold in all.
    fn largest_partition(&self, partitions: u32) -> u64 {
        (0..partitions)
            .map(|p| {
                self.batches
                    .range((p, i64::MIN)..=(p, i64::MAX))
                    .map(|(_, bytes)| *bytes as u64)
                    .sum::<u64>()
            })
            .max()
            .unwrap_or(0)
    }

    /// Distinct record keys the topic was seen to hold.
    fn distinct_keys(&self) -> usize {
        self.topic.values().collect::<HashSet<_>>().len()
    }

    /// Runs the topic's retention now, after noting what it may delete.
    fn retain(&mut self, d: &Deployment, partitions: u32) {
        self.observe(d, partitions);
        self.retained_away += d.cluster.run_retention();
    }
}

async fn stored_total(d: &Deployment) -> u64 {
    d.cloudtrail_control.stat("stored_events").await
}

async fn sink_gauge(d: &Deployment, name: &str) -> u64 {
    d.metric(Role::Sink, name).await.unwrap_or(0.0) as u64
}

async fn duplicate_ids(d: &Deployment) -> u64 {
    d.cloudtrail_control.stat("duplicate_ids").await
}

/// Without a store for this long, Falcon is asked for more events.
const TOP_UP_AFTER: Duration = Duration::from_secs(5);

/// Waits for a store after `before`. On a busy machine the connectors restart
/// slowly and a round's events can all be delivered before its kills are done:
/// then Falcon is asked for more, so that every kill still lands while events
/// flow (a sink that delivers nothing at all still fails the wait).
/// Returns the events it asked for.
async fn wait_for_a_store(d: &Deployment, before: u64, kills: usize) -> u64 {
    const TOP_UP: u64 = 500;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut topped_up = Instant::now();
    let mut asked = 0;
    while stored_total(d).await <= before {
        if topped_up.elapsed() >= TOP_UP_AFTER {
            d.falcon_control
                .post(&format!("_emulator/events/generate?count={TOP_UP}"), "")
                .await;
            topped_up = Instant::now();
            asked += TOP_UP;
        }
        assert!(
            Instant::now() < deadline,
            "no delivery within 120 s after {kills} kills\nsource log tail:\n{}\nsink log tail:\n{}",
            tail(&d.log(Role::Source), 20),
            tail(&d.log(Role::Sink), 80)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    asked
}

/// Waits until the topic holds every generated event (distinct keys counted
/// over what it was ever seen to hold).
async fn wait_topic_complete(d: &Deployment, round: &Round, tally: &mut Tally, source: &mut Connector) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        tally.observe(d, round.partitions);
        if d.falcon_appended() >= round.events && tally.distinct_keys() as u64 >= round.events {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the topic holds {} distinct keys of {} after 180 s (source exited: {:?})\nsource log tail:\n{}",
            tally.distinct_keys(),
            round.events,
            source.exited(),
            tail(&d.log(Role::Source), 40)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs one round and returns its tally.
async fn run_round(round: &Round) -> Tally {
    let topic = if round.retention {
        TopicSpec {
            partitions: round.partitions,
            // Shorter than the round's generation (16 s at RATE): by the
            // time retention runs, the oldest segments are past it.
            retention: "10s",
            segment_size: Some("256KiB"),
        }
    } else {
        TopicSpec::partitions(round.partitions)
    };
    let mut setup = Setup::new(round.events, round.falcon_partitions, topic);
    setup.falcon.rate = RATE;
    let mut d = Deployment::start(setup).await;
    let mut tally = Tally::default();
    let mut source = d.spawn(Role::Source);
    d.wait_topic().await;
    let mut sink = d.spawn(Role::Sink);
    let mut rng = rand::rng();
    let mut pending_dup: Option<u64> = None;
    for kill in 0..KILLS_PER_ROUND {
        let before = stored_total(&d).await;
        tally.topped_up += wait_for_a_store(&d, before, kill).await;
        // Right after a store (a restarted sink catching up) or later (caught up).
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..1_500))).await;
        if kill % 2 == 0 {
            let now = duplicate_ids(&d).await;
            if let Some(at_kill) = pending_dup.replace(now) {
                tally.per_sink_kill.push(now - at_kill);
            }
            let uncommitted = sink_gauge(&d, "falcon_lake_uncommitted_records").await;
            let unsettled = sink_gauge(&d, "falcon_lake_events_forwarded_total")
                .await
                .saturating_sub(sink_gauge(&d, "falcon_lake_events_delivered_total").await);
            tally.at_sink_kill.push((uncommitted, unsettled));
            sink.kill();
            sink = d.spawn(Role::Sink);
            tally.sink_kills += 1;
        } else {
            source.kill();
            source = d.spawn(Role::Source);
            tally.source_kills += 1;
        }
        if round.spu_restart && kill == 1 {
            // Mid-run, both connectors up: the SPU goes away and comes back on its port.
            d.cluster.stop_spu().await.expect("stop spu");
            tokio::time::sleep(Duration::from_secs(2)).await;
            d.cluster.start_spu().await.expect("start spu");
        }
    }
    wait_topic_complete(&d, round, &mut tally, &mut source).await;
    let expected = d.expected().await;
    d.wait_delivered(&expected, Duration::from_secs(180)).await;
    if let Some(at_kill) = pending_dup {
        tally.per_sink_kill.push(duplicate_ids(&d).await - at_kill);
    }
    // Only sink kills re-deliver: the source appended nothing twice.
    tally.observe(&d, round.partitions);
    assert_eq!(
        tally.distinct_keys(),
        tally.topic.len(),
        "{} partitions: the source resumed exactly after the last event it wrote, every time",
        round.partitions
    );
    if round.retention {
        retention_while_running(&d, round, &mut tally).await;
        sink = sink_behind_retention(&mut d, sink, round, &mut tally).await;
    }
    assert_eq!(source.terminate(Duration::from_secs(30)), Some(0), "source exit");
    assert_eq!(sink.terminate(Duration::from_secs(30)), Some(0), "sink exit");

    let expected = d.expected().await;
    let stored = d.stored().await;
    tally.expected = expected.len();
    tally.missing = expected.keys().filter(|id| !stored.contains_key(*id)).count() - tally.lost_behind_retention;
    tally.duplicates = stored.values().map(|n| n.saturating_sub(1)).sum();
    let log = d.log(Role::Sink);
    tally.gap_rereads = log.matches(GAP_WARNING).count();
    // A frame is cut, and a re-read needed, only where more than the fetch size
    // lies past the reader: never on partitions smaller than the default.
    tally.observe(&d, round.partitions);
    let largest = tally.largest_partition(round.partitions);
    if largest < falcon_lake::topic::fluvio::DEFAULT_MAX_BYTES {
        assert_eq!(
            tally.gap_rereads,
            0,
            "no re-read on partitions of at most {largest} bytes:\n{}",
            log.lines()
                .filter(|l| l.contains(GAP_WARNING))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    eprintln!(
        "round of {} partition(s): {} source + {} sink kills, {} expected, {} missing, {} duplicates \
         (per sink kill {:?}; uncommitted records, unsettled events at each {:?}), {} gap re-reads (largest partition {:.1} MiB), {} records removed by retention{}",
        round.partitions,
        tally.source_kills,
        tally.sink_kills,
        tally.expected,
        tally.missing,
        tally.duplicates,
        tally.per_sink_kill,
        tally.at_sink_kill,
        tally.gap_rereads,
        largest as f64 / 1_048_576.0,
        tally.retained_away,
        if round.spu_restart { ", SPU restarted" } else { "" }
    );
    tally
}

/// Retention runs while both connectors work: the sink has caught up (it was
/// killed before, retention waited), Falcon sends more, and retention deletes
/// the oldest segments as they age. Nothing breaks and nothing is lost.
async fn retention_while_running(d: &Deployment, round: &Round, tally: &mut Tally) {
    for _ in 0..8 {
        d.falcon_control.post("_emulator/events/generate?count=250", "").await;
        tally.retain(d, round.partitions);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let expected = d.expected().await;
    d.wait_delivered(&expected, Duration::from_secs(120)).await;
    tally.retain(d, round.partitions);
    let first = d.cluster.partition_bounds(TOPIC, 0).expect("partition").start;
    assert!(
        tally.retained_away > 0 && first > 0,
        "retention removed records while the connectors ran"
    );
    assert!(
        !d.log(Role::Sink).contains(RETENTION_ERROR),
        "a sink ahead of retention loses nothing:\n{}",
        tail(&d.log(Role::Sink), 80)
    );
    eprintln!(
        "retention while running: {} records removed (log start {first}), the sink ahead of it lost nothing",
        tally.retained_away
    );
}

/// The sink stops; Falcon sends more; retention deletes all but the newest
/// segment before the sink comes back. The restarted sink must name exactly
/// the range it lost, deliver everything after it, and nothing else may be
/// missing.
async fn sink_behind_retention(d: &mut Deployment, sink: Connector, round: &Round, tally: &mut Tally) -> Connector {
    assert_eq!(sink.terminate(Duration::from_secs(30)), Some(0), "sink exit");
    let committed: BTreeMap<u32, i64> = (0..round.partitions)
        .map(|p| (p, d.cluster.consumer_offset(TOPIC, p, CONSUMER).unwrap_or(-1)))
        .collect();
    let before = d.topic_keys(round.partitions).len();
    d.falcon_control.post("_emulator/events/generate?count=2000", "").await;
    d.wait_topic_keys(round.partitions, before + 2_000, Duration::from_secs(60))
        .await;
    let records: Vec<_> = (0..round.partitions).map(|p| (p, d.topic_records(TOPIC, p))).collect();
    tally.observe(d, round.partitions);
    d.cluster.advance_clock(Duration::from_secs(3_600));
    tally.retained_away += d.cluster.run_retention();
    let mut lost_ids = BTreeSet::new();
    let mut ranges = Vec::new();
    for (partition, records) in &records {
        let first = d.cluster.partition_bounds(TOPIC, *partition).expect("partition").start;
        let from = committed[partition] + 1;
        if from < first {
            ranges.push(format!("{from}..{first}"));
            let lost: Vec<_> = records
                .iter()
                .filter(|r| (from..first).contains(&r.offset))
                .cloned()
                .collect();
            lost_ids.extend(Deployment::audit_ids(&lost));
        }
    }
    assert!(!ranges.is_empty(), "retention deleted records the sink had not read");
    let sink = d.spawn(Role::Sink);
    let expected = d.expected().await;
    let kept: BTreeMap<String, String> = expected
        .iter()
        .filter(|(id, _)| !lost_ids.contains(*id))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    d.wait_delivered(&kept, Duration::from_secs(120)).await;
    let stored = d.stored().await;
    let missing: BTreeSet<String> = expected
        .keys()
        .filter(|id| !stored.contains_key(*id))
        .cloned()
        .collect();
    assert_eq!(missing, lost_ids, "exactly the events of the deleted range are missing");
    let log = d.log(Role::Sink);
    for range in &ranges {
        assert!(
            log.lines()
                .any(|l| l.contains(RETENTION_ERROR) && l.contains(range.as_str())),
            "the sink reports the lost range {range} loudly:\n{}",
            tail(&log, 20)
        );
    }
    eprintln!(
        "retention: a sink behind it reported {} lost ({} audit events), delivered the rest",
        ranges.join(", "),
        lost_ids.len()
    );
    tally.lost_behind_retention = lost_ids.len();
    sink
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fluvio_crash_scenario() {
    let started = Instant::now();
    let rounds = [
        Round {
            partitions: 1,
            falcon_partitions: 1,
            events: 16_000,
            spu_restart: false,
            retention: true,
        },
        Round {
            partitions: 2,
            falcon_partitions: 2,
            events: 17_000,
            spu_restart: true,
            retention: false,
        },
        // Four Falcon partitions on three: one topic partition holds two.
        Round {
            partitions: 3,
            falcon_partitions: 4,
            events: 17_000,
            spu_restart: false,
            retention: false,
        },
    ];
    let mut all = Tally::default();
    for round in &rounds {
        let t = run_round(round).await;
        assert_eq!(t.missing, 0, "{} partitions: nothing may be missing", round.partitions);
        assert!(
            t.duplicates <= t.sink_kills as u64 * WINDOW,
            "{} partitions: {} duplicates over {} sink kills exceed sink.window per kill",
            round.partitions,
            t.duplicates,
            t.sink_kills
        );
        all.source_kills += t.source_kills;
        all.sink_kills += t.sink_kills;
        all.expected += t.expected;
        all.missing += t.missing;
        all.duplicates += t.duplicates;
        all.per_sink_kill.extend(t.per_sink_kill);
        all.gap_rereads += t.gap_rereads;
        all.topped_up += t.topped_up;
    }
    let raw: u64 = rounds.iter().map(|r| r.events).sum();
    eprintln!(
        "fluvio crash test: {} kills, {} expected, {} missing, {} duplicates",
        all.source_kills + all.sink_kills,
        all.expected,
        all.missing,
        all.duplicates
    );
    eprintln!(
        "  {raw} raw events (and 4,000 more in the retention round, {} more while waiting for a delivery between kills); {} source and {} sink kills; duplicates per sink kill {:?}; {} gap re-reads; {:.0} s",
        all.topped_up,
        all.source_kills,
        all.sink_kills,
        all.per_sink_kill,
        all.gap_rereads,
        started.elapsed().as_secs_f64()
    );
    assert!(raw >= 50_000 && all.source_kills >= 5 && all.sink_kills >= 5);
    assert_eq!(all.missing, 0);
}
