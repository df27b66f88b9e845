//! Classifying `PutAuditEvents` outcomes: what to retry, what to dead-letter, and
//! what must stop delivery with advice for the user.

use crate::publish::aws::{self, auth_failure_advice};
use crate::publish::{EventResult, FatalError, RequestFailure};

/// Whole-request failure codes that retrying cannot fix, with what to do.
const FATAL: [(&str, &str); 8] = [
    ("ChannelNotFound", "the channel in cloudtrail.channel_arn does not exist (deleted, or another account or region); check it with `aws cloudtrail get-channel --channel <arn>`"),
    ("InvalidChannelARN", "cloudtrail.channel_arn is not a valid channel ARN (arn:aws:cloudtrail:<region>:<account>:channel/<id>)"),
    ("InvalidChannelArn", "cloudtrail.channel_arn is not a valid channel ARN (arn:aws:cloudtrail:<region>:<account>:channel/<id>)"),
    ("ChannelInsufficientPermission", "the calling account is not the channel's owner and the channel's resource policy does not allow it, or the policy requires an external ID: set cloudtrail.external_id to the one in the policy"),
    ("ChannelUnsupportedSchema", "the channel's destination does not accept these events: point the channel at an event data store for ActivityAuditLog events"),
    ("UnsupportedOperationException", "CloudTrail Lake integrations are not available in this region or account: use a supported region (the channel, the event data store and the endpoint must share it)"),
    ("AccessDeniedException", "the AWS identity in use lacks cloudtrail-data:PutAuditEvents on the channel: attach the IAM policy shown in the README"),
    ("AccessDenied", "the AWS identity in use lacks cloudtrail-data:PutAuditEvents on the channel: attach the IAM policy shown in the README"),
];

/// Per-event codes that mean the configuration is wrong: every event would fail.
const FATAL_EVENT: [(&str, &str); 3] = [
    ("InvalidRecipient", "recipientAccountId must be the account that owns the channel: remove the SmartModule's recipient_account_id parameter (the sink fills in the owner) or set it to the channel's account"),
    ("InvalidEventSource", "CloudTrail does not accept this eventSource for the channel: set the SmartModule's event_source parameter to what the channel's source expects"),
    ("AccountNotSubscribed", "the AWS account is not a CloudTrail Lake customer. CloudTrail Lake closed to new customers on 2026-05-31 (existing customers are unaffected); use an account that already uses Lake"),
];

/// Builds the stop for `code`, with `advice`.
fn fatal(code: &str, message: &str, advice: &str) -> FatalError {
    FatalError {
        operation: super::OPERATION.to_string(),
        code: code.to_string(),
        message: message.to_string(),
        advice: advice.to_string(),
    }
}

/// A request that could not even be built: our bug.
pub fn internal(message: String) -> FatalError {
    fatal("InternalError", &message, "report this as a bug")
}

/// A request-level `ValidationException` means our request broke a limit the
/// request builder is meant to keep (events, bytes, id pattern): every event
/// would fail the same way, so delivery stops instead of dead-lettering them.
const VALIDATION_ADVICE: &str = "the request broke a PutAuditEvents limit that falcon-lake is meant to keep (at most 100 events, 1 MB, ids of ^[-_A-Za-z0-9]{1,128}$, a valid externalId): report this as a bug with the message; check cloudtrail.external_id";

/// Classifies a whole-request failure by its code and HTTP status.
pub fn classify_request(code: Option<&str>, message: &str, status: u16) -> RequestFailure {
    let code_text = code.unwrap_or("Unknown").to_string();
    let advice = FATAL
        .iter()
        .find(|(c, _)| Some(*c) == code)
        .map(|(_, advice)| *advice)
        .or_else(|| code.and_then(auth_failure_advice));
    if let Some(advice) = advice {
        return RequestFailure::Fatal(fatal(&code_text, message, advice));
    }
    if aws::throttled(code, status) {
        return RequestFailure::Transient {
            code: code_text,
            message: message.to_string(),
            throttled: true,
        };
    }
    match code {
        Some("DuplicatedAuditEventId") => RequestFailure::OnePerRequest {
            code: code_text,
            message: message.to_string(),
        },
        Some("ValidationException") => RequestFailure::Fatal(fatal(&code_text, message, VALIDATION_ADVICE)),
        _ => RequestFailure::Transient {
            code: code_text,
            message: message.to_string(),
            throttled: false,
        },
    }
}

/// Classifies one event listed in `failed[]`.
pub fn classify_event(code: &str, message: &str) -> EventResult {
    if let Some((_, advice)) = FATAL_EVENT.iter().find(|(c, _)| *c == code) {
        return EventResult::Fatal(fatal(code, message, advice));
    }
    let (code, message) = (code.to_string(), message.to_string());
    match code.as_str() {
        "Throttling" | "InternalFailure" | "ThrottlingException" | "InternalServerError" | "ServiceUnavailable" => {
            EventResult::Retry { code, message }
        }
        "InvalidChecksum" => EventResult::RetryOnce { code, message },
        _ => EventResult::DeadLetter { code, message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_failures() {
        assert!(
            matches!(classify_request(Some("ChannelNotFound"), "m", 400), RequestFailure::Fatal(f) if f.advice.contains("get-channel"))
        );
        assert!(matches!(
            classify_request(Some("ThrottlingException"), "m", 400),
            RequestFailure::Transient { throttled: true, .. }
        ));
        assert!(matches!(
            classify_request(None, "m", 429),
            RequestFailure::Transient { throttled: true, .. }
        ));
        assert!(matches!(
            classify_request(Some("InternalFailure"), "m", 500),
            RequestFailure::Transient { throttled: false, .. }
        ));
        assert!(matches!(
            classify_request(Some("DuplicatedAuditEventId"), "m", 400),
            RequestFailure::OnePerRequest { .. }
        ));
        assert!(
            matches!(classify_request(Some("ValidationException"), "m", 400), RequestFailure::Fatal(f) if f.advice.contains("bug")),
            "our request is wrong: stop, never dead-letter every event"
        );
        let fatal = classify_request(Some("AccessDeniedException"), "no", 403);
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
        assert!(matches!(classify_event("Throttling", "m"), EventResult::Retry { .. }));
        assert!(matches!(
            classify_event("InternalFailure", "m"),
            EventResult::Retry { .. }
        ));
        assert!(matches!(
            classify_event("InvalidChecksum", "m"),
            EventResult::RetryOnce { .. }
        ));
        assert!(matches!(
            classify_event("FieldTooLong", "m"),
            EventResult::DeadLetter { .. }
        ));
        assert!(matches!(
            classify_event("SomethingNew", "m"),
            EventResult::DeadLetter { .. }
        ));
        match classify_event("AccountNotSubscribed", "m") {
            EventResult::Fatal(f) => assert!(f.to_string().contains("closed to new customers")),
            other => panic!("{other:?}"),
        }
    }
}
