//! Fluvio topics through the `fluvio` 0.50.1 client. The cluster comes from the
//! user's Fluvio profile (`FLV_PROFILE_PATH`, else `~/.fluvio/config`), as
//! `cdk deploy` expects of a connector.
//!
//! Committing: a Fluvio consumer can only commit "the last record it yielded".
//! The sink keeps several requests in flight and must commit exactly the prefix
//! it has settled, so each partition has a second, lagging consumer stream (same
//! consumer id) that is advanced to the settled offset and committed there.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use fluvio::consumer::{ConsumerConfigExtBuilder, ConsumerStream, OffsetManagementStrategy, Record};
use fluvio::dataplane::link::ErrorCode;
use fluvio::metadata::partition::PartitionSpec;
use fluvio::metadata::smartmodule::SmartModuleSpec;
use fluvio::metadata::topic::config::TopicConfig;
use fluvio::metadata::topic::TopicSpec;
use fluvio::{
    Compression, Fluvio, FluvioClusterConfig, Offset, RecordKey, TopicProducerConfigBuilder, TopicProducerPool,
};
use futures::{FutureExt, StreamExt};
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::config::units;
use crate::topic::{
    NewRecord, OffsetCommitter, PartitionBounds, StartFrom, TopicInspect, TopicReader, TopicRecord, TopicWriter,
};
use crate::transform::ModuleRegistry;

type RecordStream = Pin<Box<dyn ConsumerStream<Item = std::result::Result<Record, ErrorCode>> + Send>>;

/// `meta.topic`: a name (config 0.1.0) or a full topic definition (0.2.0).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum TopicDefinition {
    /// Just the name; created with one partition, replication 1.
    Name(String),
    /// Fluvio's topic config object (`meta.name`, `partition`, `retention`, …).
    Config(Box<TopicConfig>),
}

impl TopicDefinition {
    /// The topic's name.
    pub fn name(&self) -> &str {
        match self {
            TopicDefinition::Name(name) => name,
            TopicDefinition::Config(config) => &config.meta.name,
        }
    }

    fn spec(&self) -> TopicSpec {
        match self {
            TopicDefinition::Name(_) => TopicSpec::new_computed(1, 1, None),
            TopicDefinition::Config(config) => TopicSpec::from((**config).clone()),
        }
    }
}

/// `meta.producer`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProducerSettings {
    /// How long a batch may wait for more records.
    #[serde(default, deserialize_with = "units::opt_duration")]
    pub linger: Option<Duration>,
    /// Largest batch, bytes.
    #[serde(
        default,
        rename = "batch-size",
        alias = "batch_size",
        deserialize_with = "opt_byte_size"
    )]
    pub batch_size: Option<u64>,
    /// `none`, `gzip`, `snappy`, `lz4` or `zstd`.
    #[serde(default)]
    pub compression: Option<String>,
}

fn opt_byte_size<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<u64>, D::Error> {
    units::byte_size(d).map(Some)
}

/// A connection to a Fluvio cluster.
#[derive(Clone)]
pub struct FluvioBackend {
    fluvio: Arc<Fluvio>,
}

impl std::fmt::Debug for FluvioBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FluvioBackend")
    }
}

impl FluvioBackend {
    /// Connects with the current profile; `client_id` is what the cluster sees
    /// (`fluvio_connector_<name>` for connectors).
    pub async fn connect(client_id: &str) -> Result<Self> {
        let mut config = FluvioClusterConfig::load().context(
            "loading the Fluvio profile (FLV_PROFILE_PATH, else ~/.fluvio/config); is a cluster configured?",
        )?;
        config.client_id = Some(client_id.to_string());
        let fluvio = Fluvio::connect_with_config(&config)
            .await
            .with_context(|| format!("connecting to the Fluvio cluster at {}", config.endpoint))?;
        Ok(Self {
            fluvio: Arc::new(fluvio),
        })
    }

    /// Creates the topic unless it exists.
    pub async fn ensure_topic(&self, topic: &TopicDefinition) -> Result<()> {
        let admin = self.fluvio.admin().await;
        let name = topic.name().to_string();
        let existing = admin
            .list::<TopicSpec, String>(vec![name.clone()])
            .await
            .context("listing topics")?;
        if existing.is_empty() {
            admin
                .create(name.clone(), false, topic.spec())
                .await
                .with_context(|| format!("creating topic {name}"))?;
            tracing::info!(topic = %name, "created topic");
        }
        Ok(())
    }

    /// A producer to `topic`.
    pub async fn writer(&self, topic: &str, settings: &ProducerSettings) -> Result<FluvioWriter> {
        let mut config = TopicProducerConfigBuilder::default();
        if let Some(linger) = settings.linger {
            config.linger(linger);
        }
        if let Some(size) = settings.batch_size {
            config.batch_size(usize::try_from(size).unwrap_or(usize::MAX));
        }
        if let Some(compression) = &settings.compression {
            let compression: Compression = compression.parse().map_err(|_| {
                anyhow!("meta.producer.compression {compression:?} is not none, gzip, snappy, lz4 or zstd")
            })?;
            config.compression(compression);
        }
        let config = config.build().map_err(|e| anyhow!("meta.producer: {e}"))?;
        let producer = self
            .fluvio
            .topic_producer_with_config(topic, config)
            .await
            .with_context(|| format!("opening a producer to topic {topic}"))?;
        Ok(FluvioWriter {
            producer: Arc::new(producer),
        })
    }

    /// A reader of every partition that resumes after `consumer`'s stored offset
    /// (or starts at `start` when there is none).
    pub async fn reader(&self, topic: &str, consumer: &str, start: StartFrom) -> Result<FluvioReader> {
        let offset = match start {
            StartFrom::Beginning => Offset::beginning(),
            StartFrom::End => Offset::end(),
            StartFrom::Absolute(o) => Offset::absolute(i64::try_from(o)?).map_err(|e| anyhow!("{e}"))?,
        };
        let config = ConsumerConfigExtBuilder::default()
            .topic(topic)
            .offset_consumer(consumer)
            .offset_start(offset)
            .offset_strategy(OffsetManagementStrategy::Manual)
            .build()
            .map_err(|e| anyhow!("consumer config: {e}"))?;
        let stream = self
            .fluvio
            .consumer_with_config(config)
            .await
            .with_context(|| format!("consuming topic {topic}"))?;
        Ok(FluvioReader {
            stream: Box::pin(stream),
            until: None,
        })
    }

    /// A reader of one partition from `from` (inclusive) to `to` (exclusive),
    /// or to the current end; no consumer offset is read or written.
    pub async fn range_reader(&self, topic: &str, partition: u32, from: u64, to: Option<u64>) -> Result<FluvioReader> {
        let config = ConsumerConfigExtBuilder::default()
            .topic(topic)
            .partition(partition)
            .offset_start(Offset::absolute(i64::try_from(from)?).map_err(|e| anyhow!("{e}"))?)
            .disable_continuous(true)
            .build()
            .map_err(|e| anyhow!("consumer config: {e}"))?;
        let stream = self
            .fluvio
            .consumer_with_config(config)
            .await
            .with_context(|| format!("reading topic {topic}"))?;
        Ok(FluvioReader {
            stream: Box::pin(stream),
            until: to,
        })
    }

    /// Commits `consumer`'s offsets of `topic`.
    pub fn committer(&self, topic: &str, consumer: &str) -> FluvioCommitter {
        FluvioCommitter {
            fluvio: self.fluvio.clone(),
            topic: topic.to_string(),
            consumer: consumer.to_string(),
            lagging: Mutex::new(HashMap::new()),
        }
    }

    /// Inspects `topic`.
    pub fn topic(&self, topic: &str) -> FluvioTopic {
        FluvioTopic {
            backend: self.clone(),
            name: topic.to_string(),
        }
    }

    /// The stored offsets of `consumer` on `topic`, by partition.
    pub async fn committed(&self, topic: &str, consumer: &str) -> Result<HashMap<u32, u64>> {
        let offsets = self
            .fluvio
            .consumer_offsets()
            .await
            .context("listing consumer offsets")?;
        Ok(offsets
            .into_iter()
            .filter(|o| o.consumer_id == consumer && o.topic == topic && o.offset >= 0)
            .map(|o| (o.partition, o.offset as u64))
            .collect())
    }
}

impl ModuleRegistry for FluvioBackend {
    fn fetch<'a>(&'a self, name: &'a str) -> Pin<Box<dyn std::future::Future<Output = Result<Vec<u8>>> + Send + 'a>> {
        Box::pin(async move {
            let admin = self.fluvio.admin().await;
            let listed = admin
                .list::<SmartModuleSpec, String>(vec![name.to_string()])
                .await
                .with_context(|| format!("looking up SmartModule {name}"))?;
            let Some(module) = listed.into_iter().next() else {
                bail!("no SmartModule named {name} is registered in the cluster (`fluvio sm list`)");
            };
            module
                .spec
                .wasm
                .as_raw_wasm()
                .with_context(|| format!("reading the wasm of SmartModule {name}"))
        })
    }
}

/// Produces to one topic.
#[derive(Clone)]
pub struct FluvioWriter {
    producer: Arc<TopicProducerPool>,
}

impl TopicWriter for FluvioWriter {
    async fn append(&self, records: Vec<NewRecord>) -> Result<()> {
        let outcome: Result<()> = async {
            for record in records {
                let key = record.key.map_or(RecordKey::NULL, |k| RecordKey::from(k.to_vec()));
                self.producer
                    .send(key, record.value.to_vec())
                    .await
                    .context("queueing a record")?;
            }
            self.producer.flush().await.context("flushing the producer")
        }
        .await;
        if outcome.is_err() {
            // Errors stay on the partition until cleared; the caller resends the batch.
            self.producer.clear_errors().await;
        }
        outcome
    }
}

/// Reads a topic in order (per partition).
pub struct FluvioReader {
    stream: RecordStream,
    until: Option<u64>,
}

impl std::fmt::Debug for FluvioReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FluvioReader")
    }
}

fn to_topic_record(record: Record) -> TopicRecord {
    TopicRecord {
        partition: record.partition(),
        offset: u64::try_from(record.offset()).unwrap_or(0),
        timestamp_ms: record.timestamp(),
        key: record.key().map(Bytes::copy_from_slice),
        value: Bytes::copy_from_slice(record.value()),
    }
}

impl TopicReader for FluvioReader {
    async fn next_batch(&mut self, max: usize, wait: Duration) -> Result<Vec<TopicRecord>> {
        let mut batch = Vec::new();
        let first = match tokio::time::timeout(wait, self.stream.next()).await {
            Err(_) | Ok(None) => return Ok(batch),
            Ok(Some(first)) => first,
        };
        batch.push(to_topic_record(first.map_err(|e| anyhow!("reading the topic: {e}"))?));
        while batch.len() < max {
            match self.stream.next().now_or_never() {
                Some(Some(record)) => {
                    batch.push(to_topic_record(record.map_err(|e| anyhow!("reading the topic: {e}"))?))
                }
                _ => break,
            }
        }
        if let Some(until) = self.until {
            batch.retain(|r| r.offset < until);
        }
        Ok(batch)
    }
}

/// Commits exact offsets through lagging per-partition streams.
pub struct FluvioCommitter {
    fluvio: Arc<Fluvio>,
    topic: String,
    consumer: String,
    lagging: Mutex<HashMap<u32, (RecordStream, Option<u64>)>>,
}

impl std::fmt::Debug for FluvioCommitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FluvioCommitter")
            .field("topic", &self.topic)
            .field("consumer", &self.consumer)
            .finish()
    }
}

impl FluvioCommitter {
    async fn lagging_stream(&self, partition: u32) -> Result<RecordStream> {
        let config = ConsumerConfigExtBuilder::default()
            .topic(self.topic.clone())
            .partition(partition)
            .offset_consumer(self.consumer.clone())
            .offset_start(Offset::beginning())
            .offset_strategy(OffsetManagementStrategy::Manual)
            .build()
            .map_err(|e| anyhow!("consumer config: {e}"))?;
        let stream = self
            .fluvio
            .consumer_with_config(config)
            .await
            .context("opening the committing stream")?;
        Ok(Box::pin(stream))
    }
}

impl OffsetCommitter for FluvioCommitter {
    async fn commit(&self, offsets: &[(u32, u64)]) -> Result<()> {
        let mut lagging = self.lagging.lock().await;
        for &(partition, offset) in offsets {
            if let std::collections::hash_map::Entry::Vacant(slot) = lagging.entry(partition) {
                slot.insert((self.lagging_stream(partition).await?, None));
            }
            let Some((stream, seen)) = lagging.get_mut(&partition) else {
                continue;
            };
            if seen.is_some_and(|s| s >= offset) {
                continue;
            }
            // Yield records up to exactly `offset`, so "the last yielded record"
            // is the settled one; never further.
            while seen.is_none_or(|s| s < offset) {
                let record = stream
                    .next()
                    .await
                    .ok_or_else(|| anyhow!("the committing stream of partition {partition} ended"))?
                    .map_err(|e| anyhow!("reading the committing stream: {e}"))?;
                *seen = Some(u64::try_from(record.offset()).unwrap_or(0));
            }
            if *seen != Some(offset) {
                bail!("partition {partition}: record {offset} is missing from the topic; not committing past it");
            }
            stream
                .offset_commit()
                .await
                .map_err(|e| anyhow!("committing offset {offset}: {e}"))?;
            stream
                .offset_flush()
                .await
                .map_err(|e| anyhow!("flushing offset {offset}: {e}"))?;
        }
        Ok(())
    }
}

/// Inspects one topic.
#[derive(Clone)]
pub struct FluvioTopic {
    backend: FluvioBackend,
    name: String,
}

impl TopicInspect for FluvioTopic {
    async fn bounds(&self) -> Result<Vec<PartitionBounds>> {
        let admin = self.backend.fluvio.admin().await;
        let partitions = admin.all::<PartitionSpec>().await.context("listing partitions")?;
        let prefix = format!("{}-", self.name);
        let mut bounds: Vec<PartitionBounds> = partitions
            .into_iter()
            .filter_map(|p| {
                let number: u32 = p.name.strip_prefix(&prefix)?.parse().ok()?;
                let next = u64::try_from(p.status.leader.leo).unwrap_or(0);
                let first = u64::try_from(p.status.base_offset).unwrap_or(0);
                Some(PartitionBounds {
                    partition: number,
                    first,
                    next,
                })
            })
            .collect();
        bounds.sort_by_key(|b| b.partition);
        Ok(bounds)
    }

    async fn read_range(&self, partition: u32, from: u64, to: u64) -> Result<Vec<TopicRecord>> {
        if from >= to {
            return Ok(Vec::new());
        }
        let mut reader = self.backend.range_reader(&self.name, partition, from, Some(to)).await?;
        let mut out = Vec::new();
        loop {
            let batch = reader.next_batch(1_000, Duration::from_secs(5)).await?;
            if batch.is_empty() {
                return Ok(out);
            }
            let done = batch.last().is_some_and(|r| r.offset + 1 >= to);
            out.extend(batch);
            if done {
                return Ok(out);
            }
        }
    }
}
