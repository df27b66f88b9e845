//! The Falcon emulator's state: tokens, sessions, partition logs, queued faults.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::falcon::config::{ControlFault, FalconEmulatorConfig, SessionLinger};
use crate::falcon::generator::Generator;
use crate::lock;

/// One event in a partition's log.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// `metadata.offset`.
    pub offset: u64,
    /// `metadata.eventType` (for the `eventType` filter).
    pub event_type: Arc<str>,
    /// The event line, without newline.
    pub line: Bytes,
}

/// The retained events of one partition.
#[derive(Debug)]
pub struct PartitionLog {
    inner: RwLock<LogInner>,
    changed: watch::Sender<u64>,
}

#[derive(Debug)]
struct LogInner {
    events: Vec<StoredEvent>,
    next_offset: u64,
}

impl PartitionLog {
    fn new(first_offset: u64) -> Self {
        let inner = LogInner {
            events: Vec::new(),
            next_offset: first_offset,
        };
        Self {
            inner: RwLock::new(inner),
            changed: watch::channel(0).0,
        }
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.inner.read().map(|i| i.events.len()).unwrap_or(0)
    }

    /// True when the log holds no event.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Index of the first event with offset ≥ `offset`.
    pub fn index_of(&self, offset: u64) -> usize {
        self.inner
            .read()
            .map(|i| i.events.partition_point(|ev| ev.offset < offset))
            .unwrap_or(0)
    }

    /// Up to `max` events from `index`.
    pub fn read(&self, index: usize, max: usize) -> Vec<StoredEvent> {
        self.inner
            .read()
            .map(|i| i.events.iter().skip(index).take(max).cloned().collect())
            .unwrap_or_default()
    }

    /// Wakes when events are appended.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Appends the event `make` builds for the next offset (followed by `gap`
    /// unused offsets); offset choice and append are one step, so the log stays
    /// ordered whoever appends concurrently.
    fn append_next(&self, gap: u64, make: impl FnOnce(u64) -> (Arc<str>, Bytes)) -> u64 {
        let offset = match self.inner.write() {
            Ok(mut inner) => {
                let offset = inner.next_offset;
                inner.next_offset = offset + 1 + gap;
                let (event_type, line) = make(offset);
                inner.events.push(StoredEvent {
                    offset,
                    event_type,
                    line,
                });
                offset
            }
            Err(_) => return 0,
        };
        self.changed.send_modify(|v| *v += 1);
        offset
    }

    /// Appends a line verbatim, positioned at the next offset without using it
    /// (for lines that carry no offset at all).
    fn append_verbatim(&self, line: Bytes) {
        if let Ok(mut inner) = self.inner.write() {
            let offset = inner.next_offset;
            inner.events.push(StoredEvent {
                offset,
                event_type: Arc::from(""),
                line,
            });
        }
        self.changed.send_modify(|v| *v += 1);
    }

    /// Appends an event with its own offset, as given (a lower or repeated offset
    /// is kept: the real API sends those too).
    fn append_as_is(&self, event: StoredEvent) {
        if let Ok(mut inner) = self.inner.write() {
            inner.next_offset = inner.next_offset.max(event.offset + 1);
            inner.events.push(event);
        }
        self.changed.send_modify(|v| *v += 1);
    }
}

/// A bearer token.
#[derive(Debug, Clone)]
pub struct TokenInfo {
    /// When it stops working.
    pub expires: Instant,
    /// The cloud it was issued for.
    pub region: String,
}

/// A stream session (one per partition per discovery).
#[derive(Debug, Clone)]
pub struct Session {
    /// The session token (`Authorization: Token …`).
    pub token: String,
    /// appId it was discovered with.
    pub app_id: String,
    /// Partition.
    pub partition: u32,
    /// Cloud it was discovered in.
    pub region: String,
    /// Ends unless refreshed before this.
    pub expires: Instant,
    /// Ends at this time whatever happens.
    pub cap: Instant,
    /// Open feed connections.
    pub connected: u32,
    /// When the last feed connection closed.
    pub closed_at: Option<Instant>,
    /// Replaced by a newer discovery or expired by the control API.
    pub revoked: bool,
}

impl Session {
    /// True while the session may stream.
    pub fn alive(&self, now: Instant) -> bool {
        !self.revoked && now < self.expires && now < self.cap
    }
}

/// Counters exposed on `GET /_emulator/stats`.
#[derive(Debug, Default, Serialize)]
pub struct Stats {
    /// Tokens issued.
    pub tokens_issued: AtomicU64,
    /// Token requests refused (bad credentials, faults).
    pub token_failures: AtomicU64,
    /// Tokens revoked.
    pub tokens_revoked: AtomicU64,
    /// Discovery requests answered with resources.
    pub discoveries: AtomicU64,
    /// Discovery requests answered with no resources (appId held).
    pub discoveries_empty: AtomicU64,
    /// Feed connections accepted.
    pub feeds_opened: AtomicU64,
    /// Feed connections currently open.
    pub feeds_open: AtomicU64,
    /// Requests refused with 401.
    pub unauthorized: AtomicU64,
    /// Requests refused with 429.
    pub rate_limited: AtomicU64,
    /// Successful refreshes.
    pub refreshes: AtomicU64,
    /// Refreshes answered 404.
    pub refresh_not_found: AtomicU64,
    /// Events appended to the logs.
    pub events_appended: AtomicU64,
    /// Event lines written to feeds.
    pub events_served: AtomicU64,
    /// Keep-alive lines written.
    pub keepalives: AtomicU64,
    /// Faults applied.
    pub faults_applied: AtomicU64,
}

/// Adds one to a counter.
pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Everything the emulator knows.
#[derive(Debug)]
pub struct EmulatorState {
    /// Settings.
    pub config: FalconEmulatorConfig,
    /// Event generator.
    pub generator: Generator,
    /// One log per partition.
    pub partitions: Vec<PartitionLog>,
    /// Counters.
    pub stats: Stats,
    tokens: Mutex<HashMap<String, TokenInfo>>,
    sessions: Mutex<Vec<Session>>,
    faults: Mutex<VecDeque<ControlFault>>,
    rng: Mutex<StdRng>,
    next_seq: AtomicU64,
    windows: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl EmulatorState {
    /// Empty state for `config`.
    pub fn new(config: FalconEmulatorConfig) -> Self {
        let generator = Generator::new(config.seed, config.cid.clone(), config.mix)
            .with_min_bytes(config.min_event_bytes)
            .with_base_time(config.base_time);
        let partitions = (0..config.partitions.max(1))
            .map(|_| PartitionLog::new(config.first_offset))
            .collect();
        let rng = StdRng::seed_from_u64(config.seed.rotate_left(17));
        Self {
            config,
            generator,
            partitions,
            stats: Stats::default(),
            tokens: Mutex::new(HashMap::new()),
            sessions: Mutex::new(Vec::new()),
            faults: Mutex::new(VecDeque::new()),
            rng: Mutex::new(rng),
            next_seq: AtomicU64::new(0),
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// A random draw with probability `p`.
    pub fn chance(&self, p: f64) -> bool {
        p > 0.0 && lock(&self.rng).random_bool(p.min(1.0))
    }

    /// A random token-like string.
    pub fn random_token(&self, len: usize) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut rng = lock(&self.rng);
        (0..len)
            .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
            .collect()
    }

    /// Generates `count` more events, round-robin over partitions.
    pub fn append_generated(&self, count: u64) {
        for _ in 0..count {
            let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
            let log = &self.partitions[(seq % self.partitions.len() as u64) as usize];
            let gap = if self.chance(self.config.offset_gaps) {
                1 + seq % 5
            } else {
                0
            };
            log.append_next(gap, |offset| {
                let generated = self.generator.event(seq, offset);
                (
                    Arc::from(generated.event_type),
                    Bytes::from(generated.line.into_bytes()),
                )
            });
            bump(&self.stats.events_appended);
        }
    }

    /// Appends `line` to `partition` exactly as given, even if it is not an event.
    pub fn append_raw(&self, partition: u32, line: &str) -> Result<(), String> {
        let log = self
            .partitions
            .get(partition as usize)
            .ok_or_else(|| format!("partition {partition} does not exist"))?;
        log.append_verbatim(Bytes::copy_from_slice(line.as_bytes()));
        Ok(())
    }

    /// Appends one event to `partition`. A line with `metadata.offset` keeps it
    /// and its bytes; otherwise the next offset is filled in.
    pub fn append_line(&self, partition: u32, line: &str) -> Result<u64, String> {
        let log = self
            .partitions
            .get(partition as usize)
            .ok_or_else(|| format!("partition {partition} does not exist"))?;
        let mut value: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
        if !value.is_object() {
            return Err("not a JSON object".to_string());
        }
        let event_type: Arc<str> = Arc::from(value["metadata"]["eventType"].as_str().unwrap_or("UnknownEvent"));
        bump(&self.stats.events_appended);
        if let Some(offset) = value["metadata"]["offset"].as_u64() {
            let line = Bytes::copy_from_slice(line.trim().as_bytes());
            log.append_as_is(StoredEvent {
                offset,
                event_type,
                line,
            });
            return Ok(offset);
        }
        Ok(log.append_next(0, |offset| {
            if !value["metadata"].is_object() {
                value["metadata"] = serde_json::json!({});
            }
            value["metadata"]["offset"] = serde_json::json!(offset);
            (event_type, Bytes::from(value.to_string().into_bytes()))
        }))
    }

    /// Issues a bearer token for `region`.
    pub fn issue_token(&self, region: &str) -> String {
        let token = self.random_token(64);
        let info = TokenInfo {
            expires: Instant::now() + Duration::from_secs(self.config.token_ttl),
            region: region.to_string(),
        };
        lock(&self.tokens).insert(token.clone(), info);
        bump(&self.stats.tokens_issued);
        token
    }

    /// The live token `token`, if any.
    pub fn token(&self, token: &str) -> Option<TokenInfo> {
        let tokens = lock(&self.tokens);
        tokens.get(token).filter(|t| Instant::now() < t.expires).cloned()
    }

    /// Revokes a token; true when it existed.
    pub fn revoke_token(&self, token: &str) -> bool {
        let removed = lock(&self.tokens).remove(token).is_some();
        if removed {
            bump(&self.stats.tokens_revoked);
        }
        removed
    }

    /// Expires every bearer token now.
    pub fn expire_tokens(&self) {
        lock(&self.tokens).clear();
    }

    /// True while a live session of `app_id` holds it: by default every session
    /// until it ends (expired unrefreshed, revoked or capped), connected or
    /// not, as the real API does; with a finite `session_linger`, only while
    /// connected and for that long after its feed closed.
    pub fn app_id_held(&self, app_id: &str) -> bool {
        let now = Instant::now();
        lock(&self.sessions).iter().any(|s| {
            s.app_id == app_id
                && s.alive(now)
                && match self.config.session_linger {
                    SessionLinger::UntilExpiry => true,
                    SessionLinger::For(linger) => {
                        s.connected > 0 || s.closed_at.is_some_and(|closed| now.duration_since(closed) < linger)
                    }
                }
        })
    }

    /// Starts a new set of sessions for `app_id`, one per partition, replacing the old ones.
    pub fn new_sessions(&self, app_id: &str, region: &str) -> Vec<Session> {
        let now = Instant::now();
        let interval = Duration::from_secs(self.config.refresh_interval);
        let fresh: Vec<Session> = (0..self.partitions.len() as u32)
            .map(|partition| Session {
                token: self.random_token(48),
                app_id: app_id.to_string(),
                partition,
                region: region.to_string(),
                expires: now + interval,
                cap: now + self.config.session_cap,
                connected: 0,
                closed_at: None,
                revoked: false,
            })
            .collect();
        let mut sessions = lock(&self.sessions);
        sessions.retain(|s| s.alive(now) || s.connected > 0);
        for old in sessions.iter_mut().filter(|s| s.app_id == app_id) {
            old.revoked = true;
        }
        sessions.extend(fresh.iter().cloned());
        fresh
    }

    /// The session with this token, if it may stream.
    pub fn session(&self, token: &str) -> Option<Session> {
        let now = Instant::now();
        lock(&self.sessions)
            .iter()
            .find(|s| s.token == token && s.alive(now))
            .cloned()
    }

    /// Whether a session is still alive, by token.
    pub fn session_alive(&self, token: &str) -> bool {
        self.session(token).is_some()
    }

    /// Extends the current session of (`app_id`, `partition`); false when there is none.
    pub fn refresh_session(&self, app_id: &str, partition: u32) -> bool {
        let now = Instant::now();
        let interval = Duration::from_secs(self.config.refresh_interval);
        let mut sessions = lock(&self.sessions);
        match sessions
            .iter_mut()
            .find(|s| s.app_id == app_id && s.partition == partition && s.alive(now))
        {
            Some(session) => {
                session.expires = now + interval;
                true
            }
            None => false,
        }
    }

    /// Records a feed connection opening (`delta` 1) or closing (-1).
    pub fn mark_connection(&self, token: &str, opened: bool) {
        let mut sessions = lock(&self.sessions);
        if let Some(s) = sessions.iter_mut().find(|s| s.token == token) {
            if opened {
                s.connected += 1;
            } else {
                s.connected = s.connected.saturating_sub(1);
                s.closed_at = Some(Instant::now());
            }
        }
    }

    /// Ends every session now (feeds close, refreshes answer 404).
    pub fn expire_sessions(&self) {
        for s in lock(&self.sessions).iter_mut() {
            s.revoked = true;
        }
    }

    /// Queues a fault.
    pub fn push_fault(&self, fault: ControlFault, count: u64) {
        let mut faults = lock(&self.faults);
        for _ in 0..count.max(1) {
            faults.push_back(fault.clone());
        }
    }

    /// Takes the first queued fault that `matches`.
    pub fn take_fault(&self, matches: impl Fn(&ControlFault) -> bool) -> Option<ControlFault> {
        let mut faults = lock(&self.faults);
        let index = faults.iter().position(matches)?;
        bump(&self.stats.faults_applied);
        faults.remove(index)
    }

    /// Records a request in a one-minute sliding window; false when over `limit`.
    pub fn within_rate(&self, key: &str, limit: usize) -> bool {
        let now = Instant::now();
        let mut windows = lock(&self.windows);
        let window = windows.entry(key.to_string()).or_default();
        while window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
        {
            window.pop_front();
        }
        if window.len() >= limit {
            return false;
        }
        window.push_back(now);
        true
    }
}
