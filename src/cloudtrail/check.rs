//! The request builder's per-event schema check, in one pass over the text and
//! without building a `serde_json::Value` (which cost a fifth of the pipeline's
//! CPU at the quota: a `String` per key and string, a map per object, and the
//! free-form objects serialised again to measure them).
//!
//! [`check_event`] is the check. Its fast part only ever *vouches*: [`vouch`]
//! returns `Some` when the event certainly passes the audit crate's
//! `validate_value(…, AS_EMITTED)`, and `None` when it may not; that full check
//! then runs on a `Value`, and its verdict (code, field, message) is the one
//! reported, so refusals read exactly as before. To vouch, the text goes
//! through serde_json's own parser (the same number, string, escape and depth
//! rules as parsing a `Value`), and every occurrence of a field must be valid,
//! where a `Value` keeps only the last of duplicated keys: stricter, so nothing
//! invalid is vouched for. The free-form objects' sizes count duplicated keys
//! too, an upper bound of the `Value`'s size.

use std::borrow::Cow;
use std::fmt;
use std::io;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::audit::schema::{limits, validate_value, ValidationOptions};
use crate::audit::time::parse_event_time;
use crate::publish::Refusal;

/// Checks one `eventData` as a SmartModule emits it: its `recipientAccountId`
/// if it has one, or the dead letter the schema calls for.
pub fn check_event(event_data: &str) -> Result<Option<Cow<'_, str>>, Refusal> {
    match vouch(event_data) {
        Some(vouched) => Ok(vouched.recipient_account_id),
        None => full_check(event_data).map(|recipient| recipient.map(Cow::Owned)),
    }
}

/// The schema check on a parsed `Value` (the audit crate's), whose verdict is
/// the one reported.
fn full_check(event_data: &str) -> Result<Option<String>, Refusal> {
    let dead = |code: &str, message: String| Refusal::DeadLetter {
        code: code.to_string(),
        message,
        body: None,
    };
    let value: serde_json::Value = serde_json::from_str(event_data)
        .map_err(|e| dead("InvalidData", format!("eventData is not valid JSON: {e}")))?;
    validate_value(&value, ValidationOptions::AS_EMITTED)
        .map_err(|v| dead(v.code.as_str(), format!("{}: {}", v.field, v.message)))?;
    Ok(value
        .get("recipientAccountId")
        .and_then(|v| v.as_str())
        .map(str::to_string))
}

/// What the check learned of an event it vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vouched<'a> {
    /// The event's `recipientAccountId`, if it has one.
    pub recipient_account_id: Option<Cow<'a, str>>,
}

/// `Some` when `event_data` passes the Open Audit Events check as a
/// SmartModule emits it (`AS_EMITTED`); `None` when it may not.
pub fn vouch(event_data: &str) -> Option<Vouched<'_>> {
    serde_json::from_str::<Vouched<'_>>(event_data).ok()
}

/// Keys serde_json's `Value` parser may treat specially: with its `raw_value`
/// feature (on in this build), a map whose first key is `RAW_VALUE_TOKEN`
/// becomes the JSON its value spells. Never vouched for, wherever they are.
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// Why the check does not vouch; never shown (the full check explains).
fn unsure<E: de::Error>() -> E {
    E::custom("not vouched for")
}

/// The top-level fields the schema names, as bits of what was seen.
#[derive(Clone, Copy)]
enum Field {
    Version,
    UserIdentity,
    UserAgent,
    EventSource,
    EventName,
    EventTime,
    Uid,
    RequestParameters,
    ResponseElements,
    ErrorCode,
    ErrorMessage,
    SourceIp,
    Recipient,
    AdditionalEventData,
    Other,
}

impl Field {
    fn named(name: &str) -> Option<Self> {
        Some(match name {
            "version" => Self::Version,
            "userIdentity" => Self::UserIdentity,
            "userAgent" => Self::UserAgent,
            "eventSource" => Self::EventSource,
            "eventName" => Self::EventName,
            "eventTime" => Self::EventTime,
            "UID" => Self::Uid,
            "requestParameters" => Self::RequestParameters,
            "responseElements" => Self::ResponseElements,
            "errorCode" => Self::ErrorCode,
            "errorMessage" => Self::ErrorMessage,
            "sourceIPAddress" => Self::SourceIp,
            "recipientAccountId" => Self::Recipient,
            "additionalEventData" => Self::AdditionalEventData,
            RAW_VALUE_TOKEN | NUMBER_TOKEN => return None,
            _ => Self::Other,
        })
    }

    fn bit(self) -> u16 {
        1 << self as u16
    }
}

/// Fields an emitted event must have.
const REQUIRED: [Field; 6] = [
    Field::Version,
    Field::UserIdentity,
    Field::EventSource,
    Field::EventName,
    Field::EventTime,
    Field::Uid,
];

impl<'de> de::Deserialize<'de> for Vouched<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(EventVisitor)
    }
}

struct EventVisitor;

impl<'de> Visitor<'de> for EventVisitor {
    type Value = Vouched<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an Open Audit Event")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = 0u16;
        let mut recipient = None;
        while let Some(field) = map.next_key_seed(FieldSeed)? {
            seen |= field.bit();
            match field {
                Field::Version => map.next_value_seed(Text::within(limits::VERSION))?,
                Field::UserIdentity => map.next_value_seed(UserIdentity)?,
                Field::UserAgent => map.next_value_seed(Text::within(limits::USER_AGENT))?,
                Field::EventSource => map.next_value_seed(Text::within(limits::EVENT_SOURCE))?,
                Field::EventName => map.next_value_seed(Text::within(limits::EVENT_NAME))?,
                Field::EventTime => map.next_value_seed(Text::matching(|t| parse_event_time(t).is_some()))?,
                Field::Uid => map.next_value_seed(Text::within(limits::UID))?,
                Field::RequestParameters => map.next_value_seed(Object::within(limits::REQUEST_PARAMETERS))?,
                Field::ResponseElements => map.next_value_seed(Object::within(limits::RESPONSE_ELEMENTS))?,
                Field::ErrorCode => map.next_value_seed(Text::within(limits::ERROR_CODE))?,
                Field::ErrorMessage => map.next_value_seed(Text::within(limits::ERROR_MESSAGE))?,
                Field::SourceIp => map.next_value_seed(Text::matching(|t| t.parse::<std::net::IpAddr>().is_ok()))?,
                Field::Recipient => recipient = Some(map.next_value_seed(Recipient)?),
                Field::AdditionalEventData => map.next_value_seed(Object::within(limits::ADDITIONAL_EVENT_DATA))?,
                Field::Other => map.next_value_seed(Size).map(|_| ())?,
            }
        }
        if REQUIRED.iter().any(|f| seen & f.bit() == 0) {
            return Err(unsure());
        }
        Ok(Vouched {
            recipient_account_id: recipient,
        })
    }
}

struct FieldSeed;

impl<'de> DeserializeSeed<'de> for FieldSeed {
    type Value = Field;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Field, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for FieldSeed {
    type Value = Field;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Field, E> {
        Field::named(name).ok_or_else(unsure)
    }
}

/// A string, checked as it passes (so every occurrence of a duplicated key is).
struct Text {
    max_chars: usize,
    valid: fn(&str) -> bool,
}

impl Text {
    fn within(max_chars: usize) -> Self {
        Self {
            max_chars,
            valid: |_| true,
        }
    }

    fn matching(valid: fn(&str) -> bool) -> Self {
        Self {
            max_chars: usize::MAX,
            valid,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Text {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Text {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<(), E> {
        // Characters never outnumber bytes: count them only when it matters.
        let short = text.len() <= self.max_chars || text.chars().count() <= self.max_chars;
        if short && (self.valid)(text) {
            Ok(())
        } else {
            Err(unsure())
        }
    }
}

/// `recipientAccountId`: a string, kept (borrowed unless it has escapes).
struct Recipient;

impl<'de> DeserializeSeed<'de> for Recipient {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Recipient {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(text))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(text.to_string()))
    }
}

/// `userIdentity`: an object with `type` and `principalId` strings within their
/// limits and, if present, a `details` object.
struct UserIdentity;

impl<'de> DeserializeSeed<'de> for UserIdentity {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for UserIdentity {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a userIdentity object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (mut has_type, mut has_principal) = (false, false);
        while let Some(key) = map.next_key_seed(KeyLen)? {
            match key.name {
                KeyName::Type => {
                    has_type = true;
                    map.next_value_seed(Text::within(limits::USER_IDENTITY_TYPE))?;
                }
                KeyName::PrincipalId => {
                    has_principal = true;
                    map.next_value_seed(Text::within(limits::PRINCIPAL_ID))?;
                }
                KeyName::Details => {
                    map.next_value_seed(Object::within(usize::MAX))?;
                }
                KeyName::Other => {
                    map.next_value_seed(Size)?;
                }
            }
        }
        if has_type && has_principal {
            Ok(())
        } else {
            Err(unsure())
        }
    }
}

/// A JSON object whose compact text (as serde_json prints the `Value` it
/// parses, duplicated keys counted) is at most `max_bytes`.
struct Object {
    max_bytes: usize,
}

impl Object {
    fn within(max_bytes: usize) -> Self {
        Self { max_bytes }
    }
}

impl<'de> DeserializeSeed<'de> for Object {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Object {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        if Size.visit_map(map)? <= self.max_bytes {
            Ok(())
        } else {
            Err(unsure())
        }
    }
}

/// Any JSON value, parsed as a `Value` would be; its compact length.
struct Size;

impl<'de> DeserializeSeed<'de> for Size {
    type Value = usize;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<usize, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Size {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<usize, E> {
        Ok(if value { 4 } else { 5 })
    }

    fn visit_unit<E: de::Error>(self) -> Result<usize, E> {
        Ok(4)
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<usize, E> {
        Ok(printed_len(&value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<usize, E> {
        Ok(printed_len(&value))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<usize, E> {
        // A `Value` turns a non-finite number into null, also 4 bytes.
        Ok(printed_len(&value))
    }

    fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<usize, E> {
        Ok(borrowed_len(text))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<usize, E> {
        Ok(printed_len(text))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let mut len: usize = 2;
        let mut first = true;
        while let Some(element) = seq.next_element_seed(Size)? {
            len = len.saturating_add(element + usize::from(!first));
            first = false;
        }
        Ok(len)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<usize, A::Error> {
        let mut len: usize = 2;
        let mut first = true;
        while let Some(key) = map.next_key_seed(KeyLen)? {
            let value = map.next_value_seed(Size)?;
            len = len
                .saturating_add(key.len + 1 + usize::from(!first))
                .saturating_add(value);
            first = false;
        }
        Ok(len)
    }
}

/// The keys `userIdentity` names.
#[derive(Clone, Copy)]
enum KeyName {
    Type,
    PrincipalId,
    Details,
    Other,
}

/// An object key: which one, and its printed length (quotes included).
struct Key {
    name: KeyName,
    len: usize,
}

struct KeyLen;

impl<'de> DeserializeSeed<'de> for KeyLen {
    type Value = Key;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Key, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyLen {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Key, E> {
        key(text, borrowed_len(text))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Key, E> {
        key(text, printed_len(text))
    }
}

fn key<E: de::Error>(text: &str, len: usize) -> Result<Key, E> {
    let name = match text {
        "type" => KeyName::Type,
        "principalId" => KeyName::PrincipalId,
        "details" => KeyName::Details,
        RAW_VALUE_TOKEN | NUMBER_TOKEN => return Err(unsure()),
        _ => KeyName::Other,
    };
    Ok(Key { name, len })
}

/// Printed length of a string the parser borrowed from the text: it had no
/// escapes, and the parser refuses raw control characters, so it prints as it
/// was written.
fn borrowed_len(text: &str) -> usize {
    text.len() + 2
}

/// Bytes serde_json prints for `value`, counted without a buffer.
fn printed_len<T: serde::Serialize + ?Sized>(value: &T) -> usize {
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, value) {
        Ok(()) => count.0,
        Err(_) => usize::MAX / 2,
    }
}

struct Count(usize);

impl io::Write for Count {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! Differential tests: on every input, [`check_event`] gives the verdict of
    //! the `Value`-based check alone, and the fast pass vouches for every valid
    //! event the mapping emits.

    use super::*;
    use crate::audit::{map_record, MappingParams, Outcome, Profile, RecordContext};
    use falcon_lake_emulators::falcon::{Generator, Mix};
    use proptest::prelude::*;
    use serde_json::{json, Value};

    /// Asserts both checks agree on `text`; true when the fast pass vouched.
    fn same_verdict(text: &str) -> bool {
        let reference = full_check(text);
        let checked = check_event(text).map(|r| r.map(Cow::into_owned));
        let shown: String = text.chars().take(300).collect();
        assert_eq!(checked, reference, "verdicts differ on {shown}");
        let vouched = vouch(text);
        if vouched.is_some() {
            assert!(reference.is_ok(), "vouched for an invalid event: {shown}");
        }
        vouched.is_some()
    }

    /// Valid events as the mapping emits them from the emulator's Falcon events,
    /// both profiles, every event type.
    fn mapped_events(count: u64) -> Vec<String> {
        let mut params = vec![MappingParams::for_profile(Profile::Fig)];
        for profile in [Profile::Default, Profile::Fig] {
            params.push(MappingParams {
                event_types: None,
                include_services: Vec::new(),
                exclude_services: Vec::new(),
                ..MappingParams::for_profile(profile)
            });
        }
        let generator = Generator::new(7, "0123456789abcdef0123456789abcdef", Mix::Realistic);
        let mut events = Vec::new();
        for seq in 0..count {
            let line = generator.event(seq, seq).line;
            for params in &params {
                let ctx = RecordContext {
                    key: None,
                    timestamp_ms: 1_700_000_000_000,
                };
                if let Outcome::Emit(audit) = map_record(params, &ctx, line.as_bytes()) {
                    events.push(audit.event_data);
                }
            }
        }
        events
    }

    fn base() -> Value {
        let text = mapped_events(1).pop().expect("an emitted event");
        serde_json::from_str(&text).expect("json")
    }

    #[test]
    fn vouches_for_every_mapped_event() {
        let events = mapped_events(400);
        assert!(events.len() > 400, "{} events", events.len());
        for text in &events {
            assert!(same_verdict(text), "not vouched for: {text}");
            let pretty = serde_json::to_string_pretty(&serde_json::from_str::<Value>(text).expect("json"));
            assert!(same_verdict(&pretty.expect("pretty")));
        }
    }

    /// Replacements of one field's value, each next to the limits that apply.
    fn replacements(limit: usize) -> Vec<Value> {
        let mut values = vec![
            Value::Null,
            json!(true),
            json!(0),
            json!(-1),
            json!(1.5),
            json!([]),
            json!(["x"]),
            json!({}),
            json!({"a": 1}),
            json!(""),
            json!("x"),
            json!("2023-11-14T22:13:20Z"),
            json!("192.0.2.1"),
            json!("111122223333"),
        ];
        if limit < 10_000 {
            for n in [limit - 1, limit, limit + 1] {
                values.push(json!("v".repeat(n)));
                values.push(json!("é".repeat(n)));
                values.push(json!("\n".repeat(n)));
            }
            // More bytes than the limit, fewer characters.
            values.push(json!("é".repeat(limit / 2 + 1)));
        }
        values
    }

    /// A JSON object whose compact text is exactly `bytes` long, with its
    /// characters written in one of several spellings.
    fn object_of_size(bytes: usize, spelling: usize) -> Value {
        // `{"raw":""}` is 10 bytes; each unit below prints as `unit_len` bytes.
        let (unit, unit_len) = [("r", 1), ("\"", 2), ("\u{1}", 6), ("é", 2)][spelling];
        let fill = bytes - 10;
        let text = unit.repeat(fill / unit_len) + &"r".repeat(fill % unit_len);
        let value = json!({ "raw": text });
        assert_eq!(value.to_string().len(), bytes);
        value
    }

    #[test]
    fn each_field_mutation_gets_the_same_verdict() {
        let fields: [(&str, usize); 14] = [
            ("version", limits::VERSION),
            ("userAgent", limits::USER_AGENT),
            ("eventSource", limits::EVENT_SOURCE),
            ("eventName", limits::EVENT_NAME),
            ("eventTime", 20),
            ("UID", limits::UID),
            ("errorCode", limits::ERROR_CODE),
            ("errorMessage", limits::ERROR_MESSAGE),
            ("sourceIPAddress", 40),
            ("recipientAccountId", 12),
            ("userIdentity", 10_000),
            ("requestParameters", limits::REQUEST_PARAMETERS),
            ("responseElements", limits::RESPONSE_ELEMENTS),
            ("additionalEventData", limits::ADDITIONAL_EVENT_DATA),
        ];
        let (mut cases, mut vouched) = (0, 0);
        let mut check = |value: &Value| {
            cases += 1;
            vouched += usize::from(same_verdict(&value.to_string()));
        };
        for (field, limit) in fields {
            let mut removed = base();
            removed.as_object_mut().expect("object").remove(field);
            check(&removed);
            for replacement in replacements(limit) {
                let mut event = base();
                event[field] = replacement;
                check(&event);
            }
        }
        for (field, limit) in [
            ("type", limits::USER_IDENTITY_TYPE),
            ("principalId", limits::PRINCIPAL_ID),
            ("details", 10_000),
            ("other", 10_000),
        ] {
            let mut removed = base();
            removed["userIdentity"].as_object_mut().expect("object").remove(field);
            check(&removed);
            for replacement in replacements(limit) {
                let mut event = base();
                event["userIdentity"][field] = replacement;
                check(&event);
            }
        }
        for (field, limit) in [
            ("requestParameters", limits::REQUEST_PARAMETERS),
            ("responseElements", limits::RESPONSE_ELEMENTS),
            ("additionalEventData", limits::ADDITIONAL_EVENT_DATA),
            ("extra", limits::ADDITIONAL_EVENT_DATA),
        ] {
            for spelling in 0..4 {
                for size in [limit - 1, limit, limit + 1, limit + 6] {
                    let mut event = base();
                    event[field] = object_of_size(size, spelling);
                    check(&event);
                    // Sizes are exact: vouched for up to the limit, not past it.
                    let vouched = vouch(&event.to_string()).is_some();
                    assert_eq!(vouched, size <= limit || field == "extra", "{field} {size} {spelling}");
                }
            }
        }
        for (field, limit) in [("version", limits::VERSION), ("errorMessage", limits::ERROR_MESSAGE)] {
            for (text, vouched) in [("é".repeat(limit), true), ("é".repeat(limit + 1), false)] {
                let mut event = base();
                event[field] = json!(text);
                assert_eq!(vouch(&event.to_string()).is_some(), vouched, "{field}");
            }
        }
        for time in [
            "2023-11-14T22:13:20.123Z",
            "2023-02-29T00:00:00Z",
            "2024-02-29T00:00:00Z",
            "2023-11-14 22:13:20Z",
            "2023-11-14T22:13:20",
            "2023-11-14T24:00:00Z",
            "2023-13-01T00:00:00Z",
            "+023-11-14T22:13:20Z",
            "２023-11-14T22:13Z",
            "0000-01-01T00:00:00Z",
        ] {
            let mut event = base();
            event["eventTime"] = json!(time);
            check(&event);
        }
        for ip in [
            "",
            " 192.0.2.1",
            "999.1.1.1",
            "01.2.3.4",
            "::1",
            "2001:db8::1",
            "::ffff:1.2.3.4",
            "fe80::1%eth0",
            "1.2.3",
        ] {
            let mut event = base();
            event["sourceIPAddress"] = json!(ip);
            check(&event);
        }
        for top in [json!([]), json!("x"), json!(1), Value::Null, json!({})] {
            check(&top);
        }
        assert!(
            cases > 300 && vouched > 100 && vouched < cases,
            "{vouched} of {cases} vouched for"
        );
    }

    #[test]
    fn texts_a_value_would_read_differently_get_the_same_verdict() {
        let text = base().to_string();
        let body = text
            .strip_prefix('{')
            .expect("object")
            .strip_suffix('}')
            .expect("object");
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        let mut texts = vec![
            String::new(),
            " ".to_string(),
            "{".to_string(),
            format!("{text} "),
            format!("\n\t {text}"),
            format!("{text}x"),
            format!("{text}{text}"),
            format!("{text},"),
            // Duplicated keys: a `Value` keeps the last.
            format!("{{\"version\":1,{body}}}"),
            format!("{{{body},\"version\":1}}"),
            format!("{{\"version\":\"{}\",{body}}}", "v".repeat(300)),
            format!("{{{body},\"recipientAccountId\":\"1\",\"recipientAccountId\":\"2\"}}"),
            format!("{{{body},\"recipientAccountId\":null,\"recipientAccountId\":\"2\"}}"),
            format!("{{{body},\"recipientAccountId\":\"\\u0031\\u0032\"}}"),
            format!("{{{body},\"userIdentity\":{{\"type\":\"T\",\"principalId\":\"p\",\"type\":7}}}}"),
            format!("{{{body},\"userIdentity\":{{\"type\":7,\"principalId\":\"p\",\"type\":\"T\"}}}}"),
            format!(
                "{{{body},\"additionalEventData\":{{\"a\":\"{}\",\"a\":1}}}}",
                "x".repeat(28_000)
            ),
            format!(
                "{{{body},\"additionalEventData\":{{\"a\":1,\"a\":\"{}\"}}}}",
                "x".repeat(28_000)
            ),
            // serde_json's own tokens as keys.
            format!("{{\"$serde_json::private::RawValue\":\"{{}}\",{body}}}"),
            "{\"$serde_json::private::RawValue\":\"{}\"}".to_string(),
            format!("{{{body},\"requestParameters\":{{\"$serde_json::private::RawValue\":\"[1]\"}}}}"),
            format!("{{{body},\"extra\":{{\"$serde_json::private::Number\":\"1\"}}}}"),
            // Numbers: range and how a `Value` prints them again.
            format!("{{{body},\"extra\":1e400}}"),
            format!("{{{body},\"additionalEventData\":{{\"n\":-1e400}}}}"),
            format!(
                "{{{body},\"additionalEventData\":{{\"n\":1e-400,\"m\":-0,\"o\":1E2,\"p\":18446744073709551616}}}}"
            ),
            format!(
                "{{{body},\"additionalEventData\":{{\"n\":[{}]}}}}",
                vec!["1.0e0"; 5_000].join(",")
            ),
            format!(
                "{{{body},\"additionalEventData\":{{\"n\":[{}]}}}}",
                vec!["-9223372036854775809"; 1_200].join(",")
            ),
            // Strings: escapes, surrogates, control characters.
            format!("{{{body},\"extra\":\"\\ud800\"}}"),
            format!("{{{body},\"extra\":\"\\ud83d\\ude00\"}}"),
            format!("{{{body},\"extra\":\"\\x\"}}"),
            format!("{{{body},\"extra\":\"\u{1}\"}}"),
            format!("{{{body},\"extra\":\"\\u00e9\\/\"}}"),
            format!("{{{body},\"eventName\":\"\\u0041\"}}"),
            format!("{{{body},\"\\u0065xtra\":{{\"\\n\":\"\\t\"}}}}"),
            format!("{{{body},\"version\":\"{}\"}}", "\\u00e9".repeat(256)),
            format!("{{{body},\"version\":\"{}\"}}", "\\u00e9".repeat(257)),
            // Depth: serde_json's limit is 128 nested arrays or objects.
            format!("{{{body},\"extra\":{}}}", deep(126)),
            format!("{{{body},\"extra\":{}}}", deep(127)),
            format!("{{{body},\"extra\":{}}}", deep(200)),
            format!(
                "{{{body},\"userIdentity\":{{\"type\":\"T\",\"principalId\":\"p\",\"details\":{}}}}}",
                deep(126)
            ),
            format!(
                "{{{body},\"userIdentity\":{{\"type\":\"T\",\"principalId\":\"p\",\"details\":{{\"d\":{}}}}}}}",
                deep(126)
            ),
        ];
        // Every prefix of a valid event is invalid JSON.
        texts.extend(
            (0..text.len())
                .step_by(7)
                .filter(|&i| text.is_char_boundary(i))
                .map(|i| text[..i].to_string()),
        );
        let vouched = texts.iter().filter(|t| same_verdict(t)).count();
        assert!(vouched > 5, "{vouched} vouched for");
    }

    fn any_byte_edit() -> impl Strategy<Value = (usize, usize, String)> {
        let piece = prop_oneof![
            Just(String::new()),
            Just("\"".to_string()),
            Just("\\".to_string()),
            Just("{".to_string()),
            Just("}".to_string()),
            Just(",".to_string()),
            Just(":".to_string()),
            Just("null".to_string()),
            Just("1e999".to_string()),
            Just("\\u0000".to_string()),
            Just(",\"version\":\"2\"".to_string()),
            Just(",\"UID\":null".to_string()),
            "[ -~]{0,3}",
        ];
        (any::<usize>(), 0usize..4, piece)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3_000, ..ProptestConfig::default() })]

        /// Edits of mapped events: deletes, inserts and replacements anywhere.
        #[test]
        fn edited_events_get_the_same_verdict(seq in 0usize..60, edits in prop::collection::vec(any_byte_edit(), 1..4)) {
            static EVENTS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
            let events = EVENTS.get_or_init(|| mapped_events(20));
            let mut text = events[seq % events.len()].clone();
            for (at, remove, piece) in edits {
                let mut at = at % (text.len() + 1);
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                let mut end = (at + remove).min(text.len());
                while !text.is_char_boundary(end) {
                    end += 1;
                }
                text.replace_range(at..end, &piece);
            }
            same_verdict(&text);
        }
    }
}
