//! What the sink hands the publisher and what it gets back: one item per event,
//! one settlement per item.

/// One event to deliver, with the caller's token for its settlement.
#[derive(Debug, Clone)]
pub struct PublishItem<T> {
    /// The event's key as the SmartModule emitted it (CloudTrail's `AuditEvent.id`).
    pub id: String,
    /// The event as the SmartModule emitted it (`eventData`, or the log message).
    pub event_data: String,
    /// Time of the raw record it came from (epoch ms), for destinations that
    /// need an event time when the event itself carries none.
    pub record_time_ms: Option<i64>,
    /// Returned in the settlement.
    pub token: T,
}

/// How an event ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stored by the destination.
    Delivered {
        /// The destination's id for the stored event, when it returns one
        /// (CloudTrail's `eventID`; CloudWatch Logs returns none).
        event_id: Option<String>,
    },
    /// Not deliverable; goes to the dead-letter output with the reason.
    DeadLettered {
        /// The destination's error code, or ours for events refused before sending.
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
    /// The event's key.
    pub id: String,
    /// The event as sent (for dead-lettered events).
    pub event_data: Option<String>,
    /// Delivered or dead-lettered.
    pub outcome: Outcome,
}
