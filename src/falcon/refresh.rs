//! Session refresh: `POST refreshActiveSessionURL` at 90 % of the interval, on its
//! own timer (a refresh driven by incoming data lets quiet streams expire).

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use tokio_util::sync::CancellationToken;

use crate::falcon::auth::Auth;
use crate::falcon::discovery::StreamResource;
use crate::falcon::error::{envelope_message, error_chain};
use crate::falcon::metrics::FalconMetrics;

/// Shortest refresh period, whatever the interval says.
const MIN_PERIOD: Duration = Duration::from_millis(500);

/// Why a refresh loop ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshEnd {
    /// Shutdown or the generation ended.
    Cancelled,
    /// HTTP 404: the session is gone; re-discover.
    SessionGone,
    /// The refresh failed twice in a row.
    Failed(String),
}

/// When to refresh: 90 % of the session interval.
pub fn refresh_period(interval: Duration) -> Duration {
    interval.mul_f64(0.9).max(MIN_PERIOD)
}

/// Refreshes one partition's session until cancelled or the session is lost.
pub async fn refresh_loop(
    http: &reqwest::Client,
    auth: &Auth,
    resource: &StreamResource,
    metrics: &Arc<FalconMetrics>,
    cancel: &CancellationToken,
) -> RefreshEnd {
    let period = refresh_period(resource.refresh_interval);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return RefreshEnd::Cancelled,
            _ = tokio::time::sleep(period) => {}
        }
        let mut outcome = refresh_once(http, auth, resource).await;
        if let Err(Attempt::Retry(reason)) = &outcome {
            tracing::warn!(partition = resource.partition, %reason, "session refresh failed; retrying once");
            tokio::select! {
                _ = cancel.cancelled() => return RefreshEnd::Cancelled,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            outcome = refresh_once(http, auth, resource).await;
        }
        match outcome {
            Ok(()) => {
                FalconMetrics::inc(&metrics.refreshes);
                tracing::debug!(partition = resource.partition, "session refreshed");
            }
            Err(Attempt::Gone) => {
                FalconMetrics::inc(&metrics.refresh_failures);
                return RefreshEnd::SessionGone;
            }
            Err(Attempt::Retry(reason)) => {
                FalconMetrics::inc(&metrics.refresh_failures);
                return RefreshEnd::Failed(reason);
            }
        }
    }
}

enum Attempt {
    Gone,
    Retry(String),
}

async fn refresh_once(http: &reqwest::Client, auth: &Auth, resource: &StreamResource) -> Result<(), Attempt> {
    let token = auth.token().await.map_err(|e| Attempt::Retry(e.to_string()))?;
    let response = http
        .post(resource.refresh_url.clone())
        .header(reqwest::header::AUTHORIZATION, format!("Bearer {}", token.expose()))
        .header(reqwest::header::ACCEPT, "application/json")
        .header(reqwest::header::CONTENT_LENGTH, "0")
        .send()
        .await
        .map_err(|e| Attempt::Retry(format!("request failed: {}", error_chain(&e))))?;
    match response.status() {
        StatusCode::OK => Ok(()),
        StatusCode::NOT_FOUND => Err(Attempt::Gone),
        StatusCode::UNAUTHORIZED => {
            auth.invalidate().await;
            Err(Attempt::Retry("HTTP 401: bearer token not accepted".to_string()))
        }
        status => {
            let body = response.bytes().await.unwrap_or_default();
            Err(Attempt::Retry(format!(
                "HTTP {}: {}",
                status.as_u16(),
                envelope_message(&body)
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refreshes_at_ninety_percent() {
        assert_eq!(refresh_period(Duration::from_secs(1800)), Duration::from_secs(1620));
        assert_eq!(refresh_period(Duration::from_millis(100)), MIN_PERIOD);
    }
}
