//! A minimal JSON object writer: the mappings build their output directly as
//! text in one buffer, nested objects and arrays included, so that already-valid
//! JSON (the raw event, `Attributes`) is spliced in verbatim instead of being
//! parsed and re-serialised, and nothing is copied twice.

/// Deepest nesting an [`ObjectWriter`] tracks (well beyond what the mapping uses).
const MAX_DEPTH: u32 = 63;

/// Builds one JSON object (with nested objects) as text.
#[derive(Debug)]
pub struct ObjectWriter {
    buf: String,
    /// Open containers, the outermost object included.
    depth: u32,
    /// Bit `d` is set while the container at depth `d` has no member yet.
    empty: u64,
    /// Bit `d` is set when the container at depth `d` is an array.
    arrays: u64,
}

/// A position to roll an [`ObjectWriter`] back to.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    len: usize,
    depth: u32,
    empty: u64,
    arrays: u64,
}

impl Default for ObjectWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl ObjectWriter {
    /// Starts an empty object.
    pub fn new() -> Self {
        Self::with_capacity(256)
    }

    /// Starts an empty object with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        let mut buf = String::with_capacity(capacity);
        buf.push('{');
        Self {
            buf,
            depth: 1,
            empty: 1,
            arrays: 0,
        }
    }

    /// Starts an empty object in `buf`, reusing its allocation (its text is dropped).
    pub fn reusing(mut buf: String, capacity: usize) -> Self {
        buf.clear();
        buf.reserve(capacity);
        buf.push('{');
        Self {
            buf,
            depth: 1,
            empty: 1,
            arrays: 0,
        }
    }

    fn top(&self) -> u64 {
        1 << (self.depth - 1)
    }

    /// True when the innermost open object has no field yet.
    pub fn is_empty(&self) -> bool {
        self.empty & self.top() != 0
    }

    /// Bytes written so far, with one closing brace per open object.
    pub fn len(&self) -> usize {
        self.buf.len() + self.depth as usize
    }

    fn in_array(&self) -> bool {
        self.arrays & self.top() != 0
    }

    /// Starts a member of the innermost container: a separator, and the key
    /// unless the container is an array.
    fn key(&mut self, key: &str) {
        if self.is_empty() {
            self.empty &= !self.top();
        } else {
            self.buf.push(',');
        }
        if !self.in_array() {
            write_string(&mut self.buf, key);
            self.buf.push(':');
        }
    }

    /// Writes a string field made of `parts`, without joining them first.
    pub fn string_concat(&mut self, key: &str, parts: &[&str]) -> &mut Self {
        self.key(key);
        self.buf.push('"');
        for part in parts {
            write_string_content(&mut self.buf, part);
        }
        self.buf.push('"');
        self
    }

    /// Writes a string field.
    pub fn string(&mut self, key: &str, value: &str) -> &mut Self {
        self.key(key);
        write_string(&mut self.buf, value);
        self
    }

    /// Writes a boolean field.
    pub fn bool(&mut self, key: &str, value: bool) -> &mut Self {
        self.key(key);
        self.buf.push_str(if value { "true" } else { "false" });
        self
    }

    /// Writes an integer field.
    pub fn int(&mut self, key: &str, value: i128) -> &mut Self {
        use std::fmt::Write as _;
        self.key(key);
        // Every value the mappings write fits an i64, which is written without
        // the formatting machinery (a few per event, so it shows).
        match i64::try_from(value) {
            Ok(small) => push_decimal(&mut self.buf, small),
            Err(_) => {
                let _ = write!(self.buf, "{value}");
            }
        }
        self
    }

    /// Writes an integer as a string field (`"123"`).
    pub fn int_string(&mut self, key: &str, value: i64) -> &mut Self {
        self.key(key);
        self.buf.push('"');
        push_decimal(&mut self.buf, value);
        self.buf.push('"');
        self
    }

    /// Writes a field whose value is already valid JSON text.
    pub fn raw(&mut self, key: &str, json: &str) -> &mut Self {
        self.key(key);
        self.buf.push_str(json);
        self
    }

    /// Writes a nested object built separately.
    pub fn object(&mut self, key: &str, value: ObjectWriter) -> &mut Self {
        let text = value.finish();
        self.raw(key, &text)
    }

    /// Opens a nested object field (in an array, `key` is ignored); close it
    /// with [`ObjectWriter::end`]. Nesting deeper than 63 containers is written
    /// flat into the innermost one.
    pub fn begin(&mut self, key: &str) -> &mut Self {
        self.open(key, false)
    }

    /// Opens an array field; its members are written with `key` ignored (`""`
    /// reads best); close it with [`ObjectWriter::end`].
    pub fn begin_array(&mut self, key: &str) -> &mut Self {
        self.open(key, true)
    }

    fn open(&mut self, key: &str, array: bool) -> &mut Self {
        if self.depth >= MAX_DEPTH {
            return self;
        }
        self.key(key);
        self.buf.push(if array { '[' } else { '{' });
        self.depth += 1;
        self.empty |= self.top();
        if array {
            self.arrays |= self.top();
        } else {
            self.arrays &= !self.top();
        }
        self
    }

    /// Closes the innermost nested object or array.
    pub fn end(&mut self) -> &mut Self {
        if self.depth > 1 {
            let close = if self.in_array() { ']' } else { '}' };
            self.empty &= !self.top();
            self.arrays &= !self.top();
            self.depth -= 1;
            self.buf.push(close);
        }
        self
    }

    /// The current position, to return to with [`ObjectWriter::rollback`].
    pub fn mark(&self) -> Mark {
        Mark {
            len: self.buf.len(),
            depth: self.depth,
            empty: self.empty,
            arrays: self.arrays,
        }
    }

    /// Forgets everything written since `mark`.
    pub fn rollback(&mut self, mark: Mark) {
        self.buf.truncate(mark.len);
        self.depth = mark.depth;
        self.empty = mark.empty;
        self.arrays = mark.arrays;
    }

    /// Bytes written since `mark`.
    pub fn written_since(&self, mark: &Mark) -> usize {
        self.buf.len() - mark.len
    }

    /// Closes every open container and returns the text.
    pub fn finish(mut self) -> String {
        while self.depth > 1 {
            self.end();
        }
        self.buf.push('}');
        self.buf
    }
}

/// Appends `value` in decimal.
pub fn push_decimal(out: &mut String, value: i64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = value.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if value < 0 {
        out.push('-');
    }
    for &d in &digits[at..] {
        out.push(char::from(d));
    }
}

/// Bytes JSON requires to be escaped inside strings.
const fn needs_escape(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

const LOW_BITS: u64 = 0x0101_0101_0101_0101;
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// True when one of the eight bytes of `word` needs escaping: bytes below 0x20,
/// `"` or `\\` (SWAR: a zero byte in `word ^ c` marks a byte equal to `c`).
fn word_needs_escape(word: u64) -> bool {
    let has_zero = |v: u64| v.wrapping_sub(LOW_BITS) & !v & HIGH_BITS;
    let below_space = word.wrapping_sub(LOW_BITS * 0x20) & !word & HIGH_BITS;
    (below_space | has_zero(word ^ (LOW_BITS * u64::from(b'"'))) | has_zero(word ^ (LOW_BITS * u64::from(b'\\')))) != 0
}

/// Position of the first byte of `bytes[from..]` that needs escaping, eight at a time.
pub(crate) fn next_escape(bytes: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while at + 8 <= bytes.len() {
        let mut chunk = [0u8; 8];
        chunk.copy_from_slice(&bytes[at..at + 8]);
        if word_needs_escape(u64::from_le_bytes(chunk)) {
            break;
        }
        at += 8;
    }
    bytes[at..].iter().position(|b| needs_escape(*b)).map(|p| at + p)
}

/// Appends `value` as a JSON string literal.
pub fn write_string(out: &mut String, value: &str) {
    out.reserve(value.len() + 2);
    out.push('"');
    write_string_content(out, value);
    out.push('"');
}

/// Appends `value` escaped for the inside of a JSON string literal.
fn write_string_content(out: &mut String, value: &str) {
    let bytes = value.as_bytes();
    let mut start = 0;
    while let Some(at) = next_escape(bytes, start) {
        out.push_str(&value[start..at]);
        match bytes[at] {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            other => out.push_str(&format!("\\u{other:04x}")),
        }
        start = at + 1;
    }
    out.push_str(&value[start..]);
}

/// Length of `value` once written by [`write_string`].
pub fn escaped_len(value: &str) -> usize {
    // Branch-free per byte and summed in 16-bit lanes (at most 5 per byte), so
    // that it vectorises: the request builder sizes every event with it.
    let extra: usize = value
        .as_bytes()
        .chunks(8_192)
        .map(|chunk| usize::from(chunk.iter().fold(0u16, |sum, &b| sum + escape_extra(b))))
        .sum();
    2 + value.len() + extra
}

/// Bytes escaping adds to `b`: 1 for `"`, `\\`, `\n`, `\r`, `\t`; 5 for other
/// control characters (`\u00XX`).
#[inline]
fn escape_extra(b: u8) -> u16 {
    let quoted = u16::from((b == b'"') | (b == b'\\'));
    let short = u16::from((b == b'\n') | (b == b'\r') | (b == b'\t'));
    let control = u16::from(b < 0x20);
    quoted + control * 5 - short * 4
}

/// Longest prefix of `value` of at most `max` bytes that ends on a character boundary.
pub fn truncate_to(value: &str, max: usize) -> &str {
    if value.len() <= max {
        return value;
    }
    let mut end = max;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}

/// Longest prefix of `value` whose escaped form (quotes included) fits in `budget` bytes.
pub fn truncate_escaped(value: &str, budget: usize) -> &str {
    let mut used = 2;
    for (i, c) in value.char_indices() {
        let cost = match c {
            '"' | '\\' | '\n' | '\r' | '\t' => 2,
            c if (c as u32) < 0x20 => 6,
            c => c.len_utf8(),
        };
        if used + cost > budget {
            return &value[..i];
        }
        used += cost;
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_serde_json() {
        let long = format!("{}\"{}\u{1f}{}", "a".repeat(13), "b".repeat(9), "ü".repeat(11));
        for s in [
            "plain",
            "quote\" back\\ nl\n cr\r tab\t",
            "\u{1}\u{1f}",
            "ünï €",
            "",
            "\"",
            "end\\",
            "0123456789abcdef ",
            &long,
        ] {
            let mut ours = String::new();
            write_string(&mut ours, s);
            assert_eq!(ours, serde_json::to_string(s).expect("serialise"));
            assert_eq!(escaped_len(s), ours.len());
        }
    }

    #[test]
    fn sizes_every_ascii_byte_as_written() {
        // Longer than the 8 KiB lanes; \u{8} and \u{c} are written as \u00XX
        // (serde_json writes \b and \f).
        let all_ascii: String = (0u8..128).map(char::from).collect::<String>().repeat(300);
        let mut ours = String::new();
        write_string(&mut ours, &all_ascii);
        assert_eq!(escaped_len(&all_ascii), ours.len());
    }

    #[test]
    fn builds_nested_objects_in_one_buffer() {
        let mut inner = ObjectWriter::new();
        inner.int("n", -3);
        let mut w = ObjectWriter::new();
        w.string("a", "x").bool("b", false).object("c", inner).raw("d", "[1]");
        w.begin("e").string("f", "g").begin("h").end().end().int("i", 1);
        let len = w.len();
        let text = w.finish();
        assert_eq!(text.len(), len);
        let v: serde_json::Value = serde_json::from_str(&text).expect("valid json");
        assert_eq!(v["c"]["n"], -3);
        assert_eq!(v["e"]["f"], "g");
        assert_eq!(v["e"]["h"], serde_json::json!({}));
        assert_eq!(ObjectWriter::new().finish(), "{}");
    }

    #[test]
    fn writes_arrays_and_concatenations() {
        let mut w = ObjectWriter::new();
        w.begin_array("a").string("", "x").int("", 2);
        w.begin("").string("k", "v").end();
        w.begin_array("").end().end();
        w.begin_array("empty").end();
        w.string_concat("c", &["GET", " ", "/a\"b"]);
        let mark = w.mark();
        w.begin_array("rolled").string("", "y");
        w.rollback(mark);
        w.begin_array("open").string("", "z");
        let len = w.len();
        let text = w.finish();
        assert_eq!(text.len(), len);
        assert_eq!(
            text,
            r#"{"a":["x",2,{"k":"v"},[]],"empty":[],"c":"GET /a\"b","open":["z"]}"#
        );
        let v: serde_json::Value = serde_json::from_str(&text).expect("valid json");
        assert_eq!(v["c"], "GET /a\"b");
    }

    #[test]
    fn writes_integers_like_display() {
        for n in [0, 7, -7, 10, 1_700_000_000_123, i64::MAX, i64::MIN] {
            let mut out = String::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string());
        }
        let mut w = ObjectWriter::new();
        w.int("big", i128::MAX);
        assert_eq!(w.finish(), format!("{{\"big\":{}}}", i128::MAX));
    }

    #[test]
    fn rolls_back_to_a_mark() {
        let mut w = ObjectWriter::new();
        w.string("a", "1");
        let mark = w.mark();
        w.begin("big").string("x", "yyyy");
        assert!(w.written_since(&mark) > 10);
        w.rollback(mark);
        w.string("b", "2");
        assert_eq!(w.finish(), r#"{"a":"1","b":"2"}"#);
        let mut open = ObjectWriter::new();
        open.begin("x");
        let mark = open.mark();
        open.string("y", "z");
        open.rollback(mark);
        assert_eq!(open.finish(), r#"{"x":{}}"#);
    }

    #[test]
    fn truncation_respects_characters_and_escapes() {
        assert_eq!(truncate_to("héllo", 2), "h");
        assert_eq!(truncate_to("héllo", 3), "hé");
        assert_eq!(truncate_escaped("a\"b", 4), "a");
        assert_eq!(truncate_escaped("abc", 100), "abc");
    }
}
