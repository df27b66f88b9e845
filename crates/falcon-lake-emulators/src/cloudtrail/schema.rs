//! The checks CloudTrail applies to each `eventData` (the Open Audit Events
//! schema, `cloudtrail-data.md` §8) and to the request's ids and external ID
//! (§4), written from the specification for the emulator alone: the client
//! has its own, so a misreading on one side shows up as a test failure.
//!
//! Readings where the specification leaves a choice: string limits count
//! characters; "kB" is 1,000 bytes of compact JSON; `eventTime` is
//! `YYYY-MM-DDTHH:MM:SS` with an optional `Z`; `sourceIPAddress` must be an
//! IPv4 or IPv6 address (so `""` is refused).

use std::net::IpAddr;

use serde_json::{Map, Value};

/// A per-event refusal: `failed[].errorCode` and `errorMessage`.
pub type Refusal = (&'static str, String);

/// The documented top-level fields.
const FIELDS: [&str; 14] = [
    "version",
    "userIdentity",
    "userAgent",
    "eventSource",
    "eventName",
    "eventTime",
    "UID",
    "requestParameters",
    "responseElements",
    "errorCode",
    "errorMessage",
    "sourceIPAddress",
    "recipientAccountId",
    "additionalEventData",
];

/// Required string fields and their character limits (`None`: no limit).
const REQUIRED_STRINGS: [(&str, Option<usize>); 6] = [
    ("version", Some(256)),
    ("eventSource", Some(1024)),
    ("eventName", Some(1024)),
    ("eventTime", None),
    ("UID", Some(1024)),
    ("recipientAccountId", None),
];

/// Optional string fields and their character limits.
const OPTIONAL_STRINGS: [(&str, usize); 3] = [("userAgent", 1024), ("errorCode", 256), ("errorMessage", 256)];

/// Optional object fields and their limits in bytes of compact JSON.
const OPTIONAL_OBJECTS: [(&str, usize); 3] = [
    ("requestParameters", 100_000),
    ("responseElements", 100_000),
    ("additionalEventData", 28_000),
];

fn not_found(field: &str) -> Refusal {
    ("FieldNotFound", format!("the required field {field} is missing"))
}

fn invalid(field: &str, what: &str) -> Refusal {
    ("InvalidData", format!("{field} {what}"))
}

fn too_long(field: &str, limit: usize, unit: &str) -> Refusal {
    ("FieldTooLong", format!("{field} exceeds its limit of {limit} {unit}"))
}

/// A string field; absent and `null` are the same (JSON parsers of typed
/// services read `null` as not given).
fn string_field<'a>(object: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>, Refusal> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(invalid(field, "must be a string")),
    }
}

fn check_length(field: &str, text: &str, limit: Option<usize>) -> Result<(), Refusal> {
    match limit {
        Some(limit) if text.chars().count() > limit => Err(too_long(field, limit, "characters")),
        _ => Ok(()),
    }
}

/// Checks one `eventData` text; `strict` also refuses undocumented fields.
pub fn check_event_data(event_data: &str, strict: bool) -> Result<Value, Refusal> {
    let value: Value =
        serde_json::from_str(event_data).map_err(|e| invalid("eventData", &format!("is not valid JSON ({e})")))?;
    let object = value
        .as_object()
        .ok_or_else(|| invalid("eventData", "is not a JSON object"))?;
    check_identity(object)?;
    for (field, limit) in REQUIRED_STRINGS {
        let text = string_field(object, field)?.ok_or_else(|| not_found(field))?;
        check_length(field, text, limit)?;
    }
    let time = string_field(object, "eventTime")?.unwrap_or_default();
    if crate::time::parse_utc(time).is_none() {
        return Err(invalid(
            "eventTime",
            "must be YYYY-MM-DDTHH:MM:SS UTC, e.g. 2030-01-01T00:00:00Z",
        ));
    }
    for (field, limit) in OPTIONAL_STRINGS {
        if let Some(text) = string_field(object, field)? {
            check_length(field, text, Some(limit))?;
        }
    }
    for (field, limit) in OPTIONAL_OBJECTS {
        match object.get(field) {
            None | Some(Value::Null) => {}
            Some(v @ Value::Object(_)) if v.to_string().len() > limit => return Err(too_long(field, limit, "bytes")),
            Some(Value::Object(_)) => {}
            Some(_) => return Err(invalid(field, "must be an object")),
        }
    }
    if let Some(ip) = string_field(object, "sourceIPAddress")? {
        if ip.parse::<IpAddr>().is_err() {
            return Err(invalid("sourceIPAddress", "is not an IPv4 or IPv6 address"));
        }
    }
    if strict {
        if let Some(extra) = object.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(invalid(extra, "is not a field of the schema"));
        }
    }
    Ok(value)
}

fn check_identity(object: &Map<String, Value>) -> Result<(), Refusal> {
    let identity = match object.get("userIdentity") {
        None | Some(Value::Null) => return Err(not_found("userIdentity")),
        Some(Value::Object(identity)) => identity,
        Some(_) => return Err(invalid("userIdentity", "must be an object")),
    };
    for (field, limit) in [("type", 128), ("principalId", 1024)] {
        let path = format!("userIdentity.{field}");
        let text = string_field(identity, field)
            .map_err(|_| invalid(&path, "must be a string"))?
            .ok_or_else(|| not_found(&path))?;
        check_length(&path, text, Some(limit))?;
    }
    match identity.get("details") {
        None | Some(Value::Object(_)) => Ok(()),
        Some(_) => Err(invalid("userIdentity.details", "must be an object")),
    }
}

/// The `AuditEvent.id` shape: 1–128 characters of `[-_A-Za-z0-9]`.
pub fn is_audit_event_id(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The `externalId` shape: 2–1224 characters of `[\w+=,.@:\/-]`, where `\w` is
/// ASCII (letters, digits, `_`), as in AWS's patterns.
pub fn is_external_id(id: &str) -> bool {
    (2..=1224).contains(&id.chars().count()) && id.chars().all(|c| c.is_ascii_alphanumeric() || "_+=,.@:/-".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn valid() -> Value {
        json!({
            "version": "1.0",
            "userIdentity": {"type": "User", "principalId": "alice"},
            "eventSource": "falcon",
            "eventName": "userAuthenticate",
            "eventTime": "2030-01-01T00:00:00Z",
            "UID": "u1",
            "recipientAccountId": "111122223333",
        })
    }

    fn code(value: &Value, strict: bool) -> &'static str {
        match check_event_data(&value.to_string(), strict) {
            Ok(_) => "ok",
            Err((code, _)) => code,
        }
    }

    #[test]
    fn follows_the_schema_table() {
        assert_eq!(code(&valid(), true), "ok");
        let with = |f: &dyn Fn(&mut Value)| {
            let mut v = valid();
            f(&mut v);
            v
        };
        assert_eq!(
            code(
                &with(&|v| {
                    v.as_object_mut().map(|o| o.remove("UID"));
                }),
                false
            ),
            "FieldNotFound"
        );
        assert_eq!(
            code(&with(&|v| v["userIdentity"] = json!({"type": "User"})), false),
            "FieldNotFound"
        );
        assert_eq!(
            code(&with(&|v| v["version"] = json!("v".repeat(257))), false),
            "FieldTooLong"
        );
        assert_eq!(
            code(&with(&|v| v["version"] = json!("é".repeat(256))), false),
            "ok",
            "characters, not bytes"
        );
        assert_eq!(
            code(&with(&|v| v["eventTime"] = json!("2030-01-01T00:00:00.123Z")), false),
            "InvalidData"
        );
        assert_eq!(
            code(&with(&|v| v["eventTime"] = json!("2030-01-01T00:00:00")), false),
            "ok"
        );
        assert_eq!(code(&with(&|v| v["sourceIPAddress"] = json!("")), false), "InvalidData");
        assert_eq!(
            code(&with(&|v| v["sourceIPAddress"] = json!("2001:db8::1")), false),
            "ok"
        );
        assert_eq!(
            code(
                &with(&|v| v["additionalEventData"] = json!({"x": "a".repeat(28_000)})),
                false
            ),
            "FieldTooLong"
        );
        assert_eq!(
            code(&with(&|v| v["requestParameters"] = json!([1])), false),
            "InvalidData"
        );
        assert_eq!(code(&with(&|v| v["extra"] = json!(1)), false), "ok");
        assert_eq!(code(&with(&|v| v["extra"] = json!(1)), true), "InvalidData");
        assert_eq!(code(&json!([1]), false), "InvalidData");
    }

    #[test]
    fn ids_and_external_ids_follow_the_ascii_patterns() {
        assert!(is_audit_event_id("cid_0_1001") && is_audit_event_id(&"a".repeat(128)));
        assert!(!is_audit_event_id("") && !is_audit_event_id(&"a".repeat(129)) && !is_audit_event_id("a b"));
        assert!(!is_audit_event_id("é"));
        assert!(is_external_id("arn:aws:iam::1/x+y=z,w.v@u_t-s"));
        assert!(!is_external_id("x"), "at least 2 characters");
        assert!(!is_external_id("extérieur"), "\\w is ASCII");
        assert!(!is_external_id("a b"));
    }
}
