//! Where the sink delivers: exactly one of the `cloudtrail` and `cloudwatch`
//! sections.

use std::sync::Arc;

use anyhow::{bail, Result};
use aws_credential_types::Credentials;

use crate::cloudtrail::CloudTrailConfig;
use crate::cloudwatch::CloudWatchConfig;
use crate::config::connector::ConnectorFile;
use crate::publish::{ConnectDestination, Destination, PublishSettings};

/// The section names of the destinations.
pub const SECTIONS: [&str; 2] = ["cloudtrail", "cloudwatch"];

/// The configured destination.
#[derive(Debug, Clone)]
pub enum DestinationConfig {
    /// `cloudtrail:`, a CloudTrail Lake channel.
    CloudTrail(CloudTrailConfig),
    /// `cloudwatch:`, a CloudWatch Logs log stream.
    CloudWatch(CloudWatchConfig),
}

impl DestinationConfig {
    /// Reads the one destination section of `file`.
    pub fn from_file(file: &ConnectorFile) -> Result<Self> {
        match (file.section("cloudtrail"), file.section("cloudwatch")) {
            (Some(_), Some(_)) => bail!(
                "both `cloudtrail` and `cloudwatch` are configured; a sink delivers to one destination: keep one section (run a second sink for the other)"
            ),
            (Some(section), None) => Ok(Self::CloudTrail(CloudTrailConfig::from_yaml(section)?)),
            (None, Some(section)) => Ok(Self::CloudWatch(CloudWatchConfig::from_yaml(section)?)),
            (None, None) => bail!("the destination is missing: add a `cloudtrail` or a `cloudwatch` section"),
        }
    }

    /// The section's name.
    pub fn section(&self) -> &'static str {
        match self {
            Self::CloudTrail(_) => "cloudtrail",
            Self::CloudWatch(_) => "cloudwatch",
        }
    }

    /// Where it delivers, for people.
    pub fn describe(&self) -> String {
        match self {
            Self::CloudTrail(c) => format!("CloudTrail Lake channel {}", c.channel_arn),
            Self::CloudWatch(c) => format!("CloudWatch Logs {}/{}", c.log_group, c.log_stream),
        }
    }

    /// The CloudTrail section, when that is the destination.
    pub fn cloudtrail(&self) -> Option<&CloudTrailConfig> {
        match self {
            Self::CloudTrail(c) => Some(c),
            Self::CloudWatch(_) => None,
        }
    }

    /// How the destination's service is reached.
    pub fn aws_mut(&mut self) -> &mut crate::publish::aws::AwsConnection {
        match self {
            Self::CloudTrail(c) => &mut c.aws,
            Self::CloudWatch(c) => &mut c.aws,
        }
    }

    /// The configured dead-letter topic, if any.
    pub fn dead_letter_topic(&self) -> Option<&String> {
        self.settings().dead_letter_topic.as_ref()
    }
}

impl ConnectDestination for DestinationConfig {
    fn settings(&self) -> &PublishSettings {
        match self {
            Self::CloudTrail(c) => c.settings(),
            Self::CloudWatch(c) => c.settings(),
        }
    }

    async fn connect(&self, credentials: Option<Credentials>) -> Result<Arc<dyn Destination>> {
        match self {
            Self::CloudTrail(c) => c.connect(credentials).await,
            Self::CloudWatch(c) => c.connect(credentials).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::connectors::SinkConnectorConfig;
    use crate::config::secrets::SecretStore;

    const META: &str =
        "apiVersion: 0.2.0\nmeta:\n  name: s\n  type: cloudwatch-logs-sink\n  version: 0.1.0\n  topic: t\n";

    fn parse(sections: &str) -> Result<DestinationConfig> {
        let text = format!("{META}{sections}");
        let store = SecretStore::Map(Default::default());
        let file = ConnectorFile::parse(&text, Path::new("x.yaml"), &store, &SECTIONS)?;
        DestinationConfig::from_file(&file)
    }

    #[test]
    fn exactly_one_destination() {
        let cloudtrail = "cloudtrail:\n  channel_arn: arn:aws:cloudtrail:us-east-1:111122223333:channel/x\n";
        let cloudwatch = "cloudwatch:\n  log_group: g\n  log_stream: s\n";
        assert_eq!(parse(cloudtrail).expect("cloudtrail").section(), "cloudtrail");
        assert_eq!(parse(cloudwatch).expect("cloudwatch").section(), "cloudwatch");
        let both = parse(&format!("{cloudtrail}{cloudwatch}")).expect_err("both");
        assert!(
            both.to_string().contains("both `cloudtrail` and `cloudwatch`"),
            "{both}"
        );
        let neither = parse("").expect_err("neither");
        assert!(
            neither
                .to_string()
                .contains("add a `cloudtrail` or a `cloudwatch` section"),
            "{neither}"
        );
    }

    #[test]
    fn the_sample_connector_configs_load() {
        for (connector, section) in [
            ("cloudtrail-lake-sink", "cloudtrail"),
            ("cloudwatch-logs-sink", "cloudwatch"),
        ] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("connectors")
                .join(connector)
                .join("sample-config.yaml");
            let config = SinkConnectorConfig::load(&path, &SecretStore::Env).expect(connector);
            assert_eq!(config.destination.section(), section);
        }
    }
}
