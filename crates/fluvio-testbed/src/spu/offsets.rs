//! FetchOffsets, UpdateOffsets and the consumer-offset calls (protocol spec
//! §4.3, §4.5, §4.6).

use anyhow::{Context, Result};
use fluvio_protocol::api::RequestHeader;
use fluvio_protocol::link::ErrorCode;
use fluvio_protocol::record::ReplicaKey;
use fluvio_spu_schema::server::consumer_offset::{
    ConsumerOffset, DeleteConsumerOffsetRequest, DeleteConsumerOffsetResponse, FetchConsumerOffsetsRequest,
    FetchConsumerOffsetsResponse, UpdateConsumerOffsetRequest, UpdateConsumerOffsetResponse,
};
use fluvio_spu_schema::server::fetch_offset::{
    FetchOffsetPartitionResponse, FetchOffsetTopicResponse, FetchOffsetsRequest, FetchOffsetsResponse,
};
use fluvio_spu_schema::server::update_offset::{OffsetUpdateStatus, UpdateOffsetsRequest, UpdateOffsetsResponse};

use super::Connection;
use crate::frame;

impl Connection {
    pub(super) fn fetch_offsets(&self, header: &RequestHeader, body: &[u8]) -> Result<()> {
        let request: FetchOffsetsRequest =
            frame::decode(body, header.api_version()).context("decoding FetchOffsets")?;
        let state = self.shared.lock();
        let topics = request
            .topics
            .into_iter()
            .map(|topic| FetchOffsetTopicResponse {
                partitions: topic
                    .partitions
                    .iter()
                    .map(|p| {
                        let bounds = state.partition_bounds(&ReplicaKey::new(topic.name.as_str(), p.partition_index));
                        let (error_code, (start_offset, last_stable_offset)) = match bounds {
                            Some(bounds) => (ErrorCode::None, bounds),
                            None => (ErrorCode::PartitionNotLeader, (-1, -1)),
                        };
                        FetchOffsetPartitionResponse {
                            error_code,
                            partition_index: p.partition_index,
                            start_offset,
                            last_stable_offset,
                        }
                    })
                    .collect(),
                name: topic.name,
            })
            .collect();
        drop(state);
        self.reply(header, &FetchOffsetsResponse { topics })
    }

    /// The client's acknowledgements of stream frames; they drive the fetch
    /// state machine and are not stored.
    pub(super) fn update_offsets(&self, header: &RequestHeader, body: &[u8]) -> Result<()> {
        let request: UpdateOffsetsRequest =
            frame::decode(body, header.api_version()).context("decoding UpdateOffsets")?;
        let status = request
            .offsets
            .into_iter()
            .map(|update| {
                let error = match self.sessions.get(&update.session_id) {
                    Some(session) => {
                        // A finished stream task no longer listens; the session still exists.
                        let _ = session.acks.send(update.offset);
                        ErrorCode::None
                    }
                    None => ErrorCode::FetchSessionNotFoud,
                };
                OffsetUpdateStatus {
                    session_id: update.session_id,
                    error,
                }
            })
            .collect();
        self.reply(header, &UpdateOffsetsResponse { status })
    }

    pub(super) fn update_consumer_offset(&self, header: &RequestHeader, body: &[u8]) -> Result<()> {
        let request: UpdateConsumerOffsetRequest =
            frame::decode(body, header.api_version()).context("decoding UpdateConsumerOffset")?;
        let error_code = match self.sessions.get(&request.session_id) {
            None => ErrorCode::FetchSessionNotFoud,
            Some(session) => match &session.consumer_id {
                None => ErrorCode::Other("stream without consumer id".to_owned()),
                Some(consumer_id) => {
                    self.shared.lock().store_consumer_offset(
                        session.replica.clone(),
                        consumer_id.clone(),
                        request.offset,
                    );
                    tracing::debug!(partition = %session.replica, consumer_id, offset = request.offset, "SPU: consumer offset stored");
                    ErrorCode::None
                }
            },
        };
        let response = UpdateConsumerOffsetResponse {
            offset: request.offset,
            error_code,
        };
        self.reply(header, &response)
    }

    pub(super) fn delete_consumer_offset(&self, header: &RequestHeader, body: &[u8]) -> Result<()> {
        let request: DeleteConsumerOffsetRequest =
            frame::decode(body, header.api_version()).context("decoding DeleteConsumerOffset")?;
        self.shared
            .lock()
            .delete_consumer_offset(request.replica_id, request.consumer_id);
        self.reply(
            header,
            &DeleteConsumerOffsetResponse {
                error_code: ErrorCode::None,
            },
        )
    }

    pub(super) fn fetch_consumer_offsets(&self, header: &RequestHeader, body: &[u8]) -> Result<()> {
        let request: FetchConsumerOffsetsRequest =
            frame::decode(body, header.api_version()).context("decoding FetchConsumerOffsets")?;
        let (replica, consumer_id) = match request.filter_opts {
            Some(filter) => (filter.replica_id, filter.consumer_id),
            None => (None, None),
        };
        let state = self.shared.lock();
        // A restarted SPU has not loaded `consumer-offset-0` yet.
        let error_code = if state.spu_warming_up() {
            ErrorCode::PartitionNotLeader
        } else {
            ErrorCode::None
        };
        let consumers = if error_code == ErrorCode::None {
            state
                .consumer_offsets(replica.as_ref(), consumer_id.as_deref())
                .into_iter()
                .map(|(replica, consumer_id, stored)| {
                    ConsumerOffset::new(consumer_id, replica, stored.offset, stored.modified_time)
                })
                .collect()
        } else {
            Vec::new()
        };
        drop(state);
        let response = FetchConsumerOffsetsResponse { error_code, consumers };
        self.reply(header, &response)
    }
}
