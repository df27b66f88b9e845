//! The publisher: events in, settlements out, for any [`Destination`]. It has
//! each event checked and completed by the destination, batches them, keeps
//! several requests in flight within the shared rate limit, retries what is
//! transient, dead-letters what the service refuses for good, and stops on what
//! only the user can fix. Every event it accepts is settled exactly once,
//! delivered or dead-lettered; nothing is dropped.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::publish::batch::{Batch, Batcher, Pending};
use crate::publish::destination::{
    BatchLimits, Destination, EventResult, FatalError, Prepared, Refusal, RequestFailure, SendResult, Submitted,
};
use crate::publish::item::{Outcome, PublishItem, Settlement};
use crate::publish::metrics::PublishMetrics;
use crate::publish::rate::RateLimiter;
use crate::publish::settings::PublishSettings;

/// Publishes to one destination.
#[derive(Debug)]
pub struct Publisher {
    destination: Arc<dyn Destination>,
    limiter: Arc<RateLimiter>,
    metrics: Arc<PublishMetrics>,
    limits: BatchLimits,
    linger: Duration,
    max_in_flight: usize,
    retry_initial: Duration,
    retry_max: Duration,
    max_retries: Option<u32>,
}

/// One request's events, in sending order.
type Request<T> = Vec<Pending<T>>;

/// Result of one request task.
struct Sent<T> {
    request: Request<T>,
    result: SendResult,
}

impl Publisher {
    /// A publisher for `destination` with the configured `settings`.
    pub fn with_destination(
        destination: Arc<dyn Destination>,
        settings: &PublishSettings,
        metrics: Arc<PublishMetrics>,
    ) -> Self {
        metrics.set_operation(destination.metric_name());
        let service = destination.limits();
        let limits = BatchLimits {
            max_events: settings.batch_max_events.min(service.max_events),
            max_bytes: usize::try_from(settings.batch_max_bytes)
                .unwrap_or(usize::MAX)
                .min(service.max_bytes),
            overhead_bytes: service.overhead_bytes,
        };
        Self {
            destination,
            limiter: Arc::new(RateLimiter::new(settings.max_requests_per_second)),
            metrics,
            limits,
            linger: settings.linger,
            max_in_flight: settings.max_in_flight,
            retry_initial: settings.retry_initial_backoff,
            retry_max: settings.retry_max_backoff,
            max_retries: settings.max_retries,
        }
    }

    /// Most events the publisher holds unsettled at once (its backpressure window).
    pub fn window(&self) -> usize {
        self.max_in_flight * self.limits.max_events * 2
    }

    /// Most bytes (as sent) it holds unsettled at once: large events fill the
    /// same requests with fewer of them.
    fn byte_window(&self) -> usize {
        self.max_in_flight * self.limits.max_bytes * 2
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
        let (window, byte_window) = (self.window(), self.byte_window());
        loop {
            state.promote_due_retries(&self);
            state.dispatch(&self);
            if !state.input_open && state.pending == 0 {
                return Ok(());
            }
            let next_deadline = state.next_deadline(self.linger);
            tokio::select! {
                item = input.recv(), if state.input_open && state.pending < window && state.pending_bytes < byte_window => match item {
                    Some(item) => {
                        state.accept(&self, item, &settled).await?;
                        state.accept_waiting(&self, &mut input, &settled).await?;
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

    /// Back-off before the `attempt`-th resend: doubling from the initial
    /// delay up to the maximum, drawn from the upper half of the step.
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

fn internal(message: String) -> FatalError {
    FatalError {
        operation: "the publisher".to_string(),
        code: "InternalError".to_string(),
        message,
        advice: "report this as a bug".to_string(),
    }
}

/// `value` itself when it is not needed again, else a copy.
fn take_or_clone<V: Clone + Default>(value: &mut V, take: bool) -> V {
    if take {
        std::mem::take(value)
    } else {
        value.clone()
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
    ready: VecDeque<Request<T>>,
    retries: Vec<(Instant, Pending<T>)>,
    in_flight: JoinSet<Sent<T>>,
    /// Submissions accepted and not yet settled.
    pending: usize,
    /// Their bytes as sent.
    pending_bytes: usize,
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
            pending_bytes: 0,
            input_open: true,
        }
    }

    /// Has the destination check one submission; queues it or settles it.
    async fn accept(
        &mut self,
        publisher: &Publisher,
        item: PublishItem<T>,
        settled: &mpsc::Sender<Settlement<T>>,
    ) -> Result<(), FatalError> {
        self.pending += 1;
        let submitted = Submitted {
            id: &item.id,
            event_data: &item.event_data,
            record_time_ms: item.record_time_ms,
        };
        match publisher.destination.prepare(submitted) {
            Ok(event) if publisher.limits.too_large(event.wire_bytes) => {
                let message = format!(
                    "the event is {} bytes as sent; a request may carry {} (batch_max_bytes)",
                    event.wire_bytes, publisher.limits.max_bytes
                );
                let letter = Refusal::DeadLetter {
                    code: "EventTooLarge".to_string(),
                    message,
                    body: Some(event.body),
                };
                self.refuse(publisher, item, letter, settled).await
            }
            Ok(event) => {
                self.pending_bytes += event.wire_bytes;
                self.enqueue(publisher, Pending::new(event, item.token));
                Ok(())
            }
            Err(refusal) => self.refuse(publisher, item, refusal, settled).await,
        }
    }

    /// Accepts what is already waiting on `input`, up to a request's worth and
    /// within the windows, without a loop turn (and a new timer) per event;
    /// stops early when a request is ready and a slot is free to send it.
    async fn accept_waiting(
        &mut self,
        publisher: &Publisher,
        input: &mut mpsc::Receiver<PublishItem<T>>,
        settled: &mpsc::Sender<Settlement<T>>,
    ) -> Result<(), FatalError> {
        let (window, byte_window) = (publisher.window(), publisher.byte_window());
        for _ in 1..publisher.limits.max_events {
            let sendable = !self.ready.is_empty() && self.in_flight.len() < publisher.max_in_flight;
            if sendable || self.pending >= window || self.pending_bytes >= byte_window {
                break;
            }
            match input.try_recv() {
                Ok(item) => self.accept(publisher, item, settled).await?,
                // Empty, or closed: the loop's `recv` sees which.
                Err(_) => break,
            }
        }
        Ok(())
    }

    async fn refuse(
        &mut self,
        publisher: &Publisher,
        item: PublishItem<T>,
        refusal: Refusal,
        settled: &mpsc::Sender<Settlement<T>>,
    ) -> Result<(), FatalError> {
        let (code, message, body) = match refusal {
            Refusal::Fatal(fatal) => return Err(fatal),
            Refusal::DeadLetter { code, message, body } => (code, message, body),
        };
        tracing::warn!(id = %item.id, %code, %message, "an event cannot be sent; dead-lettering it");
        publisher.metrics.dead_lettered.inc();
        let settlement = Settlement {
            token: item.token,
            id: item.id,
            event_data: Some(body.unwrap_or(item.event_data)),
            outcome: Outcome::DeadLettered { code, message },
        };
        self.send_settlement(settled, settlement).await;
        Ok(())
    }

    fn enqueue(&mut self, publisher: &Publisher, pending: Pending<T>) {
        if let Some(full) = self.batcher.push(pending) {
            self.plan(publisher, full);
        }
        if self.batcher.is_full() {
            if let Some(full) = self.batcher.take() {
                self.plan(publisher, full);
            }
        }
    }

    /// Turns a closed batch into requests, as the destination orders and splits them.
    fn plan(&mut self, publisher: &Publisher, batch: Batch<T>) {
        let groups = {
            let events: Vec<&Prepared> = batch.entries.iter().map(|p| &p.event).collect();
            publisher.destination.plan(&events)
        };
        let mut slots: Vec<Option<Pending<T>>> = batch.entries.into_iter().map(Some).collect();
        for group in groups {
            let request: Request<T> = group.into_iter().filter_map(|i| slots.get_mut(i)?.take()).collect();
            if !request.is_empty() {
                self.ready.push_back(request);
            }
        }
        // A plan that forgot an event must not lose it.
        let forgotten: Request<T> = slots.into_iter().flatten().collect();
        if !forgotten.is_empty() {
            tracing::error!(
                events = forgotten.len(),
                "the request plan left events out; sending them separately"
            );
            self.ready.push_back(forgotten);
        }
    }

    fn promote_due_retries(&mut self, publisher: &Publisher) {
        let now = Instant::now();
        let mut index = 0;
        while index < self.retries.len() {
            if self.retries[index].0 <= now {
                let (_, pending) = self.retries.swap_remove(index);
                self.enqueue(publisher, pending);
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
            if let Some(batch) = self.batcher.take() {
                self.plan(publisher, batch);
            }
        }
        while self.in_flight.len() < publisher.max_in_flight {
            let Some(request) = self.ready.pop_front() else { break };
            let (destination, limiter, metrics) = (
                publisher.destination.clone(),
                publisher.limiter.clone(),
                publisher.metrics.clone(),
            );
            metrics.in_flight.add(1);
            self.in_flight.spawn(async move {
                limiter.acquire().await;
                let began = Instant::now();
                let result = {
                    let events: Vec<&Prepared> = request.iter().map(|p| &p.event).collect();
                    destination.send(&events).await
                };
                metrics.requests.inc();
                metrics.latency.observe(began.elapsed());
                Sent { request, result }
            });
        }
    }

    async fn send_settlement(&mut self, settled: &mpsc::Sender<Settlement<T>>, settlement: Settlement<T>) {
        self.pending -= 1;
        // A closed receiver means the caller is shutting down; nothing to tell it.
        let _ = settled.send(settlement).await;
    }

    async fn settle(
        &mut self,
        publisher: &Publisher,
        settled: &mpsc::Sender<Settlement<T>>,
        pending: Pending<T>,
        outcome: Outcome,
    ) {
        let count = pending.tokens.len() as u64;
        self.pending_bytes = self
            .pending_bytes
            .saturating_sub(pending.event.wire_bytes * pending.tokens.len());
        let dead = matches!(outcome, Outcome::DeadLettered { .. });
        if dead {
            publisher.metrics.dead_lettered.add(count);
        } else {
            publisher.metrics.delivered.add(count);
        }
        // The last (usually the only) submission takes the event's strings;
        // the others get copies.
        let Prepared { mut id, mut body, .. } = pending.event;
        let mut outcome = Some(outcome);
        let last = pending.tokens.len().saturating_sub(1);
        for (index, token) in pending.tokens.into_iter().enumerate() {
            let moved = index == last;
            let settlement = Settlement {
                token,
                id: take_or_clone(&mut id, moved),
                event_data: dead.then(|| take_or_clone(&mut body, moved)),
                outcome: take_or_clone(&mut outcome, moved).unwrap_or(Outcome::Delivered { event_id: None }),
            };
            self.send_settlement(settled, settlement).await;
        }
    }

    fn retry_later(&mut self, publisher: &Publisher, mut pending: Pending<T>) {
        pending.attempts += 1;
        let at = Instant::now() + publisher.backoff(pending.attempts);
        self.retries.push((at, pending));
    }

    /// Retries `pending`, or dead-letters it when its retries are used up.
    async fn retry_or_give_up(
        &mut self,
        publisher: &Publisher,
        settled: &mpsc::Sender<Settlement<T>>,
        pending: Pending<T>,
        code: &str,
        message: &str,
    ) {
        let attempts = pending.attempts + 1;
        if publisher.exhausted(attempts) {
            let outcome = Outcome::DeadLettered {
                code: code.to_string(),
                message: format!("{message} (gave up after {attempts} attempts)"),
            };
            self.settle(publisher, settled, pending, outcome).await;
        } else {
            self.retry_later(publisher, pending);
        }
    }

    async fn completed(
        &mut self,
        publisher: &Publisher,
        sent: Sent<T>,
        settled: &mpsc::Sender<Settlement<T>>,
    ) -> Result<(), FatalError> {
        match sent.result {
            Ok(results) => self.per_event(publisher, sent.request, results, settled).await,
            Err(failure) => self.request_failed(publisher, sent.request, failure, settled).await,
        }
    }

    async fn per_event(
        &mut self,
        publisher: &Publisher,
        request: Request<T>,
        results: Vec<EventResult>,
        settled: &mpsc::Sender<Settlement<T>>,
    ) -> Result<(), FatalError> {
        let mut results = results.into_iter();
        for pending in request {
            match results.next().unwrap_or(EventResult::Unmentioned) {
                EventResult::Stored(event_id) => {
                    self.settle(publisher, settled, pending, Outcome::Delivered { event_id })
                        .await;
                }
                EventResult::Retry { code, message } => {
                    publisher.metrics.event_retries.inc();
                    self.retry_or_give_up(publisher, settled, pending, &code, &message)
                        .await;
                }
                EventResult::RetryOnce { code, message } if pending.attempts == 0 => {
                    tracing::warn!(id = %pending.event.id, %code, %message, "the service refused an event once; sending it again");
                    publisher.metrics.event_retries.inc();
                    self.retry_later(publisher, pending);
                }
                EventResult::RetryOnce { code, message } | EventResult::DeadLetter { code, message } => {
                    tracing::warn!(id = %pending.event.id, %code, %message, "the service refused an event; dead-lettering it");
                    let outcome = Outcome::DeadLettered { code, message };
                    self.settle(publisher, settled, pending, outcome).await;
                }
                EventResult::Unmentioned => {
                    tracing::warn!(id = %pending.event.id, "the reply did not mention an event; sending it again");
                    self.retry_later(publisher, pending);
                }
                EventResult::Fatal(fatal) => return Err(fatal),
            }
        }
        Ok(())
    }

    async fn request_failed(
        &mut self,
        publisher: &Publisher,
        request: Request<T>,
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
                    tracing::warn!(operation = publisher.destination.operation(), %code, %message, events = request.len(), "a request failed; retrying");
                }
                publisher.metrics.request_retries.inc();
                for pending in request {
                    self.retry_or_give_up(publisher, settled, pending, &code, &message)
                        .await;
                }
                Ok(())
            }
            RequestFailure::OnePerRequest { code, message } if request.len() == 1 => Err(FatalError {
                operation: publisher.destination.operation().to_string(),
                code,
                message,
                advice:
                    "the service refused a request of a single event as if it repeated itself; report this as a bug"
                        .to_string(),
            }),
            RequestFailure::OnePerRequest { code, message } => {
                tracing::warn!(%code, %message, events = request.len(), "resending a request's events one per request");
                self.ready.extend(request.into_iter().map(|pending| vec![pending]));
                Ok(())
            }
        }
    }
}
