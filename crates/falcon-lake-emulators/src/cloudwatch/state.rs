//! The CloudWatch Logs emulator's state: log groups, streams and their events,
//! the clock the age rules use, the throttle, faults and counters.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::aws::TokenBucket;
use crate::cloudwatch::config::{CloudWatchEmulatorConfig, CloudWatchFault};
use crate::lock;

/// One stored log event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// `timestamp`, epoch ms, as sent.
    pub timestamp: i64,
    /// `message`, as sent.
    pub message: String,
    /// When the emulator stored it (its clock), epoch ms.
    pub ingestion_time: i64,
    /// Opaque, unique `eventId`.
    pub event_id: String,
    /// Arrival order across the whole emulator (ties in reads are broken by it,
    /// as the service breaks them by request).
    pub seq: u64,
}

/// A log stream.
#[derive(Debug, Clone, Default)]
pub struct LogStream {
    /// Creation time, epoch ms.
    pub creation_time: i64,
    /// Stored events, in arrival order.
    pub events: Vec<StoredEvent>,
    /// Last ingestion, epoch ms.
    pub last_ingestion_time: Option<i64>,
}

impl LogStream {
    /// The events in the order reads return them: timestamp, ingestion time, arrival.
    pub fn sorted(&self) -> Vec<&StoredEvent> {
        let mut events: Vec<&StoredEvent> = self.events.iter().collect();
        events.sort_by_key(|e| (e.timestamp, e.ingestion_time, e.seq));
        events
    }
}

/// A log group.
#[derive(Debug, Clone, Default)]
pub struct LogGroup {
    /// Creation time, epoch ms.
    pub creation_time: i64,
    /// `retentionInDays`, when set.
    pub retention_days: Option<u32>,
    /// Streams by name.
    pub streams: BTreeMap<String, LogStream>,
}

/// Counters for `/_emulator/stats`.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Stats {
    /// Requests per operation.
    pub requests: BTreeMap<String, u64>,
    /// PutLogEvents answered with `ThrottlingException`.
    pub throttled_requests: u64,
    /// Events stored.
    pub stored_events: u64,
    /// Events refused as more than 14 days old.
    pub too_old_events: u64,
    /// Events refused as older than the group's retention.
    pub expired_events: u64,
    /// Events refused as more than 2 hours ahead.
    pub too_new_events: u64,
    /// Error codes returned and how often.
    pub codes: BTreeMap<String, u64>,
}

/// Everything the emulator knows.
#[derive(Debug)]
pub struct CloudWatchState {
    /// Settings.
    pub config: CloudWatchEmulatorConfig,
    /// Log groups by name.
    pub groups: Mutex<BTreeMap<String, LogGroup>>,
    /// Counters.
    pub stats: Mutex<Stats>,
    /// Actions answered with AccessDeniedException (`logs:PutLogEvents`).
    pub denied: Mutex<HashSet<String>>,
    clock_offset_ms: AtomicI64,
    next_seq: AtomicU64,
    bucket: Mutex<TokenBucket>,
    faults: Mutex<VecDeque<CloudWatchFault>>,
    rng: Mutex<StdRng>,
}

impl CloudWatchState {
    /// State for `config`, with its log groups and streams created.
    pub fn new(config: CloudWatchEmulatorConfig) -> Result<Self> {
        let bucket = TokenBucket::new(config.tps, config.burst.unwrap_or(config.tps));
        let state = Self {
            denied: Mutex::new(config.denied.iter().cloned().collect()),
            clock_offset_ms: AtomicI64::new(config.clock_offset_ms),
            groups: Mutex::new(BTreeMap::new()),
            stats: Mutex::new(Stats::default()),
            next_seq: AtomicU64::new(0),
            bucket: Mutex::new(bucket),
            faults: Mutex::new(VecDeque::new()),
            rng: Mutex::new(StdRng::seed_from_u64(11)),
            config,
        };
        state.create_initial()?;
        Ok(state)
    }

    fn create_initial(&self) -> Result<()> {
        let now = self.now_ms();
        let mut groups = lock(&self.groups);
        for spec in &self.config.log_groups {
            let (name, retention) = match spec.rsplit_once(':') {
                Some((name, days)) => match days.parse::<u32>() {
                    Ok(days) => (name, Some(days)),
                    Err(_) => bail!("--log-group {spec:?}: expected NAME or NAME:RETENTION_DAYS"),
                },
                None => (spec.as_str(), None),
            };
            let group = groups.entry(name.to_string()).or_insert_with(|| LogGroup {
                creation_time: now,
                ..LogGroup::default()
            });
            group.retention_days = retention;
        }
        for spec in &self.config.log_streams {
            let Some((group, stream)) = spec.split_once(':') else {
                bail!("--log-stream {spec:?}: expected GROUP:STREAM");
            };
            let group = groups.entry(group.to_string()).or_insert_with(|| LogGroup {
                creation_time: now,
                ..LogGroup::default()
            });
            group.streams.entry(stream.to_string()).or_insert_with(|| LogStream {
                creation_time: now,
                ..LogStream::default()
            });
        }
        Ok(())
    }

    /// The emulator's clock, epoch ms (the real one plus the offset).
    pub fn now_ms(&self) -> i64 {
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_millis() as i64;
        real + self.clock_offset_ms.load(Ordering::Relaxed)
    }

    /// Sets the clock's offset against the real one.
    pub fn set_clock_offset(&self, offset_ms: i64) {
        self.clock_offset_ms.store(offset_ms, Ordering::Relaxed);
    }

    /// The clock's offset against the real one.
    pub fn clock_offset(&self) -> i64 {
        self.clock_offset_ms.load(Ordering::Relaxed)
    }

    /// The next arrival number.
    pub fn next_seq(&self) -> u64 {
        self.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Takes a PutLogEvents token; false means throttle.
    pub fn admit(&self) -> bool {
        lock(&self.bucket).take()
    }

    /// A random draw with probability `p`.
    pub fn chance(&self, p: f64) -> bool {
        p > 0.0 && lock(&self.rng).random_bool(p.min(1.0))
    }

    /// Queues a fault `count` times.
    pub fn push_fault(&self, fault: CloudWatchFault, count: u64) {
        lock(&self.faults).extend(std::iter::repeat_n(fault, count.max(1) as usize));
    }

    /// Takes the first queued fault for `operation` that `matches`.
    pub fn take_fault(&self, operation: &str, matches: impl Fn(&CloudWatchFault) -> bool) -> Option<CloudWatchFault> {
        let mut faults = lock(&self.faults);
        let index = faults.iter().position(|f| f.applies_to(operation) && matches(f))?;
        faults.remove(index)
    }

    /// Counts a request of `operation`.
    pub fn count_request(&self, operation: &str) {
        *lock(&self.stats).requests.entry(operation.to_string()).or_default() += 1;
    }

    /// Counts an error code.
    pub fn count_code(&self, code: &str) {
        *lock(&self.stats).codes.entry(code.to_string()).or_default() += 1;
    }

    /// True when `action` (`logs:PutLogEvents`) is denied.
    pub fn is_denied(&self, action: &str) -> bool {
        lock(&self.denied).contains(action)
    }

    /// Forgets every group, event, counter and queued fault; the clock is reset too.
    pub fn reset(&self) -> Result<()> {
        lock(&self.groups).clear();
        *lock(&self.stats) = Stats::default();
        lock(&self.faults).clear();
        self.set_clock_offset(self.config.clock_offset_ms);
        self.create_initial()
    }

    /// `arn:aws:logs:<region>:<account>:log-group:<name>`.
    pub fn group_arn(&self, region: &str, group: &str) -> String {
        format!("arn:aws:logs:{region}:{}:log-group:{group}", self.config.account_id)
    }
}
