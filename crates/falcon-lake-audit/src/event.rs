//! A lenient, borrowing reader of Falcon Event Streams events.
//!
//! Real events drift: fields go missing, change between int and string, keys come
//! in any order, `metadata` may follow `event`. Every field here is read
//! leniently (wrong types read as absent) and unknown fields are skipped, so the
//! only inputs rejected are those that are not JSON objects at all.
//!
//! Two readers give the same answer: a one-pass scanner ([`scan`]), which reads
//! the fields the mappings use while it checks the rest of the text, and the
//! `serde_json` reader ([`reference`]). The scanner hands anything it is not
//! certain about (floating-point numbers in fields it reads, `\u` surrogate
//! escapes, text that is not JSON) to the reference, so its answer is the
//! reference's by construction; tests compare the two on generated and random
//! events.

use std::borrow::Cow;

mod reference;
mod scan;

pub use reference::{object_field_text, probe_offset};

/// A (key, value) text pair.
pub type Pair<'a> = (Cow<'a, str>, Cow<'a, str>);

/// The parts of a Falcon event the mappings use; strings borrow from the input.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FalconEvent<'a> {
    /// `metadata` (all fields optional).
    pub metadata: Metadata<'a>,
    /// `event` (all fields optional).
    pub event: EventBody<'a>,
}

/// `metadata` of an event.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Metadata<'a> {
    /// `customerIDString`.
    pub customer_id: Option<Cow<'a, str>>,
    /// `offset`.
    pub offset: Option<u64>,
    /// `eventType`.
    pub event_type: Option<Cow<'a, str>>,
    /// `eventCreationTime` (seconds or milliseconds).
    pub event_creation_time: Option<i64>,
    /// `version`.
    pub version: Option<Cow<'a, str>>,
}

/// `event` of an audit event (user activity, API activity, Real Time Response).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EventBody<'a> {
    /// `UserId`.
    pub user_id: Option<Cow<'a, str>>,
    /// `UserIp`.
    pub user_ip: Option<Cow<'a, str>>,
    /// `OperationName`.
    pub operation_name: Option<Cow<'a, str>>,
    /// `ServiceName`.
    pub service_name: Option<Cow<'a, str>>,
    /// `Success`.
    pub success: Option<bool>,
    /// `UTCTimestamp` (seconds or milliseconds).
    pub utc_timestamp: Option<i64>,
    /// `Message`.
    pub message: Option<Cow<'a, str>>,
    /// `AuditKeyValues` when it is an array, unparsed, exactly as received.
    pub audit_key_values: Option<&'a str>,
    /// `AuditKeyValues` as (Key, ValueString) pairs, malformed entries skipped.
    pub audit_pairs: Vec<Pair<'a>>,
    /// `Attributes` when it is an object, unparsed.
    pub attributes: Option<&'a str>,
    /// The fields of `Attributes`, each value read as text (`None` for null,
    /// arrays and objects), in order, repeats included.
    pub attribute_fields: Vec<(Cow<'a, str>, Option<Cow<'a, str>>)>,
    /// `SourceIp` (APIActivityAuditEvent).
    pub source_ip: Option<Cow<'a, str>>,
    /// `SessionId` (Real Time Response).
    pub session_id: Option<Cow<'a, str>>,
    /// `HostnameField` (Real Time Response).
    pub hostname: Option<Cow<'a, str>>,
    /// `UserName` (Real Time Response).
    pub user_name: Option<Cow<'a, str>>,
    /// `AgentIdString` (Real Time Response).
    pub agent_id: Option<Cow<'a, str>>,
    /// `StartTimestamp` (Real Time Response; seconds or milliseconds).
    pub start_timestamp: Option<i64>,
    /// `EndTimestamp` (Real Time Response; seconds or milliseconds).
    pub end_timestamp: Option<i64>,
    /// `Commands` (Real Time Response), any JSON value, unparsed.
    pub commands: Option<&'a str>,
}

impl<'a> FalconEvent<'a> {
    /// Reads an event; `None` when the text is not a JSON object.
    pub fn parse(text: &'a str) -> Option<Self> {
        match scan::parse(text) {
            Some(event) => Some(event),
            None => reference::parse(text),
        }
    }

    /// Reads an event with `serde_json` only: the reference [`FalconEvent::parse`]
    /// is tested against.
    pub fn parse_reference(text: &'a str) -> Option<Self> {
        reference::parse(text)
    }

    /// Reads an event with the one-pass scanner only; `None` when the text is
    /// not a JSON object or holds something the scanner leaves to the reference.
    pub fn parse_fast(text: &'a str) -> Option<Self> {
        scan::parse(text)
    }
}

impl EventBody<'_> {
    /// `AuditKeyValues` as (Key, ValueString) pairs, skipping malformed entries.
    pub fn audit_pairs(&self) -> &[Pair<'_>] {
        &self.audit_pairs
    }

    /// The value of the last `Attributes` field named `name` (the last one wins,
    /// as in a JSON parser), when it is text, a number or a boolean.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attribute_fields
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .and_then(|(_, value)| value.as_deref())
    }

    /// The value of `AuditKeyValues` entry `key` (the first one).
    pub fn audit_value(&self, key: &str) -> Option<&str> {
        self.audit_pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_ref())
    }
}

/// A known field of `metadata`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MetaField {
    CustomerId,
    Offset,
    EventType,
    EventCreationTime,
    Version,
}

/// A known field of `event`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyField {
    UserId,
    UserIp,
    OperationName,
    ServiceName,
    Success,
    UtcTimestamp,
    Message,
    AuditKeyValues,
    Attributes,
    SourceIp,
    SessionId,
    Hostname,
    UserName,
    AgentId,
    StartTimestamp,
    EndTimestamp,
    Commands,
}

/// The kind of value a field holds, which decides how it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Int,
    Bool,
    /// Kept unparsed (`AuditKeyValues` and `Attributes` are also read into their parts).
    Raw,
}

impl MetaField {
    fn of(key: &str) -> Option<Self> {
        Some(match key {
            "customerIDString" => Self::CustomerId,
            "offset" => Self::Offset,
            "eventType" => Self::EventType,
            "eventCreationTime" => Self::EventCreationTime,
            "version" => Self::Version,
            _ => return None,
        })
    }

    fn kind(self) -> Kind {
        match self {
            Self::Offset | Self::EventCreationTime => Kind::Int,
            _ => Kind::Text,
        }
    }
}

impl BodyField {
    fn of(key: &str) -> Option<Self> {
        Some(match key {
            "UserId" => Self::UserId,
            "UserIp" => Self::UserIp,
            "OperationName" => Self::OperationName,
            "ServiceName" => Self::ServiceName,
            "Success" => Self::Success,
            "UTCTimestamp" => Self::UtcTimestamp,
            "Message" => Self::Message,
            "AuditKeyValues" => Self::AuditKeyValues,
            "Attributes" => Self::Attributes,
            "SourceIp" => Self::SourceIp,
            "SessionId" => Self::SessionId,
            "HostnameField" => Self::Hostname,
            "UserName" => Self::UserName,
            "AgentIdString" => Self::AgentId,
            "StartTimestamp" => Self::StartTimestamp,
            "EndTimestamp" => Self::EndTimestamp,
            "Commands" => Self::Commands,
            _ => return None,
        })
    }

    fn kind(self) -> Kind {
        match self {
            Self::Success => Kind::Bool,
            Self::UtcTimestamp | Self::StartTimestamp | Self::EndTimestamp => Kind::Int,
            Self::AuditKeyValues | Self::Attributes | Self::Commands => Kind::Raw,
            _ => Kind::Text,
        }
    }
}

/// A field's value as read, before it is stored.
#[derive(Debug)]
enum Read<'a> {
    Text(Option<Cow<'a, str>>),
    Int(Option<i128>),
    Bool(Option<bool>),
    Raw(&'a str),
}

impl<'a> Metadata<'a> {
    fn set(&mut self, field: MetaField, value: Read<'a>) {
        match (field, value) {
            (MetaField::CustomerId, Read::Text(v)) => self.customer_id = v,
            (MetaField::Offset, Read::Int(v)) => self.offset = v.and_then(|v| u64::try_from(v).ok()),
            (MetaField::EventType, Read::Text(v)) => self.event_type = v,
            (MetaField::EventCreationTime, Read::Int(v)) => {
                self.event_creation_time = v.and_then(|v| i64::try_from(v).ok())
            }
            (MetaField::Version, Read::Text(v)) => self.version = v,
            _ => {}
        }
    }
}

impl<'a> EventBody<'a> {
    /// Stores a field (`AuditKeyValues` and `Attributes` have setters of their own).
    fn set(&mut self, field: BodyField, value: Read<'a>) {
        let int = |v: Option<i128>| v.and_then(|v| i64::try_from(v).ok());
        match (field, value) {
            (BodyField::UserId, Read::Text(v)) => self.user_id = v,
            (BodyField::UserIp, Read::Text(v)) => self.user_ip = v,
            (BodyField::OperationName, Read::Text(v)) => self.operation_name = v,
            (BodyField::ServiceName, Read::Text(v)) => self.service_name = v,
            (BodyField::Success, Read::Bool(v)) => self.success = v,
            (BodyField::UtcTimestamp, Read::Int(v)) => self.utc_timestamp = int(v),
            (BodyField::Message, Read::Text(v)) => self.message = v,
            (BodyField::SourceIp, Read::Text(v)) => self.source_ip = v,
            (BodyField::SessionId, Read::Text(v)) => self.session_id = v,
            (BodyField::Hostname, Read::Text(v)) => self.hostname = v,
            (BodyField::UserName, Read::Text(v)) => self.user_name = v,
            (BodyField::AgentId, Read::Text(v)) => self.agent_id = v,
            (BodyField::StartTimestamp, Read::Int(v)) => self.start_timestamp = int(v),
            (BodyField::EndTimestamp, Read::Int(v)) => self.end_timestamp = int(v),
            (BodyField::Commands, Read::Raw(raw)) => self.commands = Some(raw),
            _ => {}
        }
    }

    fn set_audit_key_values(&mut self, raw: Option<&'a str>, pairs: Vec<Pair<'a>>) {
        self.audit_key_values = raw;
        self.audit_pairs = pairs;
    }

    fn set_attributes(&mut self, raw: Option<&'a str>, fields: Vec<(Cow<'a, str>, Option<Cow<'a, str>>)>) {
        self.attributes = raw;
        self.attribute_fields = fields;
    }
}

/// Text read leniently from an integer literal, as `serde_json` would spell the number.
fn lenient_int_from_str(text: &str) -> Option<i128> {
    text.trim().parse::<i128>().ok()
}

/// A boolean read leniently from text: `true`/`false` in any case, trimmed.
fn lenient_bool_from_str(text: &str) -> Option<bool> {
    let v = text.trim();
    if v.eq_ignore_ascii_case("true") {
        Some(true)
    } else if v.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both(text: &str) -> Option<FalconEvent<'_>> {
        let fast = FalconEvent::parse_fast(text);
        let reference = FalconEvent::parse_reference(text);
        if let Some(fast) = &fast {
            assert_eq!(Some(fast), reference.as_ref(), "{text}");
        }
        reference
    }

    #[test]
    fn reads_a_real_shaped_event_in_any_key_order() {
        let text = r#"{"event":{"UserId":"alice@example.com","UserIp":"192.0.2.10",
            "OperationName":"userAuthenticate","ServiceName":"CrowdStrike Authentication",
            "Success":true,"UTCTimestamp":1700000000,"AuditKeyValues":[{"Key":"target_name","ValueString":"bob"}],
            "Attributes":{"a":"b"}},
            "metadata":{"customerIDString":"abc","offset":1001,"eventType":"AuthActivityAuditEvent",
            "eventCreationTime":1700000000000,"version":"1.0"}}"#;
        assert!(FalconEvent::parse_fast(text).is_some(), "the scanner reads it itself");
        let e = both(text).expect("parses");
        assert_eq!(e.metadata.offset, Some(1001));
        assert_eq!(e.metadata.event_type.as_deref(), Some("AuthActivityAuditEvent"));
        assert_eq!(e.event.success, Some(true));
        assert_eq!(e.event.utc_timestamp, Some(1_700_000_000));
        let pairs = e.event.audit_pairs();
        assert_eq!(pairs.len(), 1);
        assert_eq!(pairs[0].0, "target_name");
        assert_eq!(e.event.attributes, Some(r#"{"a":"b"}"#));
        assert_eq!(e.event.attribute("a"), Some("b"));
    }

    #[test]
    fn wrong_types_read_as_absent_or_converted() {
        let text = r#"{"metadata":{"offset":"42","eventType":7,"eventCreationTime":[1],"version":null},
            "event":{"UserId":{"x":1},"Success":"false","UTCTimestamp":"1700000000","AuditKeyValues":"n/a",
            "Attributes":[1,2],"UserIp":12}}"#;
        assert!(FalconEvent::parse_fast(text).is_some());
        let e = both(text).expect("parses");
        assert_eq!(e.metadata.offset, Some(42));
        assert_eq!(e.metadata.event_type.as_deref(), Some("7"));
        assert_eq!(e.metadata.event_creation_time, None);
        assert_eq!(e.metadata.version, None);
        assert_eq!(e.event.user_id, None);
        assert_eq!(e.event.success, Some(false));
        assert_eq!(e.event.utc_timestamp, Some(1_700_000_000));
        assert!(e.event.audit_key_values.is_none());
        assert!(e.event.attributes.is_none());
        assert_eq!(e.event.user_ip.as_deref(), Some("12"));
    }

    #[test]
    fn non_objects_are_not_events() {
        for text in [
            "400",
            "\"x\"",
            "[1]",
            "null",
            "{",
            "",
            "{}x",
            "{\"a\":1,}",
            "{\"a\":01}",
            "{\"a\":\"\u{1}\"}",
        ] {
            assert!(FalconEvent::parse(text).is_none(), "{text}");
            assert!(FalconEvent::parse_fast(text).is_none(), "{text}");
        }
        let e = both(r#"{"metadata":"x","event":5}"#).expect("object");
        assert!(e.metadata.event_type.is_none());
    }

    #[test]
    fn escapes_are_decoded_like_serde() {
        let text =
            r#"{"meta\u0064ata":{"eventType":"Auth\"\\\/\b\f\n\r\t\u00e9\u4e2d"},"event":{"UserId":"a\u0026b"}}"#;
        let fast = FalconEvent::parse_fast(text).expect("the scanner decodes escapes");
        assert_eq!(
            fast.metadata.event_type.as_deref(),
            Some("Auth\"\\/\u{8}\u{c}\n\r\t\u{e9}\u{4e2d}")
        );
        assert_eq!(fast.event.user_id.as_deref(), Some("a&b"));
        both(text);
    }

    #[test]
    fn the_scanner_leaves_doubtful_numbers_and_surrogates_to_the_reference() {
        for text in [
            r#"{"metadata":{"offset":1.0}}"#,
            r#"{"metadata":{"offset":-0}}"#,
            r#"{"metadata":{"offset":12345678901234567890}}"#,
            r#"{"event":{"UserId":"\ud83d\ude00"}}"#,
            r#"{"event":{"x":"\ud800"}}"#,
        ] {
            assert!(FalconEvent::parse_fast(text).is_none(), "{text}");
            assert!(FalconEvent::parse(text).is_some(), "{text}");
        }
        assert_eq!(
            FalconEvent::parse(r#"{"metadata":{"offset":7.0}}"#).and_then(|e| e.metadata.offset),
            Some(7)
        );
        assert!(
            FalconEvent::parse_fast(r#"{"event":{"x":[1.5e400,-0]}}"#).is_some(),
            "skipped numbers"
        );
    }

    #[test]
    fn repeated_keys_keep_the_last_value() {
        let text = r#"{"metadata":{"eventType":"A","eventType":null},"event":{"UserId":"u","Attributes":{"k":"1","k":"2"}},
            "event":{"UserId":"v","AuditKeyValues":[{"Key":"k","ValueString":"a","Key":"j"}]},"metadata":7}"#;
        let e = both(text).expect("parses");
        assert_eq!(e.metadata.event_type, None, "a null overwrites");
        assert_eq!(
            e.event.user_id.as_deref(),
            Some("v"),
            "a second event object replaces the first"
        );
        assert!(e.event.attributes.is_none());
        assert_eq!(e.event.audit_value("j"), Some("a"));
    }

    #[test]
    fn reads_one_field_of_an_object() {
        let text = r#"{"event":{"Attributes":{"a":[1],"user_agent":"falconpy/1.0","b":{},"n":12,"t":true}}}"#;
        let e = both(text).expect("parses");
        let attributes = e.event.attributes.expect("attributes");
        assert_eq!(
            object_field_text(attributes, "user_agent").as_deref(),
            Some("falconpy/1.0")
        );
        assert_eq!(object_field_text(attributes, "missing"), None);
        assert_eq!(e.event.attribute("user_agent"), Some("falconpy/1.0"));
        assert_eq!(e.event.attribute("a"), None);
        assert_eq!(e.event.attribute("n"), Some("12"));
        assert_eq!(e.event.attribute("t"), Some("true"));
    }

    #[test]
    fn malformed_key_values_are_skipped() {
        let text = r#"{"event":{"AuditKeyValues":[1,{"ValueString":"x"},{"Key":"k"},{"Key":"k2","ValueString":5}]}}"#;
        let e = both(text).expect("parses");
        assert_eq!(
            e.event.audit_pairs(),
            &[(Cow::from("k"), Cow::from("")), (Cow::from("k2"), Cow::from("5"))]
        );
    }

    #[test]
    fn reads_remote_response_and_api_fields() {
        let text = r#"{"metadata":{"eventType":"RemoteResponseSessionEndEvent"},"event":{"SessionId":"s-1",
            "HostnameField":"SRV-1","UserName":"a@b.c","AgentIdString":"abc","EndTimestamp":1582830734,
            "Commands":["ls","ps"],"SourceIp":"198.51.100.20"}}"#;
        let e = both(text).expect("parses");
        assert_eq!(e.event.session_id.as_deref(), Some("s-1"));
        assert_eq!(e.event.hostname.as_deref(), Some("SRV-1"));
        assert_eq!(e.event.user_name.as_deref(), Some("a@b.c"));
        assert_eq!(e.event.agent_id.as_deref(), Some("abc"));
        assert_eq!(e.event.end_timestamp, Some(1_582_830_734));
        assert_eq!(e.event.commands, Some(r#"["ls","ps"]"#));
        assert_eq!(e.event.source_ip.as_deref(), Some("198.51.100.20"));
    }

    #[test]
    fn probes_only_the_offset() {
        assert_eq!(
            probe_offset(br#"{"event":{"x":[1,2]},"metadata":{"offset":9}}"#),
            Ok(Some(9))
        );
        assert_eq!(probe_offset(br#"{"metadata":{"offset":"10"}}"#), Ok(Some(10)));
        assert_eq!(probe_offset(br#"{"metadata":{"offset":-1}}"#), Ok(None));
        assert_eq!(probe_offset(br#"{"metadata":5}"#), Ok(None));
        assert_eq!(probe_offset(br#"{}"#), Ok(None));
        for bad in [&b"400"[..], b"[]", b"{", b"{\"a\":1} {}", b"\"x\""] {
            assert!(probe_offset(bad).is_err(), "{bad:?}");
        }
    }
}
