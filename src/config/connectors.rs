//! The two Fluvio connectors' configs, loaded and validated in one place for
//! every command that reads them (the connectors, `check` and `replay`), and
//! which kind of config a file is.

use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::config::connector::{ConnectorFile, MetaConfig};
use crate::config::destination::DestinationConfig;
use crate::config::secrets::SecretStore;
use crate::config::sections::{MetricsConfig, SinkConfig};
use crate::falcon::FalconConfig;
use crate::topic::fluvio::DEFAULT_MAX_BYTES;
use crate::topic::StartFrom;

/// What a config file describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigKind {
    /// The embedded pipeline (`falcon-lake run`): source and sink sections.
    Embedded,
    /// The source connector: a `falcon` section only.
    Source,
    /// The sink connector: a `cloudtrail` or `cloudwatch` section.
    Sink,
}

impl ConfigKind {
    /// Reads the file's top-level sections to tell what it is.
    pub fn of(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let raw: serde_yaml::Value = serde_yaml::from_str(&text).context("the config is not valid YAML")?;
        let has = |key: &str| raw.get(key).is_some();
        let destination = has("cloudtrail") || has("cloudwatch");
        Ok(if has("storage") || (has("falcon") && destination) {
            ConfigKind::Embedded
        } else if has("falcon") {
            ConfigKind::Source
        } else {
            ConfigKind::Sink
        })
    }
}

/// The dead-letter topic: the configured one, else `<topic>-dlq`.
pub fn dead_letter_topic(configured: Option<&String>, topic: &str) -> String {
    configured.cloned().unwrap_or_else(|| format!("{topic}-dlq"))
}

/// The sink's side of a config (sink connector or embedded): the destination
/// (`cloudtrail` or `cloudwatch`), `sink` and a non-empty `transforms`, each checked.
pub fn sink_sections(file: &ConnectorFile) -> Result<(DestinationConfig, SinkConfig)> {
    let destination = DestinationConfig::from_file(file)?;
    let mut destination = destination;
    crate::net::NetworkSettings::resolve_paths(&mut destination.aws_mut().ca_file, &file.base_dir());
    let sink: SinkConfig = file.optional("sink")?;
    sink.validate()?;
    file.meta.consumer_start()?;
    anyhow::ensure!(
        !file.transforms.is_empty(),
        "transforms is empty: the sink needs the SmartModule that maps events"
    );
    Ok((destination, sink))
}

/// The source connector's config.
#[derive(Debug)]
pub struct SourceConnectorConfig {
    /// The file (`meta`, sections).
    pub file: ConnectorFile,
    /// `falcon`.
    pub falcon: FalconConfig,
    /// `metrics`.
    pub metrics: MetricsConfig,
}

impl SourceConnectorConfig {
    /// Loads, renders and validates `path`.
    pub fn load(path: &Path, store: &SecretStore) -> Result<Self> {
        let file = ConnectorFile::load(path, store, &["falcon", "metrics"])?;
        Self::from_file(file).map_err(|e| e.context(format!("in {}", path.display())))
    }

    fn from_file(file: ConnectorFile) -> Result<Self> {
        expect_direction(&file.meta, true)?;
        let mut falcon = FalconConfig::from_yaml(file.section("falcon").context("the `falcon` section is missing")?)?;
        crate::net::NetworkSettings::resolve_paths(&mut falcon.ca_file, &file.base_dir());
        Ok(Self {
            metrics: file.optional("metrics")?,
            falcon,
            file,
        })
    }

    /// The raw topic's name.
    pub fn topic(&self) -> &str {
        self.file.meta.topic.name()
    }

    /// Where rejected lines go.
    pub fn dead_letter_topic(&self) -> String {
        dead_letter_topic(self.falcon.dead_letter_topic.as_ref(), self.topic())
    }
}

/// The sink connector's config.
#[derive(Debug)]
pub struct SinkConnectorConfig {
    /// The file (`meta`, `transforms`, sections).
    pub file: ConnectorFile,
    /// `cloudtrail` or `cloudwatch`.
    pub destination: DestinationConfig,
    /// `sink`.
    pub sink: SinkConfig,
    /// `metrics`.
    pub metrics: MetricsConfig,
    /// Where a consumer without a stored offset starts.
    pub start: StartFrom,
    /// `meta.consumer.partition` (`None`: all).
    pub partitions: Option<Vec<u32>>,
    /// `meta.consumer.max-bytes`, or the default.
    pub max_bytes: u64,
}

impl SinkConnectorConfig {
    /// Loads, renders and validates `path`.
    pub fn load(path: &Path, store: &SecretStore) -> Result<Self> {
        let file = ConnectorFile::load(path, store, &["cloudtrail", "cloudwatch", "sink", "metrics"])?;
        Self::from_file(file).map_err(|e| e.context(format!("in {}", path.display())))
    }

    fn from_file(file: ConnectorFile) -> Result<Self> {
        expect_direction(&file.meta, false)?;
        let (destination, sink) = sink_sections(&file)?;
        Ok(Self {
            metrics: file.optional("metrics")?,
            start: file.meta.consumer_start()?,
            partitions: file.meta.consumer_partitions()?,
            max_bytes: file.meta.consumer_max_bytes().unwrap_or(DEFAULT_MAX_BYTES),
            destination,
            sink,
            file,
        })
    }

    /// The raw topic's name.
    pub fn topic(&self) -> &str {
        self.file.meta.topic.name()
    }

    /// Where refused events go.
    pub fn dead_letter_topic(&self) -> String {
        dead_letter_topic(self.destination.dead_letter_topic(), self.topic())
    }
}

/// Checks `meta.type` against the connector, as `cdk deploy` does: a type
/// ending in `-source` is a source, anything else a sink.
fn expect_direction(meta: &MetaConfig, source: bool) -> Result<()> {
    let is_source = meta.connector_type.ends_with("-source");
    match (source, is_source) {
        (true, false) => bail!(
            "meta.type {:?} is not a source type (it must end in -source)",
            meta.connector_type
        ),
        (false, true) => bail!(
            "meta.type {:?} is a source type; a sink connector config is needed here",
            meta.connector_type
        ),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_told_apart_by_their_sections() {
        let dir = tempfile::tempdir().expect("dir");
        let kind = |text: &str| {
            let path = dir.path().join("c.yaml");
            std::fs::write(&path, text).expect("write");
            ConfigKind::of(&path).expect("kind")
        };
        assert_eq!(kind("falcon: {}\ncloudtrail: {}\n"), ConfigKind::Embedded);
        assert_eq!(kind("storage: {}\n"), ConfigKind::Embedded);
        assert_eq!(kind("falcon: {}\n"), ConfigKind::Source);
        assert_eq!(kind("cloudtrail: {}\n"), ConfigKind::Sink);
        assert_eq!(kind("falcon: {}\ncloudwatch: {}\n"), ConfigKind::Embedded);
        assert_eq!(kind("cloudwatch: {}\n"), ConfigKind::Sink);
        assert_eq!(dead_letter_topic(None, "raw"), "raw-dlq");
        assert_eq!(dead_letter_topic(Some(&"dlq".to_string()), "raw"), "dlq");
    }
}
