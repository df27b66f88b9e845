//! Configuration of the CloudTrail Lake sink (the `cloudtrail:` section).

use anyhow::{bail, Result};
use serde::Deserialize;

use crate::cloudtrail::arn::ChannelArn;
use crate::cloudtrail::request::{MAX_EVENTS, MAX_REQUEST_BYTES};
use crate::publish::aws::{destination_section, AwsConnection};
use crate::publish::settings::Bounds;
use crate::publish::PublishSettings;

/// The `cloudtrail:` section.
#[derive(Debug, Clone)]
pub struct CloudTrailConfig {
    /// ARN of the CloudTrail Lake channel (`arn:aws:cloudtrail:<region>:<account>:channel/<id>`).
    pub channel_arn: String,
    /// External ID, when the channel's resource policy requires one.
    pub external_id: Option<String>,
    /// Region (defaults to the channel's; they must match), endpoint (also
    /// `AWS_ENDPOINT_URL_CLOUDTRAIL_DATA`), profile.
    pub aws: AwsConnection,
    /// Batching, rate, timeouts, retries, dead letters.
    pub publish: PublishSettings,
}

/// The section's own keys (the publisher's and the connection's are taken out first).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Section {
    channel_arn: String,
    #[serde(default)]
    external_id: Option<String>,
}

/// The publisher's defaults for CloudTrail: its quotas (100 events, 100
/// requests per second), a 10 % margin under the 1 MB request limit.
pub fn default_settings() -> PublishSettings {
    PublishSettings::aws_defaults(MAX_EVENTS, 900_000, 16, 100.0)
}

/// What CloudTrail allows for the batch keys.
const BOUNDS: Bounds = Bounds {
    max_events: MAX_EVENTS,
    min_bytes: 10_000,
    max_bytes: MAX_REQUEST_BYTES as u64,
};

/// True when `id` matches the `externalId` pattern `^[\w+=,.@:\/-]*$` (ASCII
/// `\w`, as in AWS's patterns) with 2 to 1224 characters.
pub fn is_valid_external_id(id: &str) -> bool {
    (2..=1224).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b"+=,.@:/-".contains(&b))
}

impl CloudTrailConfig {
    /// A configuration with defaults for everything but the channel.
    pub fn new(channel_arn: impl Into<String>) -> Self {
        Self {
            channel_arn: channel_arn.into(),
            external_id: None,
            aws: AwsConnection::default(),
            publish: default_settings(),
        }
    }

    /// The parsed channel ARN.
    pub fn channel(&self) -> Result<ChannelArn> {
        self.channel_arn
            .parse()
            .map_err(|e| anyhow::anyhow!("cloudtrail.channel_arn: {e}"))
    }

    /// The region requests are signed for.
    pub fn signing_region(&self) -> Result<String> {
        Ok(self.aws.region.clone().unwrap_or(self.channel()?.region))
    }

    /// Checks values serde cannot; each error names its key.
    pub fn validate(&self) -> Result<()> {
        let channel = self.channel()?;
        self.aws.validate("cloudtrail")?;
        if let Some(region) = &self.aws.region {
            if *region != channel.region {
                bail!(
                    "cloudtrail.region {region:?} differs from the channel's region {:?}: the channel, its event data \
                     store and the endpoint must be in the same region",
                    channel.region
                );
            }
        }
        if let Some(id) = &self.external_id {
            if !is_valid_external_id(id) {
                bail!("cloudtrail.external_id must be 2 to 1224 characters of ASCII letters, digits and _+=,.@:/-");
            }
        }
        self.publish.validate("cloudtrail", BOUNDS)
    }

    /// Parses and validates a `cloudtrail:` section given as YAML.
    pub fn from_yaml(value: serde_yaml::Value) -> Result<Self> {
        let (section, aws, publish) = destination_section::<Section>("cloudtrail", value, default_settings())?;
        let config = Self {
            channel_arn: section.channel_arn,
            external_id: section.external_id,
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

    const ARN: &str = "arn:aws:cloudtrail:us-east-1:111122223333:channel/abc";

    #[test]
    fn defaults() {
        let c = CloudTrailConfig::from_yaml(serde_yaml::from_str(&format!("channel_arn: {ARN}")).expect("yaml"))
            .expect("valid");
        assert_eq!(c.signing_region().expect("region"), "us-east-1");
        assert_eq!(c.publish.batch_max_events, 100);
        assert_eq!(c.publish.max_requests_per_second, 100.0);
    }

    #[test]
    fn errors_name_the_key() {
        for (extra, key) in [
            ("region: eu-west-1", "cloudtrail.region"),
            ("batch_max_events: 101", "cloudtrail.batch_max_events"),
            ("batch_max_bytes: 2 MB", "cloudtrail.batch_max_bytes"),
            ("endpoint_url: http://example.com", "cloudtrail.endpoint_url"),
            ("external_id: 'x'", "cloudtrail.external_id"),
            ("linger: later", "cloudtrail.linger"),
            ("typo: 1", "cloudtrail.typo"),
        ] {
            let yaml = format!("channel_arn: {ARN}\n{extra}\n");
            let err = CloudTrailConfig::from_yaml(serde_yaml::from_str(&yaml).expect("yaml")).expect_err(extra);
            assert!(format!("{err:#}").contains(key), "{extra}: {err:#}");
        }
        let unicode = format!("channel_arn: {ARN}\nexternal_id: extérieur\n");
        let err = CloudTrailConfig::from_yaml(serde_yaml::from_str(&unicode).expect("yaml")).expect_err("not ASCII");
        assert!(err.to_string().contains("cloudtrail.external_id"), "{err}");
        assert!(is_valid_external_id("arn:aws:iam::1/x+y=z,w.v@u_t-s"));
        let bad =
            CloudTrailConfig::from_yaml(serde_yaml::from_str("channel_arn: nope").expect("yaml")).expect_err("arn");
        assert!(format!("{bad:#}").contains("cloudtrail.channel_arn"));
    }
}
