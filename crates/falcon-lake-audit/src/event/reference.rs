//! The `serde_json` reader of Falcon events: the reference the scanner is
//! checked against, and the reader of whatever the scanner leaves to it.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{BodyField, EventBody, FalconEvent, Kind, MetaField, Metadata, Pair, Read};

/// Reads an event; `None` when the text is not a JSON object.
pub(super) fn parse(text: &str) -> Option<FalconEvent<'_>> {
    serde_json::from_str::<Envelope<'_>>(text).ok().map(|e| e.0)
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

/// The text of field `name` of an object given as raw JSON text (read
/// leniently), or `None` when the object lacks it. Reads only what it needs.
pub fn object_field_text<'a>(object: &'a str, name: &str) -> Option<Cow<'a, str>> {
    let mut de = serde_json::Deserializer::from_str(object);
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

/// Reads the value of a field of kind `kind`.
fn read_kind<'de, M: MapAccess<'de>>(kind: Kind, map: &mut M) -> Result<Read<'de>, M::Error> {
    Ok(match kind {
        Kind::Text => Read::Text(map.next_value::<Text<'de>>()?.0),
        Kind::Int => Read::Int(map.next_value::<Int>()?.0),
        Kind::Bool => Read::Bool(map.next_value::<Bool>()?.0),
        Kind::Raw => Read::Raw(map.next_value::<&'de RawValue>()?.get()),
    })
}

impl<'de: 'a, 'a> ObjectFields<'de> for Metadata<'a> {
    fn read_field<M: MapAccess<'de>>(&mut self, key: &str, map: &mut M) -> Result<(), M::Error> {
        match MetaField::of(key) {
            Some(field) => self.set(field, read_kind(field.kind(), map)?),
            None => {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

impl<'de: 'a, 'a> ObjectFields<'de> for EventBody<'a> {
    fn read_field<M: MapAccess<'de>>(&mut self, key: &str, map: &mut M) -> Result<(), M::Error> {
        let Some(field) = BodyField::of(key) else {
            map.next_value::<IgnoredAny>()?;
            return Ok(());
        };
        let value = read_kind(field.kind(), map)?;
        match (field, value) {
            (BodyField::AuditKeyValues, Read::Raw(raw)) => {
                let raw = raw.starts_with('[').then_some(raw);
                self.set_audit_key_values(raw, raw.map(key_values).unwrap_or_default());
            }
            (BodyField::Attributes, Read::Raw(raw)) => {
                let raw = raw.starts_with('{').then_some(raw);
                self.set_attributes(raw, raw.map(object_fields).unwrap_or_default());
            }
            (field, value) => self.set(field, value),
        }
        Ok(())
    }
}

/// `AuditKeyValues` as pairs; an array that does not read gives none.
fn key_values(raw: &str) -> Vec<Pair<'_>> {
    serde_json::from_str::<KeyValues<'_>>(raw)
        .map(|kv| kv.0)
        .unwrap_or_default()
}

/// Every field of an object, each value read as [`Text`]; a value that does not
/// read as text is absent, and an object that does not read gives no fields.
fn object_fields(raw: &str) -> Vec<(Cow<'_, str>, Option<Cow<'_, str>>)> {
    serde_json::from_str::<Fields<'_>>(raw).map(|f| f.0).unwrap_or_default()
}

struct Fields<'a>(Vec<(Cow<'a, str>, Option<Cow<'a, str>>)>);

impl<'de: 'a, 'a> Deserialize<'de> for Fields<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Fields<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut out = Vec::new();
                while let Some(key) = map.next_key::<Text<'de>>()? {
                    // Each value on its own: one that does not read is absent,
                    // the others still count.
                    let raw = map.next_value::<&'de RawValue>()?;
                    let value = serde_json::from_str::<Text<'de>>(raw.get()).ok().and_then(|t| t.0);
                    if let Some(key) = key.0 {
                        out.push((key, value));
                    }
                }
                Ok(Fields(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
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
                Ok(Int(super::lenient_int_from_str(v)))
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
                Ok(Bool(super::lenient_bool_from_str(v)))
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
