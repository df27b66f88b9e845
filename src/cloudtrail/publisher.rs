//! The publisher: events in, settlements out. It validates and completes each
//! event, batches them, keeps several requests in flight within the shared rate
//! limit, retries what is transient, dead-letters what CloudTrail refuses for
//! good, and stops on what only the user can fix. Every event it accepts is
//! settled exactly once, delivered or dead-lettered; nothing is dropped.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use rand::Rng;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::audit::id::is_valid_id;
use crate::audit::schema::{validate_value, ValidationOptions};
use crate::cloudtrail::batch::{entry_size_for, Batch, BatchLimits, Batcher, Entry};
use crate::cloudtrail::checksum::event_data_checksum;
use crate::cloudtrail::config::CloudTrailConfig;
use crate::cloudtrail::error::{classify_event, EventFailure, FatalError, RequestFailure};
use crate::cloudtrail::metrics::CloudTrailMetrics;
use crate::cloudtrail::rate::RateLimiter;
use crate::cloudtrail::service::{CloudTrailService, PutReply};

/// One event to deliver, with the caller's token for its settlement.
#[derive(Debug, Clone)]
pub struct PublishItem<T> {
    /// `AuditEvent.id`.
    pub id: String,
    /// `eventData` (JSON object text).
    pub event_data: String,
    /// Returned in the settlement.
    pub token: T,
}

/// How an event ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stored by CloudTrail under this `eventID`.
    Delivered {
        /// CloudTrail's `eventID`.
        event_id: String,
    },
    /// Not deliverable; goes to the dead-letter output with the reason.
    DeadLettered {
        /// CloudTrail's error code, or ours for events refused before sending.
        code: String,
        /// What is wrong.
        message: String,
    },
}

/// The final word on one submitted event.
#[derive(Debug, Clone)]
pub struct Settlement<T> {
    /// The caller's token.
    pub token: T,
    /// `AuditEvent.id`.
    pub id: String,
    /// The `eventData`, for dead-lettered events.
    pub event_data: Option<String>,
    /// Delivered or dead-lettered.
    pub outcome: Outcome,
}

/// Publishes to one CloudTrail Lake channel.
#[derive(Debug)]
pub struct Publisher {
    service: Arc<CloudTrailService>,
    limiter: Arc<RateLimiter>,
    metrics: Arc<CloudTrailMetrics>,
    limits: BatchLimits,
    linger: Duration,
    max_in_flight: usize,
    retry_initial: Duration,
    retry_max: Duration,
    max_retries: Option<u32>,
    owner: String,
}

/// Result of one request task.
struct Sent<T> {
    batch: Batch<T>,
    result: Result<PutReply, RequestFailure>,
}

impl Publisher {
    /// A publisher for the configured channel; see [`CloudTrailService::new`] for credentials.
    pub async fn new(
        config: &CloudTrailConfig,
        credentials: Option<aws_sdk_cloudtraildata::config::Credentials>,
        metrics: Arc<CloudTrailMetrics>,
    ) -> Result<Self> {
        let service = Arc::new(CloudTrailService::new(config, credentials).await?);
        let owner = service.channel().account.clone();
        Ok(Self {
            service,
            limiter: Arc::new(RateLimiter::new(config.max_requests_per_second)),
            metrics,
            limits: BatchLimits {
                max_events: config.batch_max_events,
                max_bytes: usize::try_from(config.batch_max_bytes).unwrap_or(usize::MAX),
            },
            linger: config.linger,
            max_in_flight: config.max_in_flight,
            retry_initial: config.retry_initial_backoff,
            retry_max: config.retry_max_backoff,
            max_retries: config.max_retries,
            owner,
        })
    }

    /// Most events the publisher holds unsettled at once (its backpressure window).
    pub fn window(&self) -> usize {
        self.max_in_flight * self.limits.max_events * 2
    }

    /// Delivers everything received on `input` until it closes, then returns once
    /// every event is settled. A fatal error returns at once: nothing in flight
    /// is settled, so the caller acknowledges nothing more.
    pub async fn run<T: Send + Sync + 'static>(
        self,
        mut input: mpsc::Receiver<PublishItem<T>>,
        settled: mpsc::Sender<Settlement<T>>,
    ) -> Result<(), FatalError> {
        let mut state = LoopState::new(&self);
        let window = self.window();
        loop {
            state.promote_due_retries(&self);
            state.dispatch(&self);
            if !state.input_open && state.idle() {
                return Ok(());
            }
            let next_deadline = state.next_deadline(self.linger);
            tokio::select! {
                item = input.recv(), if state.input_open && state.pending < window => match item {
                    Some(item) => {
                        if let Some(settlement) = state.accept(&self, item)? {
                            state.settle(&settled, settlement).await;
                        }
                    }
                    None => state.input_open = false,
                },
                Some(done) = state.in_flight.join_next(), if !state.in_flight.is_empty() => {
                    self.metrics.in_flight.add(-1);
                    match done {
                        Ok(sent) => state.completed(&self, sent, &settled).await?,
                        Err(e) => return Err(internal(format!("a request task failed: {e}"))),
                    }
                }
                _ = sleep_until(next_deadline), if next_deadline.is_some() => {}
            }
        }
    }

    /// Checks and completes one event; `Err` only for what stops delivery.
    fn prepare<T>(&self, item: PublishItem<T>) -> Result<Result<Entry<T>, Settlement<T>>, FatalError> {
        let dead = |item: PublishItem<T>, code: &str, message: String| {
            Ok(Err(Settlement {
                token: item.token,
                id: item.id,
                event_data: Some(item.event_data),
                outcome: Outcome::DeadLettered {
                    code: code.to_string(),
                    message,
                },
            }))
        };
        if !is_valid_id(&item.id) {
            let message = format!("id {:?} does not match ^[-_A-Za-z0-9]{{1,128}}$", item.id);
            return dead(item, "InvalidId", message);
        }
        let value: serde_json::Value = match serde_json::from_str(&item.event_data) {
            Ok(value) => value,
            Err(e) => return dead(item, "InvalidData", format!("eventData is not valid JSON: {e}")),
        };
        if let Err(violation) = validate_value(&value, ValidationOptions::AS_EMITTED) {
            return dead(
                item,
                violation.code.as_str(),
                format!("{}: {}", violation.field, violation.message),
            );
        }
        let event_data = match value.get("recipientAccountId").and_then(|v| v.as_str()) {
            None => with_recipient(&item.event_data, &self.owner),
            Some(account) if account == self.owner => item.event_data,
            Some(account) => {
                return Err(FatalError {
                    code: "InvalidRecipient".to_string(),
                    message: format!("events carry recipientAccountId {account}, the channel belongs to {}", self.owner),
                    advice: "remove the SmartModule's recipient_account_id parameter (the sink fills in the channel owner) or set it to the channel's account".to_string(),
                });
            }
        };
        let size = entry_size_for(&item.id, &event_data);
        if self.limits.too_large_size(size) {
            let message = format!(
                "the event is {size} bytes; a request may carry {} (cloudtrail.batch_max_bytes)",
                self.limits.max_bytes
            );
            return dead(PublishItem { event_data, ..item }, "EventTooLarge", message);
        }
        let entry = Entry::new(item.id, event_data, item.token);
        Ok(Ok(entry))
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let step = self
            .retry_initial
            .saturating_mul(1 << attempt.min(20).saturating_sub(1))
            .min(self.retry_max);
        let half = step / 2;
        half + Duration::from_nanos(rand::rng().random_range(0..=half.as_nanos().max(1) as u64))
    }

    fn exhausted(&self, attempts: u32) -> bool {
        self.max_retries.is_some_and(|max| attempts > max)
    }
}

/// `eventData` with `"recipientAccountId"` added as the first field, keeping the
/// rest of the module's output byte for byte.
fn with_recipient(event_data: &str, account: &str) -> String {
    let trimmed = event_data.trim_start();
    let rest = trimmed.strip_prefix('{').unwrap_or(trimmed);
    let separator = if rest.trim_start().starts_with('}') { "" } else { "," };
    format!("{{\"recipientAccountId\":\"{account}\"{separator}{rest}")
}

fn internal(message: String) -> FatalError {
    FatalError {
        code: "InternalError".to_string(),
        message,
        advice: "report this as a bug".to_string(),
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Everything the loop tracks.
struct LoopState<T> {
    batcher: Batcher<T>,
    ready: VecDeque<Batch<T>>,
    retries: Vec<(Instant, Entry<T>)>,
    in_flight: JoinSet<Sent<T>>,
    pending: usize,
    input_open: bool,
}

impl<T: Send + Sync + 'static> LoopState<T> {
    fn new(publisher: &Publisher) -> Self {
        Self {
            batcher: Batcher::new(publisher.limits),
            ready: VecDeque::new(),
            retries: Vec::new(),
            in_flight: JoinSet::new(),
            pending: 0,
            input_open: true,
        }
    }

    fn idle(&self) -> bool {
        self.pending == 0
    }

    fn accept(&mut self, publisher: &Publisher, item: PublishItem<T>) -> Result<Option<Settlement<T>>, FatalError> {
        self.pending += 1;
        match publisher.prepare(item)? {
            Ok(entry) => {
                self.enqueue(entry);
                Ok(None)
            }
            Err(settlement) => Ok(Some(settlement)),
        }
    }

    fn enqueue(&mut self, entry: Entry<T>) {
        if let Some(full) = self.batcher.push(entry) {
            self.ready.push_back(full);
        }
        if self.batcher.is_full() {
            self.ready.extend(self.batcher.take());
        }
    }

    fn promote_due_retries(&mut self, _publisher: &Publisher) {
        let now = Instant::now();
        let mut index = 0;
        while index < self.retries.len() {
            if self.retries[index].0 <= now {
                let (_, entry) = self.retries.swap_remove(index);
                self.enqueue(entry);
            } else {
                index += 1;
            }
        }
    }

    fn next_deadline(&self, linger: Duration) -> Option<Instant> {
        let retry = self.retries.iter().map(|(at, _)| *at).min();
        match (self.batcher.deadline(linger), retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Starts requests while there is room: full batches first, then a partial
    /// batch whose linger has passed (or any, once the input has closed).
    fn dispatch(&mut self, publisher: &Publisher) {
        let linger_due = self
            .batcher
            .deadline(publisher.linger)
            .is_some_and(|d| d <= Instant::now());
        if linger_due || (!self.input_open && self.retries.is_empty()) {
            self.ready.extend(self.batcher.take());
        }
        while self.in_flight.len() < publisher.max_in_flight {
            let Some(batch) = self.ready.pop_front() else { break };
            let (service, limiter, metrics) = (
                publisher.service.clone(),
                publisher.limiter.clone(),
                publisher.metrics.clone(),
            );
            metrics.in_flight.add(1);
            self.in_flight.spawn(async move {
                limiter.acquire().await;
                let began = Instant::now();
                let result = service.put(&batch.entries).await;
                metrics.requests.inc();
                metrics.latency.observe(began.elapsed());
                Sent { batch, result }
            });
        }
    }

    async fn settle(&mut self, settled: &mpsc::Sender<Settlement<T>>, settlement: Settlement<T>) {
        self.pending -= 1;
        // A closed receiver means the caller is shutting down; nothing to tell it.
        let _ = settled.send(settlement).await;
    }

    async fn settle_entry(
        &mut self,
        settled: &mpsc::Sender<Settlement<T>>,
        entry: Entry<T>,
        outcome: Outcome,
        publisher: &Publisher,
    ) {
        match &outcome {
            Outcome::Delivered { .. } => publisher.metrics.delivered.add(entry.tokens.len() as u64),
            Outcome::DeadLettered { .. } => publisher.metrics.dead_lettered.add(entry.tokens.len() as u64),
        }
        let dead = matches!(outcome, Outcome::DeadLettered { .. });
        for token in entry.tokens {
            let event_data = dead.then(|| entry.event_data.clone());
            let settlement = Settlement {
                token,
                id: entry.id.clone(),
                event_data,
                outcome: outcome.clone(),
            };
            self.settle(settled, settlement).await;
        }
    }

    fn retry_later(&mut self, publisher: &Publisher, mut entry: Entry<T>) {
        entry.attempts += 1;
        let at = Instant::now() + publisher.backoff(entry.attempts);
        self.retries.push((at, entry));
    }

    async fn completed(
        &mut self,
        publisher: &Publisher,
        sent: Sent<T>,
        settled: &mpsc::Sender<Settlement<T>>,
    ) -> Result<(), FatalError> {
        match sent.result {
            Ok(reply) => self.per_event(publisher, sent.batch, reply, settled).await,
            Err(failure) => self.request_failed(publisher, sent.batch, failure, settled).await,
        }
    }

    async fn per_event(
        &mut self,
        publisher: &Publisher,
        batch: Batch<T>,
        reply: PutReply,
        settled: &mpsc::Sender<Settlement<T>>,
    ) -> Result<(), FatalError> {
        for entry in batch.entries {
            if let Some((_, event_id)) = reply.successful.iter().find(|(id, _)| *id == entry.id) {
                let outcome = Outcome::Delivered {
                    event_id: event_id.clone(),
                };
                self.settle_entry(settled, entry, outcome, publisher).await;
                continue;
            }
            let Some((_, code, message)) = reply.failed.iter().find(|(id, _, _)| *id == entry.id) else {
                // Listed nowhere: not known to be stored, so send it again.
                tracing::warn!(id = %entry.id, "CloudTrail's reply did not mention an event; sending it again");
                self.retry_later(publisher, entry);
                continue;
            };
            match classify_event(code, message) {
                EventFailure::Fatal(fatal) => return Err(fatal),
                EventFailure::Retry if publisher.exhausted(entry.attempts + 1) => {
                    let outcome = Outcome::DeadLettered {
                        code: code.clone(),
                        message: format!("{message} (gave up after {} attempts)", entry.attempts + 1),
                    };
                    self.settle_entry(settled, entry, outcome, publisher).await;
                }
                EventFailure::Retry => {
                    publisher.metrics.event_retries.inc();
                    self.retry_later(publisher, entry);
                }
                EventFailure::Checksum if entry.attempts == 0 => {
                    let mut entry = entry;
                    entry.checksum = event_data_checksum(&entry.event_data);
                    self.retry_later(publisher, entry);
                }
                EventFailure::Checksum | EventFailure::DeadLetter => {
                    tracing::warn!(id = %entry.id, code = %code, message = %message, "CloudTrail refused an event; dead-lettering it");
                    let outcome = Outcome::DeadLettered {
                        code: code.clone(),
                        message: message.clone(),
                    };
                    self.settle_entry(settled, entry, outcome, publisher).await;
                }
            }
        }
        Ok(())
    }

    async fn request_failed(
        &mut self,
        publisher: &Publisher,
        batch: Batch<T>,
        failure: RequestFailure,
        settled: &mpsc::Sender<Settlement<T>>,
    ) -> Result<(), FatalError> {
        publisher.metrics.request_failures.inc();
        match failure {
            RequestFailure::Fatal(fatal) => Err(fatal),
            RequestFailure::Transient {
                code,
                message,
                throttled,
            } => {
                if throttled {
                    publisher.metrics.throttled.inc();
                    publisher.limiter.throttled();
                } else {
                    tracing::warn!(%code, %message, events = batch.len(), "PutAuditEvents failed; retrying");
                }
                publisher.metrics.request_retries.inc();
                for entry in batch.entries {
                    if publisher.exhausted(entry.attempts + 1) {
                        let outcome = Outcome::DeadLettered {
                            code: code.clone(),
                            message: format!("{message} (gave up after {} attempts)", entry.attempts + 1),
                        };
                        self.settle_entry(settled, entry, outcome, publisher).await;
                    } else {
                        self.retry_later(publisher, entry);
                    }
                }
                Ok(())
            }
            RequestFailure::Duplicate => {
                tracing::warn!(
                    events = batch.len(),
                    "CloudTrail reported duplicated ids in a request; resending its events one per request"
                );
                for entry in batch.entries {
                    self.ready.push_back(Batch {
                        bytes: entry.wire_size,
                        entries: vec![entry],
                    });
                }
                Ok(())
            }
            RequestFailure::Invalid { message } if batch.len() > 1 => {
                tracing::warn!(%message, events = batch.len(), "CloudTrail refused a request as invalid; splitting it");
                let mut entries = batch.entries;
                let second = entries.split_off(entries.len() / 2);
                for half in [entries, second] {
                    let bytes = half.iter().map(|e| e.wire_size).sum();
                    self.ready.push_front(Batch { entries: half, bytes });
                }
                Ok(())
            }
            RequestFailure::Invalid { message } => {
                for entry in batch.entries {
                    let outcome = Outcome::DeadLettered {
                        code: "ValidationException".to_string(),
                        message: message.clone(),
                    };
                    self.settle_entry(settled, entry, outcome, publisher).await;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipient_is_added_as_the_first_field() {
        assert_eq!(
            with_recipient("{\"a\":1}", "111122223333"),
            "{\"recipientAccountId\":\"111122223333\",\"a\":1}"
        );
        let empty: serde_json::Value = serde_json::from_str(&with_recipient(" { }", "1")).expect("json");
        assert_eq!(empty, serde_json::json!({"recipientAccountId": "1"}));
        let value: serde_json::Value = serde_json::from_str(&with_recipient("{\"a\":{\"b\":2}}", "1")).expect("json");
        assert_eq!(value["a"]["b"], 2);
    }
}
