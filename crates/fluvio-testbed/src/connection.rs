//! The life of one client connection, the same for the SC and the SPU: a
//! writer task owning the socket's write half, requests read in order and
//! handed to the server's handler, everything closed together.

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Result;
use bytes::Bytes;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::frame::{self, FrameSender};

/// A server's side of a connection.
pub(crate) trait Handler: Send {
    /// Serves one request; an error closes the connection.
    fn handle(&mut self, payload: Bytes) -> impl Future<Output = Result<()>> + Send;
    /// Ends the connection's background work (watches, stream fetches).
    fn close(&mut self);
}

/// Serves `stream` with the handler `start` builds from the connection's
/// frame sender, until the client leaves, a request is bad or `stop` fires.
pub(crate) async fn serve<H: Handler>(
    role: &'static str,
    stream: TcpStream,
    peer: SocketAddr,
    stop: CancellationToken,
    max_frame: usize,
    start: impl FnOnce(FrameSender) -> H,
) {
    let (mut reader, writer) = stream.into_split();
    let (out, writer_task) = frame::spawn_writer(writer, stop.clone());
    let mut handler = start(out);
    loop {
        let payload = tokio::select! {
            _ = stop.cancelled() => break,
            payload = frame::read_frame(&mut reader, max_frame) => payload,
        };
        let payload = match payload {
            Ok(Some(payload)) => payload,
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "{role}: unreadable frame; closing the connection");
                break;
            }
        };
        let handled = tokio::select! {
            _ = stop.cancelled() => break,
            handled = handler.handle(payload) => handled,
        };
        if let Err(e) = handled {
            tracing::warn!(%peer, error = format!("{e:#}"), "{role}: bad request; closing the connection");
            break;
        }
    }
    stop.cancel();
    handler.close();
    let _ = writer_task.await;
    tracing::debug!(%peer, "{role} connection closed");
}
