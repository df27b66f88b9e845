//! Flags of `falcon-lake emulate cloudtrail` (also the emulator's library configuration).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::aws::parse_rates;
pub use crate::aws::RequestFailureRates;

/// Emulator settings.
#[derive(Debug, Clone, clap::Args)]
pub struct CloudTrailEmulatorConfig {
    /// Address to listen on (loopback unless --allow-remote).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Permit a non-loopback --listen address.
    #[arg(long)]
    pub allow_remote: bool,
    /// HTTPS instead of HTTP (`--tls-cert`, `--tls-key`).
    #[command(flatten)]
    pub tls: crate::TlsArgs,
    /// A channel to serve (repeatable); its owner is the ARN's account.
    #[arg(long = "channel-arn")]
    pub channel_arns: Vec<String>,
    /// Channels with policies, as a JSON list of `{"arn", "allowed_accounts", "external_id", "destination", "event_sources"}`.
    #[arg(long)]
    pub channels_file: Option<PathBuf>,
    /// External ID the channels given by --channel-arn require.
    #[arg(long)]
    pub external_id: Option<String>,
    /// Access key ID the emulator accepts.
    #[arg(long, env = "CLOUDTRAIL_EMULATOR_ACCESS_KEY_ID")]
    pub access_key_id: String,
    /// Secret access key of that access key (prefer the environment variable).
    #[arg(long, env = "CLOUDTRAIL_EMULATOR_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub secret_access_key: String,
    /// Account the access key belongs to (default: the first channel's owner).
    #[arg(long)]
    pub account_id: Option<String>,
    /// Skip SigV4 verification.
    #[arg(long)]
    pub no_sigv4: bool,
    /// Requests per second before `ThrottlingException` (token bucket).
    #[arg(long, default_value_t = 100.0)]
    pub tps: f64,
    /// Bucket size (burst); default: one second of --tps.
    #[arg(long)]
    pub burst: Option<f64>,
    /// `x-amz-retry-after` (milliseconds) sent with throttling answers.
    #[arg(long)]
    pub retry_after_ms: Option<u64>,
    /// Latency added to every request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Random per-event failures, e.g. `throttling=0.01,internal=0.005`.
    #[arg(long, value_parser = parse_event_rates, default_value = "")]
    pub event_failures: EventFailureRates,
    /// Random whole-request failures, e.g. `500=0.01,503=0.01,malformed=0.001,slow=0.001`.
    #[arg(long, value_parser = parse_request_rates, default_value = "")]
    pub request_failures: RequestFailureRates,
    /// Length of a `slow` response, in milliseconds (after the events are stored).
    #[arg(long, default_value_t = 5_000)]
    pub slow_ms: u64,
    /// Reject `eventData` fields the schema does not document (`InvalidData`).
    #[arg(long)]
    pub strict_fields: bool,
    /// Answer every event with `AccountNotSubscribed` (an account that never used Lake).
    #[arg(long)]
    pub not_subscribed: bool,
    /// Regions where `PutAuditEvents` answers `UnsupportedOperationException` (repeatable).
    #[arg(long = "unsupported-region")]
    pub unsupported_regions: Vec<String>,
}

impl CloudTrailEmulatorConfig {
    /// Settings for a test or demo: one channel, the given keys, no limits beyond the defaults.
    pub fn new(
        channel_arn: impl Into<String>,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            allow_remote: false,
            tls: crate::TlsArgs::default(),
            channel_arns: vec![channel_arn.into()],
            channels_file: None,
            external_id: None,
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            account_id: None,
            no_sigv4: false,
            tps: 100.0,
            burst: None,
            retry_after_ms: None,
            latency_ms: 0,
            event_failures: EventFailureRates::default(),
            request_failures: RequestFailureRates::default(),
            slow_ms: 5_000,
            strict_fields: false,
            not_subscribed: false,
            unsupported_regions: Vec::new(),
        }
    }
}

impl CloudTrailEmulatorConfig {
    /// Checks what clap cannot.
    pub fn validate(&self) -> anyhow::Result<()> {
        crate::control::check_listen(self.listen, self.allow_remote)
    }
}

/// A channel and its resource policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelSpec {
    /// Channel ARN.
    pub arn: String,
    /// Accounts the resource policy allows besides the owner.
    #[serde(default)]
    pub allowed_accounts: Vec<String>,
    /// External ID the policy requires.
    #[serde(default)]
    pub external_id: Option<String>,
    /// Category of the destination event data store (`ActivityAuditLog` works).
    #[serde(default = "default_destination")]
    pub destination: String,
    /// `eventSource` values the channel accepts (any when empty).
    #[serde(default)]
    pub event_sources: Vec<String>,
}

fn default_destination() -> String {
    "ActivityAuditLog".to_string()
}

/// Per-event failure probabilities.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EventFailureRates {
    /// `Throttling`.
    pub throttling: f64,
    /// `InternalFailure`.
    pub internal: f64,
}

/// Parses `throttling=p,internal=p`.
pub fn parse_event_rates(text: &str) -> Result<EventFailureRates, String> {
    let mut rates = EventFailureRates::default();
    for (kind, p) in parse_rates(text, &["throttling", "internal"])? {
        match kind.as_str() {
            "throttling" => rates.throttling = p,
            _ => rates.internal = p,
        }
    }
    Ok(rates)
}

/// Parses `500=p,503=p,malformed=p,slow=p`.
pub fn parse_request_rates(text: &str) -> Result<RequestFailureRates, String> {
    crate::aws::parse_request_rates(text, &["500", "503", "malformed", "slow"])
}

/// A one-shot fault queued through the control API.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "fault", rename_all = "snake_case", deny_unknown_fields)]
pub enum CloudTrailFault {
    /// Answer the next request with this exception (AWS wire format).
    Exception {
        /// Error code, e.g. `ChannelNotFound`, `AccessDeniedException`.
        code: String,
        /// HTTP status (default 400).
        #[serde(default = "default_status")]
        status: u16,
    },
    /// Fail the next events with this per-event code.
    EventCode {
        /// e.g. `Throttling`, `InternalFailure`, `InvalidData`.
        code: String,
    },
    /// Store the next request's events, then answer with a body that is not JSON.
    MalformedBody,
    /// Store the next request's events, then answer after this delay.
    Slow {
        /// Delay in milliseconds.
        millis: u64,
    },
}

fn default_status() -> u16 {
    400
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!(parse_event_rates("throttling=0.1").map(|r| r.throttling), Ok(0.1));
        assert!(parse_event_rates("boom=0.1").is_err());
        assert_eq!(
            parse_request_rates("500=0.5,slow=0.1").map(|r| (r.http500, r.slow)),
            Ok((0.5, 0.1))
        );
    }

    #[test]
    fn faults_parse() {
        let f: CloudTrailFault =
            serde_json::from_str(r#"{"fault":"exception","code":"ChannelNotFound"}"#).expect("fault");
        assert_eq!(
            f,
            CloudTrailFault::Exception {
                code: "ChannelNotFound".into(),
                status: 400
            }
        );
    }
}
