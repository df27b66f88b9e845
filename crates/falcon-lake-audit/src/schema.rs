//! Validator of CloudTrail's Open Audit Events schema (`eventData`) and its limits.
//!
//! One implementation serves three callers: the SmartModule's tests (everything
//! it emits must pass), the sink (nothing invalid is sent; it is dead-lettered
//! with the reason instead) and the CloudTrail emulator (which answers with the
//! per-event error code CloudTrail would).

use std::fmt;

use serde_json::{Map, Value};

/// Limits of the schema, as documented by AWS ("kB" read as 1,000 bytes, the
/// stricter reading).
pub mod limits {
    /// `version`, characters.
    pub const VERSION: usize = 256;
    /// `userIdentity.type`, characters.
    pub const USER_IDENTITY_TYPE: usize = 128;
    /// `userIdentity.principalId`, characters.
    pub const PRINCIPAL_ID: usize = 1024;
    /// `userAgent`, characters.
    pub const USER_AGENT: usize = 1024;
    /// `eventSource`, characters.
    pub const EVENT_SOURCE: usize = 1024;
    /// `eventName`, characters.
    pub const EVENT_NAME: usize = 1024;
    /// `UID`, characters.
    pub const UID: usize = 1024;
    /// `errorCode`, characters.
    pub const ERROR_CODE: usize = 256;
    /// `errorMessage`, characters.
    pub const ERROR_MESSAGE: usize = 256;
    /// `requestParameters`, bytes of compact JSON.
    pub const REQUEST_PARAMETERS: usize = 100_000;
    /// `responseElements`, bytes of compact JSON.
    pub const RESPONSE_ELEMENTS: usize = 100_000;
    /// `additionalEventData`, bytes of compact JSON.
    pub const ADDITIONAL_EVENT_DATA: usize = 28_000;
}

/// The per-event error codes a schema violation maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaErrorCode {
    /// A required field is missing.
    FieldNotFound,
    /// A string or object exceeds its limit.
    FieldTooLong,
    /// Not JSON, not an object, a wrong type, a bad `eventTime` or IP address.
    InvalidData,
}

impl SchemaErrorCode {
    /// The code as CloudTrail spells it in `failed[].errorCode`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FieldNotFound => "FieldNotFound",
            Self::FieldTooLong => "FieldTooLong",
            Self::InvalidData => "InvalidData",
        }
    }
}

/// One way an `eventData` breaks the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The error code CloudTrail would return.
    pub code: SchemaErrorCode,
    /// The offending field, as a dotted path.
    pub field: String,
    /// What is wrong, for people.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.code.as_str(), self.field, self.message)
    }
}

impl std::error::Error for Violation {}

/// What to check besides the documented schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidationOptions {
    /// Require `recipientAccountId` (false for SmartModule output, which the sink
    /// completes from the channel ARN).
    pub require_recipient: bool,
    /// Reject fields the schema does not document.
    pub reject_unknown_fields: bool,
}

impl ValidationOptions {
    /// What CloudTrail checks on a sent event.
    pub const AS_SENT: Self = Self {
        require_recipient: true,
        reject_unknown_fields: false,
    };
    /// What a SmartModule must emit (the sink adds `recipientAccountId`).
    pub const AS_EMITTED: Self = Self {
        require_recipient: false,
        reject_unknown_fields: false,
    };
}

const TOP_LEVEL_FIELDS: [&str; 14] = [
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

/// Checks one `eventData` string; returns the first violation in schema order.
pub fn validate_event_data(event_data: &str, options: ValidationOptions) -> Result<(), Violation> {
    let value: Value = serde_json::from_str(event_data).map_err(|e| {
        violation(
            SchemaErrorCode::InvalidData,
            "eventData",
            format!("not valid JSON: {e}"),
        )
    })?;
    validate_value(&value, options)
}

/// Checks an already parsed `eventData` value.
pub fn validate_value(value: &Value, options: ValidationOptions) -> Result<(), Violation> {
    let object = value.as_object().ok_or_else(|| {
        violation(
            SchemaErrorCode::InvalidData,
            "eventData",
            "is not a JSON object".to_string(),
        )
    })?;
    required_string(object, "version", limits::VERSION)?;
    check_user_identity(object)?;
    optional_string(object, "userAgent", limits::USER_AGENT)?;
    required_string(object, "eventSource", limits::EVENT_SOURCE)?;
    required_string(object, "eventName", limits::EVENT_NAME)?;
    check_event_time(object)?;
    required_string(object, "UID", limits::UID)?;
    optional_object(object, "requestParameters", limits::REQUEST_PARAMETERS)?;
    optional_object(object, "responseElements", limits::RESPONSE_ELEMENTS)?;
    optional_string(object, "errorCode", limits::ERROR_CODE)?;
    optional_string(object, "errorMessage", limits::ERROR_MESSAGE)?;
    check_source_ip(object)?;
    check_recipient(object, options.require_recipient)?;
    optional_object(object, "additionalEventData", limits::ADDITIONAL_EVENT_DATA)?;
    if options.reject_unknown_fields {
        if let Some(unknown) = object.keys().find(|k| !TOP_LEVEL_FIELDS.contains(&k.as_str())) {
            return Err(violation(
                SchemaErrorCode::InvalidData,
                unknown,
                "is not a field of the Open Audit Events schema".to_string(),
            ));
        }
    }
    Ok(())
}

fn violation(code: SchemaErrorCode, field: &str, message: String) -> Violation {
    Violation {
        code,
        field: field.to_string(),
        message,
    }
}

fn required_string<'a>(object: &'a Map<String, Value>, field: &str, max: usize) -> Result<&'a str, Violation> {
    match object.get(field) {
        None | Some(Value::Null) => Err(violation(
            SchemaErrorCode::FieldNotFound,
            field,
            "is required".to_string(),
        )),
        Some(value) => string_within(value, field, max),
    }
}

fn optional_string(object: &Map<String, Value>, field: &str, max: usize) -> Result<(), Violation> {
    match object.get(field) {
        None => Ok(()),
        Some(value) => string_within(value, field, max).map(|_| ()),
    }
}

fn string_within<'a>(value: &'a Value, field: &str, max: usize) -> Result<&'a str, Violation> {
    let text = value
        .as_str()
        .ok_or_else(|| violation(SchemaErrorCode::InvalidData, field, "must be a string".to_string()))?;
    let chars = text.chars().count();
    if chars > max {
        return Err(violation(
            SchemaErrorCode::FieldTooLong,
            field,
            format!("has {chars} characters; the limit is {max}"),
        ));
    }
    Ok(text)
}

fn optional_object(object: &Map<String, Value>, field: &str, max: usize) -> Result<(), Violation> {
    let Some(value) = object.get(field) else {
        return Ok(());
    };
    if !value.is_object() {
        return Err(violation(
            SchemaErrorCode::InvalidData,
            field,
            "must be a JSON object".to_string(),
        ));
    }
    let size = serde_json::to_string(value).map(|s| s.len()).unwrap_or(usize::MAX);
    if size > max {
        return Err(violation(
            SchemaErrorCode::FieldTooLong,
            field,
            format!("is {size} bytes; the limit is {max}"),
        ));
    }
    Ok(())
}

fn check_user_identity(object: &Map<String, Value>) -> Result<(), Violation> {
    let identity = match object.get("userIdentity") {
        None | Some(Value::Null) => {
            return Err(violation(
                SchemaErrorCode::FieldNotFound,
                "userIdentity",
                "is required".to_string(),
            ))
        }
        Some(Value::Object(identity)) => identity,
        Some(_) => {
            return Err(violation(
                SchemaErrorCode::InvalidData,
                "userIdentity",
                "must be a JSON object".to_string(),
            ))
        }
    };
    let prefixed = |e: Violation| Violation {
        field: format!("userIdentity.{}", e.field),
        ..e
    };
    required_string(identity, "type", limits::USER_IDENTITY_TYPE).map_err(prefixed)?;
    required_string(identity, "principalId", limits::PRINCIPAL_ID).map_err(prefixed)?;
    match identity.get("details") {
        None | Some(Value::Object(_)) => Ok(()),
        Some(_) => Err(violation(
            SchemaErrorCode::InvalidData,
            "userIdentity.details",
            "must be a JSON object".to_string(),
        )),
    }
}

fn check_event_time(object: &Map<String, Value>) -> Result<(), Violation> {
    let text = required_string(object, "eventTime", usize::MAX)?;
    match crate::time::parse_event_time(text) {
        Some(_) => Ok(()),
        None => Err(violation(
            SchemaErrorCode::InvalidData,
            "eventTime",
            format!("{text:?} is not a UTC time of the form YYYY-MM-DDTHH:MM:SSZ"),
        )),
    }
}

fn check_source_ip(object: &Map<String, Value>) -> Result<(), Violation> {
    let Some(value) = object.get("sourceIPAddress") else {
        return Ok(());
    };
    let text = string_within(value, "sourceIPAddress", usize::MAX)?;
    match text.parse::<std::net::IpAddr>() {
        Ok(_) => Ok(()),
        Err(_) => Err(violation(
            SchemaErrorCode::InvalidData,
            "sourceIPAddress",
            format!("{text:?} is not an IPv4 or IPv6 address"),
        )),
    }
}

fn check_recipient(object: &Map<String, Value>, required: bool) -> Result<(), Violation> {
    match object.get("recipientAccountId") {
        None if !required => Ok(()),
        None | Some(Value::Null) => Err(violation(
            SchemaErrorCode::FieldNotFound,
            "recipientAccountId",
            "is required".to_string(),
        )),
        Some(value) => string_within(value, "recipientAccountId", usize::MAX).map(|_| ()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn valid() -> Value {
        json!({
            "version": "1.0",
            "userIdentity": {"type": "User", "principalId": "alice", "details": {"a": "b"}},
            "eventSource": "crowdstrike",
            "eventName": "userAuthenticate",
            "eventTime": "2023-11-14T22:13:20Z",
            "UID": "x_0_1",
            "sourceIPAddress": "192.0.2.10",
            "recipientAccountId": "111122223333",
            "additionalEventData": {"raw": {}}
        })
    }

    fn code_of(value: &Value) -> Option<(SchemaErrorCode, String)> {
        validate_value(value, ValidationOptions::AS_SENT)
            .err()
            .map(|v| (v.code, v.field))
    }

    #[test]
    fn accepts_a_complete_event() {
        assert_eq!(code_of(&valid()), None);
        let text = valid().to_string();
        assert!(validate_event_data(&text, ValidationOptions::AS_SENT).is_ok());
    }

    #[test]
    fn reports_each_kind_of_violation() {
        use SchemaErrorCode::*;
        let cases: Vec<(&str, Value, SchemaErrorCode, &str)> = vec![
            ("version", Value::Null, FieldNotFound, "version"),
            ("version", json!(1), InvalidData, "version"),
            ("version", json!("v".repeat(257)), FieldTooLong, "version"),
            (
                "userIdentity",
                json!({"type": "User"}),
                FieldNotFound,
                "userIdentity.principalId",
            ),
            (
                "userIdentity",
                json!({"type": "t".repeat(129), "principalId": "p"}),
                FieldTooLong,
                "userIdentity.type",
            ),
            (
                "userIdentity",
                json!({"type": "User", "principalId": "p", "details": "x"}),
                InvalidData,
                "userIdentity.details",
            ),
            ("eventTime", json!("2023-11-14T22:13:20.123Z"), InvalidData, "eventTime"),
            ("sourceIPAddress", json!(""), InvalidData, "sourceIPAddress"),
            ("sourceIPAddress", json!("999.1.1.1"), InvalidData, "sourceIPAddress"),
            ("errorCode", json!("e".repeat(257)), FieldTooLong, "errorCode"),
            ("requestParameters", json!([1]), InvalidData, "requestParameters"),
            (
                "additionalEventData",
                json!({"raw": "r".repeat(28_000)}),
                FieldTooLong,
                "additionalEventData",
            ),
            ("recipientAccountId", Value::Null, FieldNotFound, "recipientAccountId"),
        ];
        for (field, replacement, code, reported) in cases {
            let mut event = valid();
            event[field] = replacement;
            assert_eq!(code_of(&event), Some((code, reported.to_string())), "{field}");
        }
    }

    #[test]
    fn counts_characters_not_bytes() {
        let mut event = valid();
        event["version"] = json!("é".repeat(256));
        assert_eq!(code_of(&event), None);
    }

    #[test]
    fn options_change_what_is_required() {
        let mut event = valid();
        event.as_object_mut().expect("object").remove("recipientAccountId");
        assert!(validate_value(&event, ValidationOptions::AS_EMITTED).is_ok());
        event["extra"] = json!(1);
        let strict = ValidationOptions {
            reject_unknown_fields: true,
            ..ValidationOptions::AS_EMITTED
        };
        assert_eq!(
            validate_value(&event, strict).map_err(|v| v.field),
            Err("extra".to_string())
        );
    }

    #[test]
    fn rejects_non_objects() {
        for text in ["", "[]", "\"x\"", "{"] {
            let err = validate_event_data(text, ValidationOptions::AS_SENT).expect_err(text);
            assert_eq!(err.code, SchemaErrorCode::InvalidData);
        }
    }
}
