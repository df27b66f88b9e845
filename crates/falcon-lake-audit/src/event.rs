//! A lenient, borrowing reader of Falcon Event Streams events.
//!
//! Real events drift: fields go missing, change between int and string, keys come
//! in any order, `metadata` may follow `event`. Every field here is read
//! leniently (wrong types read as absent) and unknown fields are skipped, so the
//! only inputs rejected are those that are not JSON objects at all.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

/// The parts of a Falcon event the mapping uses; strings borrow from the input.
#[derive(Debug, Default)]
pub struct FalconEvent<'a> {
    /// `metadata` (all fields optional).
    pub metadata: Metadata<'a>,
    /// `event` (all fields optional).
    pub event: EventBody<'a>,
}

/// `metadata` of an event.
#[derive(Debug, Default)]
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

/// `event` of an audit event.
#[derive(Debug, Default)]
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
    /// `AuditKeyValues`, unparsed, exactly as received.
    pub audit_key_values: Option<&'a RawValue>,
    /// `Attributes` when it is an object, unparsed.
    pub attributes: Option<&'a RawValue>,
}

impl<'a> FalconEvent<'a> {
    /// Reads an event; `None` when the text is not a JSON object.
    pub fn parse(text: &'a str) -> Option<Self> {
        serde_json::from_str::<Envelope<'a>>(text).ok().map(|e| e.0)
    }
}

impl EventBody<'_> {
    /// `AuditKeyValues` as (Key, ValueString) pairs, skipping malformed entries.
    pub fn audit_pairs(&self) -> Vec<(Cow<'_, str>, Cow<'_, str>)> {
        self.audit_key_values
            .and_then(|raw| serde_json::from_str::<KeyValues<'_>>(raw.get()).ok())
            .map(|kv| kv.0)
            .unwrap_or_default()
    }
}

/// Why bytes are not a Falcon event line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotAnObject(pub String);

/// Reads only `metadata.offset` of one line, checking that the whole line is a
/// single JSON object. This is the source's per-line hot path, so the `event`
/// object is skipped without being read.
pub fn probe_offset(bytes: &[u8]) -> Result<Option<u64>, NotAnObject> {
    serde_json::from_slice::<OffsetProbe>(bytes)
        .map(|p| p.0)
        .map_err(|e| NotAnObject(e.to_string()))
}

struct OffsetProbe(Option<u64>);

impl<'de> Deserialize<'de> for OffsetProbe {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OffsetProbe;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<OffsetProbe, M::Error> {
                let mut offset = None;
                while let Some(key) = map.next_key::<Text<'de>>()? {
                    if key.0.as_deref() == Some("metadata") {
                        if let Some(meta) = map.next_value::<Lenient<OffsetOnly>>()?.0 {
                            offset = meta.0;
                        }
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(OffsetProbe(offset))
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Default)]
struct OffsetOnly(Option<u64>);

impl<'de> ObjectFields<'de> for OffsetOnly {
    fn read_field<M: MapAccess<'de>>(&mut self, key: &str, map: &mut M) -> Result<(), M::Error> {
        if key == "offset" {
            self.0 = map.next_value::<Int>()?.as_u64();
        } else {
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }
}

/// The text of field `name` of an object given as raw JSON (read leniently), or
/// `None` when the object lacks it. Reads only what it needs.
pub fn object_field_text<'a>(object: &'a RawValue, name: &str) -> Option<Cow<'a, str>> {
    let mut de = serde_json::Deserializer::from_str(object.get());
    de.deserialize_map(FieldVisitor { name }).ok().flatten()
}

struct FieldVisitor<'n> {
    name: &'n str,
}

impl<'de> Visitor<'de> for FieldVisitor<'_> {
    type Value = Option<Cow<'de, str>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<Text<'de>>()? {
            if key.0.as_deref() == Some(self.name) {
                found = map.next_value::<Text<'de>>()?.0;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

struct Envelope<'a>(FalconEvent<'a>);

impl<'de: 'a, 'a> Deserialize<'de> for Envelope<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(EnvelopeVisitor(std::marker::PhantomData))
    }
}

struct EnvelopeVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for EnvelopeVisitor<'a> {
    type Value = Envelope<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
        let mut out = FalconEvent::default();
        while let Some(key) = map.next_key::<Text<'de>>()? {
            match key.0.as_deref() {
                Some("metadata") => {
                    if let Some(m) = map.next_value::<Lenient<Metadata<'a>>>()?.0 {
                        out.metadata = m;
                    }
                }
                Some("event") => {
                    if let Some(e) = map.next_value::<Lenient<EventBody<'a>>>()?.0 {
                        out.event = e;
                    }
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Envelope(out))
    }
}

/// An object read field by field; any other JSON value reads as `None`.
struct Lenient<T>(Option<T>);

/// Field-by-field reader of one object type.
trait ObjectFields<'de>: Default + Sized {
    /// Reads the value of `key` into `self`, or skips it.
    fn read_field<M: MapAccess<'de>>(&mut self, key: &str, map: &mut M) -> Result<(), M::Error>;
}

impl<'de, T: ObjectFields<'de>> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: ObjectFields<'de>> Visitor<'de> for V<T> {
            type Value = Lenient<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut out = T::default();
                while let Some(key) = map.next_key::<Text<'de>>()? {
                    match key.0 {
                        Some(key) => out.read_field(&key, &mut map)?,
                        None => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(Lenient(Some(out)))
            }
            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Lenient(None))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Lenient(None))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Lenient(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Lenient(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Lenient(None))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Lenient(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Lenient(None))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

impl<'de: 'a, 'a> ObjectFields<'de> for Metadata<'a> {
    fn read_field<M: MapAccess<'de>>(&mut self, key: &str, map: &mut M) -> Result<(), M::Error> {
        match key {
            "customerIDString" => self.customer_id = map.next_value::<Text<'de>>()?.0,
            "offset" => self.offset = map.next_value::<Int>()?.as_u64(),
            "eventType" => self.event_type = map.next_value::<Text<'de>>()?.0,
            "eventCreationTime" => self.event_creation_time = map.next_value::<Int>()?.as_i64(),
            "version" => self.version = map.next_value::<Text<'de>>()?.0,
            _ => {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

impl<'de: 'a, 'a> ObjectFields<'de> for EventBody<'a> {
    fn read_field<M: MapAccess<'de>>(&mut self, key: &str, map: &mut M) -> Result<(), M::Error> {
        match key {
            "UserId" => self.user_id = map.next_value::<Text<'de>>()?.0,
            "UserIp" => self.user_ip = map.next_value::<Text<'de>>()?.0,
            "OperationName" => self.operation_name = map.next_value::<Text<'de>>()?.0,
            "ServiceName" => self.service_name = map.next_value::<Text<'de>>()?.0,
            "Success" => self.success = map.next_value::<Bool>()?.0,
            "UTCTimestamp" => self.utc_timestamp = map.next_value::<Int>()?.as_i64(),
            "Message" => self.message = map.next_value::<Text<'de>>()?.0,
            "AuditKeyValues" => {
                let raw = map.next_value::<&'de RawValue>()?;
                self.audit_key_values = raw.get().starts_with('[').then_some(raw);
            }
            "Attributes" => {
                let raw = map.next_value::<&'de RawValue>()?;
                self.attributes = raw.get().starts_with('{').then_some(raw);
            }
            _ => {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// Text read leniently: strings as they are, numbers and booleans spelled as
/// JSON spells them, anything else absent.
struct Text<'a>(Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Some(Cow::Owned(v))))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Text(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Text(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Text(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Text(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Text(None))
            }
            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Text(None))
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Text(None))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// An integer read leniently: JSON integers, integral floats and decimal strings.
struct Int(Option<i128>);

impl Int {
    fn as_i64(&self) -> Option<i64> {
        self.0.and_then(|v| i64::try_from(v).ok())
    }
    fn as_u64(&self) -> Option<u64> {
        self.0.and_then(|v| u64::try_from(v).ok())
    }
}

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Int;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Int, E> {
                Ok(Int(Some(i128::from(v))))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Int, E> {
                Ok(Int(Some(i128::from(v))))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Int, E> {
                let integral = v.is_finite() && v.fract() == 0.0 && v.abs() < 9.0e18;
                Ok(Int(integral.then_some(v as i128)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Int, E> {
                Ok(Int(v.trim().parse::<i128>().ok()))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Int, E> {
                Ok(Int(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Int, E> {
                Ok(Int(None))
            }
            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Int, S::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Int(None))
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Int, M::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Int(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// A boolean read leniently: JSON booleans and the strings `true`/`false`.
struct Bool(Option<bool>);

impl<'de> Deserialize<'de> for Bool {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Bool;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Bool, E> {
                Ok(Bool(Some(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Bool, E> {
                let v = v.trim();
                let parsed = if v.eq_ignore_ascii_case("true") {
                    Some(true)
                } else if v.eq_ignore_ascii_case("false") {
                    Some(false)
                } else {
                    None
                };
                Ok(Bool(parsed))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Bool, E> {
                Ok(Bool(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Bool, E> {
                Ok(Bool(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Bool, E> {
                Ok(Bool(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Bool, E> {
                Ok(Bool(None))
            }
            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Bool, S::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Bool(None))
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Bool, M::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Bool(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// `AuditKeyValues`: `[{"Key": .., "ValueString": ..}, ..]`, malformed entries skipped.
struct KeyValues<'a>(Vec<(Cow<'a, str>, Cow<'a, str>)>);

#[derive(Default)]
struct KeyValue<'a> {
    key: Option<Cow<'a, str>>,
    value: Option<Cow<'a, str>>,
}

impl<'de: 'a, 'a> ObjectFields<'de> for KeyValue<'a> {
    fn read_field<M: MapAccess<'de>>(&mut self, key: &str, map: &mut M) -> Result<(), M::Error> {
        match key {
            "Key" => self.key = map.next_value::<Text<'de>>()?.0,
            "ValueString" => self.value = map.next_value::<Text<'de>>()?.0,
            _ => {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for KeyValues<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = KeyValues<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
                let mut out = Vec::new();
                while let Some(entry) = seq.next_element::<Lenient<KeyValue<'a>>>()? {
                    if let Some(KeyValue { key: Some(k), value }) = entry.0 {
                        out.push((k, value.unwrap_or(Cow::Borrowed(""))));
                    }
                }
                Ok(KeyValues(out))
            }
        }
        d.deserialize_seq(V(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_real_shaped_event_in_any_key_order() {
        let text = r#"{"event":{"UserId":"alice@example.com","UserIp":"192.0.2.10",
            "OperationName":"userAuthenticate","ServiceName":"CrowdStrike Authentication",
            "Success":true,"UTCTimestamp":1700000000,"AuditKeyValues":[{"Key":"target_name","ValueString":"bob"}],
            "Attributes":{"a":"b"}},
            "metadata":{"customerIDString":"abc","offset":1001,"eventType":"AuthActivityAuditEvent",
            "eventCreationTime":1700000000000,"version":"1.0"}}"#;
        let e = FalconEvent::parse(text).expect("parses");
        assert_eq!(e.metadata.offset, Some(1001));
        assert_eq!(e.metadata.event_type.as_deref(), Some("AuthActivityAuditEvent"));
        assert_eq!(e.event.success, Some(true));
        assert_eq!(e.event.utc_timestamp, Some(1_700_000_000));
        let pairs = e.event.audit_pairs();
        assert_eq!(pairs.len(), 1);
        assert_eq!(pairs[0].0, "target_name");
        assert_eq!(e.event.attributes.map(|a| a.get()), Some(r#"{"a":"b"}"#));
    }

    #[test]
    fn wrong_types_read_as_absent_or_converted() {
        let text = r#"{"metadata":{"offset":"42","eventType":7,"eventCreationTime":[1],"version":null},
            "event":{"UserId":{"x":1},"Success":"false","UTCTimestamp":"1700000000","AuditKeyValues":"n/a",
            "Attributes":[1,2],"UserIp":12}}"#;
        let e = FalconEvent::parse(text).expect("parses");
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
        for text in ["400", "\"x\"", "[1]", "null", "{", "", "{}x"] {
            assert!(FalconEvent::parse(text).is_none(), "{text}");
        }
        let e = FalconEvent::parse(r#"{"metadata":"x","event":5}"#).expect("object");
        assert!(e.metadata.event_type.is_none());
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

    #[test]
    fn reads_one_field_of_an_object() {
        let text = r#"{"event":{"Attributes":{"a":[1],"user_agent":"falconpy/1.0","b":{}}}}"#;
        let e = FalconEvent::parse(text).expect("parses");
        let attributes = e.event.attributes.expect("attributes");
        assert_eq!(
            object_field_text(attributes, "user_agent").as_deref(),
            Some("falconpy/1.0")
        );
        assert_eq!(object_field_text(attributes, "missing"), None);
    }

    #[test]
    fn malformed_key_values_are_skipped() {
        let text = r#"{"event":{"AuditKeyValues":[1,{"ValueString":"x"},{"Key":"k"},{"Key":"k2","ValueString":5}]}}"#;
        let e = FalconEvent::parse(text).expect("parses");
        let pairs = e.event.audit_pairs();
        assert_eq!(
            pairs,
            vec![(Cow::from("k"), Cow::from("")), (Cow::from("k2"), Cow::from("5"))]
        );
    }
}
