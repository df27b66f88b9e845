//! Splitting the feed's byte stream into lines and classifying each line.
//!
//! Complete lines inside one network chunk are handed out as zero-copy slices of
//! that chunk; only lines spanning chunks are copied. A line longer than the
//! limit is not buffered: it is skipped as it streams past, keeping a sample for
//! the dead-letter record.

use bytes::{Bytes, BytesMut};

use falcon_lake_audit::event::probe_offset;

/// Bytes of an over-long line kept for its dead-letter record.
pub const SAMPLE_BYTES: usize = 64 * 1024;

/// One line cut from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A whole line, without its `\n`.
    Complete(Bytes),
    /// A line over the limit: its first bytes and its full length.
    TooLong {
        /// The first [`SAMPLE_BYTES`] bytes.
        sample: Bytes,
        /// Full length in bytes.
        length: u64,
    },
}

/// Incremental newline splitter with a line length limit.
#[derive(Debug)]
pub struct LineSplitter {
    partial: BytesMut,
    max_line: usize,
    discarding: Option<(Bytes, u64)>,
}

impl LineSplitter {
    /// A splitter accepting lines of up to `max_line` bytes.
    pub fn new(max_line: usize) -> Self {
        Self {
            partial: BytesMut::new(),
            max_line,
            discarding: None,
        }
    }

    /// True when bytes of an unfinished line are pending (the stream ended mid-line).
    pub fn has_partial(&self) -> bool {
        !self.partial.is_empty() || self.discarding.is_some()
    }

    /// Splits `chunk`, appending finished lines to `out`.
    pub fn push(&mut self, chunk: Bytes, out: &mut Vec<Line>) {
        let mut pos = 0;
        while let Some(found) = memchr::memchr(b'\n', &chunk[pos..]) {
            let end = pos + found;
            self.finish_line(&chunk, pos, end, out);
            pos = end + 1;
        }
        if pos < chunk.len() {
            self.keep_partial(&chunk[pos..]);
        }
    }

    fn finish_line(&mut self, chunk: &Bytes, start: usize, end: usize, out: &mut Vec<Line>) {
        let segment = &chunk[start..end];
        if let Some((sample, length)) = self.discarding.take() {
            out.push(Line::TooLong {
                sample,
                length: length + segment.len() as u64,
            });
        } else if !self.partial.is_empty() {
            let total = self.partial.len() + segment.len();
            if total > self.max_line {
                let sample = self.sample_with(segment);
                self.partial.clear();
                out.push(Line::TooLong {
                    sample,
                    length: total as u64,
                });
            } else {
                self.partial.extend_from_slice(segment);
                out.push(Line::Complete(self.partial.split().freeze()));
            }
        } else if segment.len() > self.max_line {
            out.push(Line::TooLong {
                sample: chunk.slice(start..start + SAMPLE_BYTES.min(segment.len())),
                length: segment.len() as u64,
            });
        } else {
            out.push(Line::Complete(chunk.slice(start..end)));
        }
    }

    fn keep_partial(&mut self, rest: &[u8]) {
        if let Some((_, length)) = self.discarding.as_mut() {
            *length += rest.len() as u64;
        } else if self.partial.len() + rest.len() > self.max_line {
            let sample = self.sample_with(rest);
            let length = (self.partial.len() + rest.len()) as u64;
            self.partial = BytesMut::new();
            self.discarding = Some((sample, length));
        } else {
            self.partial.extend_from_slice(rest);
        }
    }

    fn sample_with(&self, more: &[u8]) -> Bytes {
        let mut sample = BytesMut::with_capacity(SAMPLE_BYTES);
        let head = &self.partial[..self.partial.len().min(SAMPLE_BYTES)];
        sample.extend_from_slice(head);
        let room = SAMPLE_BYTES - sample.len();
        sample.extend_from_slice(&more[..more.len().min(room)]);
        sample.freeze()
    }
}

/// What a line is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineKind {
    /// Whitespace only: a keep-alive.
    Blank,
    /// An event with this `metadata.offset`.
    Event(u64),
    /// Not usable as an event, and why.
    Rejected(String),
}

/// Classifies one complete line (tolerating `\r\n` and surrounding whitespace).
pub fn classify(line: &[u8]) -> LineKind {
    let trimmed = trim(line);
    if trimmed.is_empty() {
        return LineKind::Blank;
    }
    match probe_offset(trimmed) {
        Ok(Some(offset)) => LineKind::Event(offset),
        Ok(None) => LineKind::Rejected("no metadata.offset (an unsigned integer) in the event".to_string()),
        Err(e) => LineKind::Rejected(format!("not a JSON object: {}", e.0)),
    }
}

/// The line without leading and trailing ASCII whitespace.
pub fn trim(line: &[u8]) -> &[u8] {
    let start = line.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(line.len());
    let end = line
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &line[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]], max: usize) -> (Vec<Line>, bool) {
        let mut s = LineSplitter::new(max);
        let mut out = Vec::new();
        for c in chunks {
            s.push(Bytes::copy_from_slice(c), &mut out);
        }
        (out, s.has_partial())
    }

    fn complete(text: &str) -> Line {
        Line::Complete(Bytes::copy_from_slice(text.as_bytes()))
    }

    #[test]
    fn splits_across_chunks() {
        let (lines, partial) = split(&[b"ab\ncd", b"ef\n\ngh"], 100);
        assert_eq!(lines, vec![complete("ab"), complete("cdef"), complete("")]);
        assert!(partial);
        let (_, partial) = split(&[b"x\n"], 100);
        assert!(!partial);
    }

    #[test]
    fn long_lines_are_skipped_not_buffered() {
        let (lines, partial) = split(&[b"0123", b"456789", b"ab\nok\n"], 8);
        assert_eq!(lines.len(), 2);
        match &lines[0] {
            Line::TooLong { sample, length } => {
                assert_eq!(*length, 12);
                assert_eq!(&sample[..], b"0123456789");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(lines[1], complete("ok"));
        assert!(!partial);
        let (lines, _) = split(&[b"0123456789\n"], 8);
        assert!(matches!(lines[0], Line::TooLong { length: 10, .. }));
    }

    #[test]
    fn classifies_lines() {
        assert_eq!(classify(b""), LineKind::Blank);
        assert_eq!(classify(b" \r"), LineKind::Blank);
        assert_eq!(classify(b"{\"metadata\":{\"offset\":5}}\r"), LineKind::Event(5));
        assert!(matches!(classify(b"400"), LineKind::Rejected(r) if r.contains("not a JSON object")));
        assert!(matches!(classify(b"{\"event\":{}}"), LineKind::Rejected(r) if r.contains("metadata.offset")));
        assert!(matches!(
            classify(b"{\"metadata\":{\"offset\":5}"),
            LineKind::Rejected(_)
        ));
    }
}
