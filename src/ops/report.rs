//! `falcon-lake status`: what the topics, the consumer offsets, the dead
//! letters, the status records and (when configured) `/health` say, and a
//! verdict on the sink.
//!
//! The verdict, in order:
//! 1. **failing** when `/health` answers 503, or the newest status record says
//!    `failed` (a fatal error stopped the sink; the error is shown);
//! 2. **stopped** when the newest status record says `stopped`, or it says
//!    `running` but no record came for three heartbeats (the process was
//!    killed or its host went down), or there is no status record and
//!    `/health` does not answer;
//! 3. **failing** (stalled) when a consumer has records to read and its
//!    committed offset has not moved for `stalled_after`;
//! 4. **running** otherwise.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;
use serde_json::Value;

use crate::audit::SourceKey;
use crate::ops::letters::{group, read_letters, read_marks, Group};
use crate::ops::status_log::StatusRecord;
use crate::ops::topics::{status_topic, Backend, Target};
use crate::ops::{format_ms, now_ms};

/// Records scanned back from the end of the raw topic for Falcon partitions.
pub const DEFAULT_SCAN: u64 = 100_000;

/// The whole report (the `--json` output).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `embedded` or `fluvio`.
    pub backend: String,
    /// When the report was made.
    pub checked_at: String,
    /// The verdict.
    pub verdict: Verdict,
    /// The sink's state.
    pub sink: SinkStatus,
    /// Per Falcon partition, the last offset in the topic.
    pub falcon_partitions: Vec<FalconPartition>,
    /// How much of the topic was scanned for them.
    pub falcon_scan: Scan,
    /// The raw topic's partitions.
    pub topic: TopicStatus,
    /// Per consumer and partition: committed offset and lag.
    pub consumers: Vec<ConsumerStatus>,
    /// Dead letters.
    pub dead_letters: DeadLetterStatus,
}

/// `running`, `failing` or `stopped`, why, and the exit code.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Verdict {
    /// `running`, `failing` or `stopped`.
    pub state: String,
    /// Why.
    pub reasons: Vec<String>,
    /// 0 running, 1 failing, 2 stopped.
    pub exit_code: i32,
}

/// The sink's state, from the status topic and `/health`.
#[derive(Debug, Clone, Serialize)]
pub struct SinkStatus {
    /// The newest status record.
    pub last_record: Option<StatusRecord>,
    /// Seconds since it was written.
    pub last_record_age_seconds: Option<u64>,
    /// The last successful delivery.
    pub last_delivery: Option<String>,
    /// The same, epoch milliseconds.
    pub last_delivery_ms: Option<i64>,
    /// `/health`, when `metrics.address` is set.
    pub health: Option<Health>,
}

/// What `/health` answered.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    /// The URL asked.
    pub url: String,
    /// HTTP status, when it answered.
    pub status: Option<u16>,
    /// Its body.
    pub body: Option<Value>,
    /// Why it did not answer.
    pub error: Option<String>,
}

/// One Falcon partition.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FalconPartition {
    /// Falcon partition.
    pub partition: u32,
    /// Its last offset in the topic.
    pub last_offset: u64,
    /// Where that record is: topic partition.
    pub topic_partition: u32,
    /// And offset.
    pub topic_offset: u64,
}

/// How far back the raw topic was scanned.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Scan {
    /// Records read.
    pub records: u64,
    /// True when the whole topic was read (no partition can be missing).
    pub complete: bool,
}

/// The raw topic.
#[derive(Debug, Clone, Serialize)]
pub struct TopicStatus {
    /// Name.
    pub name: String,
    /// Partitions.
    pub partitions: Vec<TopicPartition>,
}

/// One topic partition.
#[derive(Debug, Clone, Serialize)]
pub struct TopicPartition {
    /// Partition.
    pub partition: u32,
    /// Oldest retained offset.
    pub first: u64,
    /// Next offset to be written.
    pub next: u64,
    /// Records retained.
    pub records: u64,
}

/// One consumer on one partition.
#[derive(Debug, Clone, Serialize)]
pub struct ConsumerStatus {
    /// Consumer id.
    pub consumer: String,
    /// Topic partition.
    pub partition: u32,
    /// Last committed offset, if any.
    pub committed: Option<u64>,
    /// Records after it.
    pub lag: u64,
    /// When it last committed.
    pub committed_at: Option<String>,
    /// True for the config's own consumer.
    pub configured: bool,
}

/// The dead-letter topic.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetterStatus {
    /// Name.
    pub topic: String,
    /// Letters.
    pub total: u64,
    /// Of which redriven.
    pub redriven: u64,
    /// By stage and code.
    pub groups: Vec<Group>,
}

/// What `status` looks at beyond the config.
#[derive(Debug, Clone)]
pub struct Options {
    /// Records scanned back for Falcon partitions.
    pub scan: u64,
    /// A consumer with lag whose offset has not moved for this long is stalled.
    pub stalled_after: Duration,
}

/// Builds the report.
pub async fn build(target: &Target, backend: &Backend, options: &Options) -> Result<Report> {
    let bounds = backend.bounds(&target.topic).await?;
    let (falcon_partitions, falcon_scan) = falcon_partitions(backend, &target.topic, options.scan).await?;
    let consumers = consumers(backend, target, &bounds).await?;
    let dead_letters = dead_letters(backend, &target.dead_letter_topic).await?;
    let sink = sink_status(backend, target).await?;
    let verdict = verdict(&sink, &consumers, options.stalled_after, now_ms());
    Ok(Report {
        backend: backend.kind().to_string(),
        checked_at: format_ms(now_ms()),
        verdict,
        sink,
        falcon_partitions,
        falcon_scan,
        topic: TopicStatus {
            name: target.topic.clone(),
            partitions: bounds
                .iter()
                .map(|b| TopicPartition {
                    partition: b.partition,
                    first: b.first,
                    next: b.next,
                    records: b.next.saturating_sub(b.first),
                })
                .collect(),
        },
        consumers,
        dead_letters,
    })
}

/// The last offset of each Falcon partition, scanning back from the end of
/// every topic partition in growing windows, up to `budget` records.
async fn falcon_partitions(backend: &Backend, topic: &str, budget: u64) -> Result<(Vec<FalconPartition>, Scan)> {
    let mut found: BTreeMap<u32, FalconPartition> = BTreeMap::new();
    let mut scanned = 0u64;
    let mut complete = true;
    for b in backend.bounds(topic).await? {
        let mut end = b.next;
        let mut window = 1_000u64;
        while end > b.first {
            if scanned >= budget {
                complete = false;
                break;
            }
            let start = end.saturating_sub(window.min(budget - scanned)).max(b.first);
            for record in backend.read_range(topic, b.partition, start, end).await? {
                let Some(key) = record.key.as_deref().and_then(|k| SourceKey::decode(k).ok()) else {
                    continue;
                };
                let entry = found.entry(key.partition).or_insert(FalconPartition {
                    partition: key.partition,
                    last_offset: key.offset,
                    topic_partition: b.partition,
                    topic_offset: record.offset,
                });
                if key.offset > entry.last_offset {
                    *entry = FalconPartition {
                        partition: key.partition,
                        last_offset: key.offset,
                        topic_partition: b.partition,
                        topic_offset: record.offset,
                    };
                }
            }
            scanned += end - start;
            end = start;
            window = window.saturating_mul(2);
        }
    }
    Ok((
        found.into_values().collect(),
        Scan {
            records: scanned,
            complete,
        },
    ))
}

async fn consumers(
    backend: &Backend,
    target: &Target,
    bounds: &[crate::topic::PartitionBounds],
) -> Result<Vec<ConsumerStatus>> {
    let positions = backend.consumers(&target.topic).await?;
    let mut out = Vec::new();
    let mut names: Vec<String> = positions.iter().map(|p| p.consumer.clone()).collect();
    if let Some(own) = &target.consumer {
        names.push(own.clone());
    }
    names.sort();
    names.dedup();
    for name in names {
        for b in bounds {
            let position = positions
                .iter()
                .find(|p| p.consumer == name && p.partition == b.partition);
            let committed = position.map(|p| p.offset);
            let next_unsettled = committed.map_or(b.first, |c| c + 1).max(b.first);
            out.push(ConsumerStatus {
                consumer: name.clone(),
                partition: b.partition,
                committed,
                lag: b.next.saturating_sub(next_unsettled),
                committed_at: position.filter(|p| p.updated_ms > 0).map(|p| format_ms(p.updated_ms)),
                configured: target.consumer.as_deref() == Some(name.as_str()),
            });
        }
    }
    Ok(out)
}

async fn dead_letters(backend: &Backend, topic: &str) -> Result<DeadLetterStatus> {
    let letters = read_letters(backend, topic).await?;
    let marks = read_marks(backend, topic).await?;
    let groups = group(&letters, &marks);
    Ok(DeadLetterStatus {
        topic: topic.to_string(),
        total: letters.len() as u64,
        redriven: letters.iter().filter(|l| marks.contains_key(&l.id())).count() as u64,
        groups,
    })
}

async fn sink_status(backend: &Backend, target: &Target) -> Result<SinkStatus> {
    let last_record = backend
        .last_record(&status_topic(&target.topic))
        .await?
        .and_then(|r| StatusRecord::parse(&r.value));
    let health = match target.metrics {
        Some(address) => Some(ask_health(address).await),
        None => None,
    };
    let age = last_record
        .as_ref()
        .map(|r| (now_ms().saturating_sub(r.at_ms).max(0) / 1_000) as u64);
    Ok(SinkStatus {
        last_delivery_ms: last_record.as_ref().and_then(|r| r.last_delivery_ms),
        last_delivery: last_record.as_ref().and_then(|r| r.last_delivery.clone()),
        last_record,
        last_record_age_seconds: age,
        health,
    })
}

/// GET `/health` of the configured metrics address (loopback for a wildcard).
async fn ask_health(address: SocketAddr) -> Health {
    let mut address = address;
    if address.ip().is_unspecified() {
        address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let url = format!("http://{address}/health");
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(3))
        .build();
    let answer = match client {
        Ok(client) => client.get(&url).send().await,
        Err(e) => {
            return Health {
                url,
                status: None,
                body: None,
                error: Some(e.to_string()),
            }
        }
    };
    match answer {
        Ok(response) => {
            let status = response.status().as_u16();
            let body = response.json::<Value>().await.ok();
            Health {
                url,
                status: Some(status),
                body,
                error: None,
            }
        }
        Err(e) => Health {
            url,
            status: None,
            body: None,
            error: Some(crate::falcon::error::error_chain(&e)),
        },
    }
}

/// The verdict (see the module documentation), at `now_ms`.
pub fn verdict(sink: &SinkStatus, consumers: &[ConsumerStatus], stalled_after: Duration, now_ms: i64) -> Verdict {
    let failing = |reasons: Vec<String>| Verdict {
        state: "failing".into(),
        reasons,
        exit_code: 1,
    };
    let stopped = |reason: String| Verdict {
        state: "stopped".into(),
        reasons: vec![reason],
        exit_code: 2,
    };
    let health_ok = sink.health.as_ref().and_then(|h| h.status) == Some(200);
    if let Some(h) = &sink.health {
        if h.status == Some(503) {
            let stages = h.body.as_ref().map(|b| b["stages"].to_string()).unwrap_or_default();
            return failing(vec![format!("{} answers 503: {stages}", h.url)]);
        }
    }
    match &sink.last_record {
        Some(r) if r.state == "failed" => {
            let error = r.error.clone().unwrap_or_else(|| "no error recorded".into());
            return failing(vec![format!("the sink stopped on a fatal error at {}: {error}", r.at)]);
        }
        Some(r) if r.state == "stopped" && !health_ok => {
            return stopped(format!(
                "the sink was stopped at {} (pid {} on {})",
                r.at, r.pid, r.host
            ));
        }
        Some(r) if r.state == "running" && !health_ok => {
            let stale_after = (r.heartbeat_seconds.max(1) * 3) as i64 * 1_000;
            if now_ms - r.at_ms > stale_after {
                return stopped(format!(
                    "no status record since {} (pid {} on {}): the process ended without a clean stop (killed, crashed, or its host went down)",
                    r.at, r.pid, r.host
                ));
            }
        }
        None if !health_ok => return stopped("no sink has recorded its state yet (never started here?)".into()),
        _ => {}
    }
    let stalled: Vec<String> = consumers
        .iter()
        .filter(|c| c.configured && c.lag > 0)
        .filter_map(|c| {
            let since = match (&c.committed_at, &sink.last_record) {
                (Some(at), _) => crate::ops::parse_time(at).ok(),
                (None, Some(r)) => Some(r.started_ms),
                (None, None) => None,
            }?;
            (now_ms - since > stalled_after.as_millis() as i64).then(|| {
                format!(
                    "consumer {} has {} records to read on partition {} and its offset has not moved since {}",
                    c.consumer,
                    c.lag,
                    c.partition,
                    format_ms(since)
                )
            })
        })
        .collect();
    if !stalled.is_empty() {
        return failing(stalled);
    }
    Verdict {
        state: "running".into(),
        reasons: Vec::new(),
        exit_code: 0,
    }
}

/// The report as a readable table.
pub fn render(report: &Report) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let v = &report.verdict;
    let _ = writeln!(
        out,
        "sink: {} ({} backend, checked {})",
        v.state, report.backend, report.checked_at
    );
    for reason in &v.reasons {
        let _ = writeln!(out, "  {reason}");
    }
    let s = &report.sink;
    let _ = writeln!(
        out,
        "last delivery: {}",
        s.last_delivery.as_deref().unwrap_or("none recorded")
    );
    if let Some(r) = &s.last_record {
        let _ = writeln!(
            out,
            "last status record: {} at {} ({} s ago), pid {} on {}, {} delivered since its start",
            r.state,
            r.at,
            s.last_record_age_seconds.unwrap_or(0),
            r.pid,
            r.host,
            r.delivered_since_start
        );
    }
    if let Some(h) = &s.health {
        match (h.status, &h.error) {
            (Some(code), _) => {
                let _ = writeln!(out, "health: {} answers {code}", h.url);
            }
            (None, Some(e)) => {
                let _ = writeln!(out, "health: {} does not answer ({e})", h.url);
            }
            _ => {}
        }
    }
    let _ = writeln!(out, "\nFalcon partitions (last offset in the topic):");
    let _ = writeln!(
        out,
        "  {:>9}  {:>12}  {:>15}",
        "partition", "last offset", "topic position"
    );
    for p in &report.falcon_partitions {
        let _ = writeln!(
            out,
            "  {:>9}  {:>12}  {:>15}",
            p.partition,
            p.last_offset,
            format!("{}@{}", p.topic_partition, p.topic_offset)
        );
    }
    if report.falcon_partitions.is_empty() {
        let _ = writeln!(out, "  (no event in the topic)");
    }
    if !report.falcon_scan.complete {
        let _ = writeln!(
            out,
            "  (scanned the last {} records; a partition written only before them is not shown)",
            report.falcon_scan.records
        );
    }
    let _ = writeln!(out, "\ntopic {}:", report.topic.name);
    let _ = writeln!(
        out,
        "  {:>9}  {:>12}  {:>12}  {:>10}",
        "partition", "first", "next", "records"
    );
    for p in &report.topic.partitions {
        let _ = writeln!(
            out,
            "  {:>9}  {:>12}  {:>12}  {:>10}",
            p.partition, p.first, p.next, p.records
        );
    }
    let _ = writeln!(out, "\nconsumers:");
    let _ = writeln!(
        out,
        "  {:<24}  {:>9}  {:>12}  {:>10}  committed at",
        "consumer", "partition", "committed", "lag"
    );
    for c in &report.consumers {
        let name = if c.configured {
            format!("{} (this config)", c.consumer)
        } else {
            c.consumer.clone()
        };
        let committed = c.committed.map_or("-".to_string(), |o| o.to_string());
        let _ = writeln!(
            out,
            "  {:<24}  {:>9}  {:>12}  {:>10}  {}",
            name,
            c.partition,
            committed,
            c.lag,
            c.committed_at.as_deref().unwrap_or("-")
        );
    }
    let d = &report.dead_letters;
    let _ = writeln!(
        out,
        "\ndead letters in {}: {} ({} redriven)",
        d.topic, d.total, d.redriven
    );
    if !d.groups.is_empty() {
        let _ = writeln!(
            out,
            "  {:<10}  {:<28}  {:>7}  {:>9}  {:<24}  newest",
            "stage", "code", "count", "redriven", "oldest"
        );
        for g in &d.groups {
            let _ = writeln!(
                out,
                "  {:<10}  {:<28}  {:>7}  {:>9}  {:<24}  {}",
                g.stage, g.code, g.count, g.redriven, g.oldest, g.newest
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(state: &str, at_ms: i64, error: Option<&str>) -> StatusRecord {
        StatusRecord {
            state: state.into(),
            at: format_ms(at_ms),
            at_ms,
            started_ms: at_ms - 60_000,
            instance: "i".into(),
            host: "h".into(),
            pid: 7,
            delivered_since_start: 0,
            last_delivery_ms: None,
            last_delivery: None,
            heartbeat_seconds: 30,
            error: error.map(str::to_string),
        }
    }

    fn sink(last: Option<StatusRecord>, health: Option<u16>) -> SinkStatus {
        SinkStatus {
            last_record: last,
            last_record_age_seconds: None,
            last_delivery: None,
            last_delivery_ms: None,
            health: health.map(|status| Health {
                url: "http://127.0.0.1:1/health".into(),
                status: Some(status),
                body: None,
                error: None,
            }),
        }
    }

    fn consumer(lag: u64, committed_at_ms: i64) -> ConsumerStatus {
        ConsumerStatus {
            consumer: "sink".into(),
            partition: 0,
            committed: Some(10),
            lag,
            committed_at: Some(format_ms(committed_at_ms)),
            configured: true,
        }
    }

    #[test]
    fn verdicts_follow_the_documented_rules() {
        let now = 1_800_000_000_000;
        let stall = Duration::from_secs(900);
        let state = |s: &SinkStatus, c: &[ConsumerStatus]| verdict(s, c, stall, now);
        let fresh = record("running", now - 5_000, None);
        assert_eq!(
            state(&sink(Some(fresh.clone()), None), &[consumer(0, now)]).exit_code,
            0
        );
        assert_eq!(state(&sink(Some(fresh.clone()), Some(503)), &[]).state, "failing");
        let failed = state(
            &sink(Some(record("failed", now - 1_000, Some("ChannelNotFound"))), None),
            &[],
        );
        assert_eq!(failed.exit_code, 1);
        assert!(failed.reasons[0].contains("ChannelNotFound"));
        assert_eq!(state(&sink(Some(record("stopped", now, None)), None), &[]).exit_code, 2);
        let gone = state(&sink(Some(record("running", now - 120_000, None)), None), &[]);
        assert_eq!(gone.exit_code, 2, "three heartbeats missed");
        assert!(gone.reasons[0].contains("without a clean stop"));
        assert_eq!(state(&sink(None, None), &[]).exit_code, 2);
        assert_eq!(state(&sink(None, Some(200)), &[]).exit_code, 0, "/health answers");
        let stalled = state(&sink(Some(fresh.clone()), None), &[consumer(5, now - 1_000_000)]);
        assert_eq!(stalled.state, "failing");
        assert!(stalled.reasons[0].contains("has not moved"));
        assert_eq!(
            state(&sink(Some(fresh), None), &[consumer(5, now - 60_000)]).exit_code,
            0,
            "lag that is moving is not a stall"
        );
    }
}
