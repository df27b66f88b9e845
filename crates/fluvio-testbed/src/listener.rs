//! A TCP server that can be stopped (listener closed, every connection
//! dropped) and started again on the same address.

use std::future::Future;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

/// A running server.
#[derive(Debug)]
pub(crate) struct Server {
    stop: CancellationToken,
    /// The accept loop; it ends once every connection has ended.
    accept: JoinHandle<()>,
}

impl Server {
    /// Binds `addr` (retrying briefly while a previous socket on the port is
    /// being released) and serves each connection with `serve`.
    pub(crate) async fn start<F, Fut>(name: &'static str, addr: SocketAddr, serve: F) -> Result<(Self, SocketAddr)>
    where
        F: Fn(TcpStream, SocketAddr, CancellationToken) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = bind(addr)
            .await
            .with_context(|| format!("binding the {name} to {addr}"))?;
        let bound = listener.local_addr().context("reading the bound address")?;
        let stop = CancellationToken::new();
        let accept = tokio::spawn(accept_loop(name, listener, serve, stop.clone()));
        tracing::debug!(%bound, "{name} listening");
        Ok((Self { stop, accept }, bound))
    }

    /// Closes the listener and every connection, and waits until they are gone.
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        let _ = self.accept.await;
    }
}

async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let mut attempt = 0;
    loop {
        match TcpListener::bind(addr).await {
            Err(e) if e.kind() == ErrorKind::AddrInUse && addr.port() != 0 && attempt < 50 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

async fn accept_loop<F, Fut>(name: &'static str, listener: TcpListener, serve: F, stop: CancellationToken)
where
    F: Fn(TcpStream, SocketAddr, CancellationToken) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            Some(_) = connections.join_next() => continue,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                tracing::debug!(%peer, "{name} connection");
                connections.spawn(serve(stream, peer, stop.child_token()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "{name} accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    drop(listener);
    // Connections watch the (now cancelled) token and close their sockets.
    while connections.join_next().await.is_some() {}
}
