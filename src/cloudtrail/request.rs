//! Request building for `PutAuditEvents`: each event checked against the Open
//! Audit Events schema and completed with `recipientAccountId`, sized as it
//! will be serialised, and batches split so that no request repeats an id.
//! The check is [`super::check`]'s single pass; the `Value`-based check of the
//! audit crate gives the verdict on what that pass does not vouch for.

use std::collections::HashSet;

use super::check::check_event;
use super::checksum::push_event_data_checksum;
use crate::audit::id::is_valid_id;
use crate::audit::json::{escaped_len, write_string};
use crate::publish::{BatchLimits, FatalError, Prepared, Refusal, Submitted};

/// Most events per request (a CloudTrail quota).
pub const MAX_EVENTS: usize = 100;
/// Largest request body CloudTrail accepts ("up to 1 MB").
pub const MAX_REQUEST_BYTES: usize = 1_000_000;
/// `{"auditEvents":[` and `]}`.
const BODY_OVERHEAD: usize = 18;
/// Length of a base64 SHA-256 checksum.
const CHECKSUM_LEN: usize = 44;

/// The service's limits as the publisher counts them: request body bytes.
pub const LIMITS: BatchLimits = BatchLimits {
    max_events: MAX_EVENTS,
    max_bytes: MAX_REQUEST_BYTES,
    overhead_bytes: BODY_OVERHEAD,
};

/// Request bytes of one entry: `{"id":…,"eventData":…,"eventDataChecksum":…},`.
pub fn entry_size(id: &str, event_data: &str) -> usize {
    let keys = r#"{"id":,"eventData":,"eventDataChecksum":},"#.len();
    keys + escaped_len(id) + escaped_len(event_data) + CHECKSUM_LEN + 2
}

/// The request body of one `PutAuditEvents` call,
/// `{"auditEvents":[{"id":…,"eventData":…,"eventDataChecksum":…},…]}` (the
/// channel and external id travel in the query string), written in one pass
/// at the size [`entry_size`] gave the publisher. The SDK's serialiser
/// escapes each `eventData` byte by byte into a fresh string: 13 % of the
/// pipeline's CPU at the quota.
pub fn body(events: &[&Prepared]) -> String {
    let entries: usize = events.iter().map(|e| e.wire_bytes).sum();
    // Each entry's size counts a trailing comma; the last one has none.
    let mut out = String::with_capacity(BODY_OVERHEAD + entries);
    out.push_str("{\"auditEvents\":[");
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"id\":");
        write_string(&mut out, &event.id);
        out.push_str(",\"eventData\":");
        write_string(&mut out, &event.body);
        out.push_str(",\"eventDataChecksum\":\"");
        push_event_data_checksum(&mut out, &event.body);
        out.push_str("\"}");
    }
    out.push_str("]}");
    out
}

/// Checks one event and completes it; `owner` is the channel's account.
pub fn prepare(event: Submitted<'_>, owner: &str) -> Result<Prepared, Refusal> {
    let dead = |code: &str, message: String| Refusal::DeadLetter {
        code: code.to_string(),
        message,
        body: None,
    };
    if !is_valid_id(event.id) {
        let message = format!("id {:?} does not match ^[-_A-Za-z0-9]{{1,128}}$", event.id);
        return Err(dead("InvalidId", message));
    }
    let recipient = check_event(event.event_data)?;
    let body = match recipient.as_deref() {
        None => with_recipient(event.event_data, owner),
        Some(account) if account == owner => event.event_data.to_string(),
        Some(account) => {
            return Err(Refusal::Fatal(FatalError {
                operation: super::OPERATION.to_string(),
                code: "InvalidRecipient".to_string(),
                message: format!("events carry recipientAccountId {account}, the channel belongs to {owner}"),
                advice: "remove the SmartModule's recipient_account_id parameter (the sink fills in the channel owner) or set it to the channel's account".to_string(),
            }));
        }
    };
    Ok(Prepared {
        id: event.id.to_string(),
        wire_bytes: entry_size(event.id, &body),
        body,
        timestamp_ms: 0,
    })
}

/// `eventData` with `"recipientAccountId"` added as the first field, keeping the
/// rest of the module's output byte for byte.
fn with_recipient(event_data: &str, account: &str) -> String {
    let trimmed = event_data.trim_start();
    let rest = trimmed.strip_prefix('{').unwrap_or(trimmed);
    let separator = if rest.trim_start().starts_with('}') { "" } else { "," };
    // Sized up front: built with `format!`, the body grew (and was copied)
    // several times per event.
    let head = "{\"recipientAccountId\":\"";
    let mut body = String::with_capacity(head.len() + account.len() + 1 + separator.len() + rest.len());
    body.push_str(head);
    body.push_str(account);
    body.push('"');
    body.push_str(separator);
    body.push_str(rest);
    body
}

/// Splits a batch into requests in which every id appears once (CloudTrail
/// refuses a request that repeats one): the n-th event with an id goes to the
/// n-th request.
pub fn plan(events: &[&Prepared]) -> Vec<Vec<usize>> {
    let mut requests: Vec<(HashSet<&str>, Vec<usize>)> = Vec::new();
    for (index, event) in events.iter().enumerate() {
        let slot = requests.iter().position(|(ids, _)| !ids.contains(event.id.as_str()));
        let slot = slot.unwrap_or_else(|| {
            requests.push((HashSet::new(), Vec::new()));
            requests.len() - 1
        });
        let (ids, members) = &mut requests[slot];
        ids.insert(event.id.as_str());
        members.push(index);
    }
    requests.into_iter().map(|(_, members)| members).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloudtrail::checksum::event_data_checksum;

    fn submitted<'a>(id: &'a str, data: &'a str) -> Submitted<'a> {
        Submitted {
            id,
            event_data: data,
            record_time_ms: None,
        }
    }

    #[test]
    fn sizes_match_the_serialised_body() {
        let (id, data) = ("id_1", "{\"quote\":\"\\\"\",\"nl\":\"\\n\"}");
        let body = serde_json::json!({"auditEvents": [{"id": id, "eventData": data, "eventDataChecksum": event_data_checksum(data)}]});
        assert_eq!(BODY_OVERHEAD + entry_size(id, data) - 1, body.to_string().len());
    }

    #[test]
    fn the_body_is_the_sized_request() {
        let owner = "111122223333";
        let data = [
            "{\"version\":\"1.0\",\"userIdentity\":{\"type\":\"u\",\"principalId\":\"a\\\"b\"},\"eventSource\":\"s\",\"eventName\":\"n\",\"eventTime\":\"2024-01-01T00:00:00Z\",\"UID\":\"x\",\"additionalEventData\":{\"t\":\"tab\\there \\u0001 é\"}}",
            "{\"version\":\"1.0\",\"userIdentity\":{\"type\":\"u\",\"principalId\":\"p\"},\"eventSource\":\"s\",\"eventName\":\"n\",\"eventTime\":\"2024-01-01T00:00:00Z\",\"UID\":\"y\"}",
        ];
        let prepared: Vec<Prepared> = data
            .iter()
            .enumerate()
            .map(|(i, d)| prepare(submitted(&format!("id-{i}"), d), owner).expect("valid event"))
            .collect();
        let refs: Vec<&Prepared> = prepared.iter().collect();
        let built = body(&refs);
        let sized: usize = BODY_OVERHEAD + refs.iter().map(|e| e.wire_bytes).sum::<usize>() - 1;
        assert_eq!(built.len(), sized, "the body must be exactly what the publisher sized");
        let entries: Vec<serde_json::Value> = prepared
            .iter()
            .map(|e| serde_json::json!({"id": e.id, "eventData": e.body, "eventDataChecksum": event_data_checksum(&e.body)}))
            .collect();
        let parsed: serde_json::Value = serde_json::from_str(&built).expect("the body is JSON");
        assert_eq!(parsed, serde_json::json!({ "auditEvents": entries }));
        assert_eq!(body(&[]), "{\"auditEvents\":[]}");
    }

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

    #[test]
    fn refuses_bad_ids_and_schema_violations_before_sending() {
        let code = |r: Result<Prepared, Refusal>| match r {
            Err(Refusal::DeadLetter { code, .. }) => code,
            other => format!("{other:?}"),
        };
        assert_eq!(code(prepare(submitted("has space", "{}"), "1")), "InvalidId");
        assert_eq!(code(prepare(submitted("a", "nope"), "1")), "InvalidData");
        assert_eq!(
            code(prepare(submitted("a", "{\"version\":\"1.0\"}"), "1")),
            "FieldNotFound"
        );
    }

    #[test]
    fn no_request_repeats_an_id() {
        let event = |id: &str| Prepared {
            id: id.to_string(),
            body: "{}".to_string(),
            timestamp_ms: 0,
            wire_bytes: 10,
        };
        let events = [event("a"), event("b"), event("a"), event("c"), event("a")];
        let refs: Vec<&Prepared> = events.iter().collect();
        assert_eq!(plan(&refs), vec![vec![0, 1, 3], vec![2], vec![4]]);
    }
}
