//! The Stream Controller's public API: ApiVersions, object Create / Delete /
//! List / Watch. Like the real SC it serves one connection's requests one at
//! a time (a create blocks its connection until done) while that
//! connection's watches keep streaming.

mod admin;
mod watch;

use std::future::Future;
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

use crate::connection::{self, Handler};
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
    let max_frame = shared.config.max_frame_bytes;
    let connection_stop = stop.clone();
    connection::serve("SC", stream, peer, stop, max_frame, |out| Connection {
        shared,
        out,
        stop: connection_stop,
        watches: JoinSet::new(),
    })
    .await;
}

impl Handler for Connection {
    fn handle(&mut self, payload: Bytes) -> impl Future<Output = Result<()>> + Send {
        self.dispatch(payload)
    }

    fn close(&mut self) {
        self.watches.abort_all();
    }
}

impl Connection {
    async fn dispatch(&mut self, payload: Bytes) -> Result<()> {
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
