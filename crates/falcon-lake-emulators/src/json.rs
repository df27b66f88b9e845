//! A small JSON object writer for the generated events: fields are appended
//! in order, so the emulators can reproduce the key order and the quirks of
//! real events, which a map would reorder.

use std::fmt::Write as _;

/// One JSON object under construction.
#[derive(Debug, Clone, Default)]
pub struct ObjectWriter {
    text: String,
}

impl ObjectWriter {
    /// An empty object.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes of the object as finished now (braces included).
    pub fn len(&self) -> usize {
        self.text.len() + 2
    }

    /// True when no field was written.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    fn key(&mut self, key: &str) {
        if !self.text.is_empty() {
            self.text.push(',');
        }
        quote(&mut self.text, key);
        self.text.push(':');
    }

    /// `"key":"value"`.
    pub fn string(&mut self, key: &str, value: &str) -> &mut Self {
        self.key(key);
        quote(&mut self.text, value);
        self
    }

    /// `"key":true|false`.
    pub fn bool(&mut self, key: &str, value: bool) -> &mut Self {
        self.key(key);
        self.text.push_str(if value { "true" } else { "false" });
        self
    }

    /// `"key":123`.
    pub fn int(&mut self, key: &str, value: i128) -> &mut Self {
        self.key(key);
        let _ = write!(self.text, "{value}");
        self
    }

    /// `"key":<json>`, with `json` already valid JSON.
    pub fn raw(&mut self, key: &str, json: &str) -> &mut Self {
        self.key(key);
        self.text.push_str(json);
        self
    }

    /// `"key":{…}`.
    pub fn object(&mut self, key: &str, value: ObjectWriter) -> &mut Self {
        let finished = value.finish();
        self.raw(key, &finished)
    }

    /// The object's text.
    pub fn finish(self) -> String {
        let mut out = String::with_capacity(self.text.len() + 2);
        out.push('{');
        out.push_str(&self.text);
        out.push('}');
        out
    }
}

/// Appends `value` as a JSON string.
fn quote(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_valid_json_in_order() {
        let mut inner = ObjectWriter::new();
        inner.int("n", -5).bool("b", true);
        let mut w = ObjectWriter::new();
        w.string("s", "a\"b\\c\n\u{1}é").object("o", inner).raw("r", "[1,2]");
        let text = w.finish();
        assert_eq!(
            text,
            "{\"s\":\"a\\\"b\\\\c\\n\\u0001é\",\"o\":{\"n\":-5,\"b\":true},\"r\":[1,2]}"
        );
        let value: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(value["s"], "a\"b\\c\n\u{1}é");
        assert_eq!(ObjectWriter::new().finish(), "{}");
        let mut w = ObjectWriter::new();
        w.string("k", "v");
        assert_eq!(w.len(), w.clone().finish().len());
    }
}
