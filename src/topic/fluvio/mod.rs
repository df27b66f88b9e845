//! Fluvio topics through the `fluvio` 0.50.1 client. The cluster comes from the
//! user's Fluvio profile (`FLV_PROFILE_PATH`, else `~/.fluvio/config`), as
//! `cdk deploy` expects of a connector.

mod commit;
mod partition;
mod reader;

pub use commit::FluvioCommitter;
pub use partition::{topic_partition_of, FalconPartitioner};
pub use reader::{FluvioReader, PartitionStart, DEFAULT_MAX_BYTES};

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use fluvio::consumer::{ConsumerConfigExtBuilder, ConsumerStream, Record};
use fluvio::dataplane::link::ErrorCode;
use fluvio::metadata::objects::Metadata;
use fluvio::metadata::partition::PartitionSpec;
use fluvio::metadata::smartmodule::SmartModuleSpec;
use fluvio::metadata::topic::config::TopicConfig;
use fluvio::metadata::topic::TopicSpec;
use fluvio::{
    Compression, Fluvio, FluvioClusterConfig, FluvioError, Offset, RecordKey, TopicProducerConfig,
    TopicProducerConfigBuilder, TopicProducerPool,
};
use futures::StreamExt;
use serde::Deserialize;

use crate::config::units;
use crate::topic::{
    ConsumerPosition, NewRecord, PartitionBounds, StartFrom, TopicInspect, TopicReader, TopicRecord, TopicWriter,
};
use crate::transform::ModuleRegistry;

/// A consumer stream of one partition.
pub(crate) type RecordStream = Pin<Box<dyn ConsumerStream<Item = std::result::Result<Record, ErrorCode>> + Send>>;

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
    /// A backend over a client already connected.
    pub fn from_client(fluvio: Arc<Fluvio>) -> Self {
        Self { fluvio }
    }

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

    /// Whether the cluster has a topic of exactly that name. The SC's name
    /// filter matches substrings (`falcon-events` lists `falcon-events-dlq`).
    pub async fn topic_exists(&self, name: &str) -> Result<bool> {
        let admin = self.fluvio.admin().await;
        let listed = admin
            .list::<TopicSpec, String>(vec![name.to_string()])
            .await
            .context("listing topics")?;
        Ok(listed.iter().any(|topic| topic.name == name))
    }

    /// Creates the topic unless it exists.
    pub async fn ensure_topic(&self, topic: &TopicDefinition) -> Result<()> {
        let name = topic.name().to_string();
        if self.topic_exists(&name).await? {
            return Ok(());
        }
        let admin = self.fluvio.admin().await;
        match admin.create(name.clone(), false, topic.spec()).await {
            Ok(()) => tracing::info!(topic = %name, "created topic"),
            // The source and the sink both create `<topic>-dlq` at start; the
            // one that loses the race is told TopicAlreadyExists. A real SC
            // answers a create only once the partitions are provisioned, so
            // the window is wide there.
            Err(error) if self.topic_exists(&name).await.unwrap_or(false) => {
                tracing::info!(topic = %name, %error, "topic created meanwhile by another process");
            }
            Err(error) => return Err(error.context(format!("creating topic {name}"))),
        }
        Ok(())
    }

    /// A producer to `topic`, partitioning as Fluvio does (key hash,
    /// round-robin without a key).
    pub async fn writer(&self, topic: &str, settings: &ProducerSettings) -> Result<FluvioWriter> {
        self.writer_with(topic, settings, TopicProducerConfigBuilder::default())
            .await
    }

    /// A producer of raw Falcon events to `topic`: each Falcon partition goes
    /// to one topic partition ([`FalconPartitioner`]), which cursor recovery
    /// relies on.
    pub async fn falcon_writer(&self, topic: &str, settings: &ProducerSettings) -> Result<FluvioWriter> {
        let mut config = TopicProducerConfigBuilder::default();
        config.partitioner(Arc::new(FalconPartitioner::default()));
        self.writer_with(topic, settings, config).await
    }

    async fn writer_with(
        &self,
        topic: &str,
        settings: &ProducerSettings,
        mut config: TopicProducerConfigBuilder,
    ) -> Result<FluvioWriter> {
        // The client's default request limit (1 MiB) would refuse a large Falcon
        // event outright; allow what the SPU accepts.
        config.max_request_size(MAX_REQUEST_BYTES);
        if let Some(linger) = settings.linger {
            config.linger(linger);
        }
        if let Some(size) = settings.batch_size {
            let size = usize::try_from(size).unwrap_or(usize::MAX).min(MAX_REQUEST_BYTES);
            config.batch_size(size);
        }
        if let Some(compression) = &settings.compression {
            let compression: Compression = compression.parse().map_err(|_| {
                anyhow!("meta.producer.compression {compression:?} is not none, gzip, snappy, lz4 or zstd")
            })?;
            config.compression(compression);
        }
        let config = config.build().map_err(|e| anyhow!("meta.producer: {e}"))?;
        let producer = self.producer_when_visible(topic, config).await?;
        Ok(FluvioWriter {
            producer: Arc::new(producer),
        })
    }

    /// The client checks a topic against its own metadata watch, which learns of a
    /// topic created a moment ago only after the SC's next update: a topic that is
    /// not (yet) visible is waited for, for a bounded time.
    async fn producer_when_visible(&self, topic: &str, config: TopicProducerConfig) -> Result<TopicProducerPool> {
        let deadline = tokio::time::Instant::now() + TOPIC_VISIBLE_WAIT;
        loop {
            match self.fluvio.topic_producer_with_config(topic, config.clone()).await {
                Ok(producer) => return Ok(producer),
                Err(e) if is_topic_not_found(&e) && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e).with_context(|| format!("opening a producer to topic {topic}")),
            }
        }
    }

    /// A reader that resumes each selected partition after `consumer`'s stored
    /// offset, or at `start` where it has none. `partitions: None` reads all.
    pub async fn reader(
        &self,
        topic: &str,
        consumer: &str,
        start: StartFrom,
        partitions: Option<&[u32]>,
        max_bytes: u64,
    ) -> Result<FluvioReader> {
        let bounds = partition_bounds(&self.fluvio, topic).await?;
        let committed = self.committed(topic, consumer).await?;
        let mut starts = Vec::new();
        for b in bounds
            .iter()
            .filter(|b| partitions.is_none_or(|p| p.contains(&b.partition)))
        {
            let wanted = match (committed.get(&b.partition), start) {
                (Some(done), _) => done + 1,
                (None, StartFrom::Beginning) => b.first,
                (None, StartFrom::End) => b.next,
                (None, StartFrom::Absolute(offset)) => offset,
            };
            if wanted < b.first {
                tracing::error!(
                    topic,
                    partition = b.partition,
                    lost = format!("{wanted}..{}", b.first),
                    "records were deleted by the topic's retention before the sink read them"
                );
            }
            starts.push(PartitionStart {
                partition: b.partition,
                from: wanted.max(b.first),
                until: None,
            });
        }
        if let Some(wanted) = partitions {
            if let Some(missing) = wanted.iter().find(|p| !bounds.iter().any(|b| b.partition == **p)) {
                bail!("meta.consumer.partition: topic {topic} has no partition {missing}");
            }
        }
        FluvioReader::open(self.fluvio.clone(), topic, &starts, max_bytes, true).await
    }

    /// A reader of one partition from `from` (inclusive) to `to` (exclusive),
    /// or to the current end; no consumer offset is read or written.
    pub async fn range_reader(&self, topic: &str, partition: u32, from: u64, to: Option<u64>) -> Result<FluvioReader> {
        let bounds = partition_bounds(&self.fluvio, topic)
            .await?
            .into_iter()
            .find(|b| b.partition == partition)
            .ok_or_else(|| anyhow!("topic {topic} has no partition {partition}"))?;
        let start = PartitionStart {
            partition,
            from: from.max(bounds.first),
            until: Some(to.unwrap_or(bounds.next).min(bounds.next)),
        };
        FluvioReader::open(self.fluvio.clone(), topic, &[start], DEFAULT_MAX_BYTES, false).await
    }

    /// Commits `consumer`'s offsets of `topic`.
    pub fn committer(&self, topic: &str, consumer: &str) -> FluvioCommitter {
        FluvioCommitter::new(self.fluvio.clone(), topic, consumer)
    }

    /// Inspects `topic`.
    pub fn topic(&self, topic: &str) -> FluvioTopic {
        FluvioTopic {
            backend: self.clone(),
            name: topic.to_string(),
            log_starts: Arc::default(),
        }
    }

    /// Every consumer's stored offset on `topic`.
    pub async fn consumers(&self, topic: &str) -> Result<Vec<ConsumerPosition>> {
        let offsets = consumer_offsets(&self.fluvio).await?;
        let mut positions: Vec<ConsumerPosition> = offsets
            .into_iter()
            .filter(|o| o.topic == topic && o.offset >= 0)
            .map(|o| ConsumerPosition {
                consumer: o.consumer_id,
                partition: o.partition,
                offset: o.offset as u64,
                // Fluvio stores seconds since the epoch.
                updated_ms: i64::try_from(o.modified_time.saturating_mul(1_000)).unwrap_or(i64::MAX),
            })
            .collect();
        positions.sort_by(|a, b| (&a.consumer, a.partition).cmp(&(&b.consumer, b.partition)));
        Ok(positions)
    }

    /// The stored offsets of `consumer` on `topic`, by partition.
    pub async fn committed(&self, topic: &str, consumer: &str) -> Result<HashMap<u32, u64>> {
        committed_offsets(&self.fluvio, topic, consumer).await
    }
}

/// Every stored consumer offset. A real SPU that has just restarted answers
/// "the partition is not a leader" until it has loaded `consumer-offset-0`
/// from the SC (about a second); a sink starting then must not die of it.
async fn consumer_offsets(fluvio: &Fluvio) -> Result<Vec<fluvio::consumer::ConsumerOffset>> {
    let deadline = std::time::Instant::now() + CONSUMER_OFFSETS_PATIENCE;
    let mut delay = Duration::from_millis(200);
    loop {
        match fluvio.consumer_offsets().await {
            Ok(offsets) => return Ok(offsets),
            Err(error) if std::time::Instant::now() < deadline => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "listing consumer offsets failed; retrying"
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(error) => return Err(error.context("listing consumer offsets")),
        }
    }
}

/// How long [`consumer_offsets`] keeps trying.
const CONSUMER_OFFSETS_PATIENCE: Duration = Duration::from_secs(30);

/// The stored offsets of `consumer` on `topic`, by partition.
pub(crate) async fn committed_offsets(fluvio: &Fluvio, topic: &str, consumer: &str) -> Result<HashMap<u32, u64>> {
    let offsets = consumer_offsets(fluvio).await?;
    Ok(offsets
        .into_iter()
        .filter(|o| o.consumer_id == consumer && o.topic == topic && o.offset >= 0)
        .map(|o| (o.partition, o.offset as u64))
        .collect())
}

impl ModuleRegistry for FluvioBackend {
    fn fetch<'a>(&'a self, name: &'a str) -> Pin<Box<dyn std::future::Future<Output = Result<Vec<u8>>> + Send + 'a>> {
        Box::pin(async move {
            let admin = self.fluvio.admin().await;
            let listed = admin
                .list::<SmartModuleSpec, String>(vec![name.to_string()])
                .await
                .with_context(|| format!("looking up SmartModule {name}"))?;
            let module = choose_module(name, listed)?;
            module
                .spec
                .wasm
                .as_raw_wasm()
                .with_context(|| format!("reading the wasm of SmartModule {name}"))
        })
    }
}

/// The module `name` names among what the SC listed for it. The SC parses
/// the name as `[group/]name[@version]` and lists packaged modules (`smdk
/// load`) matching those parts, and package-less ones (`fluvio sm create`)
/// whose key is the name part: `g/m@1.0` also lists a plain `m`. A plain
/// module answers only to its exact key, so the exact key wins and the
/// others are packaged matches; several of those (versions) are ambiguous.
fn choose_module(name: &str, listed: Vec<Metadata<SmartModuleSpec>>) -> Result<Metadata<SmartModuleSpec>> {
    let mut candidates: Vec<Metadata<SmartModuleSpec>> = listed
        .into_iter()
        .filter(|m| m.name == name || m.spec.meta.is_some())
        .collect();
    if let Some(exact) = candidates.iter().position(|m| m.name == name) {
        return Ok(candidates.swap_remove(exact));
    }
    match candidates.len() {
        0 => bail!("no SmartModule named {name} is registered in the cluster (`fluvio sm list`)"),
        1 => Ok(candidates.remove(0)),
        _ => {
            let names: Vec<String> = candidates
                .iter()
                .map(|m| {
                    m.spec
                        .meta
                        .as_ref()
                        .map_or_else(|| m.name.clone(), |meta| meta.package.fqdn())
                })
                .collect();
            bail!(
                "SmartModule name {name} is ambiguous: it matches {}; use the full name",
                names.join(", ")
            )
        }
    }
}

/// Produces to one topic.
#[derive(Clone)]
pub struct FluvioWriter {
    producer: Arc<TopicProducerPool>,
}

/// Largest produce request a Fluvio SPU accepts by default
/// (`STORAGE_MAX_REQUEST_SIZE`).
const MAX_REQUEST_BYTES: usize = 32 * 1024 * 1024;

/// How long a producer waits for a topic to appear in the client's metadata.
const TOPIC_VISIBLE_WAIT: Duration = Duration::from_secs(10);

fn is_topic_not_found(e: &anyhow::Error) -> bool {
    matches!(e.downcast_ref::<FluvioError>(), Some(FluvioError::TopicNotFound(_)))
}
/// Room a record batch needs besides its records' bytes.
const BATCH_OVERHEAD: usize = 4 * 1024;

impl TopicWriter for FluvioWriter {
    fn max_record_bytes(&self) -> Option<usize> {
        Some(MAX_REQUEST_BYTES - BATCH_OVERHEAD)
    }

    async fn append(&self, records: Vec<NewRecord>) -> Result<()> {
        let outcome: Result<()> = async {
            let mut outputs = Vec::with_capacity(records.len());
            for record in records {
                let key = record.key.map_or(RecordKey::NULL, |k| RecordKey::from(k.to_vec()));
                let output = self
                    .producer
                    .send(key, record.value.to_vec())
                    .await
                    .context("queueing a record")?;
                outputs.push(output);
            }
            self.producer.flush().await.context("flushing the producer")?;
            // `flush()` is Ok even when the SPU refused a batch: the error code
            // (NotLeaderForPartition from an SPU that has just restarted,
            // MessageTooLarge…) reaches only each record's output.
            for output in outputs {
                output.wait().await.context("the SPU refused a record batch")?;
            }
            Ok(())
        }
        .await;
        if outcome.is_err() {
            // Errors stay on the partition until cleared; the caller resends the batch.
            self.producer.clear_errors().await;
        }
        outcome
    }
}

/// How long a topic inspector reuses the log starts it read: the sink asks
/// for bounds every second (lag gauge) and each log start costs a stream per
/// partition; retention only moves them forward, so a stale one at most
/// overstates the lag for this long.
const LOG_START_REFRESH: Duration = Duration::from_secs(30);

/// Log starts per partition and when they were read.
type LogStarts = Option<(std::time::Instant, HashMap<u32, u64>)>;

/// Inspects one topic.
#[derive(Clone)]
pub struct FluvioTopic {
    backend: FluvioBackend,
    name: String,
    log_starts: Arc<std::sync::Mutex<LogStarts>>,
}

impl FluvioTopic {
    /// The log starts read less than LOG_START_REFRESH ago, if they cover `bounds`.
    fn cached_log_starts(&self, bounds: &[PartitionBounds]) -> Option<HashMap<u32, u64>> {
        let cache = self.log_starts.lock().unwrap_or_else(|e| e.into_inner());
        let (read_at, starts) = cache.as_ref()?;
        let covers = bounds.iter().all(|b| starts.contains_key(&b.partition));
        (read_at.elapsed() < LOG_START_REFRESH && covers).then(|| starts.clone())
    }
}

impl TopicInspect for FluvioTopic {
    async fn bounds(&self) -> Result<Vec<PartitionBounds>> {
        let fluvio = &self.backend.fluvio;
        let mut bounds = partition_ends(fluvio, &self.name).await?;
        let starts = match self.cached_log_starts(&bounds) {
            Some(starts) => starts,
            None => {
                let mut starts = HashMap::new();
                for b in &bounds {
                    starts.insert(b.partition, log_start(fluvio, &self.name, b.partition, b.next).await?);
                }
                *self.log_starts.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some((std::time::Instant::now(), starts.clone()));
                starts
            }
        };
        for b in &mut bounds {
            b.first = starts.get(&b.partition).copied().unwrap_or(0).min(b.next);
        }
        Ok(bounds)
    }

    async fn read_range(&self, partition: u32, from: u64, to: u64) -> Result<Vec<TopicRecord>> {
        if from >= to {
            return Ok(Vec::new());
        }
        let mut reader = self.backend.range_reader(&self.name, partition, from, Some(to)).await?;
        let mut out = Vec::new();
        let mut patience = Patience::new();
        loop {
            let batch = patience.next_batch(&mut reader, 1_000).await?;
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

    /// One stream over the whole range; each small batch's values are dropped
    /// as soon as its keys are visited.
    async fn scan_keys(
        &self,
        partition: u32,
        from: u64,
        to: u64,
        visit: &mut (dyn FnMut(u64, Option<&[u8]>) + Send),
    ) -> Result<()> {
        if from >= to {
            return Ok(());
        }
        let mut reader = self.backend.range_reader(&self.name, partition, from, Some(to)).await?;
        let mut patience = Patience::new();
        loop {
            let batch = patience.next_batch(&mut reader, 256).await?;
            let Some(last) = batch.last().map(|r| r.offset) else {
                return Ok(());
            };
            for record in &batch {
                visit(record.offset, record.key.as_deref());
            }
            if last + 1 >= to {
                return Ok(());
            }
        }
    }
}

/// How long a range read (the source's cursor recovery, `check`, redrive)
/// waits out an SPU that is away before it fails.
const RANGE_PATIENCE: Duration = Duration::from_secs(60);

/// Reads a range to its end through failures and pauses: the reader's errors
/// leave its position intact and are meant to be retried, and a pause of an
/// unfinished range is not its end (a source restarting while the SPU
/// restarts recovered its cursor from half a partition, or failed, before).
struct Patience {
    since: Option<tokio::time::Instant>,
}

impl Patience {
    fn new() -> Self {
        Self { since: None }
    }

    /// The next batch; empty only once the range is finished.
    async fn next_batch(&mut self, reader: &mut FluvioReader, max: usize) -> Result<Vec<TopicRecord>> {
        loop {
            let outcome = reader.next_batch(max, Duration::from_secs(5)).await;
            let trouble = match outcome {
                Ok(batch) if !batch.is_empty() || reader.finished() => {
                    self.since = None;
                    return Ok(batch);
                }
                Ok(_) => anyhow!("no record for 5 s before the end of the range"),
                Err(e) => e,
            };
            let since = *self.since.get_or_insert_with(tokio::time::Instant::now);
            if since.elapsed() >= RANGE_PATIENCE {
                return Err(trouble.context(format!("reading a range for {RANGE_PATIENCE:?}")));
            }
            tracing::warn!(
                error = format!("{trouble:#}"),
                "reading a range of the topic: trying again"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// Bounds of every partition of `topic`: the end from the cluster's
/// partition status, the log start from the SPU itself.
pub(crate) async fn partition_bounds(fluvio: &Fluvio, topic: &str) -> Result<Vec<PartitionBounds>> {
    let mut bounds = partition_ends(fluvio, topic).await?;
    for b in &mut bounds {
        b.first = log_start(fluvio, topic, b.partition, b.next).await?;
    }
    Ok(bounds)
}

/// The log start of one partition of `topic` (0 for a partition the cluster
/// does not list). Only that partition's SPU is asked: a slow one elsewhere
/// does not hold it up.
pub(crate) async fn partition_log_start(fluvio: &Fluvio, topic: &str, partition: u32) -> Result<u64> {
    let ends = partition_ends(fluvio, topic).await?;
    match ends.iter().find(|b| b.partition == partition) {
        Some(b) => log_start(fluvio, topic, partition, b.next).await,
        None => Ok(0),
    }
}

/// Every partition of `topic` with its end from the cluster's partition
/// status; `first` is left at 0 for the caller to fill in.
async fn partition_ends(fluvio: &Fluvio, topic: &str) -> Result<Vec<PartitionBounds>> {
    let admin = fluvio.admin().await;
    let partitions = admin.all::<PartitionSpec>().await.context("listing partitions")?;
    let prefix = format!("{topic}-");
    let mut bounds: Vec<PartitionBounds> = partitions
        .into_iter()
        .filter_map(|p| {
            let number: u32 = p.name.strip_prefix(&prefix)?.parse().ok()?;
            Some(PartitionBounds {
                partition: number,
                first: 0,
                next: u64::try_from(p.status.leader.leo).unwrap_or(0),
            })
        })
        .collect();
    bounds.sort_by_key(|b| b.partition);
    Ok(bounds)
}

/// How long opening a stream may take. On a socket an SPU's restart left
/// stale the client waits out its 60 s socket timeout instead of failing.
const STREAM_OPEN_PATIENCE: Duration = Duration::from_secs(10);

/// Opens a consumer stream, failing after [`STREAM_OPEN_PATIENCE`] so the
/// caller's retry (a fresh attempt) comes sooner than the client's own.
pub(crate) async fn open_consumer(
    fluvio: &Fluvio,
    config: fluvio::consumer::ConsumerConfigExt,
) -> Result<RecordStream> {
    match tokio::time::timeout(STREAM_OPEN_PATIENCE, fluvio.consumer_with_config(config)).await {
        Ok(stream) => Ok(Box::pin(stream?)),
        Err(_) => bail!("the SPU did not open the stream within {STREAM_OPEN_PATIENCE:?}"),
    }
}

/// Frame size of the log-start probe: many whole producer batches (16 KiB),
/// so the first frame always holds the first record.
const LOG_START_PROBE_BYTES: i32 = 1024 * 1024;
/// How long the probe waits for the SPU's first frame.
const LOG_START_PATIENCE: Duration = Duration::from_secs(10);

/// The offset of the oldest record retention has left in a partition.
/// A real SC's `base_offset` stays 0 after retention deletes segments, so
/// the start is read from the SPU: a stream from the beginning resolves it.
async fn log_start(fluvio: &Fluvio, topic: &str, partition: u32, next: u64) -> Result<u64> {
    if next == 0 {
        return Ok(0);
    }
    // The SPU may be away (restarting) while the SC answers: wait for it as
    // the range reads do, instead of failing a connector's start.
    let started = tokio::time::Instant::now();
    loop {
        match read_log_start(fluvio, topic, partition, next).await {
            Ok(first) => return Ok(first),
            Err(e) if started.elapsed() < RANGE_PATIENCE => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "reading a partition's log start: trying again"
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e.context(format!("for {RANGE_PATIENCE:?}"))),
        }
    }
}

/// One attempt of `log_start`.
async fn read_log_start(fluvio: &Fluvio, topic: &str, partition: u32, next: u64) -> Result<u64> {
    let config = ConsumerConfigExtBuilder::default()
        .topic(topic)
        .partition(partition)
        .offset_start(Offset::beginning())
        .max_bytes(LOG_START_PROBE_BYTES)
        .disable_continuous(true)
        .build()
        .map_err(|e| anyhow!("consumer config: {e}"))?;
    let context = || format!("reading the log start of topic {topic} partition {partition}");
    // Opening the stream too: on a socket the SPU's restart left stale, the
    // client waits out its 60 s socket timeout.
    let first = async {
        let mut stream = open_consumer(fluvio, config).await.with_context(context)?;
        Ok::<_, anyhow::Error>(stream.next().await)
    };
    match tokio::time::timeout(LOG_START_PATIENCE, first).await {
        Ok(Ok(Some(Ok(record)))) => u64::try_from(record.offset()).with_context(context),
        Ok(Ok(Some(Err(e)))) => Err(anyhow!("{e}")).with_context(context),
        // Nothing left below the end: retention deleted every record.
        Ok(Ok(None)) => Ok(next),
        Ok(Err(e)) => Err(e),
        Err(_) => bail!("{}: no answer for {LOG_START_PATIENCE:?}", context()),
    }
}

/// For tests: a topic of two partitions on `cluster` holding `per_partition`
/// records in each (Falcon keys, so partition `p` gets Falcon partition `p`).
#[cfg(test)]
pub(crate) async fn two_partition_topic(
    cluster: &fluvio_testbed::TestCluster,
    topic: &str,
    per_partition: u64,
) -> Arc<Fluvio> {
    let config = FluvioClusterConfig::new(cluster.sc_endpoint());
    let fluvio = Arc::new(Fluvio::connect_with_config(&config).await.expect("connect"));
    fluvio
        .admin()
        .await
        .create(topic.to_string(), false, TopicSpec::new_computed(2, 1, None))
        .await
        .expect("topic");
    let writer = FluvioBackend::from_client(fluvio.clone())
        .falcon_writer(topic, &ProducerSettings::default())
        .await
        .expect("writer");
    let records = (0..2 * per_partition)
        .map(|i| NewRecord {
            key: Some(crate::audit::SourceKey::new((i % 2) as u32, i / 2).encode().into()),
            value: bytes::Bytes::from(format!("event {i}")),
        })
        .collect();
    writer.append(records).await.expect("append");
    fluvio
}

#[cfg(test)]
mod tests {
    use super::*;
    use fluvio::metadata::smartmodule::{FluvioSemVersion, SmartModuleMetadata, SmartModulePackage};

    fn listed(key: &str, version: Option<&str>) -> Metadata<SmartModuleSpec> {
        let meta = version.map(|v| SmartModuleMetadata {
            package: SmartModulePackage {
                name: "audit".to_string(),
                group: "lake".to_string(),
                version: FluvioSemVersion::parse(v).expect("version"),
                ..Default::default()
            },
            ..Default::default()
        });
        Metadata {
            name: key.to_string(),
            spec: SmartModuleSpec {
                meta,
                ..Default::default()
            },
            status: Default::default(),
        }
    }

    /// What the SC lists for each name (its `[group/]name[@version]` rules),
    /// and which module the sink takes from it.
    #[test]
    fn a_module_name_picks_the_exact_key_or_one_package() {
        let plain = || listed("audit", None);
        let v1 = || listed("audit-lake-0.1.0", Some("0.1.0"));
        let v2 = || listed("audit-lake-0.2.0", Some("0.2.0"));
        let pick = |name: &str, all: Vec<Metadata<SmartModuleSpec>>| choose_module(name, all).map(|m| m.name);
        assert_eq!(pick("audit", vec![plain(), v1(), v2()]).expect("plain"), "audit");
        assert_eq!(
            pick("lake/audit@0.1.0", vec![plain(), v1()]).expect("full name"),
            "audit-lake-0.1.0"
        );
        assert_eq!(pick("audit", vec![v1()]).expect("one package"), "audit-lake-0.1.0");
        let ambiguous = pick("lake/audit", vec![plain(), v1(), v2()]).expect_err("two versions");
        assert!(
            ambiguous.to_string().contains("lake/audit@0.1.0, lake/audit@0.2.0"),
            "{ambiguous}"
        );
        let missing = pick("lake/audit@0.3.0", vec![plain()]).expect_err("no such version");
        assert!(
            missing.to_string().contains("no SmartModule named lake/audit@0.3.0"),
            "{missing}"
        );
    }

    /// The source and the sink both ensure `<topic>-dlq` at start, each on its
    /// own connection: both must succeed whichever creates it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_processes_ensuring_one_topic_both_succeed() {
        let cluster = fluvio_testbed::TestCluster::start().await.expect("test cluster");
        let config = FluvioClusterConfig::new(cluster.sc_endpoint());
        let mut backends = Vec::new();
        for _ in 0..2 {
            let fluvio = Fluvio::connect_with_config(&config).await.expect("connect");
            backends.push(FluvioBackend {
                fluvio: Arc::new(fluvio),
            });
        }
        for round in 0..10 {
            let topic = TopicDefinition::Name(format!("shared-{round}-dlq"));
            // Both look the topic up before either creates it.
            let (first, second) = tokio::join!(backends[0].ensure_topic(&topic), backends[1].ensure_topic(&topic));
            first.expect("first process");
            second.expect("second process");
        }
    }

    /// A restarted SPU refuses produces (NotLeaderForPartition) for a while;
    /// an append that returns Ok must have stored its records.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_append_that_returns_ok_is_stored_across_an_spu_restart() {
        let cluster = fluvio_testbed::TestCluster::builder()
            .spu_restart_warmup(Duration::from_secs(3))
            .start()
            .await
            .expect("test cluster");
        let config = FluvioClusterConfig::new(cluster.sc_endpoint());
        let fluvio = Fluvio::connect_with_config(&config).await.expect("connect");
        let backend = FluvioBackend {
            fluvio: Arc::new(fluvio),
        };
        backend
            .ensure_topic(&TopicDefinition::Name("restarted".to_string()))
            .await
            .expect("topic");
        let writer = backend
            .writer("restarted", &ProducerSettings::default())
            .await
            .expect("writer");
        let record = |i: usize| NewRecord {
            key: Some(bytes::Bytes::from(format!("k{i}"))),
            value: bytes::Bytes::from(format!("v{i}")),
        };
        writer.append(vec![record(0)]).await.expect("before the restart");
        cluster.stop_spu().await.expect("stop");
        cluster.start_spu().await.expect("start");
        let mut acknowledged = vec!["k0".to_string()];
        let mut refused = 0;
        let started = std::time::Instant::now();
        let mut i = 1;
        // Past the warm-up, until one append after the restart succeeded: the
        // client's first retry may wait out its 60 s socket timeout.
        while started.elapsed() < Duration::from_secs(6)
            || (acknowledged.len() == 1 && started.elapsed() < Duration::from_secs(90))
        {
            match tokio::time::timeout(Duration::from_secs(10), writer.append(vec![record(i)])).await {
                Ok(Ok(())) => acknowledged.push(format!("k{i}")),
                Ok(Err(_)) | Err(_) => refused += 1,
            }
            i += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let stored: std::collections::HashSet<String> = cluster
            .records("restarted", 0)
            .expect("records")
            .into_iter()
            .filter_map(|r| r.key.map(|k| String::from_utf8_lossy(&k).into_owned()))
            .collect();
        let lost: Vec<&String> = acknowledged.iter().filter(|k| !stored.contains(*k)).collect();
        assert!(
            lost.is_empty(),
            "acknowledged but not stored: {lost:?} ({refused} appends refused)"
        );
        assert!(acknowledged.len() > 1, "appends succeed again after the warm-up");
    }
}
