//! The topics of a pipeline on either backend, behind one small set of calls,
//! for the commands that look at a pipeline from outside (`status`, `dlq`).

use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::config::connectors::{ConfigKind, SinkConnectorConfig, SourceConnectorConfig};
use crate::config::embedded::EmbeddedConfig;
use crate::config::secrets::SecretStore;
use crate::topic::fluvio::{FluvioBackend, ProducerSettings, TopicDefinition};
use crate::topic::sqlite::SqliteLog;
use crate::topic::{ConsumerPosition, NewRecord, PartitionBounds, TopicInspect, TopicRecord, TopicWriter};

/// Where the topics live.
#[derive(Debug, Clone)]
pub enum Backend {
    /// The embedded SQLite log.
    Embedded(SqliteLog),
    /// A Fluvio cluster (the current profile).
    Fluvio(FluvioBackend),
}

/// The status topic of a raw topic: the sink's durable state records.
pub fn status_topic(topic: &str) -> String {
    format!("{topic}-status")
}

/// The redrive marks of a dead-letter topic: which letters were re-sent.
pub fn marks_topic(dead_letter_topic: &str) -> String {
    format!("{dead_letter_topic}-redriven")
}

impl Backend {
    /// `embedded` or `fluvio`.
    pub fn kind(&self) -> &'static str {
        match self {
            Backend::Embedded(_) => "embedded",
            Backend::Fluvio(_) => "fluvio",
        }
    }

    /// Bounds of every partition of `topic` (none when it does not exist).
    pub async fn bounds(&self, topic: &str) -> Result<Vec<PartitionBounds>> {
        match self {
            Backend::Embedded(log) => log.topic(topic)?.bounds().await,
            Backend::Fluvio(fluvio) => fluvio.topic(topic).bounds().await,
        }
    }

    /// Records `from..to` of one partition.
    pub async fn read_range(&self, topic: &str, partition: u32, from: u64, to: u64) -> Result<Vec<TopicRecord>> {
        match self {
            Backend::Embedded(log) => log.topic(topic)?.read_range(partition, from, to).await,
            Backend::Fluvio(fluvio) => fluvio.topic(topic).read_range(partition, from, to).await,
        }
    }

    /// Every record of every partition of `topic`, oldest first per partition.
    pub async fn read_all(&self, topic: &str) -> Result<Vec<TopicRecord>> {
        let mut all = Vec::new();
        for b in self.bounds(topic).await? {
            if b.next > b.first {
                all.extend(self.read_range(topic, b.partition, b.first, b.next).await?);
            }
        }
        Ok(all)
    }

    /// The last record of partition 0 of `topic`, if any.
    pub async fn last_record(&self, topic: &str) -> Result<Option<TopicRecord>> {
        let Some(b) = self.bounds(topic).await?.into_iter().find(|b| b.partition == 0) else {
            return Ok(None);
        };
        if b.next <= b.first {
            return Ok(None);
        }
        Ok(self.read_range(topic, 0, b.next - 1, b.next).await?.pop())
    }

    /// Every consumer's committed offsets on `topic`.
    pub async fn consumers(&self, topic: &str) -> Result<Vec<ConsumerPosition>> {
        match self {
            Backend::Embedded(log) => log.topic(topic)?.consumers().await,
            Backend::Fluvio(fluvio) => fluvio.consumers(topic).await,
        }
    }

    /// Appends `records` to `topic`, creating it if needed.
    pub async fn append(&self, topic: &str, records: Vec<NewRecord>) -> Result<()> {
        match self {
            Backend::Embedded(log) => log.topic(topic)?.append(records).await,
            Backend::Fluvio(fluvio) => {
                fluvio.ensure_topic(&TopicDefinition::Name(topic.to_string())).await?;
                fluvio
                    .writer(topic, &ProducerSettings::default())
                    .await?
                    .append(records)
                    .await
            }
        }
    }
}

/// What the operating commands need to know of a config file.
#[derive(Debug, Clone)]
pub struct Target {
    /// The config's kind.
    pub kind: ConfigKind,
    /// `meta.name`.
    pub name: String,
    /// The raw topic.
    pub topic: String,
    /// The dead-letter topic.
    pub dead_letter_topic: String,
    /// The sink's consumer id (none for a source connector config).
    pub consumer: Option<String>,
    /// `metrics.address`.
    pub metrics: Option<std::net::SocketAddr>,
}

/// Loads any config kind and opens its backend.
pub async fn open(path: &Path, store: &SecretStore) -> Result<(Target, Backend)> {
    let kind = ConfigKind::of(path)?;
    let target = match kind {
        ConfigKind::Embedded => {
            let c = EmbeddedConfig::load(path, store)?;
            // Looking must not create an empty log where the pipeline never ran.
            if !c.storage_path().exists() {
                bail!(
                    "there is no log at {} (storage.path of {}): has the pipeline run here?",
                    c.storage_path().display(),
                    path.display()
                );
            }
            let log = SqliteLog::open(&c.storage_path(), c.storage.sync)
                .with_context(|| format!("opening the log of {}", path.display()))?;
            let target = Target {
                kind,
                name: c.meta.name.clone(),
                topic: c.topic().to_string(),
                dead_letter_topic: c.dead_letter_topic(),
                consumer: Some(c.meta.consumer_id()),
                metrics: c.metrics.address,
            };
            return Ok((target, Backend::Embedded(log)));
        }
        ConfigKind::Sink => {
            let c = SinkConnectorConfig::load(path, store)?;
            Target {
                kind,
                name: c.file.meta.name.clone(),
                topic: c.topic().to_string(),
                dead_letter_topic: c.dead_letter_topic(),
                consumer: Some(c.file.meta.consumer_id()),
                metrics: c.metrics.address,
            }
        }
        ConfigKind::Source => {
            let c = SourceConnectorConfig::load(path, store)?;
            Target {
                kind,
                name: c.file.meta.name.clone(),
                topic: c.topic().to_string(),
                dead_letter_topic: c.dead_letter_topic(),
                consumer: None,
                metrics: c.metrics.address,
            }
        }
    };
    let backend = FluvioBackend::connect(&format!("fluvio_connector_{}-ops", target.name)).await?;
    Ok((target, Backend::Fluvio(backend)))
}

/// Refuses a source connector config where the sink's side is needed.
pub fn require_sink(target: &Target, path: &Path) -> Result<()> {
    if target.kind == ConfigKind::Source {
        bail!(
            "{} is a source connector config; this needs the embedded config or a sink connector config",
            path.display()
        );
    }
    Ok(())
}
