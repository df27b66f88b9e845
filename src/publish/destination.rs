//! What a destination provides to the publisher core: how one event is checked
//! and sized, how a batch becomes requests, the service call, and what each
//! reply or error means. Everything else (batching, rate, retries, settlement,
//! dead letters) is the core's and is written once.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

/// One event, checked and completed by its destination, as the core batches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// The event's key (CloudTrail's `AuditEvent.id`).
    pub id: String,
    /// What is sent for it (`eventData`, or the log message).
    pub body: String,
    /// Event time, epoch ms (CloudWatch orders and splits requests by it).
    pub timestamp_ms: i64,
    /// Bytes it adds to a request, as the destination counts them.
    pub wire_bytes: usize,
}

/// One event as the sink submitted it, for [`Destination::prepare`].
#[derive(Debug, Clone, Copy)]
pub struct Submitted<'a> {
    /// The event's key.
    pub id: &'a str,
    /// The SmartModule's output.
    pub event_data: &'a str,
    /// Time of the raw record it came from, epoch ms.
    pub record_time_ms: Option<i64>,
}

/// Why an event is not sent at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Dead-letter it with this code and reason.
    DeadLetter {
        /// Our code (e.g. `EventTooLarge`) or the service's (e.g. `FieldNotFound`).
        code: String,
        /// What is wrong.
        message: String,
        /// The event as the destination would have sent it, when it differs from
        /// the submitted text.
        body: Option<String>,
    },
    /// Stop: every event would fail the same way.
    Fatal(FatalError),
}

/// How much one request may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Events per request.
    pub max_events: usize,
    /// Request bytes, counted as the destination counts them.
    pub max_bytes: usize,
    /// Bytes a request has before its first event.
    pub overhead_bytes: usize,
}

impl BatchLimits {
    /// True when an event of `wire_bytes` could never fit a request on its own.
    pub fn too_large(&self, wire_bytes: usize) -> bool {
        self.overhead_bytes + wire_bytes > self.max_bytes
    }
}

/// What the service said about one event of a request that went through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventResult {
    /// Stored (with the service's id for it, if any).
    Stored(Option<String>),
    /// Transient for this event: send it again later.
    Retry {
        /// The service's code.
        code: String,
        /// Its message.
        message: String,
    },
    /// Send it once more; dead-letter it if that fails too (CloudTrail's
    /// `InvalidChecksum`: a corrupted transfer, or a service-side fault).
    RetryOnce {
        /// The service's code.
        code: String,
        /// Its message.
        message: String,
    },
    /// Refused for good: dead-letter it with this code and message.
    DeadLetter {
        /// The service's code.
        code: String,
        /// Its message.
        message: String,
    },
    /// The reply did not mention it: not known to be stored, so send it again.
    Unmentioned,
    /// Stop: every event would fail the same way.
    Fatal(FatalError),
}

/// How a whole request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestFailure {
    /// Retry the same events after a back-off (`throttled`: slow down too).
    Transient {
        /// Error code or kind.
        code: String,
        /// Details.
        message: String,
        /// The service throttled the request.
        throttled: bool,
    },
    /// Send each event of the request in a request of its own (CloudTrail's
    /// `DuplicatedAuditEventId`, which requests built with unique ids should
    /// never get: the service may compare ids differently than we do).
    OnePerRequest {
        /// The service's code.
        code: String,
        /// Its message.
        message: String,
    },
    /// Stop delivery.
    Fatal(FatalError),
}

/// A failure that stops delivery: nothing in flight is acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FatalError {
    /// Who said it, e.g. `CloudTrail PutAuditEvents`.
    pub operation: String,
    /// The error code the service returned (or ours).
    pub code: String,
    /// The service's message.
    pub message: String,
    /// What the user should do.
    pub advice: String,
}

impl fmt::Display for FatalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} refused with {}: {}. To fix: {}",
            self.operation, self.code, self.message, self.advice
        )
    }
}

impl std::error::Error for FatalError {}

/// What the service call returns: one result per event sent, in order.
pub type SendResult = Result<Vec<EventResult>, RequestFailure>;

/// The future of one service call.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = SendResult> + Send + 'a>>;

/// A destination: request building and the service call (the shape of Vector's
/// `src/sinks/aws_*`: config, request builder, service, retry rules).
pub trait Destination: Send + Sync + std::fmt::Debug + 'static {
    /// The operation, for logs and errors (`CloudTrail PutAuditEvents`).
    fn operation(&self) -> &'static str;

    /// Metric name part of the operation (`put_audit_events`).
    fn metric_name(&self) -> &'static str;

    /// How much one request may carry.
    fn limits(&self) -> BatchLimits;

    /// Checks and completes one event before it is batched.
    fn prepare(&self, event: Submitted<'_>) -> Result<Prepared, Refusal>;

    /// Turns a batch (within [`Self::limits`]) into requests, in sending order:
    /// each request lists indices into `events`, every index exactly once.
    fn plan(&self, events: &[&Prepared]) -> Vec<Vec<usize>>;

    /// Sends one request; on success, one result per event, in the given order.
    fn send<'a>(&'a self, events: &'a [&'a Prepared]) -> SendFuture<'a>;
}
