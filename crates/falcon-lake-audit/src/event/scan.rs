//! A one-pass reader of Falcon events, for the mapping's hot path.
//!
//! It checks the whole text as strictly as `serde_json` does (the raw event is
//! spliced verbatim into the output, so it must be valid JSON) and reads the
//! fields the mappings use on the way. Where `serde_json`'s answer would depend
//! on more than the grammar, the scanner gives up (`None`) and the caller asks
//! the reference reader: a number with a fraction or an exponent, `-0`, or an
//! integer of 19 digits or more in a field it reads (`serde_json` turns those
//! into floats, which may fail to read), any `\u` escape of a surrogate (which
//! `serde_json` rejects in some positions and accepts in others), nesting
//! deeper than 64 levels, and any text that is not valid JSON.
//!
//! Strings are scanned eight bytes at a time for the only bytes that end a
//! plain run (`"`, `\`, control characters), without SIMD, so the same code is
//! fast in wasm.

use std::borrow::Cow;

use super::{BodyField, EventBody, FalconEvent, Kind, MetaField, Metadata, Pair, Read};
use crate::json::next_escape;

/// Reads an event, or `None` when the reference reader must decide.
pub(super) fn parse(text: &str) -> Option<FalconEvent<'_>> {
    let mut s = Scanner { text, pos: 0 };
    let mut out = FalconEvent::default();
    s.object(|s, key| {
        match key.as_ref() {
            "metadata" => {
                if let Some(metadata) = s.lenient(Scanner::metadata)? {
                    out.metadata = metadata;
                }
            }
            "event" => {
                if let Some(event) = s.lenient(Scanner::event_body)? {
                    out.event = event;
                }
            }
            _ => s.skip_value()?,
        }
        Some(())
    })?;
    s.at_end().then_some(out)
}

/// A value read where `serde_json` would read it (not merely skip it).
enum Value<'a> {
    Text(Cow<'a, str>),
    /// An integer literal of at most 18 digits, and its value.
    Int(&'a str, i128),
    Bool(bool),
    Null,
    /// An array or an object (skipped).
    Container,
}

impl<'a> Value<'a> {
    /// As `Text`: strings, numbers and booleans as text.
    fn text(self) -> Option<Cow<'a, str>> {
        match self {
            Value::Text(text) => Some(text),
            Value::Int(literal, _) => Some(Cow::Borrowed(literal)),
            Value::Bool(b) => Some(Cow::Borrowed(if b { "true" } else { "false" })),
            Value::Null | Value::Container => None,
        }
    }

    fn int(self) -> Option<i128> {
        match self {
            Value::Int(_, value) => Some(value),
            Value::Text(text) => super::lenient_int_from_str(&text),
            _ => None,
        }
    }

    fn bool(self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(b),
            Value::Text(text) => super::lenient_bool_from_str(&text),
            _ => None,
        }
    }
}

/// Deepest nesting the scanner follows; deeper text goes to the reference.
const MAX_DEPTH: u32 = 64;

struct Scanner<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    /// Skips whitespace; the next byte, `None` at the end.
    fn peek(&mut self) -> Option<u8> {
        let bytes = self.bytes();
        while let Some(&b) = bytes.get(self.pos) {
            if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                return Some(b);
            }
            self.pos += 1;
        }
        None
    }

    fn eat(&mut self, expected: u8) -> Option<()> {
        (self.peek()? == expected).then(|| self.pos += 1)
    }

    fn at_end(&mut self) -> bool {
        self.peek().is_none()
    }

    /// Reads an object, calling `field` with each key, the scanner placed at its
    /// value (which `field` must consume).
    fn object(&mut self, mut field: impl FnMut(&mut Self, Cow<'a, str>) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        if self.peek()? == b'}' {
            self.pos += 1;
            return Some(());
        }
        loop {
            if self.peek()? != b'"' {
                return None;
            }
            let key = self.string()?;
            self.eat(b':')?;
            field(self, key)?;
            match self.peek()? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// An object read by `read`, or any other value skipped (`Some(None)`).
    fn lenient<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.peek()? == b'{' {
            return read(self).map(Some);
        }
        self.value()?;
        Some(None)
    }

    fn metadata(&mut self) -> Option<Metadata<'a>> {
        let mut out = Metadata::default();
        self.object(|s, key| {
            match MetaField::of(&key) {
                Some(field) => {
                    let value = s.read(field.kind())?;
                    out.set(field, value);
                }
                None => s.skip_value()?,
            }
            Some(())
        })?;
        Some(out)
    }

    fn event_body(&mut self) -> Option<EventBody<'a>> {
        let mut out = EventBody::default();
        self.object(|s, key| {
            let Some(field) = BodyField::of(&key) else {
                return s.skip_value();
            };
            match field {
                BodyField::AuditKeyValues => {
                    let (raw, pairs) = s.key_values()?;
                    out.set_audit_key_values(raw, pairs);
                }
                BodyField::Attributes => {
                    let (raw, fields) = s.attribute_fields()?;
                    out.set_attributes(raw, fields);
                }
                _ => {
                    let value = s.read(field.kind())?;
                    out.set(field, value);
                }
            }
            Some(())
        })?;
        Some(out)
    }

    fn read(&mut self, kind: Kind) -> Option<Read<'a>> {
        Some(match kind {
            Kind::Text => Read::Text(self.value()?.text()),
            Kind::Int => Read::Int(self.value()?.int()),
            Kind::Bool => Read::Bool(self.value()?.bool()),
            Kind::Raw => Read::Raw(self.raw_value()?),
        })
    }

    /// The text of the next value, which is checked and skipped.
    fn raw_value(&mut self) -> Option<&'a str> {
        self.peek()?;
        let start = self.pos;
        self.skip_value()?;
        self.text.get(start..self.pos)
    }

    /// `AuditKeyValues`: the raw array and its pairs, or nothing for another value.
    fn key_values(&mut self) -> Option<(Option<&'a str>, Vec<Pair<'a>>)> {
        if self.peek()? != b'[' {
            self.skip_value()?;
            return Some((None, Vec::new()));
        }
        let start = self.pos;
        let mut pairs = Vec::new();
        self.pos += 1;
        if self.peek()? == b']' {
            self.pos += 1;
        } else {
            loop {
                if let Some((Some(key), value)) = self.lenient(Scanner::key_value)? {
                    pairs.push((key, value.unwrap_or(Cow::Borrowed(""))));
                }
                match self.peek()? {
                    b',' => self.pos += 1,
                    b']' => {
                        self.pos += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        Some((self.text.get(start..self.pos), pairs))
    }

    /// One `{"Key": …, "ValueString": …}` entry.
    #[allow(clippy::type_complexity)]
    fn key_value(&mut self) -> Option<(Option<Cow<'a, str>>, Option<Cow<'a, str>>)> {
        let (mut key, mut value) = (None, None);
        self.object(|s, name| {
            match name.as_ref() {
                "Key" => key = s.value()?.text(),
                "ValueString" => value = s.value()?.text(),
                _ => s.skip_value()?,
            }
            Some(())
        })?;
        Some((key, value))
    }

    /// `Attributes`: the raw object and its fields as text, or nothing for another value.
    #[allow(clippy::type_complexity)]
    fn attribute_fields(&mut self) -> Option<(Option<&'a str>, Vec<(Cow<'a, str>, Option<Cow<'a, str>>)>)> {
        if self.peek()? != b'{' {
            self.skip_value()?;
            return Some((None, Vec::new()));
        }
        let start = self.pos;
        let mut fields = Vec::new();
        self.object(|s, key| {
            let value = s.value()?.text();
            fields.push((key, value));
            Some(())
        })?;
        Some((self.text.get(start..self.pos), fields))
    }

    /// Reads a value as `serde_json` would for a visitor (containers are only skipped).
    fn value(&mut self) -> Option<Value<'a>> {
        Some(match self.peek()? {
            b'"' => Value::Text(self.string()?),
            b'{' | b'[' => {
                self.skip_value()?;
                Value::Container
            }
            b't' => {
                self.literal("true")?;
                Value::Bool(true)
            }
            b'f' => {
                self.literal("false")?;
                Value::Bool(false)
            }
            b'n' => {
                self.literal("null")?;
                Value::Null
            }
            _ => {
                let start = self.pos;
                if !self.number()? {
                    return None;
                }
                let literal = self.text.get(start..self.pos)?;
                let digits = literal.strip_prefix('-').unwrap_or(literal);
                if digits.len() > 18 || literal == "-0" {
                    return None;
                }
                Value::Int(literal, literal.parse().ok()?)
            }
        })
    }

    fn literal(&mut self, word: &str) -> Option<()> {
        let rest = self.bytes().get(self.pos..)?;
        rest.starts_with(word.as_bytes()).then(|| self.pos += word.len())
    }

    /// Skips a number, checking its grammar; true when it is a plain integer.
    fn number(&mut self) -> Option<bool> {
        let bytes = self.bytes();
        let digit = |at: usize| bytes.get(at).is_some_and(u8::is_ascii_digit);
        if bytes.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        match bytes.get(self.pos)? {
            b'0' => {
                self.pos += 1;
                if digit(self.pos) {
                    return None;
                }
            }
            b'1'..=b'9' => {
                while digit(self.pos) {
                    self.pos += 1;
                }
            }
            _ => return None,
        }
        let mut integer = true;
        if bytes.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            integer = false;
            if !digit(self.pos) {
                return None;
            }
            while digit(self.pos) {
                self.pos += 1;
            }
        }
        if matches!(bytes.get(self.pos), Some(b'e' | b'E')) {
            self.pos += 1;
            integer = false;
            if matches!(bytes.get(self.pos), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if !digit(self.pos) {
                return None;
            }
            while digit(self.pos) {
                self.pos += 1;
            }
        }
        Some(integer)
    }

    /// Skips any value, checking it, without recursion.
    fn skip_value(&mut self) -> Option<()> {
        // Bit `d` of `objects` is set when the container at depth `d` is an object.
        let mut objects: u64 = 0;
        let mut depth: u32 = 0;
        loop {
            match self.peek()? {
                b'"' => self.skip_string()?,
                open @ (b'{' | b'[') => {
                    self.pos += 1;
                    if depth == MAX_DEPTH {
                        return None;
                    }
                    let close = if open == b'{' { b'}' } else { b']' };
                    if self.peek()? == close {
                        self.pos += 1;
                    } else {
                        objects = (objects << 1) | u64::from(open == b'{');
                        depth += 1;
                        if open == b'{' {
                            self.skip_key()?;
                        }
                        continue;
                    }
                }
                b't' => self.literal("true")?,
                b'f' => self.literal("false")?,
                b'n' => self.literal("null")?,
                _ => {
                    self.number()?;
                }
            }
            // A value is complete: close what it completes, or go on to the next one.
            loop {
                if depth == 0 {
                    return Some(());
                }
                let in_object = objects & 1 == 1;
                match self.peek()? {
                    b',' => {
                        self.pos += 1;
                        if in_object {
                            self.skip_key()?;
                        }
                        break;
                    }
                    b'}' if in_object => {}
                    b']' if !in_object => {}
                    _ => return None,
                }
                self.pos += 1;
                objects >>= 1;
                depth -= 1;
            }
        }
    }

    /// Skips an object key and its colon.
    fn skip_key(&mut self) -> Option<()> {
        if self.peek()? != b'"' {
            return None;
        }
        self.skip_string()?;
        self.eat(b':')
    }

    /// Skips a string (the scanner at its opening quote), checking its escapes.
    fn skip_string(&mut self) -> Option<()> {
        let bytes = self.bytes();
        let mut at = self.pos + 1;
        loop {
            at = next_escape(bytes, at)?;
            match bytes[at] {
                b'"' => {
                    self.pos = at + 1;
                    return Some(());
                }
                b'\\' => at = skip_escape(bytes, at)?,
                _ => return None,
            }
        }
    }

    /// Reads a string (the scanner at its opening quote), borrowed when it has no escape.
    fn string(&mut self) -> Option<Cow<'a, str>> {
        let bytes = self.bytes();
        let start = self.pos + 1;
        let mut at = next_escape(bytes, start)?;
        if bytes[at] == b'"' {
            self.pos = at + 1;
            return self.text.get(start..at).map(Cow::Borrowed);
        }
        let mut decoded = String::with_capacity(at - start + 16);
        let mut run = start;
        loop {
            decoded.push_str(self.text.get(run..at)?);
            match bytes[at] {
                b'"' => {
                    self.pos = at + 1;
                    return Some(Cow::Owned(decoded));
                }
                b'\\' => {
                    let (ch, next) = decode_escape(bytes, at)?;
                    decoded.push(ch);
                    run = next;
                    at = next_escape(bytes, next)?;
                }
                _ => return None,
            }
        }
    }
}

/// The position after the escape that starts at `at` (a backslash), checked.
fn skip_escape(bytes: &[u8], at: usize) -> Option<usize> {
    decode_escape(bytes, at).map(|(_, next)| next)
}

/// The character an escape stands for and the position after it. Surrogate
/// escapes are left to the reference reader.
fn decode_escape(bytes: &[u8], at: usize) -> Option<(char, usize)> {
    let ch = match *bytes.get(at + 1)? {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'n' => '\n',
        b'r' => '\r',
        b't' => '\t',
        b'u' => {
            let hex = bytes.get(at + 2..at + 6)?;
            let mut code = 0u32;
            for &h in hex {
                code = code * 16 + char::from(h).to_digit(16)?;
            }
            // `char::from_u32` refuses exactly the surrogates.
            return char::from_u32(code).map(|c| (c, at + 6));
        }
        _ => return None,
    };
    Some((ch, at + 2))
}
