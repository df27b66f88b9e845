//! The SPU's public API: ApiVersions, Produce, FetchOffsets, StreamFetch,
//! UpdateOffsets and the consumer-offset calls. Serial requests of a
//! connection are served in order; each StreamFetch runs as its own task
//! writing frames on the connection until the connection closes.

mod fetch;
mod offsets;
mod produce;
mod records;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use fluvio_protocol::api::RequestHeader;
use fluvio_protocol::link::versions::ApiVersionsRequest;
use fluvio_protocol::record::ReplicaKey;
use fluvio_protocol::Encoder;
use fluvio_spu_schema::server::SpuServerApiKey;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::connection::{self, Handler};
use crate::frame::{self, FrameSender};
use crate::state::Shared;
use crate::versions;

/// A stream-fetch session of a connection.
#[derive(Debug)]
struct Session {
    replica: ReplicaKey,
    consumer_id: Option<String>,
    /// Offsets acknowledged by the client (UpdateOffsets), to the stream task.
    acks: mpsc::UnboundedSender<i64>,
}

/// One client connection to the SPU.
pub(crate) struct Connection {
    shared: Arc<Shared>,
    out: FrameSender,
    stop: CancellationToken,
    /// Session ids start at 1 on every connection.
    next_session: u32,
    sessions: HashMap<u32, Session>,
    streams: JoinSet<()>,
}

/// Serves a connection until the client leaves or the SPU stops.
pub(crate) async fn serve(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr, stop: CancellationToken) {
    let max_frame = shared.config.max_frame_bytes;
    let connection_stop = stop.clone();
    connection::serve("SPU", stream, peer, stop, max_frame, |out| Connection {
        shared,
        out,
        stop: connection_stop,
        next_session: 1,
        sessions: HashMap::new(),
        streams: JoinSet::new(),
    })
    .await;
}

impl Handler for Connection {
    fn handle(&mut self, payload: Bytes) -> impl Future<Output = Result<()>> + Send {
        let handled = self.dispatch(payload);
        async move { handled }
    }

    fn close(&mut self) {
        self.streams.abort_all();
    }
}

impl Connection {
    fn dispatch(&mut self, payload: Bytes) -> Result<()> {
        let (header, body) = frame::split_header(&payload).context("decoding a request header")?;
        let key = header.api_key();
        match key {
            k if k == SpuServerApiKey::ApiVersion as u16 => self.api_versions(&header, &body),
            k if k == SpuServerApiKey::Produce as u16 => self.produce(&header, &body),
            k if k == SpuServerApiKey::FetchOffsets as u16 => self.fetch_offsets(&header, &body),
            k if k == SpuServerApiKey::StreamFetch as u16 => self.stream_fetch(&header, &body),
            k if k == SpuServerApiKey::UpdateOffsets as u16 => self.update_offsets(&header, &body),
            k if k == SpuServerApiKey::UpdateConsumerOffset as u16 => self.update_consumer_offset(&header, &body),
            k if k == SpuServerApiKey::DeleteConsumerOffset as u16 => self.delete_consumer_offset(&header, &body),
            k if k == SpuServerApiKey::FetchConsumerOffsets as u16 => self.fetch_consumer_offsets(&header, &body),
            other => bail!(
                "api key {other} is not served by fluvio-testbed (client {})",
                header.client_id()
            ),
        }
    }

    fn api_versions(&self, header: &RequestHeader, body: &[u8]) -> Result<()> {
        let request: ApiVersionsRequest = frame::decode(body, header.api_version()).context("decoding ApiVersions")?;
        tracing::debug!(
            client = header.client_id(),
            client_version = request.client_version,
            "SPU: ApiVersions"
        );
        self.reply(header, &versions::spu(&request.client_version))
    }

    /// Sends one response frame at the request's version.
    fn reply<T: Encoder>(&self, header: &RequestHeader, body: &T) -> Result<()> {
        let bytes =
            frame::response(header.correlation_id(), body, header.api_version()).context("encoding a response")?;
        // A closed writer means the connection is going away; the read loop ends it.
        let _ = self.out.send(bytes);
        Ok(())
    }
}
