//! Configuration of the CloudWatch Logs sink (the `cloudwatch:` section).

use anyhow::{bail, Result};
use serde::Deserialize;

use crate::cloudwatch::request::{MAX_BATCH_BYTES, MAX_EVENTS};
use crate::publish::aws::{destination_section, AwsConnection};
use crate::publish::settings::Bounds;
use crate::publish::PublishSettings;

/// The retention periods `PutRetentionPolicy` accepts, in days.
pub const RETENTION_DAYS: [u32; 22] = [
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
];

/// The `cloudwatch:` section.
#[derive(Debug, Clone)]
pub struct CloudWatchConfig {
    /// Log group the events go to.
    pub log_group: String,
    /// Log stream in that group.
    pub log_stream: String,
    /// Create the log group when it does not exist.
    pub create_missing_group: bool,
    /// Create the log stream when it does not exist.
    pub create_missing_stream: bool,
    /// Retention set on a log group the sink creates (days; one of [`RETENTION_DAYS`]).
    pub retention_days: Option<u32>,
    /// Region (default: the default chain's, `AWS_REGION` or the profile's),
    /// endpoint (also `AWS_ENDPOINT_URL_CLOUDWATCH_LOGS`), profile.
    pub aws: AwsConnection,
    /// Batching, rate, timeouts, retries, dead letters.
    pub publish: PublishSettings,
}

/// The section's own keys (the publisher's are taken out first).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Section {
    log_group: String,
    log_stream: String,
    #[serde(default = "yes")]
    create_missing_group: bool,
    #[serde(default = "yes")]
    create_missing_stream: bool,
    #[serde(default)]
    retention_days: Option<u32>,
}

fn yes() -> bool {
    true
}

/// The publisher's defaults for CloudWatch Logs: full requests (10,000 events,
/// 1 MiB), few in flight (each carries up to 1 MiB), and a request rate well
/// under the account's PutLogEvents quota (shared with every other producer in
/// the account; 800 per second in most regions in 2022).
pub fn default_settings() -> PublishSettings {
    PublishSettings::aws_defaults(MAX_EVENTS, MAX_BATCH_BYTES as u64, 4, 50.0)
}

const BOUNDS: Bounds = Bounds {
    max_events: MAX_EVENTS,
    min_bytes: 10_000,
    max_bytes: MAX_BATCH_BYTES as u64,
};

/// True when `name` is a valid log group name: 1–512 of `[\.\-_/#A-Za-z0-9]`.
pub fn is_valid_group_name(name: &str) -> bool {
    (1..=512).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b".-_/#".contains(&b))
}

/// True when `name` is a valid log stream name: 1–512 characters, no `:` or `*`.
pub fn is_valid_stream_name(name: &str) -> bool {
    (1..=512).contains(&name.chars().count()) && !name.contains([':', '*'])
}

impl CloudWatchConfig {
    /// A configuration with defaults for everything but the group and stream.
    pub fn new(log_group: impl Into<String>, log_stream: impl Into<String>) -> Self {
        Self {
            log_group: log_group.into(),
            log_stream: log_stream.into(),
            create_missing_group: true,
            create_missing_stream: true,
            retention_days: None,
            aws: AwsConnection::default(),
            publish: default_settings(),
        }
    }

    /// Checks values serde cannot; each error names its key.
    pub fn validate(&self) -> Result<()> {
        if !is_valid_group_name(&self.log_group) {
            bail!(
                "cloudwatch.log_group {:?} must be 1 to 512 characters of A-Z a-z 0-9 . - _ / #",
                self.log_group
            );
        }
        if self.log_group.starts_with("aws/") {
            bail!(
                "cloudwatch.log_group {:?}: names starting with aws/ are reserved for AWS",
                self.log_group
            );
        }
        if !is_valid_stream_name(&self.log_stream) {
            bail!(
                "cloudwatch.log_stream {:?} must be 1 to 512 characters without : or *",
                self.log_stream
            );
        }
        if let Some(days) = self.retention_days {
            if !RETENTION_DAYS.contains(&days) {
                bail!("cloudwatch.retention_days must be one of {RETENTION_DAYS:?}");
            }
        }
        self.aws.validate("cloudwatch")?;
        self.publish.validate("cloudwatch", BOUNDS)
    }

    /// Parses and validates a `cloudwatch:` section given as YAML.
    pub fn from_yaml(value: serde_yaml::Value) -> Result<Self> {
        let (section, aws, publish) = destination_section::<Section>("cloudwatch", value, default_settings())?;
        let config = Self {
            log_group: section.log_group,
            log_stream: section.log_stream,
            create_missing_group: section.create_missing_group,
            create_missing_stream: section.create_missing_stream,
            retention_days: section.retention_days,
            aws,
            publish,
        };
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<CloudWatchConfig> {
        CloudWatchConfig::from_yaml(serde_yaml::from_str(yaml).expect("yaml"))
    }

    #[test]
    fn defaults() {
        let c = parse("log_group: /falcon/audit\nlog_stream: tenant-1\n").expect("valid");
        assert!(c.create_missing_group && c.create_missing_stream);
        assert_eq!(c.publish.batch_max_events, 10_000);
        assert_eq!(c.publish.batch_max_bytes, 1_048_576);
        assert_eq!(c.retention_days, None);
    }

    #[test]
    fn errors_name_the_key() {
        for (extra, key) in [
            ("log_group: 'a b'", "cloudwatch.log_group"),
            ("log_group: aws/lambda", "cloudwatch.log_group"),
            ("log_stream: 'a:b'", "cloudwatch.log_stream"),
            ("retention_days: 2", "cloudwatch.retention_days"),
            ("batch_max_events: 10001", "cloudwatch.batch_max_events"),
            ("batch_max_bytes: 2 MiB", "cloudwatch.batch_max_bytes"),
            ("endpoint_url: http://example.com", "cloudwatch.endpoint_url"),
            ("region: US-EAST", "cloudwatch.region"),
            ("typo: 1", "cloudwatch.typo"),
        ] {
            let mut map: serde_yaml::Mapping = serde_yaml::from_str("log_group: g\nlog_stream: s\n").expect("yaml");
            let extra: serde_yaml::Mapping = serde_yaml::from_str(extra).expect("yaml");
            map.extend(extra);
            let err = CloudWatchConfig::from_yaml(serde_yaml::Value::Mapping(map)).expect_err(key);
            assert!(format!("{err:#}").contains(key), "{key}: {err:#}");
        }
        let err = parse("log_stream: s\n").expect_err("group required");
        assert!(format!("{err:#}").contains("log_group"), "{err:#}");
    }
}
