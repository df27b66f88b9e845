//! `falcon-lake emulate cloudwatch`: a faithful CloudWatch Logs API on
//! loopback (the specification's checklist, `cloudwatch-logs-and-ocsf.md`
//! §1.11): awsJson1.1 with SigV4 (service `logs`), log groups and streams,
//! `PutLogEvents` with every batch rule and partial rejects, `GetLogEvents`
//! and `FilterLogEvents` to read back, a request-rate throttle, latency,
//! fault injection, an injectable clock, and an inspection API.

pub mod api;
pub mod config;
pub mod control;
pub mod put;
pub mod read;
pub mod state;
pub mod validate;

use std::sync::Arc;

use anyhow::Result;
use axum::routing::{get, post};
use axum::Router;

use crate::Server;
pub use config::{CloudWatchEmulatorConfig, CloudWatchFault, RequestFailureRates};
pub use state::CloudWatchState;

/// A running CloudWatch Logs emulator.
#[derive(Debug)]
pub struct CloudWatchEmulator {
    /// Its state (for in-process inspection by the demo).
    pub state: Arc<CloudWatchState>,
    /// The HTTP server.
    pub server: Server,
}

impl CloudWatchEmulator {
    /// Starts serving.
    pub async fn start(config: CloudWatchEmulatorConfig) -> Result<Self> {
        config.validate()?;
        let state = Arc::new(CloudWatchState::new(config.clone())?);
        let server = Server::start_with(config.listen, router(state.clone()), &config.tls).await?;
        Ok(Self { state, server })
    }

    /// The endpoint URL (for `cloudwatch.endpoint_url` or `AWS_ENDPOINT_URL_CLOUDWATCH_LOGS`).
    pub fn url(&self) -> &url::Url {
        &self.server.url
    }
}

/// `POST /` (every operation), the inspection API, and JSON 1.1 errors elsewhere.
pub fn router(state: Arc<CloudWatchState>) -> Router {
    Router::new()
        .route("/", post(api::handle))
        .route("/_emulator/events", get(control::events))
        .route("/_emulator/messages", get(control::messages))
        .route("/_emulator/stats", get(control::stats))
        .route("/_emulator/faults", post(control::add_fault))
        .route("/_emulator/clock", post(control::clock))
        .route("/_emulator/reset", post(control::reset))
        .fallback(|| async {
            let body = serde_json::json!({"__type": "UnknownOperationException", "message": "Not Found"});
            api::json_response(axum::http::StatusCode::NOT_FOUND, &body)
        })
        .layer(axum::extract::DefaultBodyLimit::max(8 * 1024 * 1024))
        .with_state(state)
}
