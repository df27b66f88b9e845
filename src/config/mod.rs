//! Configuration files: the Fluvio connector YAML, secrets, and units.

pub mod connector;
pub mod connectors;
pub mod destination;
pub mod embedded;
pub mod secrets;
pub mod sections;
pub mod units;

use anyhow::{anyhow, Result};
use serde::de::DeserializeOwned;

/// Deserializes one section of a config file; errors name the full key
/// (`falcon.cloud: unknown variant …`), so users know what to fix.
pub fn from_section<T: DeserializeOwned>(section: &str, value: serde_yaml::Value) -> Result<T> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let key = if path == "." {
            section.to_string()
        } else {
            format!("{section}.{path}")
        };
        anyhow!("{key}: {}", e.into_inner())
    })
}
