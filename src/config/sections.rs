//! Sections shared by the connector configs and the embedded pipeline's config.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::units;
use crate::topic::sqlite::SyncMode;

/// `sink:`: how the sink stage reads and settles.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// Most raw records read but not yet settled and committed. A crash
    /// re-delivers at most this many (duplicates, never losses).
    #[serde(default = "default_window")]
    pub window: usize,
    /// Raw records read (and transformed) at a time.
    #[serde(default = "default_read_batch")]
    pub read_batch: usize,
    /// How long shutdown waits for in-flight events to settle.
    #[serde(default = "default_drain", deserialize_with = "units::duration")]
    pub drain_timeout: Duration,
    /// A partition with records to read of which none is read for this long,
    /// while the reader keeps asking, is reported stalled (`/health` 503).
    #[serde(default = "default_stall", deserialize_with = "units::duration")]
    pub stall_timeout: Duration,
}

fn default_window() -> usize {
    2_000
}
fn default_read_batch() -> usize {
    500
}
fn default_drain() -> Duration {
    Duration::from_secs(7)
}
fn default_stall() -> Duration {
    Duration::from_secs(30)
}

impl Default for SinkConfig {
    fn default() -> Self {
        Self {
            window: default_window(),
            read_batch: default_read_batch(),
            drain_timeout: default_drain(),
            stall_timeout: default_stall(),
        }
    }
}

impl SinkConfig {
    /// Checks the values; errors name the key.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.read_batch >= 1, "sink.read_batch must be at least 1");
        anyhow::ensure!(
            self.window >= self.read_batch,
            "sink.window must be at least sink.read_batch"
        );
        anyhow::ensure!(
            self.drain_timeout <= Duration::from_secs(9),
            "sink.drain_timeout must be at most 9s (shutdown completes within 10 s)"
        );
        anyhow::ensure!(
            self.stall_timeout >= Duration::from_secs(1),
            "sink.stall_timeout must be at least 1s"
        );
        Ok(())
    }
}

/// `metrics:`: where `/metrics` and `/health` are served.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Listen address, e.g. `127.0.0.1:9464`; none serves nothing.
    #[serde(default)]
    pub address: Option<SocketAddr>,
}

/// `storage:`: the embedded log.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// SQLite file (relative to the config file).
    #[serde(default = "default_path")]
    pub path: PathBuf,
    /// `full` (survives power loss) or `normal` (survives process crashes).
    #[serde(default)]
    pub sync: SyncMode,
    /// Retention of the raw and dead-letter topics.
    #[serde(default)]
    pub retention: RetentionConfig,
}

fn default_path() -> PathBuf {
    PathBuf::from("falcon-lake.db")
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            path: default_path(),
            sync: SyncMode::Full,
            retention: RetentionConfig::default(),
        }
    }
}

/// `storage.retention:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Delete records older than this (never ones the sink has not settled).
    #[serde(default = "default_max_age", deserialize_with = "units::opt_duration")]
    pub max_age: Option<Duration>,
    /// Keep the topic below this size, oldest first (same exception).
    #[serde(default, deserialize_with = "opt_bytes")]
    pub max_bytes: Option<u64>,
}

fn default_max_age() -> Option<Duration> {
    Some(Duration::from_secs(7 * 24 * 3600))
}

fn opt_bytes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    units::byte_size(d).map(Some)
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            max_age: default_max_age(),
            max_bytes: None,
        }
    }
}
