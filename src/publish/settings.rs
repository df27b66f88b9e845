//! The publisher's own settings: the keys every destination section shares
//! (batching, rate, concurrency, timeouts, retries, dead letters), read out of
//! the destination's section so each key is declared once, with defaults and
//! bounds per destination.

use std::time::Duration;

use anyhow::{bail, Result};
use serde::Deserialize;

use crate::config::units;

/// The keys of a destination section that belong to the publisher.
pub const KEYS: [&str; 11] = [
    "batch_max_events",
    "batch_max_bytes",
    "linger",
    "max_in_flight",
    "max_requests_per_second",
    "connect_timeout",
    "request_timeout",
    "retry_initial_backoff",
    "retry_max_backoff",
    "max_retries",
    "dead_letter_topic",
];

/// How the publisher batches, paces and retries.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishSettings {
    /// Events per request.
    pub batch_max_events: usize,
    /// Request bytes, counted as the destination counts them.
    pub batch_max_bytes: u64,
    /// How long a partial batch may wait for more events.
    pub linger: Duration,
    /// Requests in flight at once.
    pub max_in_flight: usize,
    /// Request-rate limit shared by all requests.
    pub max_requests_per_second: f64,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Timeout of one request attempt.
    pub request_timeout: Duration,
    /// First retry delay; doubles up to `retry_max_backoff`.
    pub retry_initial_backoff: Duration,
    /// Longest retry delay.
    pub retry_max_backoff: Duration,
    /// Give up (dead-letter) after this many failed sends of an event; unlimited when absent.
    pub max_retries: Option<u32>,
    /// Topic for events the destination refuses (the sink's dead-letter output).
    pub dead_letter_topic: Option<String>,
}

/// What a destination allows for the batch keys.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Largest `batch_max_events`.
    pub max_events: usize,
    /// Smallest `batch_max_bytes`.
    pub min_bytes: u64,
    /// Largest `batch_max_bytes`.
    pub max_bytes: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Overrides {
    #[serde(default)]
    batch_max_events: Option<usize>,
    #[serde(default, deserialize_with = "units::opt_byte_size")]
    batch_max_bytes: Option<u64>,
    #[serde(default, deserialize_with = "units::opt_duration")]
    linger: Option<Duration>,
    #[serde(default)]
    max_in_flight: Option<usize>,
    #[serde(default)]
    max_requests_per_second: Option<f64>,
    #[serde(default, deserialize_with = "units::opt_duration")]
    connect_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "units::opt_duration")]
    request_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "units::opt_duration")]
    retry_initial_backoff: Option<Duration>,
    #[serde(default, deserialize_with = "units::opt_duration")]
    retry_max_backoff: Option<Duration>,
    #[serde(default)]
    max_retries: Option<u32>,
    #[serde(default)]
    dead_letter_topic: Option<String>,
}

/// Splits a section's `keys` from the rest, so that each part can be read by
/// a struct that refuses unknown keys.
pub fn take_keys(
    section: &str,
    value: serde_yaml::Value,
    keys: &[&str],
) -> Result<(serde_yaml::Value, serde_yaml::Value)> {
    let serde_yaml::Value::Mapping(mut rest) = value else {
        bail!("{section}: expected a mapping of keys");
    };
    let mut taken = serde_yaml::Mapping::new();
    for key in keys {
        if let Some(v) = rest.remove(*key) {
            taken.insert(serde_yaml::Value::from(*key), v);
        }
    }
    Ok((serde_yaml::Value::Mapping(taken), serde_yaml::Value::Mapping(rest)))
}

impl PublishSettings {
    /// Defaults shared by the AWS destinations (the SDK's connect timeout, a
    /// 30 s attempt, back-off from 200 ms to 20 s, unlimited retries), with the
    /// batch, concurrency and rate figures that depend on the service.
    pub fn aws_defaults(batch_max_events: usize, batch_max_bytes: u64, max_in_flight: usize, rate: f64) -> Self {
        Self {
            batch_max_events,
            batch_max_bytes,
            linger: Duration::from_millis(200),
            max_in_flight,
            max_requests_per_second: rate,
            connect_timeout: Duration::from_millis(3_100),
            request_timeout: Duration::from_secs(30),
            retry_initial_backoff: Duration::from_millis(200),
            retry_max_backoff: Duration::from_secs(20),
            max_retries: None,
            dead_letter_topic: None,
        }
    }

    /// Takes the publisher's keys out of the `section` value, applies them over
    /// `defaults`, and returns the settings and the rest of the section.
    pub fn take_from(section: &str, value: serde_yaml::Value, defaults: Self) -> Result<(Self, serde_yaml::Value)> {
        let (ours, rest) = take_keys(section, value, &KEYS)?;
        let overrides: Overrides = crate::config::from_section(section, ours)?;
        Ok((defaults.with(overrides), rest))
    }

    fn with(self, o: Overrides) -> Self {
        Self {
            batch_max_events: o.batch_max_events.unwrap_or(self.batch_max_events),
            batch_max_bytes: o.batch_max_bytes.unwrap_or(self.batch_max_bytes),
            linger: o.linger.unwrap_or(self.linger),
            max_in_flight: o.max_in_flight.unwrap_or(self.max_in_flight),
            max_requests_per_second: o.max_requests_per_second.unwrap_or(self.max_requests_per_second),
            connect_timeout: o.connect_timeout.unwrap_or(self.connect_timeout),
            request_timeout: o.request_timeout.unwrap_or(self.request_timeout),
            retry_initial_backoff: o.retry_initial_backoff.unwrap_or(self.retry_initial_backoff),
            retry_max_backoff: o.retry_max_backoff.unwrap_or(self.retry_max_backoff),
            max_retries: o.max_retries.or(self.max_retries),
            dead_letter_topic: o.dead_letter_topic.or(self.dead_letter_topic),
        }
    }

    /// Checks the values against the destination's `bounds`; errors name `section.key`.
    pub fn validate(&self, section: &str, bounds: Bounds) -> Result<()> {
        if !(1..=bounds.max_events).contains(&self.batch_max_events) {
            bail!("{section}.batch_max_events must be between 1 and {}", bounds.max_events);
        }
        if !(bounds.min_bytes..=bounds.max_bytes).contains(&self.batch_max_bytes) {
            bail!(
                "{section}.batch_max_bytes must be between {} and {} bytes (the service's request limit)",
                bounds.min_bytes,
                bounds.max_bytes
            );
        }
        if self.max_in_flight == 0 {
            bail!("{section}.max_in_flight must be at least 1");
        }
        if self.max_requests_per_second.is_nan() || self.max_requests_per_second < 1.0 {
            bail!("{section}.max_requests_per_second must be at least 1");
        }
        if self.retry_initial_backoff.is_zero() || self.retry_max_backoff < self.retry_initial_backoff {
            bail!("{section}.retry_initial_backoff must be above zero and at most {section}.retry_max_backoff");
        }
        if self.request_timeout.is_zero() || self.connect_timeout.is_zero() {
            bail!("{section}.request_timeout and {section}.connect_timeout must be above zero");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> PublishSettings {
        PublishSettings::aws_defaults(100, 900_000, 16, 100.0)
    }

    #[test]
    fn takes_its_keys_and_leaves_the_rest() {
        let value = serde_yaml::from_str("linger: 1s\nbatch_max_bytes: 500 kB\nlog_group: g\n").expect("yaml");
        let (settings, rest) = PublishSettings::take_from("cloudwatch", value, defaults()).expect("valid");
        assert_eq!(settings.linger, Duration::from_secs(1));
        assert_eq!(settings.batch_max_bytes, 500_000);
        assert_eq!(settings.max_in_flight, 16, "a default");
        assert_eq!(
            rest,
            serde_yaml::from_str::<serde_yaml::Value>("log_group: g").expect("yaml")
        );
    }

    #[test]
    fn errors_name_the_section_and_key() {
        let value = serde_yaml::from_str("linger: later").expect("yaml");
        let err = PublishSettings::take_from("cloudwatch", value, defaults()).expect_err("bad");
        assert!(format!("{err:#}").contains("cloudwatch.linger"), "{err:#}");
        let bounds = Bounds {
            max_events: 100,
            min_bytes: 10_000,
            max_bytes: 1_000_000,
        };
        let mut s = defaults();
        s.batch_max_events = 101;
        let err = s.validate("cloudtrail", bounds).expect_err("bad");
        assert!(err.to_string().contains("cloudtrail.batch_max_events"));
    }
}
