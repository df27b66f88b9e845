//! Topics: the real SC's create checks in its order, provisioning onto the one
//! SPU, listing with its filter rules, deletion.

use std::collections::BTreeMap;

use fluvio_controlplane_metadata::message::Message;
use fluvio_controlplane_metadata::topic::{CleanupPolicy, ReplicaSpec, SegmentBasedPolicy, TopicResolution};
use fluvio_protocol::link::ErrorCode;
use fluvio_protocol::record::ReplicaKey;
use fluvio_sc_schema::objects::Metadata;
use fluvio_sc_schema::partition::PartitionSpec;
use fluvio_sc_schema::shared::validate_resource_name;
use fluvio_sc_schema::topic::{TopicSpec, TopicStatus, PENDING_REASON};
use fluvio_sc_schema::Status;
use fluvio_types::defaults::{
    CONSUMER_STORAGE_TOPIC, SPU_LOG_SEGMENT_MAX_BYTES, SPU_PARTITION_MAX_BYTES, STORAGE_RETENTION_SECONDS,
};
use std::time::Duration;
use tokio::sync::watch as signal;

use super::{is_consumer_offset_topic, matches_substring, PartitionObject, State, TopicObject};
use crate::log::{LogLimits, PartitionLog};

/// How a create ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum CreateOutcome {
    /// Created (or, for a dry run, would be).
    Done,
    /// Stored but not provisioned yet: the caller waits for it.
    Waiting,
}

impl State {
    /// The system topic `consumer-offset` and its partition, as every SC has.
    pub(super) fn create_system_topic(&mut self) {
        let mut spec = TopicSpec::new_computed(1, 1, None);
        spec.set_system(true);
        self.insert_topic(CONSUMER_STORAGE_TOPIC, spec);
    }

    /// Creates a topic after the real SC's checks, in the real order.
    pub(crate) fn create_topic(&mut self, name: &str, spec: TopicSpec, dry_run: bool) -> Result<CreateOutcome, Status> {
        let refuse = |code: ErrorCode, message: String| Err(Status::new(name.to_owned(), code, Some(message)));
        if let Err(e) = validate_resource_name(name) {
            return refuse(
                ErrorCode::TopicInvalidName,
                format!("Invalid topic name: '{name}'. {e}"),
            );
        }
        if self.topics.contains_key(name) {
            return refuse(ErrorCode::TopicAlreadyExists, format!("Topic '{name}' already exists"));
        }
        if let Some(problem) = spec.validate_config() {
            return refuse(ErrorCode::TopicInvalidConfiguration, problem);
        }
        if let Some(dedup) = spec.get_deduplication() {
            let module = &dedup.filter.transform.uses;
            if !self.smartmodule_loaded(module) {
                return refuse(
                    ErrorCode::DeduplicationSmartModuleNotLoaded,
                    format!("deduplication SmartModule '{module}' is not loaded"),
                );
            }
            tracing::warn!(
                topic = name,
                module,
                "fluvio-testbed stores deduplication settings but does not deduplicate"
            );
        }
        if let Err(problem) = check_replicas(spec.replicas()) {
            return refuse(ErrorCode::TopicError, problem);
        }
        if dry_run {
            return Ok(CreateOutcome::Done);
        }
        self.insert_topic(name, spec);
        Ok(self.topic_outcome(name))
    }

    /// Stores a topic and provisions it if it can be.
    fn insert_topic(&mut self, name: &str, spec: TopicSpec) {
        let status = TopicStatus {
            resolution: TopicResolution::Pending,
            reason: PENDING_REASON.to_owned(),
            ..Default::default()
        };
        self.topics.insert(name.to_owned(), TopicObject { spec, status });
        if !self.try_provision(name) {
            self.publish_topic(name);
        }
    }

    fn topic_outcome(&self, name: &str) -> CreateOutcome {
        match self.topics.get(name) {
            Some(t) if t.status.resolution == TopicResolution::Provisioned => CreateOutcome::Done,
            _ => CreateOutcome::Waiting,
        }
    }

    /// Whether a topic is provisioned; `None` once it is gone.
    pub(crate) fn topic_provisioned(&self, name: &str) -> Option<bool> {
        self.topics
            .get(name)
            .map(|t| t.status.resolution == TopicResolution::Provisioned)
    }

    /// Assigns a topic's partitions to the SPU when it is up and the topic
    /// asks for no more replicas than there are SPUs. Returns whether it did.
    fn try_provision(&mut self, name: &str) -> bool {
        let spu_id = self.spu_id();
        let online = self.spu_online();
        let Some(topic) = self.topics.get_mut(name) else {
            return false;
        };
        if topic.status.resolution == TopicResolution::Provisioned {
            return false;
        }
        let replicas = topic.spec.replication_factor().unwrap_or(1);
        if replicas > 1 {
            topic.status.resolution = TopicResolution::InsufficientResources;
            topic.status.reason = format!("need {} more SPU", replicas - 1);
            return false;
        }
        if !online {
            return false;
        }
        let count = topic.spec.partitions();
        topic.status = TopicStatus {
            resolution: TopicResolution::Provisioned,
            replica_map: (0..count).map(|p| (p, vec![spu_id])).collect::<BTreeMap<_, _>>(),
            ..Default::default()
        };
        let spec = topic.spec.clone();
        self.publish_topic(name);
        let limits = log_limits(&spec);
        let now = self.now();
        for partition in 0..count {
            let key = ReplicaKey::new(name, partition);
            let object = PartitionObject {
                spec: PartitionSpec::from_replicas(vec![spu_id], &spec, None),
                log: PartitionLog::new(limits, now),
                leo: signal::Sender::new(0),
            };
            self.partitions.insert(key.clone(), object);
            self.publish_partition(&key);
        }
        true
    }

    /// Provisions topics that were waiting for the SPU; returns whether any was.
    pub(super) fn provision_pending(&mut self) -> bool {
        let pending: Vec<String> = self
            .topics
            .iter()
            .filter(|(_, t)| t.status.resolution == TopicResolution::Pending)
            .map(|(name, _)| name.clone())
            .collect();
        let mut any = false;
        for name in pending {
            any |= self.try_provision(&name);
        }
        any
    }

    pub(crate) fn topic_metadata(&self, name: &str) -> Option<Metadata<TopicSpec>> {
        self.topics.get(name).map(|t| Metadata {
            name: name.to_owned(),
            spec: t.spec.clone(),
            status: t.status.clone(),
        })
    }

    fn publish_topic(&mut self, name: &str) {
        if let Some(meta) = self.topic_metadata(name) {
            self.next_epoch();
            self.watchers.topic.publish(Message::update(meta));
        }
    }

    /// Topics matching the substring filters, all or only those whose
    /// `system` flag is `system`.
    pub(crate) fn topic_list(&self, filters: &[String], system: Option<bool>) -> Vec<Metadata<TopicSpec>> {
        self.topics
            .iter()
            .filter(|(name, t)| system.is_none_or(|s| t.spec.is_system() == s) && matches_substring(filters, name))
            .filter_map(|(name, _)| self.topic_metadata(name))
            .collect()
    }

    /// The topic's compression setting, if the topic exists.
    pub(crate) fn topic_spec(&self, name: &str) -> Option<&TopicSpec> {
        self.topics.get(name).map(|t| &t.spec)
    }

    /// Deletes a topic, its partitions, their data and consumer offsets.
    pub(crate) fn delete_topic(&mut self, name: &str, force: bool) -> Result<(), ErrorCode> {
        let Some(topic) = self.topics.get(name) else {
            return Err(ErrorCode::TopicNotFound);
        };
        if (topic.spec.is_system() || is_consumer_offset_topic(name)) && !force {
            return Err(ErrorCode::SystemSpecDeletionAttempt {
                kind: "topic".to_owned(),
                name: name.to_owned(),
            });
        }
        let keys: Vec<ReplicaKey> = self.partitions.keys().filter(|k| k.topic == name).cloned().collect();
        for key in keys {
            if let Some(partition) = self.partitions.get(&key) {
                let meta = self.partition_metadata(&key, partition);
                self.partitions.remove(&key);
                self.next_epoch();
                self.watchers.partition.publish(Message::delete(meta));
            }
            self.consumer_offsets.retain(|(replica, _), _| *replica != key);
        }
        if let Some(meta) = self.topic_metadata(name) {
            self.topics.remove(name);
            self.next_epoch();
            self.watchers.topic.publish(Message::delete(meta));
        }
        Ok(())
    }
}

/// Check 5 of the real SC: non-zero partitions and replication; assigned maps
/// must be valid. Mirror topics are out of scope.
fn check_replicas(replicas: &ReplicaSpec) -> Result<(), String> {
    match replicas {
        ReplicaSpec::Computed(param) => {
            ReplicaSpec::valid_partition(&param.partitions).map_err(|e| e.to_string())?;
            ReplicaSpec::valid_replication_factor(&param.replication_factor).map_err(|e| e.to_string())
        }
        ReplicaSpec::Assigned(maps) => maps.validate().map_err(|e| e.to_string()),
        ReplicaSpec::Mirror(_) => Err("fluvio-testbed does not support mirror topics".to_owned()),
    }
}

/// Segment size, partition size and retention of a topic, with the real defaults.
fn log_limits(spec: &TopicSpec) -> LogLimits {
    let storage = spec.get_storage();
    let retention_secs = match spec.get_clean_policy() {
        Some(CleanupPolicy::Segment(SegmentBasedPolicy { time_in_seconds })) => *time_in_seconds,
        None => STORAGE_RETENTION_SECONDS,
    };
    LogLimits {
        segment_bytes: u64::from(
            storage
                .and_then(|s| s.segment_size)
                .unwrap_or(SPU_LOG_SEGMENT_MAX_BYTES),
        ),
        max_partition_bytes: storage
            .and_then(|s| s.max_partition_size)
            .unwrap_or(SPU_PARTITION_MAX_BYTES),
        retention: Duration::from_secs(u64::from(retention_secs)),
    }
}
