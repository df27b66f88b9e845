//! The Stream Controller's public API: ApiVersions, object Create / Delete /
//! List / Watch. Like the real SC it serves one connection's requests one at
//! a time (a create blocks its connection until done) while that
//! connection's watches keep streaming.

mod admin;
mod watch;

use std::io::Cursor;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;
use fluvio_protocol::api::{ApiMessage, RequestMessage};
use fluvio_protocol::link::versions::ApiVersionsRequest;
use fluvio_protocol::link::ErrorCode;
use fluvio_protocol::Encoder;
use fluvio_sc_schema::objects::ObjectApiUpdateRequest;
use fluvio_sc_schema::{AdminPublicDecodedRequest, Status};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::frame::{self, FrameSender};
use crate::state::Shared;
use crate::versions;

/// One client connection to the SC.
pub(crate) struct Connection {
    shared: Arc<Shared>,
    out: FrameSender,
    stop: CancellationToken,
    watches: JoinSet<()>,
}

/// Serves a connection until the client leaves or the SC stops.
pub(crate) async fn serve(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr, stop: CancellationToken) {
    let (mut reader, writer) = stream.into_split();
    let (out, writer_task) = frame::spawn_writer(writer, stop.clone());
    let max_frame = shared.config.max_frame_bytes;
    let mut connection = Connection {
        shared,
        out,
        stop: stop.clone(),
        watches: JoinSet::new(),
    };
    loop {
        let payload = tokio::select! {
            _ = stop.cancelled() => break,
            payload = frame::read_frame(&mut reader, max_frame) => payload,
        };
        let payload = match payload {
            Ok(Some(payload)) => payload,
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "SC: unreadable frame; closing the connection");
                break;
            }
        };
        let handled = tokio::select! {
            _ = stop.cancelled() => break,
            handled = connection.handle(payload) => handled,
        };
        if let Err(e) = handled {
            tracing::warn!(%peer, error = format!("{e:#}"), "SC: bad request; closing the connection");
            break;
        }
    }
    stop.cancel();
    connection.watches.abort_all();
    let _ = writer_task.await;
    tracing::debug!(%peer, "SC connection closed");
}

impl Connection {
    async fn handle(&mut self, payload: Bytes) -> Result<()> {
        let request = frame::guarded(|| AdminPublicDecodedRequest::decode_from(&mut Cursor::new(payload.as_ref())))
            .context("decoding an SC request")?;
        match request {
            AdminPublicDecodedRequest::ApiVersionsRequest(request) => self.api_versions(request),
            AdminPublicDecodedRequest::CreateRequest(request) => self.create(*request).await,
            AdminPublicDecodedRequest::DeleteRequest(request) => self.delete(request),
            AdminPublicDecodedRequest::ListRequest(request) => self.list(request),
            AdminPublicDecodedRequest::WatchRequest(request) => self.watch(request),
            AdminPublicDecodedRequest::UpdateRequest(request) => self.update(request),
            AdminPublicDecodedRequest::MirroringRequest(request) => {
                tracing::warn!(
                    client = request.header.client_id(),
                    "SC: mirroring is not supported; request ignored"
                );
                Ok(())
            }
        }
    }

    fn api_versions(&self, request: RequestMessage<ApiVersionsRequest>) -> Result<()> {
        let header = &request.header;
        tracing::debug!(
            client = header.client_id(),
            client_version = request.request.client_version,
            "SC: ApiVersions"
        );
        self.reply(header.correlation_id(), &versions::sc(), header.api_version())
    }

    fn update(&self, request: RequestMessage<ObjectApiUpdateRequest>) -> Result<()> {
        tracing::warn!("SC: object updates are not supported by fluvio-testbed");
        let status = Status::new(
            String::new(),
            ErrorCode::Other("fluvio-testbed does not support object updates".to_owned()),
            None,
        );
        self.reply(request.header.correlation_id(), &status, request.header.api_version())
    }

    /// Sends one response frame.
    fn reply<T: Encoder>(&self, correlation_id: i32, body: &T, version: i16) -> Result<()> {
        let bytes = frame::response(correlation_id, body, version).context("encoding a response")?;
        // A closed writer means the connection is going away; the read loop ends it.
        let _ = self.out.send(bytes);
        Ok(())
    }
}
