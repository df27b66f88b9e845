//! Produce (protocol spec §4.2): one reply per request entry, in order.

use anyhow::{Context, Result};
use fluvio_protocol::api::RequestHeader;
use fluvio_protocol::link::ErrorCode;
use fluvio_protocol::record::ReplicaKey;
use fluvio_spu_schema::produce::{
    PartitionProduceData, PartitionProduceResponse, ProduceRequest, ProduceResponse, TopicProduceResponse,
};

use super::records::RawRecordSet;
use super::Connection;
use crate::frame;
use crate::log::IncomingBatch;

impl Connection {
    pub(super) fn produce(&self, header: &RequestHeader, body: &[u8]) -> Result<()> {
        let request: ProduceRequest<RawRecordSet> =
            frame::decode(body, header.api_version()).context("decoding Produce")?;
        let refuse_all = (!request.smartmodules.is_empty()).then(|| {
            tracing::warn!("SPU: produce with SmartModules refused; fluvio-testbed does not run SmartModules");
            ErrorCode::SmartModuleChainInitError("fluvio-testbed does not run SmartModules".to_owned())
        });
        let responses = request
            .topics
            .into_iter()
            .map(|topic| TopicProduceResponse {
                partitions: topic
                    .partitions
                    .into_iter()
                    .map(|entry| self.produce_entry(&topic.name, entry, refuse_all.as_ref()))
                    .collect(),
                name: topic.name,
            })
            .collect();
        let response = ProduceResponse {
            responses,
            throttle_time_ms: 0,
        };
        self.reply(header, &response)
    }

    fn produce_entry(
        &self,
        topic: &str,
        entry: PartitionProduceData<RawRecordSet>,
        refuse: Option<&ErrorCode>,
    ) -> PartitionProduceResponse {
        let key = ReplicaKey::new(topic, entry.partition_index);
        let mut response = PartitionProduceResponse {
            partition_index: entry.partition_index,
            error_code: ErrorCode::None,
            base_offset: -1,
            log_append_time_ms: -1,
            log_start_offset: -1,
        };
        if let Some(code) = refuse {
            response.error_code = code.clone();
            return response;
        }
        let batches = match IncomingBatch::split(entry.records.0) {
            Ok(batches) => batches,
            Err(problem) => {
                tracing::warn!(partition = %key, problem, "SPU: malformed record batch refused");
                response.error_code = ErrorCode::Other(format!("malformed record batch: {problem}"));
                return response;
            }
        };
        if self.shared.lock().spu_warming_up() {
            response.error_code = ErrorCode::NotLeaderForPartition;
            return response;
        }
        let max_request_bytes = self.shared.config.max_request_bytes;
        let appended = self.shared.lock().produce(&key, &batches, max_request_bytes);
        match appended {
            Ok(appended) => {
                response.base_offset = appended.base_offset;
                response.log_start_offset = appended.log_start;
            }
            Err(code) => {
                tracing::debug!(partition = %key, code = ?code, "SPU: produce entry refused");
                response.error_code = code;
            }
        }
        response
    }
}
