//! `falcon-lake replay`: backfill a range of the raw topic to CloudTrail through
//! the same sink code, committing nothing, so the live sink's consumer offset is
//! untouched. Works on the embedded log and on Fluvio.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
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
use crate::topic::fluvio::{FluvioBackend, FluvioReader};
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
                println!("no record was appended at or after --since; nothing to replay");
                return Ok(());
            };
            let to = match until {
                Some(until) => raw.offset_at(until).await?,
                None => None,
            };
            (from, to)
        }
    };
    let end = to.unwrap_or(raw.bounds().await?.first().map_or(0, |b| b.next));
    let reader = raw.range_reader(from, Some(end));
    let chain = load_chain(&config.transforms, &config.base_dir, None).await?;
    replay_with(
        reader,
        &dead_letters,
        &raw,
        &config.destination,
        chain,
        &config.sink,
        from,
        end,
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
    let (from, to, window) = match range {
        Range::Offsets { from, to } => (from, to.unwrap_or(bounds.next), None),
        Range::Times { since, until } => (bounds.first, bounds.next, Some((since, until.unwrap_or(i64::MAX)))),
    };
    let reader = TimeWindow {
        inner: backend.range_reader(&topic, args.partition, from, Some(to)).await?,
        window,
    };
    let dead_letters = backend.writer(&config.dead_letter_topic(), &Default::default()).await?;
    let chain = load_chain(&config.file.transforms, &config.file.base_dir(), Some(&backend)).await?;
    replay_with(
        reader,
        &dead_letters,
        &inspect,
        &config.destination,
        chain,
        &config.sink,
        from,
        to,
    )
    .await
}

/// Runs the sink over a bounded reader with a progress bar.
#[allow(clippy::too_many_arguments)]
async fn replay_with<R, D, I>(
    reader: R,
    dead_letters: &D,
    inspect: &I,
    destination: &DestinationConfig,
    chain: TransformChain,
    sink: &SinkConfig,
    from: u64,
    to: u64,
) -> Result<()>
where
    R: TopicReader + 'static,
    D: TopicWriter,
    I: TopicInspect,
{
    let publish_metrics = Arc::new(PublishMetrics::default());
    let publisher = Publisher::new(destination, None, publish_metrics.clone()).await?;
    let metrics = Arc::new(PipelineMetrics::default());
    let total = to.saturating_sub(from);
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} records ({per_sec}, {eta} left) {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
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
        let (bar, metrics, publish_metrics) = (bar.clone(), metrics.clone(), publish_metrics.clone());
        tokio::spawn(async move {
            loop {
                bar.set_position(metrics.consumed.get());
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
    bar.set_position(metrics.consumed.get());
    bar.finish_with_message(format!(
        "{} delivered, {} dead-lettered, {} filtered",
        publish_metrics.delivered.get(),
        publish_metrics.dead_lettered.get() + metrics.transform_failures.get(),
        metrics.filtered.get()
    ));
    match end? {
        SinkEnd::Finished => Ok(()),
        SinkEnd::Stopped { abandoned } => {
            bail!("replay interrupted; {abandoned} records of the range were not settled")
        }
    }
}

/// A reader that keeps only records appended within a time window.
struct TimeWindow {
    inner: FluvioReader,
    window: Option<(i64, i64)>,
}

impl TopicReader for TimeWindow {
    async fn next_batch(&mut self, max: usize, wait: Duration) -> Result<Vec<TopicRecord>> {
        // An empty batch means "the end" to a bounded replay, so keep reading
        // until records fall inside the window or the input really ends.
        loop {
            let mut batch = self.inner.next_batch(max, wait).await?;
            if batch.is_empty() {
                return Ok(batch);
            }
            if let Some((since, until)) = self.window {
                batch.retain(|r| r.timestamp_ms >= since && r.timestamp_ms < until);
            }
            if !batch.is_empty() {
                return Ok(batch);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse() {
        assert_eq!(parse_time("2026-01-01T00:00:00Z"), Ok(1_767_225_600_000));
        let hour_ago = parse_time("1h").expect("age");
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as i64;
        assert!((now - hour_ago - 3_600_000).abs() < 5_000);
        assert!(parse_time("yesterday").is_err());
    }
}
