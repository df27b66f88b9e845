//! The Fluvio connectors' process contract, as `cdk deploy` starts a connector:
//! `<binary> --config FILE [--secrets FILE]`, logs filtered by `RUST_LOG`, the
//! cluster from the Fluvio profile, SIGTERM/SIGINT for a graceful stop. The
//! binaries in `connectors/` only call [`main`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use tokio_util::sync::CancellationToken;

use crate::config::connector::ConnectorFile;
use crate::config::connectors::{SinkConnectorConfig, SourceConnectorConfig};
use crate::config::secrets::SecretStore;
use crate::falcon::{FalconClient, FalconMetrics};
use crate::logging::{self, LogFormat};
use crate::pipeline::metrics::{serve_configured, MetricsSources, PipelineMetrics};
use crate::pipeline::recovery::TopicCursors;
use crate::pipeline::sink::{run_sink, SinkParts};
use crate::pipeline::{shutdown, source::run_source};
use crate::publish::{PublishMetrics, Publisher};
use crate::topic::fluvio::{FluvioBackend, ProducerSettings, TopicDefinition};
use crate::transform::load_chain;

/// Which connector a binary is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `falcon-event-stream-source`: Falcon into a topic.
    Source,
    /// `cloudtrail-lake-sink`: a topic into CloudTrail Lake.
    Sink,
    /// `cloudwatch-logs-sink`: a topic into CloudWatch Logs.
    CloudWatchSink,
}

/// `--config` and `--secrets`, the only arguments `cdk` passes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorArgs {
    /// The connector config.
    pub config: PathBuf,
    /// The secrets file, if any.
    pub secrets: Option<PathBuf>,
}

impl ConnectorArgs {
    /// Parses `--config FILE [--secrets FILE]` (also `--config=FILE`).
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Self> {
        let mut config = None;
        let mut secrets = None;
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) => (flag.to_string(), Some(value.to_string())),
                None => (arg, None),
            };
            let value = match inline {
                Some(value) => value,
                None if flag == "--config" || flag == "--secrets" => {
                    args.next().with_context(|| format!("{flag} needs a file name"))?
                }
                None => bail!("unknown argument {flag:?}; usage: --config FILE [--secrets FILE]"),
            };
            match flag.as_str() {
                "--config" => config = Some(PathBuf::from(value)),
                "--secrets" => secrets = Some(PathBuf::from(value)),
                other => bail!("unknown argument {other:?}; usage: --config FILE [--secrets FILE]"),
            }
        }
        let config = config.context("--config FILE is required")?;
        Ok(Self { config, secrets })
    }
}

/// Entry point of a connector binary.
pub fn main(kind: Kind) -> ExitCode {
    crate::memory::limit_malloc_arenas();
    let format = match std::env::var("FALCON_LAKE_LOG_FORMAT").as_deref() {
        Ok("json") => LogFormat::Json,
        _ => LogFormat::Text,
    };
    logging::init(format);
    let result = ConnectorArgs::parse(std::env::args().skip(1)).and_then(|args| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the runtime")?;
        runtime.block_on(async move {
            match kind {
                Kind::Source => run_source_connector(args).await,
                Kind::Sink => run_sink_connector(args, "cloudtrail").await,
                Kind::CloudWatchSink => run_sink_connector(args, "cloudwatch").await,
            }
        })
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Connects to the cluster and makes sure the raw and dead-letter topics exist.
async fn connect(file: &ConnectorFile, dead_letter: &str) -> Result<FluvioBackend> {
    let backend = FluvioBackend::connect(&format!("fluvio_connector_{}", file.meta.name)).await?;
    backend.ensure_topic(&file.meta.topic).await?;
    backend
        .ensure_topic(&TopicDefinition::Name(dead_letter.to_string()))
        .await?;
    Ok(backend)
}

/// The source connector: Falcon events into `meta.topic`.
pub async fn run_source_connector(args: ConnectorArgs) -> Result<()> {
    let config = SourceConnectorConfig::load(&args.config, &SecretStore::from_arg(args.secrets.as_deref()))?;
    let topic = config.topic().to_string();
    let dead_letter = config.dead_letter_topic();
    let backend = connect(&config.file, &dead_letter).await?;
    let producer = config.file.meta.producer.clone().unwrap_or_default();
    let raw = backend.writer(&topic, &producer).await?;
    let dead_letters = backend.writer(&dead_letter, &ProducerSettings::default()).await?;
    let falcon_metrics = Arc::new(FalconMetrics::default());
    let client = FalconClient::new(config.falcon, falcon_metrics.clone())?;
    let sources = MetricsSources {
        pipeline: Arc::new(PipelineMetrics::default()),
        falcon: Some(falcon_metrics),
        publisher: None,
    };
    let _server = serve_configured(&config.metrics, &sources).await?;
    let cursors = TopicCursors::new(backend.topic(&topic));
    let cancel = CancellationToken::new();
    shutdown::install(cancel.clone());
    tracing::info!(topic = %topic, "monitoring started");
    run_source(&client, &cursors, &raw, &dead_letters, &sources.pipeline, cancel).await?;
    Ok(())
}

/// A sink connector: `meta.topic` through the transforms into the destination
/// of the `section` the connector is for (`cloudtrail` or `cloudwatch`).
pub async fn run_sink_connector(args: ConnectorArgs, section: &str) -> Result<()> {
    let config = SinkConnectorConfig::load(&args.config, &SecretStore::from_arg(args.secrets.as_deref()))?;
    if config.destination.section() != section {
        bail!(
            "{}: this connector delivers to `{section}`, but the config has a `{}` section",
            args.config.display(),
            config.destination.section()
        );
    }
    let topic = config.topic().to_string();
    let consumer = config.file.meta.consumer_id();
    let dead_letter = config.dead_letter_topic();
    let backend = connect(&config.file, &dead_letter).await?;
    let chain = load_chain(&config.file.transforms, &config.file.base_dir(), Some(&backend)).await?;
    let publish_metrics = Arc::new(PublishMetrics::default());
    let publisher = Publisher::new(&config.destination, None, publish_metrics.clone()).await?;
    let sources = MetricsSources {
        pipeline: Arc::new(PipelineMetrics::default()),
        falcon: None,
        publisher: Some(publish_metrics.clone()),
    };
    let _server = serve_configured(&config.metrics, &sources).await?;
    let reader = backend
        .reader(
            &topic,
            &consumer,
            config.start,
            config.partitions.as_deref(),
            config.max_bytes,
        )
        .await?;
    let committer = backend.committer(&topic, &consumer);
    let inspect = backend.topic(&topic);
    let dead_letters = backend.writer(&dead_letter, &ProducerSettings::default()).await?;
    let status_topic = crate::ops::topics::status_topic(&topic);
    backend
        .ensure_topic(&TopicDefinition::Name(status_topic.clone()))
        .await?;
    let status_writer = backend.writer(&status_topic, &ProducerSettings::default()).await?;
    let status_inspect = backend.topic(&status_topic);
    let cancel = CancellationToken::new();
    shutdown::install(cancel.clone());
    tracing::info!(topic = %topic, consumer = %consumer, "monitoring started");
    let parts = SinkParts {
        reader,
        committer: Some(&committer),
        dead_letters: &dead_letters,
        inspect: Some(&inspect),
        topic,
    };
    let status_log = crate::ops::status_log::StatusLog {
        writer: &status_writer,
        inspect: &status_inspect,
        instance: config.file.meta.name.clone(),
    };
    let sink = run_sink(parts, chain, publisher, &config.sink, &sources.pipeline, false, cancel);
    crate::ops::status_log::recorded(status_log, || publish_metrics.delivered.get(), sink).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<ConnectorArgs> {
        ConnectorArgs::parse(list.iter().map(|s| s.to_string()))
    }

    #[test]
    fn parses_the_cdk_contract() {
        assert_eq!(
            args(&["--config", "/tmp/c.yaml", "--secrets", "/tmp/s.txt"]).expect("valid"),
            ConnectorArgs {
                config: PathBuf::from("/tmp/c.yaml"),
                secrets: Some(PathBuf::from("/tmp/s.txt"))
            }
        );
        assert_eq!(
            args(&["--config=/c.yaml"]).expect("valid").config,
            PathBuf::from("/c.yaml")
        );
        assert!(args(&[]).is_err());
        assert!(args(&["--config"]).is_err());
        assert!(args(&["--config", "c", "--verbose"])
            .expect_err("unknown")
            .to_string()
            .contains("--verbose"));
    }
}
