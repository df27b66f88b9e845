//! The embedded pipeline's config (`connector.yaml`): the source's `falcon`
//! section, the `transforms`, the sink's destination (`cloudtrail` or
//! `cloudwatch`), plus `storage`, `sink` and `metrics`, in the connector file
//! format.

use std::path::{Path, PathBuf};

use anyhow::Result;
use fluvio_smartengine::transformation::TransformationStep;

use crate::config::connector::{ConnectorFile, MetaConfig};
use crate::config::connectors::{dead_letter_topic, sink_sections};
use crate::config::destination::DestinationConfig;
use crate::config::secrets::SecretStore;
use crate::config::sections::{MetricsConfig, SinkConfig, StorageConfig};
use crate::falcon::FalconConfig;

/// Top-level sections of the embedded config besides `apiVersion`, `meta` and `transforms`.
pub const SECTIONS: [&str; 6] = ["falcon", "cloudtrail", "cloudwatch", "storage", "sink", "metrics"];

/// The whole embedded pipeline's configuration.
#[derive(Debug)]
pub struct EmbeddedConfig {
    /// `meta` (name, topic, secrets, consumer).
    pub meta: MetaConfig,
    /// The source.
    pub falcon: FalconConfig,
    /// The SmartModule chain.
    pub transforms: Vec<TransformationStep>,
    /// The sink's destination.
    pub destination: DestinationConfig,
    /// The log.
    pub storage: StorageConfig,
    /// Sink stage settings.
    pub sink: SinkConfig,
    /// Metrics endpoint.
    pub metrics: MetricsConfig,
    /// Directory relative paths are resolved against.
    pub base_dir: PathBuf,
}

impl EmbeddedConfig {
    /// Loads, renders and validates the file; errors name the key.
    pub fn load(path: &Path, store: &SecretStore) -> Result<Self> {
        let file = ConnectorFile::load(path, store, &SECTIONS)?;
        Self::from_file(file).map_err(|e| e.context(format!("in {}", path.display())))
    }

    /// Validates an already loaded file.
    pub fn from_file(file: ConnectorFile) -> Result<Self> {
        let mut falcon = FalconConfig::from_yaml(
            file.section("falcon")
                .ok_or_else(|| anyhow::anyhow!("the `falcon` section is missing"))?,
        )?;
        crate::net::NetworkSettings::resolve_paths(&mut falcon.ca_file, &file.base_dir());
        let (destination, sink) = sink_sections(&file)?;
        let storage: StorageConfig = file.optional("storage")?;
        Ok(Self {
            base_dir: file.base_dir(),
            metrics: file.optional("metrics")?,
            meta: file.meta,
            falcon,
            transforms: file.transforms,
            destination,
            storage,
            sink,
        })
    }

    /// The raw topic's name.
    pub fn topic(&self) -> &str {
        self.meta.topic.name()
    }

    /// The dead-letter topic of rejected lines and undeliverable events.
    pub fn dead_letter_topic(&self) -> String {
        let configured = self.falcon.dead_letter_topic.as_ref();
        dead_letter_topic(configured.or(self.destination.dead_letter_topic()), self.topic())
    }

    /// The SQLite file, resolved against the config's directory.
    pub fn storage_path(&self) -> PathBuf {
        self.base_dir.join(&self.storage.path)
    }
}
