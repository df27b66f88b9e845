//! Watch streams (protocol spec §2.2): a full sync first, then frames of
//! changes only. Changes that pile up while a frame is being written go out
//! together in the next frame, the latest per object, updates before deletes.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use fluvio_controlplane_metadata::message::{Message, MsgType};
use fluvio_protocol::api::{RequestHeader, RequestMessage};
use fluvio_protocol::{Decoder, Encoder};
use fluvio_sc_schema::customspu::CustomSpuSpec;
use fluvio_sc_schema::objects::{
    Metadata, MetadataUpdate, ObjectApiWatchRequest, ObjectApiWatchResponse, WatchRequest, WatchResponse,
};
use fluvio_sc_schema::partition::PartitionSpec;
use fluvio_sc_schema::smartmodule::SmartModuleSpec;
use fluvio_sc_schema::spg::SpuGroupSpec;
use fluvio_sc_schema::spu::SpuSpec;
use fluvio_sc_schema::tableformat::TableFormatSpec;
use fluvio_sc_schema::topic::TopicSpec;
use fluvio_sc_schema::{AdminSpec, TryEncodableFrom};
use tokio::sync::mpsc;

use super::admin::downcast;
use super::Connection;
use crate::frame::{self, FrameSender};
use crate::state::watch::{Change, Watched};

impl Connection {
    pub(super) fn watch(&mut self, request: RequestMessage<ObjectApiWatchRequest>) -> Result<()> {
        let (header, body) = (request.header, request.request);
        if downcast::<_, WatchRequest<SpuSpec>>(&body)?.is_some() {
            self.start_watch::<SpuSpec>(&header, false);
        } else if downcast::<_, WatchRequest<PartitionSpec>>(&body)?.is_some() {
            self.start_watch::<PartitionSpec>(&header, false);
        } else if downcast::<_, WatchRequest<TopicSpec>>(&body)?.is_some() {
            self.start_watch::<TopicSpec>(&header, false);
        } else if let Some(watch) = downcast::<_, WatchRequest<SmartModuleSpec>>(&body)? {
            // The real SC honours `summary` for SmartModules only.
            self.start_watch::<SmartModuleSpec>(&header, watch.summary);
        } else if downcast::<_, WatchRequest<CustomSpuSpec>>(&body)?.is_some() {
            self.send_empty::<CustomSpuSpec>(&header)?;
        } else if downcast::<_, WatchRequest<SpuGroupSpec>>(&body)?.is_some() {
            self.send_empty::<SpuGroupSpec>(&header)?;
        } else if downcast::<_, WatchRequest<TableFormatSpec>>(&body)?.is_some() {
            self.send_empty::<TableFormatSpec>(&header)?;
        } else {
            anyhow::bail!("watch of an object kind fluvio-testbed does not know");
        }
        Ok(())
    }

    /// Subscribes (atomically with the snapshot) and streams in the background.
    fn start_watch<S: Watched>(&mut self, header: &RequestHeader, summary: bool)
    where
        S::Status: Encoder + Decoder,
    {
        let (all, changes, epoch) = {
            let mut state = self.shared.lock();
            let all = S::snapshot(&state);
            let changes = S::watchers(&mut state).subscribe();
            (all, changes, state.epoch())
        };
        tracing::debug!(kind = S::LABEL, objects = all.len(), "SC: watch opened");
        let stream = WatchStream {
            out: self.out.clone(),
            correlation_id: header.correlation_id(),
            version: header.api_version(),
            summary,
            epoch,
        };
        let stop = self.stop.clone();
        self.watches.spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                result = stream.run(all, changes) => {
                    if let Err(e) = result {
                        tracing::warn!(kind = S::LABEL, error = format!("{e:#}"), "SC: watch stream ended");
                    }
                }
            }
        });
    }

    /// Kinds the test cluster never has: one empty full sync, then nothing.
    fn send_empty<S>(&self, header: &RequestHeader) -> Result<()>
    where
        S: AdminSpec,
        S::Status: Encoder + Decoder + std::fmt::Debug,
    {
        let update = MetadataUpdate::<S>::with_all(0, Vec::new());
        let response = ObjectApiWatchResponse::try_encode_from(WatchResponse::new(update), header.api_version())
            .context("encoding a watch frame")?;
        self.reply(header.correlation_id(), &response, header.api_version())
    }
}

struct WatchStream {
    out: FrameSender,
    correlation_id: i32,
    version: i16,
    summary: bool,
    epoch: i64,
}

impl WatchStream {
    async fn run<S: Watched>(
        mut self,
        all: Vec<Metadata<S>>,
        mut changes: mpsc::UnboundedReceiver<Change<S>>,
    ) -> Result<()>
    where
        S::Status: Encoder + Decoder,
    {
        let all = all.into_iter().map(|m| self.shape(m)).collect();
        if !self.send(MetadataUpdate::with_all(self.epoch, all))? {
            return Ok(());
        }
        while let Some(first) = changes.recv().await {
            let mut pending = vec![first];
            while let Ok(next) = changes.try_recv() {
                pending.push(next);
            }
            self.epoch += 1;
            let frame = MetadataUpdate::with_changes(self.epoch, self.coalesce(pending));
            if !self.send(frame)? {
                return Ok(());
            }
        }
        Ok(())
    }

    /// The latest change per object, updates first, then deletes.
    fn coalesce<S: Watched>(&self, pending: Vec<Change<S>>) -> Vec<Change<S>>
    where
        S::Status: Encoder + Decoder,
    {
        let mut latest: BTreeMap<String, Change<S>> = BTreeMap::new();
        for change in pending {
            latest.insert(change.content.name.clone(), change);
        }
        let (updates, deletes): (Vec<_>, Vec<_>) = latest.into_values().partition(|c| c.header == MsgType::UPDATE);
        updates
            .into_iter()
            .chain(deletes)
            .map(|c| Message::new(c.header, self.shape(c.content)))
            .collect()
    }

    /// Applies the summary form (SmartModules without their wasm) if asked.
    fn shape<S: Watched>(&self, meta: Metadata<S>) -> Metadata<S>
    where
        S::Status: Encoder + Decoder,
    {
        if self.summary {
            meta.summary()
        } else {
            meta
        }
    }

    /// Sends a frame; `false` once the connection is gone.
    fn send<S: Watched>(&self, update: MetadataUpdate<S>) -> Result<bool>
    where
        S::Status: Encoder + Decoder,
    {
        let response = ObjectApiWatchResponse::try_encode_from(WatchResponse::new(update), self.version)
            .context("encoding a watch frame")?;
        let bytes = frame::response(self.correlation_id, &response, self.version).context("encoding a watch frame")?;
        Ok(self.out.send(bytes).is_ok())
    }
}
