//! Configuration of the CloudTrail Lake sink (the `cloudtrail:` section).

use std::time::Duration;

use anyhow::{bail, Result};
use serde::Deserialize;
use url::Url;

use crate::cloudtrail::arn::ChannelArn;
use crate::cloudtrail::batch::{MAX_EVENTS, MAX_REQUEST_BYTES};
use crate::config::units;

/// The `cloudtrail:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudTrailConfig {
    /// ARN of the CloudTrail Lake channel (`arn:aws:cloudtrail:<region>:<account>:channel/<id>`).
    pub channel_arn: String,
    /// Region of the endpoint; defaults to the channel's (they must match).
    #[serde(default)]
    pub region: Option<String>,
    /// Endpoint override (also `AWS_ENDPOINT_URL_CLOUDTRAIL_DATA`); e.g. the emulator.
    #[serde(default)]
    pub endpoint_url: Option<Url>,
    /// Named profile of the shared AWS config files (default: the default chain).
    #[serde(default)]
    pub profile: Option<String>,
    /// External ID, when the channel's resource policy requires one.
    #[serde(default)]
    pub external_id: Option<String>,
    /// Permit plain http endpoints other than loopback.
    #[serde(default)]
    pub allow_insecure_http: bool,
    /// Events per request (≤ 100).
    #[serde(default = "default_batch_events")]
    pub batch_max_events: usize,
    /// Request body bytes (≤ 1 MB; the default keeps a 10 % margin).
    #[serde(default = "default_batch_bytes", deserialize_with = "units::byte_size")]
    pub batch_max_bytes: u64,
    /// How long a partial batch may wait for more events.
    #[serde(default = "default_linger", deserialize_with = "units::duration")]
    pub linger: Duration,
    /// Requests in flight at once.
    #[serde(default = "default_in_flight")]
    pub max_in_flight: usize,
    /// Request-rate limit shared by all requests (CloudTrail's quota is 100/s).
    #[serde(default = "default_tps")]
    pub max_requests_per_second: f64,
    /// Connect timeout.
    #[serde(default = "default_connect_timeout", deserialize_with = "units::duration")]
    pub connect_timeout: Duration,
    /// Timeout of one request attempt.
    #[serde(default = "default_request_timeout", deserialize_with = "units::duration")]
    pub request_timeout: Duration,
    /// First retry delay; doubles up to `retry_max_backoff`.
    #[serde(default = "default_retry_initial", deserialize_with = "units::duration")]
    pub retry_initial_backoff: Duration,
    /// Longest retry delay.
    #[serde(default = "default_retry_max", deserialize_with = "units::duration")]
    pub retry_max_backoff: Duration,
    /// Give up (dead-letter) after this many failed sends of an event; unlimited when absent.
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// Topic for events CloudTrail rejects (the sink's dead-letter output).
    #[serde(default)]
    pub dead_letter_topic: Option<String>,
    /// Proxy for the AWS endpoint (`http://host:port`, or `none`); default `HTTPS_PROXY`.
    #[serde(default)]
    pub proxy: Option<crate::net::ProxyChoice>,
    /// Hosts reached without the proxy (`NO_PROXY` syntax); default `NO_PROXY`.
    #[serde(default)]
    pub no_proxy: Option<String>,
    /// PEM certificates trusted besides the system's roots (a private endpoint's CA).
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
}

fn default_batch_events() -> usize {
    MAX_EVENTS
}
fn default_batch_bytes() -> u64 {
    900_000
}
fn default_linger() -> Duration {
    Duration::from_millis(200)
}
fn default_in_flight() -> usize {
    16
}
fn default_tps() -> f64 {
    100.0
}
fn default_connect_timeout() -> Duration {
    Duration::from_millis(3_100)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_retry_initial() -> Duration {
    Duration::from_millis(200)
}
fn default_retry_max() -> Duration {
    Duration::from_secs(20)
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
            batch_max_events: default_batch_events(),
            batch_max_bytes: default_batch_bytes(),
            linger: default_linger(),
            max_in_flight: default_in_flight(),
            max_requests_per_second: default_tps(),
            connect_timeout: default_connect_timeout(),
            request_timeout: default_request_timeout(),
            retry_initial_backoff: default_retry_initial(),
            retry_max_backoff: default_retry_max(),
            max_retries: None,
            dead_letter_topic: None,
            proxy: None,
            no_proxy: None,
            ca_file: None,
        }
    }

    /// The section's network settings (proxy, CA file).
    pub fn network(&self) -> crate::net::NetworkSettings {
        crate::net::NetworkSettings {
            proxy: self.proxy.clone(),
            no_proxy: self.no_proxy.clone(),
            ca_file: self.ca_file.clone(),
            section: "cloudtrail",
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
            let ok = (2..=1224).contains(&id.len())
                && id
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || "+=,.@:/-".contains(c));
            if !ok {
                bail!("cloudtrail.external_id must be 2 to 1224 characters of letters, digits and _+=,.@:/-");
            }
        }
        if !(1..=MAX_EVENTS).contains(&self.batch_max_events) {
            bail!("cloudtrail.batch_max_events must be between 1 and {MAX_EVENTS}");
        }
        if !(10_000..=MAX_REQUEST_BYTES as u64).contains(&self.batch_max_bytes) {
            bail!("cloudtrail.batch_max_bytes must be between 10 kB and 1 MB (CloudTrail's request limit)");
        }
        if self.max_in_flight == 0 {
            bail!("cloudtrail.max_in_flight must be at least 1");
        }
        if self.max_requests_per_second.is_nan() || self.max_requests_per_second < 1.0 {
            bail!("cloudtrail.max_requests_per_second must be at least 1");
        }
        if self.retry_initial_backoff.is_zero() || self.retry_max_backoff < self.retry_initial_backoff {
            bail!("cloudtrail.retry_initial_backoff must be above zero and at most cloudtrail.retry_max_backoff");
        }
        Ok(())
    }

    /// Parses and validates a `cloudtrail:` section given as YAML.
    pub fn from_yaml(value: serde_yaml::Value) -> Result<Self> {
        let config: Self = crate::config::from_section("cloudtrail", value)?;
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
        assert_eq!(c.batch_max_events, 100);
        assert_eq!(c.max_requests_per_second, 100.0);
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
        let bad =
            CloudTrailConfig::from_yaml(serde_yaml::from_str("channel_arn: nope").expect("yaml")).expect_err("arn");
        assert!(format!("{bad:#}").contains("cloudtrail.channel_arn"));
    }
}
