//! The CloudTrail emulator's state: channels, stored events, throttle, faults.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use crate::aws::TokenBucket;
use crate::cloudtrail::arn::ChannelArn;
use crate::cloudtrail::config::{ChannelSpec, CloudTrailEmulatorConfig, CloudTrailFault};
use crate::lock;

/// A channel and its policy.
#[derive(Debug, Clone)]
pub struct Channel {
    /// The channel.
    pub arn: ChannelArn,
    /// Accounts allowed besides the owner.
    pub allowed_accounts: Vec<String>,
    /// External ID required by the policy.
    pub external_id: Option<String>,
    /// Category of its destination.
    pub destination: String,
    /// Accepted `eventSource` values (any when empty).
    pub event_sources: Vec<String>,
}

/// One stored event: CloudTrail's wrapped record, and what the request said
/// about it that the record does not keep.
#[derive(Debug, Clone)]
pub struct StoredRecord {
    /// The `AuditEvent.id` it was sent with.
    pub id: String,
    /// Account that signed the request.
    pub caller_account: String,
    /// The record as Lake queries see it (spec §9).
    pub record: Value,
}

/// Stored events, with an index of how often each id was stored.
#[derive(Debug, Default)]
pub struct Store {
    /// Stored events, in arrival order.
    pub records: Vec<StoredRecord>,
    /// (channel ARN, id) → times stored.
    pub ids: HashMap<(String, String), u32>,
}

/// Counters for `/_emulator/stats`.
#[derive(Debug, Default)]
pub struct Stats {
    /// `PutAuditEvents` requests received.
    pub requests: u64,
    /// Requests answered with `ThrottlingException`.
    pub throttled_requests: u64,
    /// Events stored.
    pub accepted_events: u64,
    /// Events listed in `failed[]`.
    pub failed_events: u64,
    /// Error codes returned (request and event level) and how often.
    pub codes: BTreeMap<String, u64>,
}

/// Everything the emulator knows.
#[derive(Debug)]
pub struct CloudTrailState {
    /// Settings.
    pub config: CloudTrailEmulatorConfig,
    /// Channels served.
    pub channels: Vec<Channel>,
    /// Access key → secret.
    pub keys: HashMap<String, String>,
    /// Access key → account.
    pub accounts: HashMap<String, String>,
    /// Stored events.
    pub store: Mutex<Store>,
    /// Counters.
    pub stats: Mutex<Stats>,
    bucket: Mutex<TokenBucket>,
    faults: Mutex<VecDeque<CloudTrailFault>>,
    rng: Mutex<StdRng>,
}

impl CloudTrailState {
    /// State for `config`; fails on a bad channel list.
    pub fn new(config: CloudTrailEmulatorConfig) -> Result<Self> {
        let channels = load_channels(&config)?;
        let owner = channels.first().map(|c| c.arn.account.clone()).unwrap_or_default();
        let account = config.account_id.clone().unwrap_or(owner);
        let keys = HashMap::from([(config.access_key_id.clone(), config.secret_access_key.clone())]);
        let accounts = HashMap::from([(config.access_key_id.clone(), account)]);
        let bucket = TokenBucket::new(config.tps, config.burst.unwrap_or(config.tps));
        Ok(Self {
            config,
            channels,
            keys,
            accounts,
            store: Mutex::new(Store::default()),
            stats: Mutex::new(Stats::default()),
            bucket: Mutex::new(bucket),
            faults: Mutex::new(VecDeque::new()),
            rng: Mutex::new(StdRng::seed_from_u64(7)),
        })
    }

    /// Takes a request token; false means throttle.
    pub fn admit(&self) -> bool {
        lock(&self.bucket).take()
    }

    /// A random draw with probability `p`.
    pub fn chance(&self, p: f64) -> bool {
        p > 0.0 && lock(&self.rng).random_bool(p.min(1.0))
    }

    /// Queues a fault `count` times.
    pub fn push_fault(&self, fault: CloudTrailFault, count: u64) {
        let mut faults = lock(&self.faults);
        faults.extend(std::iter::repeat_n(fault, count.max(1) as usize));
    }

    /// Takes the first queued fault that `matches`.
    pub fn take_fault(&self, matches: impl Fn(&CloudTrailFault) -> bool) -> Option<CloudTrailFault> {
        let mut faults = lock(&self.faults);
        let index = faults.iter().position(matches)?;
        faults.remove(index)
    }

    /// The channel with this ARN.
    pub fn channel(&self, arn: &str) -> Option<&Channel> {
        self.channels.iter().find(|c| c.arn.arn == arn)
    }

    /// Counts an error code.
    pub fn count_code(&self, code: &str) {
        *lock(&self.stats).codes.entry(code.to_string()).or_default() += 1;
    }

    /// Forgets stored events and counters.
    pub fn reset(&self) {
        *lock(&self.store) = Store::default();
        *lock(&self.stats) = Stats::default();
        lock(&self.faults).clear();
    }

    /// Delay of a `slow` answer.
    pub fn slow_delay(&self) -> Duration {
        Duration::from_millis(self.config.slow_ms)
    }
}

fn load_channels(config: &CloudTrailEmulatorConfig) -> Result<Vec<Channel>> {
    let mut specs: Vec<ChannelSpec> = config
        .channel_arns
        .iter()
        .map(|arn| ChannelSpec {
            arn: arn.clone(),
            allowed_accounts: Vec::new(),
            external_id: config.external_id.clone(),
            destination: "ActivityAuditLog".to_string(),
            event_sources: Vec::new(),
        })
        .collect();
    if let Some(path) = &config.channels_file {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading --channels-file {}", path.display()))?;
        let listed: Vec<ChannelSpec> = serde_json::from_str(&text)
            .with_context(|| format!("--channels-file {} is not a JSON list of channels", path.display()))?;
        specs.extend(listed);
    }
    if specs.is_empty() {
        bail!("no channel to serve: give --channel-arn or --channels-file");
    }
    specs
        .into_iter()
        .map(|spec| {
            let arn: ChannelArn = spec.arn.parse().map_err(|e: String| anyhow::anyhow!("channel: {e}"))?;
            Ok(Channel {
                arn,
                allowed_accounts: spec.allowed_accounts,
                external_id: spec.external_id,
                destination: spec.destination,
                event_sources: spec.event_sources,
            })
        })
        .collect()
}
