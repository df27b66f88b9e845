//! Create, Delete and List (protocol spec §3).

use std::time::Duration;

use anyhow::{Context, Result};
use fluvio_protocol::api::RequestMessage;
use fluvio_protocol::link::ErrorCode;
use fluvio_protocol::{Decoder, Encoder};
use fluvio_sc_schema::customspu::CustomSpuSpec;
use fluvio_sc_schema::objects::{
    CreateRequest, DeleteRequest, ListRequest, ListResponse, Metadata, ObjectApiCreateRequest, ObjectApiDeleteRequest,
    ObjectApiListRequest, ObjectApiListResponse,
};
use fluvio_sc_schema::partition::PartitionSpec;
use fluvio_sc_schema::smartmodule::SmartModuleSpec;
use fluvio_sc_schema::spg::SpuGroupSpec;
use fluvio_sc_schema::spu::SpuSpec;
use fluvio_sc_schema::tableformat::TableFormatSpec;
use fluvio_sc_schema::topic::TopicSpec;
use fluvio_sc_schema::{AdminSpec, Status, TryEncodableFrom};
use tokio::sync::watch;

use super::Connection;
use crate::state::CreateOutcome;

impl Connection {
    pub(super) async fn create(&mut self, request: RequestMessage<ObjectApiCreateRequest>) -> Result<()> {
        let (header, body) = (request.header, request.request);
        let status = if let Some(create) = downcast::<_, CreateRequest<TopicSpec>>(&body)? {
            self.create_topic(create).await
        } else if let Some(create) = downcast::<_, CreateRequest<SmartModuleSpec>>(&body)? {
            self.create_smartmodule(create)
        } else {
            tracing::warn!("SC: create of an object kind fluvio-testbed does not support");
            Status::new(
                String::new(),
                ErrorCode::InvalidCreateRequest,
                Some("fluvio-testbed creates only topics and SmartModules".to_owned()),
            )
        };
        self.reply(header.correlation_id(), &status, header.api_version())
    }

    async fn create_topic(&mut self, create: CreateRequest<TopicSpec>) -> Status {
        let (common, spec) = create.parts();
        let name = common.name;
        let mut changes = self.shared.topic_changes();
        let outcome = self.shared.lock().create_topic(&name, spec, common.dry_run);
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(status) => {
                tracing::debug!(topic = name, code = ?status.error_code, "SC: topic create refused");
                return status;
            }
        };
        self.shared.signal_topic_change();
        let timeout = common.timeout.map_or(self.shared.config.topic_provision_timeout, |ms| {
            Duration::from_millis(u64::from(ms))
        });
        if outcome == CreateOutcome::Waiting && !self.wait_provisioned(&name, timeout, &mut changes).await {
            tracing::warn!(topic = name, "SC: topic not provisioned in time");
            return Status::new(
                name,
                ErrorCode::TopicNotProvisioned,
                Some("the topic's partitions were not provisioned in time".to_owned()),
            );
        }
        tracing::debug!(topic = name, dry_run = common.dry_run, "SC: topic created");
        Status::new_ok(name)
    }

    /// Waits until the topic is provisioned or `timeout` ends (the request's
    /// own timeout, else the SC's).
    async fn wait_provisioned(&self, name: &str, timeout: Duration, changes: &mut watch::Receiver<u64>) -> bool {
        let waited = tokio::time::timeout(timeout, async {
            loop {
                match self.shared.lock().topic_provisioned(name) {
                    Some(true) => return true,
                    None => return false,
                    Some(false) => {}
                }
                if changes.changed().await.is_err() {
                    return false;
                }
            }
        });
        waited.await.unwrap_or(false)
    }

    fn create_smartmodule(&mut self, create: CreateRequest<SmartModuleSpec>) -> Status {
        let (common, spec) = create.parts();
        let created = self
            .shared
            .lock()
            .create_smartmodule(&common.name, spec, common.dry_run);
        match created {
            Ok(key) => {
                tracing::debug!(key, "SC: SmartModule created");
                Status::new_ok(key)
            }
            Err((code, message)) => Status::new(common.name, code, Some(message)),
        }
    }

    pub(super) fn delete(&mut self, request: RequestMessage<ObjectApiDeleteRequest>) -> Result<()> {
        let (header, body) = (request.header, request.request);
        let status = if let Some(delete) = downcast::<_, DeleteRequest<TopicSpec>>(&body)? {
            let force = delete.is_force();
            let name = delete.key();
            let deleted = self.shared.lock().delete_topic(&name, force);
            self.shared.signal_topic_change();
            status_of(name, deleted)
        } else if let Some(delete) = downcast::<_, DeleteRequest<SmartModuleSpec>>(&body)? {
            let key = delete.key();
            let deleted = self.shared.lock().delete_smartmodule(&key);
            status_of(key, deleted)
        } else {
            Status::new(
                String::new(),
                ErrorCode::InvalidDeleteRequest,
                Some("fluvio-testbed deletes only topics and SmartModules".to_owned()),
            )
        };
        self.reply(header.correlation_id(), &status, header.api_version())
    }

    pub(super) fn list(&mut self, request: RequestMessage<ObjectApiListRequest>) -> Result<()> {
        let (header, body) = (request.header, request.request);
        let version = header.api_version();
        let response = self.list_response(&body, version)?;
        self.reply(header.correlation_id(), &response, version)
    }

    fn list_response(&self, body: &ObjectApiListRequest, version: i16) -> Result<ObjectApiListResponse> {
        if let Some(list) = downcast::<_, ListRequest<TopicSpec>>(body)? {
            let names = filter_names(list.name_filters);
            let topics = self.shared.lock().topic_list(&names, Some(list.system));
            return encode_list(topics, version);
        }
        if let Some(list) = downcast::<_, ListRequest<PartitionSpec>>(body)? {
            let partitions = self.shared.lock().partition_list(Some(list.system));
            return encode_list(partitions, version);
        }
        if let Some(list) = downcast::<_, ListRequest<SmartModuleSpec>>(body)? {
            let summary = list.summary;
            let names = filter_names(list.name_filters);
            let mut modules = self.shared.lock().smartmodule_list(&names);
            if summary {
                modules = modules.into_iter().map(Metadata::summary).collect();
            }
            return encode_list(modules, version);
        }
        if let Some(list) = downcast::<_, ListRequest<SpuSpec>>(body)? {
            let names = filter_names(list.name_filters);
            let spus = self.shared.lock().spu_list(&names);
            return encode_list(spus, version);
        }
        if let Some(list) = downcast::<_, ListRequest<CustomSpuSpec>>(body)? {
            let names = filter_names(list.name_filters);
            let spus = self.shared.lock().spu_list(&names);
            let custom = spus
                .into_iter()
                .map(|spu| Metadata {
                    name: spu.name,
                    spec: CustomSpuSpec {
                        id: spu.spec.id,
                        public_endpoint: spu.spec.public_endpoint,
                        private_endpoint: spu.spec.private_endpoint,
                        rack: spu.spec.rack,
                        public_endpoint_local: spu.spec.public_endpoint_local,
                    },
                    status: spu.status,
                })
                .collect();
            return encode_list::<CustomSpuSpec>(custom, version);
        }
        if downcast::<_, ListRequest<SpuGroupSpec>>(body)?.is_some() {
            return encode_list::<SpuGroupSpec>(Vec::new(), version);
        }
        if downcast::<_, ListRequest<TableFormatSpec>>(body)?.is_some() {
            return encode_list::<TableFormatSpec>(Vec::new(), version);
        }
        anyhow::bail!("list of an object kind fluvio-testbed does not know")
    }
}

/// The typed request inside a type-labelled request buffer, if it is of that kind.
pub(super) fn downcast<B, T>(body: &B) -> Result<Option<T>>
where
    B: TryEncodableFrom<T>,
{
    crate::frame::guarded(|| body.downcast().map_err(|e| std::io::Error::other(format!("{e:#}"))))
        .context("decoding the object request")
}

fn filter_names(filters: impl Into<Vec<fluvio_sc_schema::objects::ListFilter>>) -> Vec<String> {
    filters.into().into_iter().map(|f| f.name).collect()
}

fn encode_list<S>(items: Vec<Metadata<S>>, version: i16) -> Result<ObjectApiListResponse>
where
    S: AdminSpec,
    S::Status: Encoder + Decoder + std::fmt::Debug,
{
    ObjectApiListResponse::try_encode_from(ListResponse::new(items), version).context("encoding a list response")
}

fn status_of(name: String, result: Result<(), ErrorCode>) -> Status {
    match result {
        Ok(()) => Status::new_ok(name),
        // The real SC words every missing object's answer this way.
        Err(code @ (ErrorCode::TopicNotFound | ErrorCode::SmartModuleNotFound { .. })) => {
            Status::new(name, code, Some("not found".to_owned()))
        }
        Err(code) => Status::new(name, code, None),
    }
}
