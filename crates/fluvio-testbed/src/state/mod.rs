//! The cluster's state, shared by the SC and the SPU: the SC's objects (SPU,
//! topics, partitions, SmartModules), the SPU's partition logs and consumer
//! offsets, and the watch subscribers. One lock guards it all, so a status
//! change and its watch message are one step.

mod offsets;
mod produce;
mod smartmodules;
mod topics;
pub(crate) mod watch;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use fluvio_controlplane_metadata::message::Message;
use fluvio_controlplane_metadata::partition::{PartitionResolution, PartitionStatus, ReplicaStatus};
use fluvio_controlplane_metadata::spu::{Endpoint, IngressAddr, IngressPort, SpuStatus, SpuStatusResolution, SpuType};
use fluvio_protocol::record::ReplicaKey;
use fluvio_sc_schema::objects::Metadata;
use fluvio_sc_schema::partition::PartitionSpec;
use fluvio_sc_schema::smartmodule::SmartModuleSpec;
use fluvio_sc_schema::spu::SpuSpec;
use fluvio_sc_schema::topic::{TopicSpec, TopicStatus};
use fluvio_types::defaults::CONSUMER_STORAGE_TOPIC;
use tokio::sync::watch as signal;

use crate::log::PartitionLog;
pub(crate) use offsets::StoredOffset;
pub(crate) use topics::CreateOutcome;
use watch::Watchers;

/// Settings fixed at start.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) spu_id: i32,
    pub(crate) max_request_bytes: u64,
    pub(crate) max_frame_bytes: usize,
    pub(crate) topic_provision_timeout: Duration,
    pub(crate) spu_restart_warmup: Duration,
}

/// State plus the signals waiters use.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    state: Mutex<State>,
    /// Bumped when any topic's status changes; topic creates wait on it.
    topic_changes: signal::Sender<u64>,
    /// Partitions whose stream-fetch frames are held back (a slow replica).
    held_fetches: signal::Sender<BTreeSet<ReplicaKey>>,
}

impl Shared {
    pub(crate) fn new(config: Config) -> Self {
        let state = State::new(&config);
        Self {
            config,
            state: Mutex::new(state),
            topic_changes: signal::Sender::new(0),
            held_fetches: signal::Sender::new(BTreeSet::new()),
        }
    }

    /// Holds back (or lets go) the stream-fetch frames of `replica`.
    pub(crate) fn hold_fetches(&self, replica: ReplicaKey, held: bool) {
        self.held_fetches.send_modify(|set| {
            if held {
                set.insert(replica);
            } else {
                set.remove(&replica);
            }
        });
    }

    /// Returns once frames of `replica` may be sent.
    pub(crate) async fn fetches_released(&self, replica: &ReplicaKey) {
        let mut held = self.held_fetches.subscribe();
        // The sender lives as long as `self`, so waiting cannot fail.
        let _ = held.wait_for(|set| !set.contains(replica)).await;
    }

    /// Locks the state, recovering it if a panicking thread poisoned the lock.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn topic_changes(&self) -> signal::Receiver<u64> {
        self.topic_changes.subscribe()
    }

    pub(crate) fn signal_topic_change(&self) {
        self.topic_changes.send_modify(|n| *n += 1);
    }
}

/// The SPU as the SC knows it.
#[derive(Debug)]
pub(crate) struct SpuObject {
    key: String,
    spec: SpuSpec,
    online: bool,
}

/// A topic.
#[derive(Debug)]
pub(crate) struct TopicObject {
    spec: TopicSpec,
    status: TopicStatus,
}

/// A partition: its spec, its log and the signal that wakes its fetchers.
#[derive(Debug)]
pub(crate) struct PartitionObject {
    spec: PartitionSpec,
    log: PartitionLog,
    /// The log end, published after every write; dropped with the partition.
    leo: signal::Sender<i64>,
}

/// Everything, under one lock.
#[derive(Debug)]
pub(crate) struct State {
    epoch: i64,
    spu: SpuObject,
    topics: BTreeMap<String, TopicObject>,
    partitions: BTreeMap<ReplicaKey, PartitionObject>,
    smartmodules: BTreeMap<String, SmartModuleSpec>,
    consumer_offsets: BTreeMap<(ReplicaKey, String), StoredOffset>,
    watchers: Watchers,
    /// Added to the clock for retention, so tests can age segments.
    clock_skew: Duration,
    /// Until when a restarted SPU is not yet the leader of its partitions.
    spu_leader_from: Option<Instant>,
}

impl State {
    fn new(config: &Config) -> Self {
        let mut state = Self {
            epoch: 0,
            spu: SpuObject {
                key: format!("custom-spu-{}", config.spu_id),
                spec: SpuSpec::new(config.spu_id),
                online: false,
            },
            topics: BTreeMap::new(),
            partitions: BTreeMap::new(),
            smartmodules: BTreeMap::new(),
            consumer_offsets: BTreeMap::new(),
            watchers: Watchers::new(),
            clock_skew: Duration::ZERO,
            spu_leader_from: None,
        };
        state.create_system_topic();
        state
    }

    /// A restarted SPU leads nothing for `warmup` (wall clock).
    pub(crate) fn begin_spu_warmup(&mut self, warmup: Duration) {
        self.spu_leader_from = Some(Instant::now() + warmup);
    }

    /// Whether the SPU is still loading its replicas after a restart.
    pub(crate) fn spu_warming_up(&self) -> bool {
        self.spu_leader_from.is_some_and(|from| Instant::now() < from)
    }

    /// The clock retention runs on.
    pub(crate) fn now(&self) -> Instant {
        Instant::now() + self.clock_skew
    }

    pub(crate) fn advance_clock(&mut self, by: Duration) {
        self.clock_skew += by;
    }

    fn next_epoch(&mut self) -> i64 {
        self.epoch += 1;
        self.epoch
    }

    pub(crate) fn epoch(&self) -> i64 {
        self.epoch
    }

    pub(crate) fn spu_id(&self) -> i32 {
        self.spu.spec.id
    }

    /// Records where the SPU listens (clients dial the first ingress entry).
    pub(crate) fn set_spu_endpoint(&mut self, addr: SocketAddr) {
        let host = addr.ip().to_string();
        let spec = &mut self.spu.spec;
        spec.spu_type = SpuType::Custom;
        spec.public_endpoint = IngressPort {
            port: addr.port(),
            ingress: vec![IngressAddr::from_host(host.clone())],
            ..Default::default()
        };
        spec.private_endpoint = Endpoint {
            port: addr.port(),
            host: host.clone(),
            ..Default::default()
        };
        spec.public_endpoint_local = Some(Endpoint {
            port: addr.port(),
            host,
            ..Default::default()
        });
    }

    pub(crate) fn spu_online(&self) -> bool {
        self.spu.online
    }

    /// Marks the SPU up or down, as the real SC does when an SPU connects or
    /// its connection drops: the SPU's status and every partition's
    /// resolution (Online / LeaderOffline) change and are pushed.
    pub(crate) fn set_spu_online(&mut self, online: bool) -> bool {
        if self.spu.online == online {
            return false;
        }
        self.spu.online = online;
        self.next_epoch();
        let spu = self.spu_metadata();
        self.watchers.spu.publish(Message::update(spu));
        let keys: Vec<ReplicaKey> = self.partitions.keys().cloned().collect();
        for key in &keys {
            self.publish_partition(key);
        }
        online && self.provision_pending()
    }

    pub(crate) fn spu_metadata(&self) -> Metadata<SpuSpec> {
        let resolution = if self.spu.online {
            SpuStatusResolution::Online
        } else {
            SpuStatusResolution::Offline
        };
        Metadata {
            name: self.spu.key.clone(),
            spec: self.spu.spec.clone(),
            status: SpuStatus { resolution },
        }
    }

    /// SPUs whose key contains one of `filters` (all without filters).
    pub(crate) fn spu_list(&self, filters: &[String]) -> Vec<Metadata<SpuSpec>> {
        let spu = self.spu_metadata();
        if matches_substring(filters, &spu.name) {
            vec![spu]
        } else {
            Vec::new()
        }
    }

    fn partition_metadata(&self, key: &ReplicaKey, partition: &PartitionObject) -> Metadata<PartitionSpec> {
        let leo = partition.log.leo();
        let resolution = if self.spu.online {
            PartitionResolution::Online
        } else {
            PartitionResolution::LeaderOffline
        };
        Metadata {
            name: key.to_string(),
            spec: partition.spec.clone(),
            status: PartitionStatus {
                resolution,
                leader: ReplicaStatus::new(self.spu_id(), leo, leo),
                lsr: 1,
                replicas: Vec::new(),
                size: i64::try_from(partition.log.size()).unwrap_or(i64::MAX),
                is_being_deleted: false,
                // The real SC leaves it at 0 after retention deletes segments;
                // only FetchOffsets and a stream from the beginning see the start.
                base_offset: 0,
            },
        }
    }

    /// Partitions, all or only those whose `system` flag is `system`.
    pub(crate) fn partition_list(&self, system: Option<bool>) -> Vec<Metadata<PartitionSpec>> {
        self.partitions
            .iter()
            .filter(|(_, p)| system.is_none_or(|s| p.spec.system == s))
            .map(|(key, p)| self.partition_metadata(key, p))
            .collect()
    }

    /// Pushes a partition's current status to its watchers.
    fn publish_partition(&mut self, key: &ReplicaKey) {
        let Some(partition) = self.partitions.get(key) else {
            return;
        };
        let meta = self.partition_metadata(key, partition);
        self.next_epoch();
        self.watchers.partition.publish(Message::update(meta));
    }

    /// A partition's (log start, log end), if it exists.
    pub(crate) fn partition_bounds(&self, key: &ReplicaKey) -> Option<(i64, i64)> {
        self.partitions.get(key).map(|p| (p.log.start(), p.log.leo()))
    }

    pub(crate) fn partition_log(&self, key: &ReplicaKey) -> Option<&PartitionLog> {
        self.partitions.get(key).map(|p| &p.log)
    }

    /// Subscribes to a partition's log end; `None` if it doesn't exist.
    pub(crate) fn watch_partition(&self, key: &ReplicaKey) -> Option<signal::Receiver<i64>> {
        self.partitions.get(key).map(|p| p.leo.subscribe())
    }

    /// Removes old segments of every partition; returns the records removed.
    pub(crate) fn run_retention(&mut self) -> i64 {
        let now = self.now();
        let mut changed = Vec::new();
        let mut removed = 0;
        for (key, partition) in &mut self.partitions {
            let gone = partition.log.enforce_retention(now);
            if gone > 0 {
                tracing::debug!(partition = %key, records = gone, start = partition.log.start(), "retention removed old segments");
                removed += gone;
                changed.push(key.clone());
            }
        }
        for key in &changed {
            self.publish_partition(key);
        }
        removed
    }
}

/// The real SC's substring rule: no filters keep everything, else any filter
/// contained in the name keeps it.
fn matches_substring(filters: &[String], name: &str) -> bool {
    filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()))
}

/// True for the system topic every cluster has.
fn is_consumer_offset_topic(name: &str) -> bool {
    name == CONSUMER_STORAGE_TOPIC
}
