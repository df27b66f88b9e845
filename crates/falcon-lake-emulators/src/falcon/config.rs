//! Flags of `falcon-lake emulate falcon` (also the emulator's library configuration).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::falcon::generator::{Mix, BASE_EPOCH_SECONDS};
use crate::parse_duration;

/// Emulator settings.
#[derive(Debug, Clone, clap::Args)]
pub struct FalconEmulatorConfig {
    /// Address to listen on (loopback unless --allow-remote).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Permit a non-loopback --listen address.
    #[arg(long)]
    pub allow_remote: bool,
    /// HTTPS instead of HTTP (`--tls-cert`, `--tls-key`).
    #[command(flatten)]
    pub tls: crate::TlsArgs,
    /// OAuth2 client ID the emulator accepts.
    #[arg(long, env = "FALCON_EMULATOR_CLIENT_ID")]
    pub client_id: String,
    /// OAuth2 client secret the emulator accepts (prefer the environment variable).
    #[arg(long, env = "FALCON_EMULATOR_CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: String,
    /// Number of partitions (one discovery resource each).
    #[arg(long, default_value_t = 1)]
    pub partitions: u32,
    /// Events to generate (spread round-robin over partitions).
    #[arg(long, default_value_t = 1_000)]
    pub events: u64,
    /// Events per second to generate; 0 generates all of them at start.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Seed of the generator.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Time of the first generated event (RFC 3339 UTC); later ones follow at 4 per second.
    #[arg(long, value_parser = parse_base_time, default_value = "2026-01-01T00:00:00Z")]
    pub base_time: i64,
    /// Event types to generate.
    #[arg(long, value_enum, default_value_t = Mix::Realistic)]
    pub mix: Mix,
    /// Pad generated events shorter than this many bytes with an
    /// `EmulatorPadding` object of short fields (to benchmark at a chosen size).
    #[arg(long, default_value_t = 0)]
    pub min_event_bytes: usize,
    /// Serve the events of this JSONL file (after any generated ones).
    #[arg(long)]
    pub events_file: Option<PathBuf>,
    /// Customer ID (`customerIDString`) of the tenant.
    #[arg(long, default_value = "0123456789abcdef0123456789abcdef")]
    pub cid: String,
    /// First offset of every partition.
    #[arg(long, default_value_t = 1_000)]
    pub first_offset: u64,
    /// Probability that an offset is followed by a gap (offsets need not be contiguous).
    #[arg(long, default_value_t = 0.0)]
    pub offset_gaps: f64,
    /// `expires_in` of bearer tokens, in seconds.
    #[arg(long, default_value_t = 1799)]
    pub token_ttl: u64,
    /// `refreshActiveSessionInterval`, in seconds; a session not refreshed within it ends.
    #[arg(long, default_value_t = 1800)]
    pub refresh_interval: u64,
    /// How long a session keeps its appId held (discovery answers no streams)
    /// once its feed connection closes: `expiry` (the real API: until the
    /// session ends unrefreshed, at most `--refresh-interval` after its last
    /// refresh) or a duration (`0s`: the appId is free as soon as the feed closes).
    #[arg(long, value_parser = parse_linger, default_value = "expiry")]
    pub session_linger: SessionLinger,
    /// Hard cap on a session's life, refreshed or not.
    #[arg(long, value_parser = parse_duration, default_value = "4h")]
    pub session_cap: Duration,
    /// Interval of blank keep-alive lines on an idle feed.
    #[arg(long, value_parser = parse_duration, default_value = "15s")]
    pub keepalive: Duration,
    /// This emulator's cloud (`X-Cs-Region`).
    #[arg(long, default_value = "us-1")]
    pub region: String,
    /// The tenant's home cloud: token requests elsewhere are redirected (308) to
    /// `/_region/<home>/oauth2/token`, or answered with its `X-Cs-Region` (see --region-mode).
    #[arg(long)]
    pub home_region: Option<String>,
    /// How a token request outside the home cloud is answered.
    #[arg(long, value_enum, default_value_t = RegionMode::Redirect)]
    pub region_mode: RegionMode,
    /// Accept only alphanumeric appIds (the swagger rule) instead of `[A-Za-z0-9._-]{1,32}`.
    #[arg(long)]
    pub strict_app_id: bool,
    /// Check the client ID (32 hex) and secret (40 word characters) format like PSFalcon.
    #[arg(long)]
    pub strict_credentials: bool,
    /// Enforce CrowdStrike's rate limits: 6000/min per client, 15/min per IP with a bad bearer.
    #[arg(long)]
    pub rate_limits: bool,
    /// Random faults per served event, e.g. `truncate=0.001,malformed=0.0005,stall=0.0001`
    /// (kinds: disconnect, truncate, malformed, non_object, duplicate, stall).
    #[arg(long, value_parser = parse_fault_rates, default_value = "")]
    pub faults: FaultRates,
    /// How long a `stall` fault sends nothing at all.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub stall: Duration,
}

/// How token requests outside the home cloud are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RegionMode {
    /// HTTP 308 with `Location` and `X-Cs-Region`.
    Redirect,
    /// HTTP 201 with the home cloud in `X-Cs-Region`.
    Header,
}

/// Per-event probabilities of feed faults.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FaultRates {
    /// End the response cleanly after an event.
    pub disconnect: f64,
    /// Abort the connection in the middle of a line.
    pub truncate: f64,
    /// Send a line that is not JSON.
    pub malformed: f64,
    /// Send a JSON value that is not an object (`400`).
    pub non_object: f64,
    /// Send an event again with the same offset and different content.
    pub duplicate: f64,
    /// Send nothing (not even keep-alives) for `--stall`.
    pub stall: f64,
}

/// Parses `kind=p,kind=p`.
pub fn parse_fault_rates(text: &str) -> Result<FaultRates, String> {
    let mut rates = FaultRates::default();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (kind, p) = pair
            .split_once('=')
            .ok_or_else(|| format!("{pair:?} is not kind=probability"))?;
        let p: f64 = p
            .trim()
            .parse()
            .map_err(|_| format!("{pair:?}: {p:?} is not a number"))?;
        if !(0.0..=1.0).contains(&p) {
            return Err(format!("{pair:?}: probability must be between 0 and 1"));
        }
        let slot = match kind.trim() {
            "disconnect" => &mut rates.disconnect,
            "truncate" => &mut rates.truncate,
            "malformed" => &mut rates.malformed,
            "non_object" => &mut rates.non_object,
            "duplicate" => &mut rates.duplicate,
            "stall" => &mut rates.stall,
            other => {
                return Err(format!(
                    "unknown fault {other:?}; known: disconnect, truncate, malformed, non_object, duplicate, stall"
                ))
            }
        };
        *slot = p;
    }
    Ok(rates)
}

/// Parses `--base-time` (`YYYY-MM-DDTHH:MM:SSZ`) into epoch seconds.
pub fn parse_base_time(text: &str) -> Result<i64, String> {
    crate::time::parse_utc(text).ok_or_else(|| format!("{text:?} is not a time like 2026-01-01T00:00:00Z"))
}

impl FalconEmulatorConfig {
    /// Checks what clap cannot.
    pub fn validate(&self) -> anyhow::Result<()> {
        crate::control::check_listen(self.listen, self.allow_remote)
    }

    /// Settings for a test or a demo: loopback on a free port, the given
    /// credentials, everything else at its default.
    pub fn new(client_id: impl Into<String>, client_secret: impl Into<String>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            allow_remote: false,
            tls: crate::TlsArgs::default(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            partitions: 1,
            events: 1_000,
            rate: 0.0,
            seed: 42,
            base_time: BASE_EPOCH_SECONDS,
            mix: Mix::Realistic,
            min_event_bytes: 0,
            events_file: None,
            cid: "0123456789abcdef0123456789abcdef".to_string(),
            first_offset: 1_000,
            offset_gaps: 0.0,
            token_ttl: 1799,
            refresh_interval: 1800,
            session_linger: SessionLinger::UntilExpiry,
            session_cap: Duration::from_secs(4 * 3600),
            keepalive: Duration::from_secs(15),
            region: "us-1".to_string(),
            home_region: None,
            region_mode: RegionMode::Redirect,
            strict_app_id: false,
            strict_credentials: false,
            rate_limits: false,
            faults: FaultRates::default(),
            stall: Duration::from_secs(30),
        }
    }
}

/// A fault queued through the control API, applied once (or `count` times).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "fault", rename_all = "snake_case", deny_unknown_fields)]
pub enum ControlFault {
    /// Feed: end the response cleanly after the next event.
    FeedDisconnect {
        /// Partition (any when absent).
        partition: Option<u32>,
    },
    /// Feed: abort the connection in the middle of the next line.
    FeedTruncate {
        /// Partition (any when absent).
        partition: Option<u32>,
    },
    /// Feed: send a line that is not JSON before the next event.
    FeedMalformed {
        /// Partition (any when absent).
        partition: Option<u32>,
    },
    /// Feed: send `400` (a JSON number) before the next event.
    FeedNonObject {
        /// Partition (any when absent).
        partition: Option<u32>,
    },
    /// Feed: repeat the next event's offset with different content.
    FeedDuplicate {
        /// Partition (any when absent).
        partition: Option<u32>,
    },
    /// Feed: send nothing at all for `millis`.
    FeedStall {
        /// Partition (any when absent).
        partition: Option<u32>,
        /// Stall length.
        millis: u64,
    },
    /// Feed: answer the next connection with `400 Bad Request` as text.
    #[serde(rename = "feed_http_400")]
    FeedHttp400,
    /// Discovery: answer with this status and an error envelope.
    DiscoveryStatus {
        /// HTTP status.
        status: u16,
    },
    /// Discovery: HTTP 200 with an empty body.
    DiscoveryEmptyBody,
    /// Token: HTTP 429 with `X-RateLimit-RetryAfter` this many seconds ahead.
    TokenRateLimited {
        /// Seconds until the retry time.
        retry_after_secs: u64,
    },
    /// Token: answer with this status.
    TokenStatus {
        /// HTTP status.
        status: u16,
    },
    /// Refresh: answer with this status.
    RefreshStatus {
        /// HTTP status.
        status: u16,
    },
}

impl ControlFault {
    /// The partition a feed fault targets (`None`: any, or not a feed fault).
    pub fn partition(&self) -> Option<u32> {
        match self {
            ControlFault::FeedDisconnect { partition }
            | ControlFault::FeedTruncate { partition }
            | ControlFault::FeedMalformed { partition }
            | ControlFault::FeedNonObject { partition }
            | ControlFault::FeedDuplicate { partition }
            | ControlFault::FeedStall { partition, .. } => *partition,
            _ => None,
        }
    }

    /// True for faults applied while streaming events.
    pub fn is_stream_fault(&self) -> bool {
        matches!(
            self,
            ControlFault::FeedDisconnect { .. }
                | ControlFault::FeedTruncate { .. }
                | ControlFault::FeedMalformed { .. }
                | ControlFault::FeedNonObject { .. }
                | ControlFault::FeedDuplicate { .. }
                | ControlFault::FeedStall { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_rates_parse() {
        let r = parse_fault_rates("truncate=0.01, malformed=0.5").expect("valid");
        assert_eq!(r.truncate, 0.01);
        assert_eq!(r.malformed, 0.5);
        assert!(parse_fault_rates("nope=1").is_err());
        assert!(parse_fault_rates("stall=2").is_err());
        assert_eq!(parse_fault_rates(""), Ok(FaultRates::default()));
    }

    #[test]
    fn control_faults_parse() {
        let f: ControlFault =
            serde_json::from_str(r#"{"fault":"feed_stall","millis":5,"partition":1}"#).expect("valid");
        assert_eq!(
            f,
            ControlFault::FeedStall {
                partition: Some(1),
                millis: 5
            }
        );
        assert!(serde_json::from_str::<ControlFault>(r#"{"fault":"feed_explode"}"#).is_err());
    }
}

/// How long a session whose feed connection closed keeps its appId held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SessionLinger {
    /// Until the session expires unrefreshed (or is revoked, or hits its cap),
    /// as the real API does (a dropped consumer blocks its appId for minutes).
    #[default]
    UntilExpiry,
    /// For this long after the last connection closed, then free.
    For(Duration),
}

/// Parses `--session-linger`: `expiry` or a duration.
pub fn parse_linger(text: &str) -> Result<SessionLinger, String> {
    match text.trim() {
        "expiry" | "until-expiry" => Ok(SessionLinger::UntilExpiry),
        other => parse_duration(other).map(SessionLinger::For),
    }
}
