//! Classifying CloudWatch Logs answers (the retry rules): what to retry, what
//! to create, and what must stop delivery with advice for the user.
//! `ThrottlingException` is not modeled for these operations, so the SDK
//! reports it as an unhandled error: it is matched by its code.

use crate::publish::aws::{self, auth_failure_advice};
use crate::publish::{EventResult, FatalError, RequestFailure};

/// Which resource a `ResourceNotFoundException` is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// The log group (and so the stream).
    Group,
    /// The log stream.
    Stream,
}

/// What an error answer means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Retry, or stop.
    Failure(RequestFailure),
    /// The group or stream does not exist.
    Missing(Missing),
    /// What the operation was to do holds already: the events were accepted
    /// (`DataAlreadyAcceptedException`), or the resource exists
    /// (`ResourceAlreadyExistsException`).
    AlreadyDone,
}

/// The operation and resource a fatal error is about, for its advice.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// `PutLogEvents`, `CreateLogGroup`, …
    pub operation: &'static str,
    /// The log group.
    pub group: &'a str,
    /// The log stream.
    pub stream: &'a str,
}

/// Builds the stop for `code` in `target`.
pub fn fatal(target: Target<'_>, code: &str, message: &str, advice: String) -> FatalError {
    FatalError {
        operation: format!("CloudWatch Logs {}", target.operation),
        code: code.to_string(),
        message: message.to_string(),
        advice,
    }
}

/// Classifies an error answer of `target.operation` by its code and HTTP status.
pub fn classify(target: Target<'_>, code: Option<&str>, message: &str, status: u16) -> Answer {
    let code_text = code.unwrap_or("Unknown");
    let stop = |advice: String| Answer::Failure(RequestFailure::Fatal(fatal(target, code_text, message, advice)));
    if let Some(advice) = code.and_then(auth_failure_advice) {
        return stop(advice.to_string());
    }
    if aws::throttled(code, status) {
        return Answer::Failure(RequestFailure::Transient {
            code: code_text.to_string(),
            message: message.to_string(),
            throttled: true,
        });
    }
    match code_text {
        "ResourceNotFoundException" if message.contains("log stream") => Answer::Missing(Missing::Stream),
        "ResourceNotFoundException" => Answer::Missing(Missing::Group),
        "ResourceAlreadyExistsException" => Answer::AlreadyDone,
        "DataAlreadyAcceptedException" => Answer::AlreadyDone,
        "AccessDeniedException" | "AccessDenied" => stop(format!(
            "the AWS identity in use lacks logs:{} on log group {:?} (stream {:?}): attach the IAM policy shown in the README",
            target.operation, target.group, target.stream
        )),
        "InvalidParameterException" => stop(format!(
            "CloudWatch Logs refused the request as invalid. The request builder keeps every documented limit \
             (order, 24 h span, 10,000 events, 1 MiB); if the message names the group or stream, fix \
             cloudwatch.log_group / cloudwatch.log_stream, else report this as a bug with the message ({})",
            target.operation
        )),
        _ => Answer::Failure(aws::transient(code_text, message)),
    }
}

/// The per-event results of a `PutLogEvents` that went through: events named
/// by `rejectedLogEventsInfo` are dead-lettered with the reason, the others
/// are stored. The indices are the request's: `tooOldLogEventEndIndex` and
/// `expiredLogEventEndIndex` end (exclusive) the rejected prefix,
/// `tooNewLogEventStartIndex` starts (inclusive) the rejected suffix.
pub fn per_event(
    count: usize,
    too_new_start: Option<i32>,
    too_old_end: Option<i32>,
    expired_end: Option<i32>,
) -> Vec<EventResult> {
    let index = |i: Option<i32>| i.and_then(|i| usize::try_from(i).ok());
    let (too_new_start, too_old_end, expired_end) = (index(too_new_start), index(too_old_end), index(expired_end));
    (0..count)
        .map(|i| {
            let dead = |code: &str, why: &str| EventResult::DeadLetter {
                code: code.to_string(),
                message: format!("CloudWatch Logs refused the event: {why}"),
            };
            if too_new_start.is_some_and(|start| i >= start) {
                dead("TooNewLogEvent", "more than 2 hours ahead (tooNewLogEventStartIndex)")
            } else if too_old_end.is_some_and(|end| i < end) {
                dead("TooOldLogEvent", "older than 14 days (tooOldLogEventEndIndex)")
            } else if expired_end.is_some_and(|end| i < end) {
                dead(
                    "ExpiredLogEvent",
                    "older than the log group's retention (expiredLogEventEndIndex)",
                )
            } else {
                EventResult::Stored(None)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TARGET: Target<'static> = Target {
        operation: "PutLogEvents",
        group: "g",
        stream: "s",
    };

    #[test]
    fn answers() {
        let throttled = classify(TARGET, Some("ThrottlingException"), "Rate exceeded", 400);
        assert!(matches!(
            throttled,
            Answer::Failure(RequestFailure::Transient { throttled: true, .. })
        ));
        assert!(matches!(
            classify(TARGET, Some("ServiceUnavailableException"), "m", 503),
            Answer::Failure(RequestFailure::Transient { throttled: false, .. })
        ));
        assert_eq!(
            classify(
                TARGET,
                Some("ResourceNotFoundException"),
                "The specified log stream does not exist.",
                400
            ),
            Answer::Missing(Missing::Stream)
        );
        assert_eq!(
            classify(
                TARGET,
                Some("ResourceNotFoundException"),
                "The specified log group does not exist.",
                400
            ),
            Answer::Missing(Missing::Group)
        );
        match classify(TARGET, Some("AccessDeniedException"), "User: x is not authorized", 400) {
            Answer::Failure(RequestFailure::Fatal(f)) => assert!(f.advice.contains("logs:PutLogEvents"), "{f}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify(TARGET, Some("UnrecognizedClientException"), "m", 400),
            Answer::Failure(RequestFailure::Fatal(_))
        ));
        assert!(matches!(
            classify(TARGET, Some("InvalidParameterException"), "m", 400),
            Answer::Failure(RequestFailure::Fatal(_))
        ));
    }

    #[test]
    fn rejected_indices_name_exactly_the_refused_events() {
        let codes: Vec<String> = per_event(7, Some(5), Some(1), Some(3))
            .into_iter()
            .map(|r| match r {
                EventResult::DeadLetter { code, .. } => code,
                EventResult::Stored(_) => "stored".to_string(),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            codes,
            [
                "TooOldLogEvent",
                "ExpiredLogEvent",
                "ExpiredLogEvent",
                "stored",
                "stored",
                "TooNewLogEvent",
                "TooNewLogEvent"
            ]
        );
        assert!(per_event(3, None, None, None)
            .iter()
            .all(|r| *r == EventResult::Stored(None)));
    }
}
