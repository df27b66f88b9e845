//! The embedded default: source, SmartModule and sink in one process over the
//! embedded log, running the same stage code as the connectors.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use aws_credential_types::Credentials;
use tokio_util::sync::CancellationToken;

use crate::config::embedded::EmbeddedConfig;
use crate::falcon::{FalconClient, FalconMetrics};
use crate::pipeline::metrics::{serve_configured, MetricsSources, PipelineMetrics};
use crate::pipeline::recovery::TopicCursors;
use crate::pipeline::sink::{run_sink, SinkEnd, SinkParts};
use crate::pipeline::source::run_source;
use crate::publish::{PublishMetrics, Publisher};
use crate::topic::sqlite::{SourceClaim, SqliteLog, SqliteTopic};
use crate::transform::{load_chain, TransformChain};

/// How often retention runs.
const RETENTION_EVERY: Duration = Duration::from_secs(60);

/// A built embedded pipeline, ready to run. Building checks everything that
/// can be checked before reading a single event (config, log, SmartModule
/// parameters, AWS client).
pub struct EmbeddedPipeline {
    config: EmbeddedConfig,
    raw: SqliteTopic,
    dead_letters: SqliteTopic,
    status: SqliteTopic,
    client: FalconClient,
    chain: TransformChain,
    publisher: Publisher,
    metrics: MetricsSources,
    _claim: SourceClaim,
}

impl std::fmt::Debug for EmbeddedPipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedPipeline")
            .field("topic", &self.config.topic())
            .finish()
    }
}

impl EmbeddedPipeline {
    /// Builds the pipeline; `credentials` override the AWS default chain.
    pub async fn build(config: EmbeddedConfig, credentials: Option<Credentials>) -> Result<Self> {
        let log = SqliteLog::open(&config.storage_path(), config.storage.sync)?;
        let claim = log.claim_for_source()?;
        let raw = log.topic(config.topic())?;
        let dead_letters = log.topic(&config.dead_letter_topic())?;
        let status = log.topic(&crate::ops::topics::status_topic(config.topic()))?;
        let falcon_metrics = Arc::new(FalconMetrics::default());
        let client = FalconClient::new(config.falcon.clone(), falcon_metrics.clone())?;
        let chain = load_chain(&config.transforms, &config.base_dir, None).await?;
        let publish_metrics = Arc::new(PublishMetrics::default());
        let publisher = Publisher::new(&config.destination, credentials, publish_metrics.clone()).await?;
        let metrics = MetricsSources {
            pipeline: Arc::new(PipelineMetrics::default()),
            falcon: Some(falcon_metrics),
            publisher: Some(publish_metrics),
        };
        Ok(Self {
            config,
            raw,
            dead_letters,
            status,
            client,
            chain,
            publisher,
            metrics,
            _claim: claim,
        })
    }

    /// The pipeline's metrics.
    pub fn metrics(&self) -> MetricsSources {
        self.metrics.clone()
    }

    /// Runs until `cancel` fires or a stage fails for good.
    pub async fn run(self, cancel: CancellationToken) -> Result<()> {
        let _server = serve_configured(&self.config.metrics, &self.metrics).await?;
        let consumer = self.config.meta.consumer_id();
        let reader = self
            .raw
            .reader(Some(&consumer), self.config.meta.consumer_start()?)
            .await?;
        let committer = self.raw.committer(&consumer);
        let cursors = TopicCursors::new(self.raw.clone());
        let stop = cancel.child_token();
        let pipeline = self.metrics.pipeline.clone();
        let source = async {
            let result = run_source(
                &self.client,
                &cursors,
                &self.raw,
                &self.dead_letters,
                &pipeline,
                stop.clone(),
            )
            .await;
            if result.is_err() {
                stop.cancel();
            }
            result
        };
        let parts = SinkParts {
            reader,
            committer: Some(&committer),
            dead_letters: &self.dead_letters,
            inspect: Some(&self.raw),
            topic: self.raw.name().to_string(),
        };
        let status_log = crate::ops::status_log::StatusLog {
            writer: &self.status,
            inspect: &self.status,
            instance: self.config.meta.name.clone(),
        };
        let delivered = self.metrics.publisher.clone();
        let sink = async {
            let sink = run_sink(
                parts,
                self.chain,
                self.publisher,
                &self.config.sink,
                &pipeline,
                false,
                stop.clone(),
            );
            let delivered = || delivered.as_ref().map_or(0, |m| m.delivered.get());
            let result = crate::ops::status_log::recorded(status_log, delivered, sink).await;
            // The sink ends only on a stop or a failure; either way the source
            // must not go on filling a log nobody reads.
            stop.cancel();
            result
        };
        let others = [&self.dead_letters, &self.status];
        let retention = retention_loop(&self.config, &self.raw, &others, &consumer, stop.clone());
        let (source, sink, ()) = tokio::join!(source, sink, retention);
        source.context("the Falcon source stopped")?;
        match sink.context("the sink stopped")? {
            SinkEnd::Stopped { abandoned } if abandoned > 0 => {
                tracing::info!(
                    abandoned,
                    "stopped; unsettled records will be delivered after the next start"
                )
            }
            _ => tracing::info!("stopped cleanly"),
        }
        Ok(())
    }
}

/// Applies the retention policy periodically; never deletes what the sink has not settled.
async fn retention_loop(
    config: &EmbeddedConfig,
    raw: &SqliteTopic,
    others: &[&SqliteTopic],
    consumer: &str,
    stop: CancellationToken,
) {
    let policy = &config.storage.retention;
    if policy.max_age.is_none() && policy.max_bytes.is_none() {
        return;
    }
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(RETENTION_EVERY) => {}
        }
        let keep_from = match raw.committed(consumer).await {
            Ok(committed) => committed.map_or(0, |c| c + 1),
            Err(e) => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "retention skipped: cannot read the sink's offset"
                );
                continue;
            }
        };
        let others = others.iter().map(|t| (*t, None));
        for (topic, keep) in std::iter::once((raw, Some(keep_from))).chain(others) {
            match topic.enforce_retention(policy.max_age, policy.max_bytes, keep).await {
                Ok(report) if report.held_back => tracing::warn!(
                    topic = topic.name(),
                    deleted = report.deleted,
                    "retention limits exceeded, but the sink has not settled older records yet; keeping them"
                ),
                Ok(report) if report.deleted > 0 => tracing::info!(
                    topic = topic.name(),
                    deleted = report.deleted,
                    "retention deleted old records"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(topic = topic.name(), error = format!("{e:#}"), "retention failed"),
            }
        }
    }
}
