//! `falcon-lake replay`: backfill a range of the raw topic to CloudTrail through
//! the same sink code, committing nothing, so the live sink's consumer offset is
//! untouched. Works on the embedded log and on Fluvio.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio_util::sync::CancellationToken;

use crate::config::connectors::{ConfigKind, SinkConnectorConfig};
use crate::config::destination::DestinationConfig;
use crate::config::embedded::EmbeddedConfig;
use crate::config::secrets::SecretStore;
use crate::config::sections::SinkConfig;
use crate::pipeline::metrics::PipelineMetrics;
use crate::pipeline::shutdown;
use crate::pipeline::sink::{run_sink, SinkEnd, SinkParts};
use crate::publish::{PublishMetrics, Publisher};
use crate::topic::fluvio::FluvioBackend;
use crate::topic::sqlite::{SqliteCommitter, SqliteLog};
use crate::topic::{TopicInspect, TopicReader, TopicRecord, TopicWriter};
use crate::transform::{load_chain, TransformChain};

/// `replay` arguments.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The embedded config (connector.yaml) or a sink connector config (Fluvio).
    #[arg(long)]
    pub config: PathBuf,
    /// `KEY=VALUE` file for `${{ secrets.KEY }}` (default: the environment).
    #[arg(long)]
    pub secrets: Option<PathBuf>,
    /// First offset to replay (inclusive).
    #[arg(long, conflicts_with_all = ["since", "until"], required_unless_present = "since")]
    pub from_offset: Option<u64>,
    /// Offset to stop before (default: the current end).
    #[arg(long, requires = "from_offset")]
    pub to_offset: Option<u64>,
    /// Replay records appended at or after this time (RFC 3339, or an age such as 2h).
    #[arg(long, value_parser = parse_time)]
    pub since: Option<i64>,
    /// Stop at records appended at or after this time (default: now).
    #[arg(long, value_parser = parse_time, requires = "since")]
    pub until: Option<i64>,
    /// Topic partition (Fluvio; the embedded log has one).
    #[arg(long, default_value_t = 0)]
    pub partition: u32,
}

/// `2026-01-01T00:00:00Z` or an age like `90m` → epoch milliseconds.
fn parse_time(text: &str) -> Result<i64, String> {
    if let Ok(age) = crate::config::units::parse_duration(text) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| e.to_string())?;
        return Ok(now.saturating_sub(age).as_millis() as i64);
    }
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|_| format!("{text:?} is neither an RFC 3339 time (2026-01-01T00:00:00Z) nor an age (2h)"))
}

/// The range to replay.
#[derive(Debug, Clone, Copy)]
enum Range {
    Offsets { from: u64, to: Option<u64> },
    Times { since: i64, until: Option<i64> },
}

impl ReplayArgs {
    fn range(&self) -> Result<Range> {
        match (self.from_offset, self.since) {
            (Some(from), None) => {
                if self.to_offset.is_some_and(|to| to <= from) {
                    bail!("--to-offset must be greater than --from-offset");
                }
                Ok(Range::Offsets {
                    from,
                    to: self.to_offset,
                })
            }
            (None, Some(since)) => Ok(Range::Times {
                since,
                until: self.until,
            }),
            _ => bail!("give --from-offset or --since"),
        }
    }
}

/// Runs the replay.
pub async fn run(args: ReplayArgs) -> Result<()> {
    let store = SecretStore::from_arg(args.secrets.as_deref());
    let range = args.range()?;
    match ConfigKind::of(&args.config)? {
        ConfigKind::Embedded => replay_embedded(&args, range, &store).await,
        ConfigKind::Sink => replay_fluvio(&args, range, &store).await,
        ConfigKind::Source => bail!(
            "{} is a source connector config; replay needs the embedded config or a sink connector config",
            args.config.display()
        ),
    }
}

async fn replay_embedded(args: &ReplayArgs, range: Range, store: &SecretStore) -> Result<()> {
    let config = EmbeddedConfig::load(&args.config, store)?;
    let log = SqliteLog::open(&config.storage_path(), config.storage.sync)?;
    let raw = log.topic(config.topic())?;
    let dead_letters = log.topic(&config.dead_letter_topic())?;
    let (from, to) = match range {
        Range::Offsets { from, to } => (from, to),
        Range::Times { since, until } => {
            let Some(from) = raw.offset_at(since).await? else {
                eprintln!("replay: no record was appended at or after --since; nothing to replay");
                return Ok(());
            };
            let to = match until {
                Some(until) => raw.offset_at(until).await?,
                None => None,
            };
            (from, to)
        }
    };
    let bounds = raw.bounds().await?.first().copied();
    let (first, next) = bounds.map_or((0, 0), |b| (b.first, b.next));
    let range = ReplayRange::new(0, from, to.unwrap_or(next), first, next, None);
    let reader = raw.range_reader(range.from, Some(range.to));
    let chain = load_chain(&config.transforms, &config.base_dir, None).await?;
    replay_with(
        reader,
        range,
        &dead_letters,
        &raw,
        &config.destination,
        chain,
        &config.sink,
    )
    .await
}

async fn replay_fluvio(args: &ReplayArgs, range: Range, store: &SecretStore) -> Result<()> {
    let config = SinkConnectorConfig::load(&args.config, store)?;
    let topic = config.topic().to_string();
    let backend = FluvioBackend::connect(&format!("fluvio_connector_{}-replay", config.file.meta.name)).await?;
    let inspect = backend.topic(&topic);
    let bounds = inspect
        .bounds()
        .await?
        .into_iter()
        .find(|b| b.partition == args.partition);
    let Some(bounds) = bounds else {
        bail!("topic {topic} has no partition {}", args.partition)
    };
    // Fluvio has no time index: a time range scans the partition and keeps
    // the records appended inside the window.
    let range = match range {
        Range::Offsets { from, to } => ReplayRange::new(
            args.partition,
            from,
            to.unwrap_or(bounds.next),
            bounds.first,
            bounds.next,
            None,
        ),
        Range::Times { since, until } => ReplayRange::new(
            args.partition,
            bounds.first,
            bounds.next,
            bounds.first,
            bounds.next,
            Some((since, until.unwrap_or(i64::MAX))),
        ),
    };
    let reader = backend
        .range_reader(&topic, args.partition, range.from, Some(range.to))
        .await?;
    let dead_letters = backend.writer(&config.dead_letter_topic(), &Default::default()).await?;
    let chain = load_chain(&config.file.transforms, &config.file.base_dir(), Some(&backend)).await?;
    replay_with(
        reader,
        range,
        &dead_letters,
        &inspect,
        &config.destination,
        chain,
        &config.sink,
    )
    .await
}

/// What a replay reads: one partition's offsets `from..to`, clamped to what
/// the partition held when the replay started, optionally only the records
/// appended inside a time window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ReplayRange {
    partition: u32,
    from: u64,
    to: u64,
    window: Option<(i64, i64)>,
    /// Records of the request the topic's retention had already deleted.
    deleted: u64,
}

impl ReplayRange {
    /// `from..to` of a partition holding `first..next`.
    fn new(partition: u32, from: u64, to: u64, first: u64, next: u64, window: Option<(i64, i64)>) -> Self {
        if from < first {
            tracing::warn!(
                partition,
                requested = from,
                oldest = first,
                "the topic's retention already deleted the start of the range; replaying from the oldest record"
            );
        }
        let deleted = first.saturating_sub(from).min(to.saturating_sub(from));
        let from = from.max(first);
        let to = to.min(next).max(from);
        Self {
            partition,
            from,
            to,
            window,
            deleted,
        }
    }

    /// Records the range holds (offsets are dense).
    fn expected(&self) -> u64 {
        self.to - self.from
    }
}

/// Runs the sink over the range, a progress bar on a terminal, and a summary
/// on stderr in every case; fails unless every record of the range was read.
async fn replay_with<R, D, I>(
    reader: R,
    range: ReplayRange,
    dead_letters: &D,
    inspect: &I,
    destination: &DestinationConfig,
    chain: TransformChain,
    sink: &SinkConfig,
) -> Result<()>
where
    R: TopicReader + 'static,
    D: TopicWriter,
    I: TopicInspect,
{
    let publish_metrics = Arc::new(PublishMetrics::default());
    let publisher = Publisher::new(destination, None, publish_metrics.clone()).await?;
    let metrics = Arc::new(PipelineMetrics::default());
    let counts = Arc::new(ReplayCounts::default());
    let reader = RangeReader::new(reader, range, counts.clone(), STALL_LIMIT);
    let bar = progress_bar(range.expected());
    let cancel = CancellationToken::new();
    shutdown::install(cancel.clone());
    let parts = SinkParts {
        reader,
        committer: None::<&SqliteCommitter>,
        dead_letters,
        inspect: Some(inspect),
        topic: String::new(),
    };
    let progress = {
        let (bar, counts, publish_metrics) = (bar.clone(), counts.clone(), publish_metrics.clone());
        tokio::spawn(async move {
            loop {
                bar.set_position(counts.read.load(Ordering::Relaxed));
                bar.set_message(format!(
                    "{} delivered, {} dead-lettered",
                    publish_metrics.delivered.get(),
                    publish_metrics.dead_lettered.get()
                ));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let end = run_sink(parts, chain, publisher, sink, &metrics, true, cancel).await;
    progress.abort();
    bar.finish_and_clear();
    let summary = Summary {
        range,
        read: counts.read.load(Ordering::Relaxed),
        in_window: counts.in_window.load(Ordering::Relaxed),
        delivered: publish_metrics.delivered.get(),
        dead_lettered: publish_metrics.dead_lettered.get() + metrics.transform_failures.get(),
        filtered: metrics.filtered.get(),
    };
    // stderr, so a replay run from cron or CI leaves its figures in the log.
    eprintln!("{summary}");
    match end? {
        SinkEnd::Finished => summary.complete(),
        SinkEnd::Stopped { abandoned } => {
            bail!("replay interrupted; {abandoned} records of the range were not settled")
        }
    }
}

/// A progress bar on stderr when it is a terminal; hidden otherwise.
fn progress_bar(total: u64) -> ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(total), target);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} records ({per_sec}, {eta} left) {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// A replay's figures.
#[derive(Debug, Clone, Copy)]
struct Summary {
    range: ReplayRange,
    read: u64,
    in_window: u64,
    delivered: u64,
    dead_lettered: u64,
    filtered: u64,
}

impl Summary {
    /// `Ok` when every record of the range was read.
    fn complete(&self) -> Result<()> {
        let expected = self.range.expected();
        if self.read < expected {
            bail!(
                "replay incomplete: read {} of {expected} records of partition {} (offsets {}..{}); {} were not \
                 replayed",
                self.read,
                self.range.partition,
                self.range.from,
                self.range.to,
                expected - self.read
            );
        }
        Ok(())
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = &self.range;
        write!(
            f,
            "replay: partition {} offsets {}..{}: read {} of {} records",
            r.partition,
            r.from,
            r.to,
            self.read,
            r.expected()
        )?;
        if r.window.is_some() {
            write!(f, ", {} appended in the time window", self.in_window)?;
        }
        if r.deleted > 0 {
            write!(f, " ({} earlier records were already deleted by retention)", r.deleted)?;
        }
        write!(
            f,
            "; {} delivered, {} dead-lettered, {} filtered",
            self.delivered, self.dead_lettered, self.filtered
        )
    }
}

/// How long a replay waits for the next record of its range (through errors,
/// reconnects and re-reads) before it gives up and reports the shortfall.
const STALL_LIMIT: Duration = Duration::from_secs(60);

/// What a replay has read, for the progress bar and the summary.
#[derive(Debug, Default)]
struct ReplayCounts {
    /// Records of the range read.
    read: AtomicU64,
    /// Of those, appended inside the time window.
    in_window: AtomicU64,
}

/// A reader of one partition's range that ends only at the range's end: an
/// empty read (a reconnect, a re-read after a gap) is waited out, up to
/// `stall` without progress. The sink treats an empty batch as the end of a
/// bounded input, so this is what makes a replay read all of its range.
struct RangeReader<R> {
    inner: R,
    range: ReplayRange,
    next: u64,
    counts: Arc<ReplayCounts>,
    stall: Duration,
    last_progress: Instant,
}

impl<R> RangeReader<R> {
    fn new(inner: R, range: ReplayRange, counts: Arc<ReplayCounts>, stall: Duration) -> Self {
        Self {
            inner,
            range,
            next: range.from,
            counts,
            stall,
            last_progress: Instant::now(),
        }
    }
}

impl<R: TopicReader> TopicReader for RangeReader<R> {
    async fn next_batch(&mut self, max: usize, wait: Duration) -> Result<Vec<TopicRecord>> {
        loop {
            if self.next >= self.range.to {
                return Ok(Vec::new());
            }
            if self.last_progress.elapsed() > self.stall {
                tracing::error!(
                    partition = self.range.partition,
                    offset = self.next,
                    end = self.range.to,
                    "no record of the range arrived for {:?}; the replay stops short",
                    self.stall
                );
                return Ok(Vec::new());
            }
            let mut batch = self.inner.next_batch(max, wait).await?;
            batch.retain(|r| r.offset >= self.next && r.offset < self.range.to);
            let Some(last) = batch.last().map(|r| r.offset) else {
                continue;
            };
            self.next = last + 1;
            self.last_progress = Instant::now();
            self.counts.read.fetch_add(batch.len() as u64, Ordering::Relaxed);
            if let Some((since, until)) = self.range.window {
                batch.retain(|r| r.timestamp_ms >= since && r.timestamp_ms < until);
            }
            self.counts.in_window.fetch_add(batch.len() as u64, Ordering::Relaxed);
            if !batch.is_empty() {
                return Ok(batch);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out `0..stop`, then nothing: a stream that stalls.
    struct Stalling {
        next: u64,
        stop: u64,
    }

    impl TopicReader for Stalling {
        async fn next_batch(&mut self, max: usize, wait: Duration) -> Result<Vec<TopicRecord>> {
            if self.next >= self.stop {
                tokio::time::sleep(wait).await;
                return Ok(Vec::new());
            }
            let end = self.stop.min(self.next + max as u64);
            let batch = (self.next..end)
                .map(|offset| TopicRecord {
                    partition: 0,
                    offset,
                    timestamp_ms: offset as i64,
                    key: None,
                    value: bytes::Bytes::from_static(b"{}"),
                })
                .collect();
            self.next = end;
            Ok(batch)
        }
    }

    async fn read_all(reader: &mut impl TopicReader) -> Vec<u64> {
        let mut offsets = Vec::new();
        loop {
            let batch = reader.next_batch(7, Duration::from_millis(10)).await.expect("read");
            if batch.is_empty() {
                return offsets;
            }
            offsets.extend(batch.iter().map(|r| r.offset));
        }
    }

    #[tokio::test]
    async fn a_range_is_read_to_its_end_through_empty_reads_and_a_stall_is_a_shortfall() {
        let range = ReplayRange::new(0, 0, 20, 0, 20, None);
        let counts = Arc::new(ReplayCounts::default());
        let mut whole = RangeReader::new(Stalling { next: 0, stop: 20 }, range, counts.clone(), STALL_LIMIT);
        assert_eq!(read_all(&mut whole).await, (0..20).collect::<Vec<_>>());
        let summary = Summary {
            range,
            read: counts.read.load(Ordering::Relaxed),
            in_window: 0,
            delivered: 0,
            dead_lettered: 0,
            filtered: 0,
        };
        assert!(summary.complete().is_ok());
        assert!(summary.to_string().contains("read 20 of 20 records"), "{summary}");

        let counts = Arc::new(ReplayCounts::default());
        let stall = Duration::from_millis(100);
        let mut short = RangeReader::new(Stalling { next: 0, stop: 12 }, range, counts.clone(), stall);
        assert_eq!(
            read_all(&mut short).await.len(),
            12,
            "empty reads are waited out until the stall limit"
        );
        let summary = Summary {
            read: counts.read.load(Ordering::Relaxed),
            ..summary
        };
        let error = summary
            .complete()
            .expect_err("a shortfall fails the replay")
            .to_string();
        assert!(error.contains("read 12 of 20 records"), "{error}");
    }

    #[test]
    fn a_range_is_clamped_to_what_the_partition_held() {
        let range = ReplayRange::new(0, 5, 100, 10, 50, None);
        assert_eq!((range.from, range.to, range.expected(), range.deleted), (10, 50, 40, 5));
        let window = ReplayRange::new(1, 0, 8, 0, 8, Some((1, 2)));
        assert_eq!(window.expected(), 8);
    }

    #[test]
    fn times_parse() {
        assert_eq!(parse_time("2026-01-01T00:00:00Z"), Ok(1_767_225_600_000));
        let hour_ago = parse_time("1h").expect("age");
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as i64;
        assert!((now - hour_ago - 3_600_000).abs() < 5_000);
        assert!(parse_time("yesterday").is_err());
    }
}
