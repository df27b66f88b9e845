//! Flags of `falcon-lake emulate cloudwatch` (also the emulator's library configuration).

use std::net::SocketAddr;

use serde::Deserialize;

pub use crate::aws::RequestFailureRates;

/// Emulator settings.
#[derive(Debug, Clone, clap::Args)]
pub struct CloudWatchEmulatorConfig {
    /// Address to listen on (loopback unless --allow-remote).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Permit a non-loopback --listen address.
    #[arg(long)]
    pub allow_remote: bool,
    /// HTTPS instead of HTTP (`--tls-cert`, `--tls-key`).
    #[command(flatten)]
    pub tls: crate::TlsArgs,
    /// Access key ID the emulator accepts.
    #[arg(long, env = "CLOUDWATCH_EMULATOR_ACCESS_KEY_ID")]
    pub access_key_id: String,
    /// Secret access key of that access key (prefer the environment variable).
    #[arg(long, env = "CLOUDWATCH_EMULATOR_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub secret_access_key: String,
    /// Account the access key belongs to (in ARNs and AccessDenied messages).
    #[arg(long, default_value = "111122223333")]
    pub account_id: String,
    /// Skip SigV4 verification.
    #[arg(long)]
    pub no_sigv4: bool,
    /// A log group that exists at start, `NAME` or `NAME:RETENTION_DAYS` (repeatable).
    #[arg(long = "log-group")]
    pub log_groups: Vec<String>,
    /// A log stream that exists at start, `GROUP:STREAM` (repeatable; creates the group).
    #[arg(long = "log-stream")]
    pub log_streams: Vec<String>,
    /// Actions answered with AccessDeniedException, e.g. `logs:CreateLogGroup` (repeatable).
    #[arg(long = "deny")]
    pub denied: Vec<String>,
    /// PutLogEvents requests per second before `ThrottlingException` (token bucket;
    /// the account quota was 800 in most regions in 2022).
    #[arg(long, default_value_t = 800.0)]
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
    /// Random PutLogEvents failures, e.g. `500=0.01,503=0.01,throttle=0.01,slow=0.001`.
    #[arg(long, value_parser = parse_request_rates, default_value = "")]
    pub request_failures: RequestFailureRates,
    /// Length of a `slow` answer, in milliseconds (after the events are stored).
    #[arg(long, default_value_t = 5_000)]
    pub slow_ms: u64,
    /// The emulator's clock against the real one, in milliseconds (negative:
    /// behind), for the age rules of events; also `POST /_emulator/clock`.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub clock_offset_ms: i64,
}

impl CloudWatchEmulatorConfig {
    /// Settings for a test or demo: the given keys, nothing created yet.
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            allow_remote: false,
            tls: crate::TlsArgs::default(),
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            account_id: "111122223333".to_string(),
            no_sigv4: false,
            log_groups: Vec::new(),
            log_streams: Vec::new(),
            denied: Vec::new(),
            tps: 800.0,
            burst: None,
            retry_after_ms: None,
            latency_ms: 0,
            request_failures: RequestFailureRates::default(),
            slow_ms: 5_000,
            clock_offset_ms: 0,
        }
    }

    /// Checks what clap cannot.
    pub fn validate(&self) -> anyhow::Result<()> {
        crate::control::check_listen(self.listen, self.allow_remote)?;
        for action in &self.denied {
            if !action.starts_with("logs:") {
                anyhow::bail!("--deny {action:?}: name an action like logs:PutLogEvents");
            }
        }
        Ok(())
    }
}

/// Parses `500=p,503=p,throttle=p,slow=p` (PutLogEvents only).
pub fn parse_request_rates(text: &str) -> Result<RequestFailureRates, String> {
    crate::aws::parse_request_rates(text, &["500", "503", "throttle", "slow"])
}

/// A one-shot fault queued through the control API.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "fault", rename_all = "snake_case", deny_unknown_fields)]
pub enum CloudWatchFault {
    /// Answer the next request (of `operation`, or any) with this exception.
    Exception {
        /// Error code, e.g. `ThrottlingException`, `ServiceUnavailableException`.
        code: String,
        /// HTTP status (default 400).
        #[serde(default = "default_status")]
        status: u16,
        /// Only for this operation, e.g. `PutLogEvents`.
        #[serde(default)]
        operation: Option<String>,
    },
    /// Answer the next request (of `operation`, or any) with AccessDeniedException.
    AccessDenied {
        /// Only for this operation.
        #[serde(default)]
        operation: Option<String>,
    },
    /// Store the next PutLogEvents' events, then answer after this delay.
    Slow {
        /// Delay in milliseconds.
        millis: u64,
    },
}

fn default_status() -> u16 {
    400
}

impl CloudWatchFault {
    /// True when the fault applies to a request of `operation`.
    pub fn applies_to(&self, operation: &str) -> bool {
        match self {
            Self::Exception { operation: only, .. } | Self::AccessDenied { operation: only } => {
                only.as_deref().is_none_or(|o| o == operation)
            }
            Self::Slow { .. } => operation == "PutLogEvents",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_faults_parse() {
        assert_eq!(
            parse_request_rates("throttle=0.5,503=0.1").map(|r| (r.throttle, r.http503)),
            Ok((0.5, 0.1))
        );
        assert!(parse_request_rates("malformed=0.1").is_err());
        let fault: CloudWatchFault =
            serde_json::from_str(r#"{"fault":"access_denied","operation":"CreateLogGroup"}"#).expect("fault");
        assert!(fault.applies_to("CreateLogGroup") && !fault.applies_to("PutLogEvents"));
        let any: CloudWatchFault = serde_json::from_str(r#"{"fault":"exception","code":"X"}"#).expect("fault");
        assert!(any.applies_to("PutLogEvents"));
    }

    #[test]
    fn listens_on_loopback_only_unless_allowed() {
        let mut config = CloudWatchEmulatorConfig::new("AKIA", "secret");
        assert!(config.validate().is_ok());
        config.listen = "0.0.0.0:0".parse().expect("addr");
        assert!(config.validate().is_err());
        config.allow_remote = true;
        assert!(config.validate().is_ok());
    }
}
