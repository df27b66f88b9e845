//! Configuration of the Falcon Event Streams source (the `falcon:` section).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use anyhow::{bail, Result};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use url::Url;

use crate::config::units;
use crate::falcon::cloud::Cloud;
use crate::secret::Secret;

/// Where a partition starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartPosition {
    /// After the last event already written to the topic; the oldest retained
    /// event when the topic holds none for the partition.
    #[default]
    Resume,
    /// The oldest retained event (ignores the topic's cursor).
    Earliest,
    /// Only events newer than the connection (`whence=2`; ignores the cursor).
    Latest,
    /// This offset, inclusive (ignores the cursor).
    Offset(u64),
}

impl<'de> Deserialize<'de> for StartPosition {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = StartPosition;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("resume, earliest, latest or an offset")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<StartPosition, E> {
                Ok(StartPosition::Offset(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<StartPosition, E> {
                u64::try_from(v)
                    .map(StartPosition::Offset)
                    .map_err(|_| E::custom(format!("offset {v} is negative")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StartPosition, E> {
                match v.trim() {
                    "resume" => Ok(StartPosition::Resume),
                    "earliest" => Ok(StartPosition::Earliest),
                    "latest" => Ok(StartPosition::Latest),
                    other => other
                        .parse()
                        .map(StartPosition::Offset)
                        .map_err(|_| E::custom(format!("{other:?} is not resume, earliest, latest or an offset"))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// The `falcon:` section: how to reach the Event Streams API and what to read.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FalconConfig {
    /// Cloud to use (`us-1` default); ignored when `base_url` is set.
    #[serde(default)]
    pub cloud: Option<Cloud>,
    /// Explicit API base URL (a proxy, a private endpoint or the emulator).
    #[serde(default)]
    pub base_url: Option<Url>,
    /// OAuth2 client ID (API client with the *Event streams: Read* scope).
    pub client_id: String,
    /// OAuth2 client secret.
    pub client_secret: Secret,
    /// Child CID for MSSP / Flight Control parents.
    #[serde(default)]
    pub member_cid: Option<String>,
    /// Stream `appId`: unique per running instance (the API holds it exclusively).
    #[serde(default = "default_app_id")]
    pub app_id: String,
    /// Follow `X-Cs-Region` and 308 redirects to the tenant's home cloud.
    #[serde(default = "default_true")]
    pub autodiscover_region: bool,
    /// Permit plain `http://` to non-loopback hosts.
    #[serde(default)]
    pub allow_insecure_http: bool,
    /// Start position for every partition.
    #[serde(default)]
    pub start: StartPosition,
    /// Start positions of single partitions, overriding `start`.
    #[serde(default)]
    pub partition_start: BTreeMap<u32, StartPosition>,
    /// With `resume`: where a partition the topic holds nothing of yet starts
    /// (inclusive), e.g. where another tool stopped; later starts resume.
    #[serde(default)]
    pub initial_offsets: BTreeMap<u32, u64>,
    /// Server-side `eventType` filter; empty (default) reads every type.
    #[serde(default)]
    pub event_types: Vec<String>,
    /// Reconnect when not a single byte (not even a keep-alive) arrives for this long.
    #[serde(default = "default_idle_timeout", deserialize_with = "units::duration")]
    pub idle_timeout: Duration,
    /// Timeout of token, discovery and refresh requests.
    #[serde(default = "default_request_timeout", deserialize_with = "units::duration")]
    pub request_timeout: Duration,
    /// Longest wait between reconnect attempts.
    #[serde(default = "default_reconnect_max", deserialize_with = "units::duration")]
    pub reconnect_backoff_max: Duration,
    /// Longest wait between discovery attempts while the appId is held elsewhere.
    #[serde(default = "default_discovery_max", deserialize_with = "units::duration")]
    pub discovery_backoff_max: Duration,
    /// Shortest wait after a 429 that names no retry time.
    #[serde(default = "default_rate_limit_wait", deserialize_with = "units::duration")]
    pub rate_limit_wait: Duration,
    /// Longest accepted line; longer lines are rejected (dead-lettered), not buffered.
    #[serde(default = "default_max_line", deserialize_with = "units::byte_size")]
    pub max_line_bytes: u64,
    /// Topic for rejected lines (the source stage's dead-letter output).
    #[serde(default)]
    pub dead_letter_topic: Option<String>,
    /// Proxy for the Falcon API (`http://host:port`, or `none`); default `HTTPS_PROXY`.
    #[serde(default)]
    pub proxy: Option<crate::net::ProxyChoice>,
    /// Hosts reached without the proxy (`NO_PROXY` syntax); default `NO_PROXY`.
    #[serde(default)]
    pub no_proxy: Option<String>,
    /// PEM certificates trusted besides the system's roots (a TLS-inspecting proxy's CA).
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
}

fn default_app_id() -> String {
    "falcon-lake".to_string()
}
fn default_true() -> bool {
    true
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(300)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_reconnect_max() -> Duration {
    Duration::from_secs(60)
}
fn default_discovery_max() -> Duration {
    Duration::from_secs(60)
}
fn default_rate_limit_wait() -> Duration {
    Duration::from_secs(60)
}
fn default_max_line() -> u64 {
    64 * 1024 * 1024
}

/// Smallest `max_line_bytes`: the API sends events of at least 16 MiB.
pub const MIN_MAX_LINE_BYTES: u64 = 16 * 1024 * 1024;

impl FalconConfig {
    /// A configuration with defaults for everything but the endpoint and credentials.
    pub fn new(base_url: Url, client_id: impl Into<String>, client_secret: Secret) -> Self {
        Self {
            cloud: None,
            base_url: Some(base_url),
            client_id: client_id.into(),
            client_secret,
            member_cid: None,
            app_id: default_app_id(),
            autodiscover_region: true,
            allow_insecure_http: false,
            start: StartPosition::Resume,
            partition_start: BTreeMap::new(),
            initial_offsets: BTreeMap::new(),
            event_types: Vec::new(),
            idle_timeout: default_idle_timeout(),
            request_timeout: default_request_timeout(),
            reconnect_backoff_max: default_reconnect_max(),
            discovery_backoff_max: default_discovery_max(),
            rate_limit_wait: default_rate_limit_wait(),
            max_line_bytes: default_max_line(),
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
            section: "falcon",
        }
    }

    /// The API base URL: `base_url` (which overrides `cloud`, as a proxy or a
    /// private endpoint in front of a cloud needs), else the configured cloud's,
    /// else us-1's.
    pub fn api_base(&self) -> Url {
        self.base_url
            .clone()
            .unwrap_or_else(|| self.cloud.unwrap_or(Cloud::Us1).base_url())
    }

    /// Start position of one partition.
    pub fn start_for(&self, partition: u32) -> StartPosition {
        self.partition_start.get(&partition).copied().unwrap_or(self.start)
    }

    /// Checks values serde cannot; each error names its key (`falcon.<key>`).
    pub fn validate(&self) -> Result<()> {
        if self.client_id.trim().is_empty() {
            bail!("falcon.client_id is empty");
        }
        if self.client_secret.is_empty() {
            bail!("falcon.client_secret is empty");
        }
        let app_id_ok = (1..=32).contains(&self.app_id.len())
            && self
                .app_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !app_id_ok {
            bail!(
                "falcon.app_id {:?} must be 1 to 32 characters of A-Z, a-z, 0-9, '.', '_' or '-'",
                self.app_id
            );
        }
        crate::net::check_transport(&self.api_base(), self.allow_insecure_http, "falcon.base_url")?;
        if self.idle_timeout < Duration::from_secs(1) {
            bail!("falcon.idle_timeout must be at least 1s");
        }
        if self.max_line_bytes < MIN_MAX_LINE_BYTES {
            bail!("falcon.max_line_bytes must be at least 16 MiB: real events can be that long");
        }
        if let Some(bad) = self.event_types.iter().find(|t| t.is_empty() || t.contains(',')) {
            bail!("falcon.event_types entry {bad:?} is not a single event type name");
        }
        Ok(())
    }

    /// Parses and validates a `falcon:` section given as YAML.
    pub fn from_yaml(value: serde_yaml::Value) -> Result<Self> {
        let config: Self = crate::config::from_section("falcon", value)?;
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<FalconConfig> {
        FalconConfig::from_yaml(serde_yaml::from_str(yaml).expect("yaml"))
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse("client_id: abc\nclient_secret: s3cr3t\n").expect("valid");
        assert_eq!(c.api_base().as_str(), "https://api.crowdstrike.com/");
        assert_eq!(c.app_id, "falcon-lake");
        assert_eq!(c.idle_timeout, Duration::from_secs(300));
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }

    #[test]
    fn start_positions_parse() {
        let c =
            parse("client_id: a\nclient_secret: s\nstart: latest\npartition_start: {0: 42, 1: earliest, 2: \"7\"}\n")
                .expect("valid");
        assert_eq!(c.start_for(0), StartPosition::Offset(42));
        assert_eq!(c.start_for(1), StartPosition::Earliest);
        assert_eq!(c.start_for(2), StartPosition::Offset(7));
        assert_eq!(c.start_for(9), StartPosition::Latest);
    }

    #[test]
    fn base_url_overrides_cloud() {
        let c = parse("client_id: a\nclient_secret: s\ncloud: eu-1\nbase_url: https://proxy.example.net/falcon/\n")
            .expect("both keys are accepted together");
        assert_eq!(c.api_base().as_str(), "https://proxy.example.net/falcon/");
        let c = parse("client_id: a\nclient_secret: s\ncloud: eu-1\n").expect("valid");
        assert_eq!(c.api_base().as_str(), "https://api.eu-1.crowdstrike.com/");
    }

    #[test]
    fn errors_name_the_key() {
        for (yaml, key) in [
            ("client_id: a\nclient_secret: s\ncloud: mars-1\n", "falcon.cloud"),
            ("client_id: a\nclient_secret: s\napp_id: 'has space'\n", "falcon.app_id"),
            (
                "client_id: a\nclient_secret: s\nbase_url: http://example.com\n",
                "falcon.base_url",
            ),
            (
                "client_id: a\nclient_secret: s\nidle_timeout: soon\n",
                "falcon.idle_timeout",
            ),
            (
                "client_id: a\nclient_secret: s\nbogus: 1\n",
                "falcon.bogus: unknown field",
            ),
            ("client_id: a\n", "client_secret"),
            ("client_id: ''\nclient_secret: s\n", "falcon.client_id"),
        ] {
            let err = format!("{:#}", parse(yaml).expect_err(yaml));
            assert!(err.contains(key), "{yaml}: {err}");
            assert!(!err.contains("s3cr3t"));
        }
    }
}
