//! `falcon-lake emulate cloudtrail`: a faithful CloudTrail Data API
//! (`PutAuditEvents`) on loopback (spec §14 checklist): channels and policies,
//! SigV4, limits and the schema (checks of its own, from the specification),
//! AWS's error wire format, a request-rate throttle, latency, fault
//! injection, and an inspection API.

pub mod api;
pub mod arn;
pub mod config;
pub mod control;
pub mod schema;
pub mod state;

use std::sync::Arc;

use anyhow::Result;
use axum::routing::{get, post};
use axum::Router;

use crate::Server;
pub use config::{CloudTrailEmulatorConfig, CloudTrailFault, EventFailureRates, RequestFailureRates};
pub use state::CloudTrailState;

/// A running CloudTrail emulator.
#[derive(Debug)]
pub struct CloudTrailEmulator {
    /// Its state (for in-process inspection by the demo).
    pub state: Arc<CloudTrailState>,
    /// The HTTP server.
    pub server: Server,
}

impl CloudTrailEmulator {
    /// Starts serving.
    pub async fn start(config: CloudTrailEmulatorConfig) -> Result<Self> {
        config.validate()?;
        let state = Arc::new(CloudTrailState::new(config.clone())?);
        let server = Server::start_with(config.listen, router(state.clone()), &config.tls).await?;
        Ok(Self { state, server })
    }

    /// The endpoint URL (for `cloudtrail.endpoint_url` or `AWS_ENDPOINT_URL_CLOUDTRAIL_DATA`).
    pub fn url(&self) -> &url::Url {
        &self.server.url
    }
}

/// `POST /PutAuditEvents`, the inspection API, and restJson1 404s elsewhere.
pub fn router(state: Arc<CloudTrailState>) -> Router {
    Router::new()
        .route("/PutAuditEvents", post(api::put_audit_events))
        .route("/_emulator/events", get(control::events))
        .route("/_emulator/ids", get(control::ids))
        .route("/_emulator/stats", get(control::stats))
        .route("/_emulator/faults", post(control::add_fault))
        .route("/_emulator/reset", post(control::reset))
        .fallback(|| async {
            api::aws_error(
                axum::http::StatusCode::NOT_FOUND,
                "UnknownOperationException",
                "Not Found",
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(8 * 1024 * 1024))
        .with_state(state)
}
