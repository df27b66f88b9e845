//! Pipeline metrics: `/metrics` (Prometheus text) and `/health` on a configurable address.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::cloudtrail::CloudTrailMetrics;
use crate::config::sections::MetricsConfig;
use crate::falcon::FalconMetrics;
use crate::metrics::{render_value, Counter, Gauge};

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

/// State of the stages, for `/health`.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Health {
    /// `starting`, `running`, `paused: …`, `stopped` or `failed: …`, per stage.
    pub stages: std::collections::BTreeMap<String, String>,
}

impl PipelineMetrics {
    /// Records a stage's state.
    pub fn set_stage(&self, stage: &str, state: impl Into<String>) {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        health.stages.insert(stage.to_string(), state.into());
    }

    /// A copy of the stage states.
    pub fn health(&self) -> Health {
        self.health.lock().unwrap_or_else(|p| p.into_inner()).clone()
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
    pub cloudtrail: Option<Arc<CloudTrailMetrics>>,
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
                "Audit events stored by CloudTrail",
                self.cloudtrail.as_ref().map_or(0, |c| c.delivered.get()),
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
        render_value(
            &mut out,
            "falcon_lake_uncommitted_records",
            "gauge",
            "Raw records read but not yet committed",
            p.uncommitted.get(),
        );
        if let Some(c) = &self.cloudtrail {
            render_cloudtrail(&mut out, c);
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

fn render_cloudtrail(out: &mut String, c: &CloudTrailMetrics) {
    let counters: [(&str, &str, u64); 6] = [
        (
            "falcon_lake_events_dead_lettered_total",
            "Audit events CloudTrail refused (dead-lettered)",
            c.dead_lettered.get(),
        ),
        (
            "falcon_lake_retries_total",
            "Sends retried (whole requests and single events)",
            c.request_retries.get() + c.event_retries.get(),
        ),
        (
            "falcon_lake_put_audit_events_requests_total",
            "PutAuditEvents requests completed",
            c.requests.get(),
        ),
        (
            "falcon_lake_put_audit_events_failures_total",
            "PutAuditEvents requests that failed as a whole",
            c.request_failures.get(),
        ),
        (
            "falcon_lake_put_audit_events_throttled_total",
            "PutAuditEvents requests throttled",
            c.throttled.get(),
        ),
        (
            "falcon_lake_event_retries_total",
            "Single events resent after Throttling/InternalFailure",
            c.event_retries.get(),
        ),
    ];
    for (name, help, value) in counters {
        render_value(out, name, "counter", help, value);
    }
    render_value(
        out,
        "falcon_lake_put_audit_events_in_flight",
        "gauge",
        "Requests in flight",
        c.in_flight.get(),
    );
    c.latency.render(
        out,
        "falcon_lake_put_audit_events_seconds",
        "PutAuditEvents latency (batch latency)",
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
    let failed = health.stages.values().any(|s| s.starts_with("failed"));
    // A paused stage (e.g. the source on a full disk) loses nothing but does
    // not move either: unhealthy until it goes on.
    let paused = health.stages.values().any(|s| s.starts_with("paused"));
    let status = if failed || paused {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let body = serde_json::json!({
        "status": if failed { "failed" } else if paused { "paused" } else { "ok" },
        "stages": health.stages,
        "consumer_lag": sources.pipeline.consumer_lag.get(),
    });
    (status, axum::Json(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_stage() {
        let sources = MetricsSources {
            pipeline: Arc::new(PipelineMetrics::default()),
            falcon: Some(Arc::new(FalconMetrics::default())),
            cloudtrail: Some(Arc::new(CloudTrailMetrics::default())),
        };
        sources.pipeline.read.add(3);
        sources.pipeline.consumer_lag.set(7);
        let text = sources.render();
        for needle in [
            "falcon_lake_events_read_total 3\n",
            "falcon_lake_consumer_lag 7\n",
            "falcon_lake_events_delivered_total 0\n",
            "falcon_lake_put_audit_events_seconds_count 0\n",
            "falcon_lake_falcon_reconnects_total 0\n",
            "# TYPE falcon_lake_retries_total counter\n",
        ] {
            assert!(text.contains(needle), "missing {needle:?}");
        }
    }
}
