//! `falcon-lake emulate falcon`: a faithful CrowdStrike Falcon Event Streams API
//! on loopback (spec §16 checklist), with a seeded event generator, fault
//! injection and a test-only control API.

pub mod api;
pub mod config;
pub mod control;
pub mod generator;
pub mod state;
pub mod stream;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::routing::{get, post};
use axum::Router;

use crate::Server;
pub use config::{ControlFault, FalconEmulatorConfig, FaultRates, RegionMode, SessionLinger};
pub use generator::{Generator, Mix};
pub use state::EmulatorState;

/// A running Falcon emulator.
#[derive(Debug)]
pub struct FalconEmulator {
    /// Its state (for in-process inspection by the demo).
    pub state: Arc<EmulatorState>,
    /// The HTTP server.
    pub server: Server,
}

impl FalconEmulator {
    /// Loads or generates the events and starts serving.
    pub async fn start(config: FalconEmulatorConfig) -> Result<Self> {
        config.validate()?;
        let state = Arc::new(EmulatorState::new(config.clone()));
        if let Some(path) = &config.events_file {
            load_file(&state, path)?;
        }
        if config.rate > 0.0 {
            tokio::spawn(generate_at_rate(state.clone(), config.events, config.rate));
        } else {
            state.append_generated(config.events);
        }
        let server = Server::start_with(config.listen, router(state.clone()), &config.tls).await?;
        Ok(Self { state, server })
    }

    /// Base URL of the emulated API.
    pub fn url(&self) -> &url::Url {
        &self.server.url
    }
}

/// The emulated API at `/` and at `/_region/<cloud>/`, plus the control API.
pub fn router(state: Arc<EmulatorState>) -> Router {
    let api = || {
        Router::new()
            .route("/oauth2/token", post(api::token))
            .route("/oauth2/revoke", post(api::revoke))
            .route("/sensors/entities/datafeed/v2", get(api::discover))
            .route("/sensors/entities/datafeed/v1/{partition}", get(stream::feed))
            .route("/sensors/entities/datafeed-actions/v1/{partition}", post(api::refresh))
    };
    let control = Router::new()
        .route("/_emulator/faults", post(control::add_fault))
        .route("/_emulator/sessions/expire", post(control::expire_sessions))
        .route("/_emulator/tokens/expire", post(control::expire_tokens))
        .route("/_emulator/events/generate", post(control::generate))
        .route("/_emulator/events", post(control::append).get(control::list))
        .route("/_emulator/stats", get(control::stats))
        .layer(axum::extract::DefaultBodyLimit::max(256 * 1024 * 1024));
    api()
        .nest("/_region/{region}", api())
        .merge(control)
        .fallback(|| async {
            api::error_reply(
                axum::http::StatusCode::NOT_FOUND,
                "crowdstrike-api-gateway",
                "Not Found",
            )
        })
        .with_state(state)
}

fn load_file(state: &EmulatorState, path: &std::path::Path) -> Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading --events-file {}", path.display()))?;
    let partitions = state.partitions.len() as u32;
    for (n, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        state
            .append_line(n as u32 % partitions, line)
            .map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), n + 1))?;
    }
    Ok(())
}

async fn generate_at_rate(state: Arc<EmulatorState>, total: u64, rate: f64) {
    let tick = Duration::from_millis(10);
    let started = tokio::time::Instant::now();
    let mut done = 0;
    while done < total {
        tokio::time::sleep(tick).await;
        let due = ((started.elapsed().as_secs_f64() * rate) as u64).min(total);
        if due > done {
            state.append_generated(due - done);
            done = due;
        }
    }
}
