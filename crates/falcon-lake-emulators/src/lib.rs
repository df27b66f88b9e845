//! Emulators of the external APIs falcon-lake talks to (CrowdStrike Falcon Event
//! Streams, AWS CloudTrail Data), for demos, dry runs and every test. Written
//! from the APIs' specifications, independently of the client code: this crate
//! does not depend on falcon-lake, so a check cannot be shared by both sides.

// Handler helpers return `Err(response)` to answer early with a finished AWS or
// CrowdStrike error; the responses are built once per refused request, not on
// any hot path, so boxing them would only add noise.
#![allow(clippy::result_large_err)]

pub mod aws;
pub mod cloudtrail;
pub mod cloudwatch;
pub mod control;
pub mod falcon;
pub mod json;
pub mod sigv4;
pub mod time;
mod tls;

pub use tls::TlsArgs;

use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Locks a mutex, recovering the data if a panicking thread poisoned it (the
/// emulators keep serving whatever one request did).
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// An HTTP server on loopback, stopped on drop.
#[derive(Debug)]
pub struct Server {
    /// `http://<address>`.
    pub url: url::Url,
    /// The bound address.
    pub addr: SocketAddr,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds `listen` and serves `router` over HTTPS when `tls` names a
    /// certificate and key, else over plain HTTP (see [`Server::start`]).
    pub async fn start_with(listen: SocketAddr, router: Router, tls: &TlsArgs) -> Result<Self> {
        match tls.server_config()? {
            Some(config) => Self::start_tls(listen, router, config).await,
            None => Self::start(listen, router).await,
        }
    }

    /// Like [`Server::start`], over TLS with `config`; the URL is `https://<address>`.
    async fn start_tls(listen: SocketAddr, router: Router, config: tls::ServerConfig) -> Result<Self> {
        let tcp = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        let addr = tcp.local_addr().context("reading the bound address")?;
        let url = url::Url::parse(&format!("https://{addr}")).context("building the URL")?;
        let stop = CancellationToken::new();
        let listener = tls::TlsListener::spawn(tcp, config, stop.clone());
        let shutdown = stop.clone();
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        let task = tokio::spawn(async move {
            use axum::serve::ListenerExt;
            // `tap_io` gives the listener axum's client-address plumbing.
            let served = axum::serve(listener.tap_io(|_| {}), service)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "emulator server failed");
            }
        });
        Ok(Self {
            url,
            addr,
            stop,
            task: Some(task),
        })
    }

    /// Binds `listen` and serves `router` (with client addresses) in the background.
    pub async fn start(listen: SocketAddr, router: Router) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let url = url::Url::parse(&format!("http://{addr}")).context("building the URL")?;
        let stop = CancellationToken::new();
        let shutdown = stop.clone();
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, service)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "emulator server failed");
            }
        });
        Ok(Self {
            url,
            addr,
            stop,
            task: Some(task),
        })
    }

    /// Stops accepting requests (open streams are dropped).
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Parses a duration written like `500ms`, `30s` or `5m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("{text:?} is not a duration like 500ms, 30s or 5m ({e})"))
}
