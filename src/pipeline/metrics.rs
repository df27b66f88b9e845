//! Pipeline metrics: `/metrics` (Prometheus text) and `/health` on a configurable address.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::config::sections::MetricsConfig;
use crate::falcon::FalconMetrics;
use crate::metrics::{render_value, Counter, Gauge};
use crate::pipeline::progress::PartitionHealth;
use crate::publish::PublishMetrics;

/// Counters of the stages themselves (the Falcon client and the publisher keep their own).
#[derive(Debug, Default)]
pub struct PipelineMetrics {
    /// Raw events the source wrote to the topic.
    pub read: Counter,
    /// Lines the source rejected (dead-lettered).
    pub rejected: Counter,
    /// Raw records the sink read.
    pub consumed: Counter,
    /// Raw records that produced no audit event (filtered by the SmartModule).
    pub filtered: Counter,
    /// Audit events handed to the publisher.
    pub forwarded: Counter,
    /// Raw records the SmartModule failed on (dead-lettered).
    pub transform_failures: Counter,
    /// Dead-letter records written.
    pub dead_letters_written: Counter,
    /// Raw records read but not yet committed.
    pub uncommitted: Gauge,
    /// Records in the topic after the sink's committed offset.
    pub consumer_lag: Gauge,
    health: Mutex<Health>,
}

/// State of the stages and of the sink's partitions, for `/health`.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Health {
    /// `starting`, `running`, `paused: …`, `stopped` or `failed: …`, per stage.
    pub stages: BTreeMap<String, String>,
    /// Lag and stall state of each topic partition the sink reads.
    pub partitions: BTreeMap<u32, PartitionHealth>,
}

impl Health {
    /// `failed` (a stage failed), `paused` (a stage waits, e.g. the source on a
    /// full disk: nothing lost, nothing moving), `stalled` (a partition is not
    /// being read), or `ok`.
    pub fn status(&self) -> &'static str {
        if self.stages.values().any(|s| s.starts_with("failed")) {
            "failed"
        } else if self.stages.values().any(|s| s.starts_with("paused")) {
            "paused"
        } else if self.partitions.values().any(|p| p.stalled) {
            "stalled"
        } else {
            "ok"
        }
    }
}

impl PipelineMetrics {
    /// Records a stage's state.
    pub fn set_stage(&self, stage: &str, state: impl Into<String>) {
        self.lock_health().stages.insert(stage.to_string(), state.into());
    }

    /// Records the sink's partitions; the lag gauge is their sum.
    pub fn set_partitions(&self, partitions: BTreeMap<u32, PartitionHealth>) {
        self.consumer_lag
            .set(partitions.values().map(|p| p.lag).sum::<u64>().min(i64::MAX as u64) as i64);
        self.lock_health().partitions = partitions;
    }

    /// A copy of the stage and partition states.
    pub fn health(&self) -> Health {
        self.lock_health().clone()
    }

    fn lock_health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Every metric source of one process.
#[derive(Debug, Clone, Default)]
pub struct MetricsSources {
    /// Stage counters.
    pub pipeline: Arc<PipelineMetrics>,
    /// The Falcon client's, when a source runs here.
    pub falcon: Option<Arc<FalconMetrics>>,
    /// The publisher's, when a sink runs here.
    pub publisher: Option<Arc<PublishMetrics>>,
}

impl MetricsSources {
    /// Everything in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let p = &self.pipeline;
        let counters: [(&str, &str, u64); 8] = [
            (
                "falcon_lake_events_read_total",
                "Raw events written to the topic by the source",
                p.read.get(),
            ),
            (
                "falcon_lake_events_rejected_total",
                "Lines the source rejected (dead-lettered)",
                p.rejected.get(),
            ),
            (
                "falcon_lake_records_consumed_total",
                "Raw records the sink read",
                p.consumed.get(),
            ),
            (
                "falcon_lake_events_filtered_total",
                "Raw records the SmartModule filtered out",
                p.filtered.get(),
            ),
            (
                "falcon_lake_events_forwarded_total",
                "Audit events the SmartModule emitted",
                p.forwarded.get(),
            ),
            (
                "falcon_lake_transform_failures_total",
                "Raw records the SmartModule failed on (dead-lettered)",
                p.transform_failures.get(),
            ),
            (
                "falcon_lake_dead_letters_total",
                "Dead-letter records written",
                p.dead_letters_written.get(),
            ),
            (
                "falcon_lake_events_delivered_total",
                "Audit events stored by the destination",
                self.publisher.as_ref().map_or(0, |c| c.delivered.get()),
            ),
        ];
        for (name, help, value) in counters {
            render_value(&mut out, name, "counter", help, value);
        }
        render_value(
            &mut out,
            "falcon_lake_consumer_lag",
            "gauge",
            "Records in the topic after the sink's committed offset",
            p.consumer_lag.get(),
        );
        render_partitions(&mut out, &p.health().partitions);
        render_value(
            &mut out,
            "falcon_lake_uncommitted_records",
            "gauge",
            "Raw records read but not yet committed",
            p.uncommitted.get(),
        );
        if let Some(c) = &self.publisher {
            c.render(&mut out);
        }
        if let Some(f) = &self.falcon {
            for (name, value) in f.snapshot() {
                let metric = format!("falcon_lake_falcon_{name}_total");
                render_value(
                    &mut out,
                    &metric,
                    "counter",
                    &format!("Falcon client: {}", name.replace('_', " ")),
                    value,
                );
            }
        }
        out
    }
}

fn render_partitions(out: &mut String, partitions: &BTreeMap<u32, PartitionHealth>) {
    if partitions.is_empty() {
        return;
    }
    out.push_str("# HELP falcon_lake_partition_lag Records in a topic partition after the sink's committed offset\n");
    out.push_str("# TYPE falcon_lake_partition_lag gauge\n");
    for (partition, health) in partitions {
        let _ = writeln!(
            out,
            "falcon_lake_partition_lag{{partition=\"{partition}\"}} {}",
            health.lag
        );
    }
    render_value(
        out,
        "falcon_lake_stalled_partitions",
        "gauge",
        "Topic partitions with records to read of which none was read within sink.stall_timeout",
        partitions.values().filter(|p| p.stalled).count(),
    );
}

/// The `/metrics` and `/health` server; stops when dropped.
#[derive(Debug)]
pub struct MetricsServer {
    /// The bound address (the configured one, with the port chosen if it was 0).
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves the endpoints where `config` says, if anywhere, until dropped.
pub async fn serve_configured(config: &MetricsConfig, sources: &MetricsSources) -> Result<Option<MetricsServer>> {
    match config.address {
        Some(address) => Ok(Some(serve(address, sources.clone()).await?)),
        None => Ok(None),
    }
}

/// Serves `/metrics` and `/health` on `address` until dropped.
pub async fn serve(address: SocketAddr, sources: MetricsSources) -> Result<MetricsServer> {
    let router = Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .with_state(Arc::new(sources));
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("binding metrics.address {address}"))?;
    let addr = listener.local_addr().context("reading the metrics address")?;
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "the metrics server failed");
        }
    });
    tracing::info!(url = %format!("http://{addr}/"), "serving /metrics and /health");
    Ok(MetricsServer { addr, task })
}

async fn metrics(State(sources): State<Arc<MetricsSources>>) -> impl IntoResponse {
    ([("content-type", "text/plain; version=0.0.4")], sources.render())
}

async fn health(State(sources): State<Arc<MetricsSources>>) -> impl IntoResponse {
    let health = sources.pipeline.health();
    let status = health.status();
    let code = if status == "ok" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "status": status,
        "stages": health.stages,
        "partitions": health.partitions,
        "consumer_lag": sources.pipeline.consumer_lag.get(),
    });
    (code, axum::Json(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_stage() {
        let sources = MetricsSources {
            pipeline: Arc::new(PipelineMetrics::default()),
            falcon: Some(Arc::new(FalconMetrics::default())),
            publisher: Some(Arc::new(PublishMetrics::default())),
        };
        if let Some(p) = &sources.publisher {
            p.set_operation("put_audit_events");
        }
        sources.pipeline.read.add(3);
        sources.pipeline.set_partitions(BTreeMap::from([
            (0, PartitionHealth { lag: 4, stalled: false }),
            (1, PartitionHealth { lag: 3, stalled: true }),
        ]));
        let text = sources.render();
        for needle in [
            "falcon_lake_events_read_total 3\n",
            "falcon_lake_consumer_lag 7\n",
            "falcon_lake_partition_lag{partition=\"1\"} 3\n",
            "falcon_lake_stalled_partitions 1\n",
            "falcon_lake_events_delivered_total 0\n",
            "falcon_lake_put_audit_events_seconds_count 0\n",
            "falcon_lake_falcon_reconnects_total 0\n",
            "# TYPE falcon_lake_retries_total counter\n",
        ] {
            assert!(text.contains(needle), "missing {needle:?}");
        }
        assert_eq!(sources.pipeline.health().status(), "stalled");
        sources.pipeline.set_stage("sink", "failed: the publisher panicked");
        assert_eq!(sources.pipeline.health().status(), "failed");
    }
}
