//! StreamFetch (protocol spec §4.4): the real SPU's state machine. Each frame
//! holds the bytes from the batch containing the requested offset to the end
//! of its segment, cut at `max_bytes` even inside a batch, so the 0.50.1
//! client's loss of a cut batch's tail (quirk Q1) happens here as on a real
//! cluster.

use std::sync::Arc;

use anyhow::{Context, Result};
use fluvio_protocol::api::RequestHeader;
use fluvio_protocol::link::ErrorCode;
use fluvio_protocol::record::ReplicaKey;
use fluvio_spu_schema::fetch::FetchablePartitionResponse;
use fluvio_spu_schema::server::stream_fetch::{DefaultStreamFetchRequest, StreamFetchResponse};
use tokio::sync::{mpsc, watch};

use super::records::FetchedRecords;
use super::{Connection, Session};
use crate::frame::{self, FrameSender};
use crate::log::Slice;
use crate::state::Shared;

impl Connection {
    pub(super) fn stream_fetch(&mut self, header: &RequestHeader, body: &[u8]) -> Result<()> {
        let request: DefaultStreamFetchRequest =
            frame::decode(body, header.api_version()).context("decoding StreamFetch")?;
        let replica = ReplicaKey::new(request.topic.as_str(), request.partition);
        let mut stream = FetchStream {
            shared: Arc::clone(&self.shared),
            out: self.out.clone(),
            correlation_id: header.correlation_id(),
            version: header.api_version(),
            replica: replica.clone(),
            session_id: 0,
            max_bytes: request.max_bytes,
        };
        let Some(leo) = self.shared.lock().watch_partition(&replica) else {
            tracing::debug!(partition = %replica, "SPU: stream fetch of a partition this SPU does not lead");
            stream.error_frame(ErrorCode::NotLeaderForPartition, -1, -1);
            return Ok(());
        };
        let (acks, ack_rx) = mpsc::unbounded_channel();
        stream.session_id = self.next_session;
        self.next_session += 1;
        self.sessions.insert(
            stream.session_id,
            Session {
                replica: replica.clone(),
                consumer_id: request.consumer_id.clone(),
                acks,
            },
        );
        tracing::debug!(
            partition = %replica,
            session = stream.session_id,
            from = request.fetch_offset,
            max_bytes = request.max_bytes,
            consumer_id = request.consumer_id,
            "SPU: stream fetch"
        );
        if !request.smartmodules.is_empty() {
            tracing::warn!(partition = %replica, "SPU: stream fetch with SmartModules refused; fluvio-testbed does not run SmartModules");
            let (start, end) = self.shared.lock().partition_bounds(&replica).unwrap_or((-1, -1));
            let refusal = ErrorCode::SmartModuleChainInitError("fluvio-testbed does not run SmartModules".to_owned());
            stream.error_frame(refusal, end, start);
            return Ok(());
        }
        let stop = self.stop.clone();
        let from = request.fetch_offset;
        self.streams.spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = stream.run(from, ack_rx, leo) => {}
            }
        });
        Ok(())
    }
}

/// What one `send_back` did.
enum Sent {
    /// A frame of records went out; wait for its acknowledgement.
    Records,
    /// Nothing to send from there yet.
    Idle,
    /// An error frame went out, the partition is gone or the client left.
    Ended,
}

struct FetchStream {
    shared: Arc<Shared>,
    out: FrameSender,
    correlation_id: i32,
    version: i16,
    replica: ReplicaKey,
    session_id: u32,
    max_bytes: i32,
}

impl FetchStream {
    async fn run(self, from: i64, mut acks: mpsc::UnboundedReceiver<i64>, mut leo: watch::Receiver<i64>) {
        // Where the client stands while nothing is in flight.
        let mut position = match self.send_back(from).await {
            Sent::Ended => return,
            Sent::Idle => Some(from),
            Sent::Records => None,
        };
        loop {
            tokio::select! {
                ack = acks.recv() => {
                    let Some(next) = ack else { return };
                    let end = *leo.borrow();
                    if next >= end {
                        position = Some(next);
                        continue;
                    }
                    position = match self.send_back(next).await {
                        Sent::Ended => return,
                        Sent::Idle => Some(next),
                        Sent::Records => None,
                    };
                }
                changed = leo.changed() => {
                    if changed.is_err() {
                        tracing::debug!(partition = %self.replica, session = self.session_id, "SPU: partition deleted; stream ends");
                        return;
                    }
                    let end = *leo.borrow_and_update();
                    let Some(at) = position.filter(|at| end > *at) else { continue };
                    position = match self.send_back(at).await {
                        Sent::Ended => return,
                        Sent::Idle => Some(at),
                        Sent::Records => None,
                    };
                }
            }
        }
    }

    /// Sends what the log holds from `from`, once the partition's frames are
    /// not held back.
    async fn send_back(&self, from: i64) -> Sent {
        self.shared.fetches_released(&self.replica).await;
        let found = {
            let state = self.shared.lock();
            state
                .partition_log(&self.replica)
                .map(|log| (log.slice(from, self.max_bytes), log.leo(), log.start()))
        };
        let Some((slice, hw, start)) = found else {
            return Sent::Ended;
        };
        match slice {
            Slice::Evicted { next_available } => {
                tracing::debug!(partition = %self.replica, from, next_available, "SPU: fetch below the log start");
                self.error_frame(
                    ErrorCode::OffsetEvicted {
                        offset: from,
                        next_available,
                    },
                    hw,
                    start,
                );
                Sent::Ended
            }
            Slice::BeyondEnd { leo } => {
                let message = format!("start offset {from} is greater than leo {leo}");
                self.error_frame(ErrorCode::Other(message), hw, start);
                Sent::Ended
            }
            Slice::AtEnd => Sent::Idle,
            Slice::Records { parts, end } => {
                let records = FetchedRecords(parts);
                tracing::trace!(partition = %self.replica, from, end, batches = records.0.len(), "SPU: stream frame");
                if self.frame(ErrorCode::None, hw, start, records) {
                    Sent::Records
                } else {
                    Sent::Ended
                }
            }
        }
    }

    fn error_frame(&self, error_code: ErrorCode, hw: i64, start: i64) {
        self.frame(error_code, hw, start, FetchedRecords::default());
    }

    /// Sends one frame; `false` if it could not be.
    fn frame(&self, error_code: ErrorCode, hw: i64, start: i64, records: FetchedRecords) -> bool {
        let response = StreamFetchResponse {
            topic: self.replica.topic.clone(),
            stream_id: self.session_id,
            partition: FetchablePartitionResponse {
                partition_index: self.replica.partition,
                error_code,
                high_watermark: hw,
                next_filter_offset: 0,
                log_start_offset: start,
                aborted: None,
                records,
            },
        };
        match frame::response(self.correlation_id, &response, self.version) {
            Ok(bytes) => self.out.send(bytes).is_ok(),
            Err(e) => {
                tracing::warn!(partition = %self.replica, error = %e, "SPU: encoding a stream frame failed");
                false
            }
        }
    }
}
