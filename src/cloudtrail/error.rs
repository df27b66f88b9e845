//! Classifying `PutAuditEvents` outcomes: what to retry, what to dead-letter, and
//! what must stop delivery with advice for the user.

use std::fmt;

/// Whole-request failure codes that retrying cannot fix, with what to do.
const FATAL: [(&str, &str); 13] = [
    ("ChannelNotFound", "the channel in cloudtrail.channel_arn does not exist (deleted, or another account or region); check it with `aws cloudtrail get-channel --channel <arn>`"),
    ("InvalidChannelARN", "cloudtrail.channel_arn is not a valid channel ARN (arn:aws:cloudtrail:<region>:<account>:channel/<id>)"),
    ("InvalidChannelArn", "cloudtrail.channel_arn is not a valid channel ARN (arn:aws:cloudtrail:<region>:<account>:channel/<id>)"),
    ("ChannelInsufficientPermission", "the calling account is not the channel's owner and the channel's resource policy does not allow it, or the policy requires an external ID: set cloudtrail.external_id to the one in the policy"),
    ("ChannelUnsupportedSchema", "the channel's destination does not accept these events: point the channel at an event data store for ActivityAuditLog events"),
    ("UnsupportedOperationException", "CloudTrail Lake integrations are not available in this region or account: use a supported region (the channel, the event data store and the endpoint must share it)"),
    ("AccessDeniedException", "the AWS identity in use lacks cloudtrail-data:PutAuditEvents on the channel: attach the IAM policy shown in the README"),
    ("AccessDenied", "the AWS identity in use lacks cloudtrail-data:PutAuditEvents on the channel: attach the IAM policy shown in the README"),
    ("UnrecognizedClientException", "AWS does not know the access key in use: check the credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID, the instance role)"),
    ("InvalidSignatureException", "AWS rejected the request signature: check the secret access key and that the clock is correct"),
    ("SignatureDoesNotMatch", "AWS rejected the request signature: check the secret access key and that the clock is correct"),
    ("MissingAuthenticationToken", "the request was not signed: no AWS credentials were found (AWS_PROFILE, AWS_ACCESS_KEY_ID, the instance role)"),
    ("IncompleteSignature", "the request signature is incomplete: check the AWS credentials in use"),
];

/// Per-event codes that mean the configuration is wrong: every event would fail.
const FATAL_EVENT: [(&str, &str); 3] = [
    ("InvalidRecipient", "recipientAccountId must be the account that owns the channel: remove the SmartModule's recipient_account_id parameter (the sink fills in the owner) or set it to the channel's account"),
    ("InvalidEventSource", "CloudTrail does not accept this eventSource for the channel: set the SmartModule's event_source parameter to what the channel's source expects"),
    ("AccountNotSubscribed", "the AWS account is not a CloudTrail Lake customer. CloudTrail Lake closed to new customers on 2026-05-31 (existing customers are unaffected); use an account that already uses Lake"),
];

/// A failure that stops delivery: nothing in flight is acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FatalError {
    /// The error code CloudTrail returned.
    pub code: String,
    /// CloudTrail's message.
    pub message: String,
    /// What the user should do.
    pub advice: String,
}

impl fmt::Display for FatalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CloudTrail refused PutAuditEvents with {}: {}. To fix: {}",
            self.code, self.message, self.advice
        )
    }
}

impl std::error::Error for FatalError {}

/// How a whole request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestFailure {
    /// Retry the same events after a back-off (`throttled`: slow down too).
    Transient {
        /// Error code or kind.
        code: String,
        /// Details.
        message: String,
        /// CloudTrail throttled the request.
        throttled: bool,
    },
    /// `DuplicatedAuditEventId`: de-duplicate and resend.
    Duplicate,
    /// `ValidationException`: the request broke a limit; split it, and dead-letter
    /// a single event that still fails.
    Invalid {
        /// CloudTrail's message.
        message: String,
    },
    /// Stop delivery.
    Fatal(FatalError),
}

/// Classifies a whole-request failure by its code and HTTP status.
pub fn classify_request(code: Option<&str>, message: &str, status: Option<u16>) -> RequestFailure {
    let code_text = code.unwrap_or("Unknown").to_string();
    if let Some((_, advice)) = FATAL.iter().find(|(c, _)| Some(*c) == code) {
        return RequestFailure::Fatal(FatalError {
            code: code_text,
            message: message.to_string(),
            advice: advice.to_string(),
        });
    }
    match code {
        Some("DuplicatedAuditEventId") => RequestFailure::Duplicate,
        Some("ValidationException") => RequestFailure::Invalid {
            message: message.to_string(),
        },
        Some(c) if is_throttling(c) => RequestFailure::Transient {
            code: code_text,
            message: message.to_string(),
            throttled: true,
        },
        _ if status == Some(429) => RequestFailure::Transient {
            code: code_text,
            message: message.to_string(),
            throttled: true,
        },
        _ => RequestFailure::Transient {
            code: code_text,
            message: message.to_string(),
            throttled: false,
        },
    }
}

/// The throttling codes the AWS SDKs recognise.
pub fn is_throttling(code: &str) -> bool {
    matches!(
        code,
        "Throttling"
            | "ThrottlingException"
            | "ThrottledException"
            | "RequestThrottledException"
            | "TooManyRequestsException"
            | "ProvisionedThroughputExceededException"
            | "TransactionInProgressException"
            | "RequestLimitExceeded"
            | "BandwidthLimitExceeded"
            | "LimitExceededException"
            | "RequestThrottled"
            | "SlowDown"
            | "PriorRequestNotComplete"
            | "EC2ThrottledException"
    )
}

/// What to do with one event listed in `failed[]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventFailure {
    /// `Throttling` / `InternalFailure`: send this event again later.
    Retry,
    /// `InvalidChecksum`: resend once with a recomputed checksum.
    Checksum,
    /// Dead-letter the event with CloudTrail's code and message.
    DeadLetter,
    /// Stop delivery: the configuration is wrong for every event.
    Fatal(FatalError),
}

/// Classifies a per-event failure.
pub fn classify_event(code: &str, message: &str) -> EventFailure {
    if let Some((_, advice)) = FATAL_EVENT.iter().find(|(c, _)| *c == code) {
        return EventFailure::Fatal(FatalError {
            code: code.to_string(),
            message: message.to_string(),
            advice: advice.to_string(),
        });
    }
    match code {
        "Throttling" | "InternalFailure" | "ThrottlingException" | "InternalServerError" | "ServiceUnavailable" => {
            EventFailure::Retry
        }
        "InvalidChecksum" => EventFailure::Checksum,
        _ => EventFailure::DeadLetter,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_failures() {
        assert!(
            matches!(classify_request(Some("ChannelNotFound"), "m", Some(400)), RequestFailure::Fatal(f) if f.advice.contains("get-channel"))
        );
        assert!(matches!(
            classify_request(Some("ThrottlingException"), "m", Some(400)),
            RequestFailure::Transient { throttled: true, .. }
        ));
        assert!(matches!(
            classify_request(None, "m", Some(429)),
            RequestFailure::Transient { throttled: true, .. }
        ));
        assert!(matches!(
            classify_request(Some("InternalFailure"), "m", Some(500)),
            RequestFailure::Transient { throttled: false, .. }
        ));
        assert_eq!(
            classify_request(Some("DuplicatedAuditEventId"), "m", Some(400)),
            RequestFailure::Duplicate
        );
        assert!(matches!(
            classify_request(Some("ValidationException"), "m", Some(400)),
            RequestFailure::Invalid { .. }
        ));
        let fatal = classify_request(Some("AccessDeniedException"), "no", Some(403));
        assert!(fatal_text(&fatal).contains("cloudtrail-data:PutAuditEvents"));
    }

    fn fatal_text(f: &RequestFailure) -> String {
        match f {
            RequestFailure::Fatal(e) => e.to_string(),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn event_failures() {
        assert_eq!(classify_event("Throttling", "m"), EventFailure::Retry);
        assert_eq!(classify_event("InternalFailure", "m"), EventFailure::Retry);
        assert_eq!(classify_event("InvalidChecksum", "m"), EventFailure::Checksum);
        assert_eq!(classify_event("FieldTooLong", "m"), EventFailure::DeadLetter);
        assert_eq!(classify_event("SomethingNew", "m"), EventFailure::DeadLetter);
        match classify_event("AccountNotSubscribed", "m") {
            EventFailure::Fatal(f) => assert!(f.to_string().contains("closed to new customers")),
            other => panic!("{other:?}"),
        }
    }
}
