//! Configuration of the CloudTrail Lake sink (the `cloudtrail:` section).

use std::time::Duration;

use anyhow::{bail, Result};
use serde::Deserialize;
use url::Url;

use crate::cloudtrail::arn::ChannelArn;
use crate::cloudtrail::request::{MAX_EVENTS, MAX_REQUEST_BYTES};
use crate::publish::settings::Bounds;
use crate::publish::PublishSettings;

/// The `cloudtrail:` section.
#[derive(Debug, Clone)]
pub struct CloudTrailConfig {
    /// ARN of the CloudTrail Lake channel (`arn:aws:cloudtrail:<region>:<account>:channel/<id>`).
    pub channel_arn: String,
    /// Region of the endpoint; defaults to the channel's (they must match).
    pub region: Option<String>,
    /// Endpoint override (also `AWS_ENDPOINT_URL_CLOUDTRAIL_DATA`); e.g. the emulator.
    pub endpoint_url: Option<Url>,
    /// Named profile of the shared AWS config files (default: the default chain).
    pub profile: Option<String>,
    /// External ID, when the channel's resource policy requires one.
    pub external_id: Option<String>,
    /// Permit plain http endpoints other than loopback.
    pub allow_insecure_http: bool,
    /// Batching, rate, timeouts, retries, dead letters.
    pub publish: PublishSettings,
}

/// The section's own keys (the publisher's are taken out first).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Section {
    channel_arn: String,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    endpoint_url: Option<Url>,
    #[serde(default)]
    profile: Option<String>,
    #[serde(default)]
    external_id: Option<String>,
    #[serde(default)]
    allow_insecure_http: bool,
}

/// The publisher's defaults for CloudTrail: its quotas (100 events, 100
/// requests per second), a 10 % margin under the 1 MB request limit.
pub fn default_settings() -> PublishSettings {
    PublishSettings {
        batch_max_events: MAX_EVENTS,
        batch_max_bytes: 900_000,
        linger: Duration::from_millis(200),
        max_in_flight: 16,
        max_requests_per_second: 100.0,
        connect_timeout: Duration::from_millis(3_100),
        request_timeout: Duration::from_secs(30),
        retry_initial_backoff: Duration::from_millis(200),
        retry_max_backoff: Duration::from_secs(20),
        max_retries: None,
        dead_letter_topic: None,
    }
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
            region: None,
            endpoint_url: None,
            profile: None,
            external_id: None,
            allow_insecure_http: false,
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
        Ok(self.region.clone().unwrap_or(self.channel()?.region))
    }

    /// Checks values serde cannot; each error names its key.
    pub fn validate(&self) -> Result<()> {
        let channel = self.channel()?;
        if let Some(region) = &self.region {
            if *region != channel.region {
                bail!(
                    "cloudtrail.region {region:?} differs from the channel's region {:?}: the channel, its event data \
                     store and the endpoint must be in the same region",
                    channel.region
                );
            }
        }
        if let Some(url) = &self.endpoint_url {
            crate::net::check_transport(url, self.allow_insecure_http, "cloudtrail.endpoint_url")?;
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
        let (publish, rest) = PublishSettings::take_from("cloudtrail", value, default_settings())?;
        let section: Section = crate::config::from_section("cloudtrail", rest)?;
        let config = Self {
            channel_arn: section.channel_arn,
            region: section.region,
            endpoint_url: section.endpoint_url,
            profile: section.profile,
            external_id: section.external_id,
            allow_insecure_http: section.allow_insecure_http,
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
