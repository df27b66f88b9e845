//! Subscribers of the SC's metadata watches. Every change is pushed, under the
//! state lock, to each live subscriber of its kind, so a watch sees its first
//! full sync followed by exactly the changes made after it.

use fluvio_controlplane_metadata::message::Message;
use fluvio_protocol::{Decoder, Encoder};
use fluvio_sc_schema::objects::Metadata;
use fluvio_sc_schema::partition::PartitionSpec;
use fluvio_sc_schema::smartmodule::SmartModuleSpec;
use fluvio_sc_schema::spu::SpuSpec;
use fluvio_sc_schema::topic::TopicSpec;
use fluvio_sc_schema::AdminSpec;
use tokio::sync::mpsc;

use super::State;

/// A change message of kind `S`.
pub(crate) type Change<S> = Message<Metadata<S>>;

/// The subscribers of one kind.
#[derive(Debug)]
pub(crate) struct WatchList<S: AdminSpec>
where
    S::Status: Encoder + Decoder,
{
    subscribers: Vec<mpsc::UnboundedSender<Change<S>>>,
}

impl<S: AdminSpec> WatchList<S>
where
    S::Status: Encoder + Decoder,
{
    fn new() -> Self {
        Self {
            subscribers: Vec::new(),
        }
    }

    pub(crate) fn subscribe(&mut self) -> mpsc::UnboundedReceiver<Change<S>> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.subscribers.push(tx);
        rx
    }

    /// Sends `change` to every subscriber, forgetting closed ones.
    pub(crate) fn publish(&mut self, change: Change<S>) {
        self.subscribers.retain(|tx| tx.send(change.clone()).is_ok());
    }
}

/// The watch subscribers of every kind the client watches.
#[derive(Debug)]
pub(crate) struct Watchers {
    pub(crate) spu: WatchList<SpuSpec>,
    pub(crate) partition: WatchList<PartitionSpec>,
    pub(crate) topic: WatchList<TopicSpec>,
    pub(crate) smartmodule: WatchList<SmartModuleSpec>,
}

impl Watchers {
    pub(crate) fn new() -> Self {
        Self {
            spu: WatchList::new(),
            partition: WatchList::new(),
            topic: WatchList::new(),
            smartmodule: WatchList::new(),
        }
    }
}

/// A kind of object that can be watched: its full list and its subscribers.
pub(crate) trait Watched: AdminSpec
where
    Self::Status: Encoder + Decoder,
{
    fn snapshot(state: &State) -> Vec<Metadata<Self>>;
    fn watchers(state: &mut State) -> &mut WatchList<Self>;
}

impl Watched for SpuSpec {
    fn snapshot(state: &State) -> Vec<Metadata<Self>> {
        vec![state.spu_metadata()]
    }
    fn watchers(state: &mut State) -> &mut WatchList<Self> {
        &mut state.watchers.spu
    }
}

impl Watched for PartitionSpec {
    fn snapshot(state: &State) -> Vec<Metadata<Self>> {
        state.partition_list(None)
    }
    fn watchers(state: &mut State) -> &mut WatchList<Self> {
        &mut state.watchers.partition
    }
}

impl Watched for TopicSpec {
    fn snapshot(state: &State) -> Vec<Metadata<Self>> {
        state.topic_list(&[], None)
    }
    fn watchers(state: &mut State) -> &mut WatchList<Self> {
        &mut state.watchers.topic
    }
}

impl Watched for SmartModuleSpec {
    fn snapshot(state: &State) -> Vec<Metadata<Self>> {
        state.smartmodule_list(&[])
    }
    fn watchers(state: &mut State) -> &mut WatchList<Self> {
        &mut state.watchers.smartmodule
    }
}
