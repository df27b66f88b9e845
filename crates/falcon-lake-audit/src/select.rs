//! What every mapping does before it maps: a cheap pre-filter on the raw bytes,
//! decoding, parsing, and the selection by event type and service. Shared by
//! the CloudTrail mapping here and the OCSF mapping (`falcon-lake-ocsf`), so
//! both modules select the same events from the same parameters.

use std::borrow::Cow;

use crate::event::FalconEvent;
use crate::key::SourceKey;
use crate::mapping::{RecordContext, Skip};
use crate::params::{passes_filter, Profile};

/// The `eventType` key as it appears in raw text.
const EVENT_TYPE_KEY: &[u8] = b"\"eventType\"";

/// Which events pass: event types and services, with precomputed searches.
#[derive(Debug, Clone)]
pub struct Selector {
    profile: Profile,
    event_types: Option<Vec<String>>,
    include_services: Vec<String>,
    exclude_services: Vec<String>,
    key_finder: memchr::memmem::Finder<'static>,
    escape_finder: memchr::memmem::Finder<'static>,
}

/// A selected event, with what the record adds to it.
#[derive(Debug, Clone, Copy)]
pub struct Selected<'e, 'a> {
    /// The event.
    pub event: &'e FalconEvent<'a>,
    /// `metadata.eventType`.
    pub event_type: &'e str,
    /// The Falcon partition, from the record key.
    pub partition: Option<u32>,
    /// The event's text, surrounding whitespace removed.
    pub raw: &'e str,
}

impl Selector {
    /// Selects `event_types` (`None`: every type) from the services in
    /// `include_services` (empty: every service) but not in `exclude_services`;
    /// service names normalised as `profile` does.
    pub fn new(
        profile: Profile,
        event_types: Option<Vec<String>>,
        include_services: Vec<String>,
        exclude_services: Vec<String>,
    ) -> Self {
        Self {
            profile,
            event_types,
            include_services,
            exclude_services,
            key_finder: memchr::memmem::Finder::new(EVENT_TYPE_KEY).into_owned(),
            escape_finder: memchr::memmem::Finder::new(b"\\u").into_owned(),
        }
    }

    /// True when an event of this type and service passes.
    pub fn passes(&self, event_type: &str, service: Option<&str>) -> bool {
        passes_filter(
            self.profile,
            self.event_types.as_deref(),
            &self.include_services,
            &self.exclude_services,
            event_type,
            service,
        )
    }

    /// Reads one raw record and, when it is a selected event, calls `map` with it.
    pub fn select<R>(
        &self,
        ctx: &RecordContext<'_>,
        value: &[u8],
        map: impl FnOnce(Selected<'_, '_>) -> R,
    ) -> Result<R, Skip> {
        if !self.may_be_selected(value) {
            return Err(Skip::NotSelected);
        }
        let text = match std::str::from_utf8(value) {
            Ok(text) => Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(value),
        };
        let raw = text.trim_matches(|c: char| matches!(c, ' ' | '\t' | '\r' | '\n'));
        let event = FalconEvent::parse(raw).ok_or(Skip::NotJsonObject)?;
        let event_type = event.metadata.event_type.as_deref().ok_or(Skip::NotFalconEvent)?;
        if !self.passes(event_type, event.event.service_name.as_deref()) {
            return Err(Skip::NotSelected);
        }
        let partition = ctx.key.and_then(|k| SourceKey::decode(k).ok()).map(|k| k.partition);
        Ok(map(Selected {
            event: &event,
            event_type,
            partition,
            raw,
        }))
    }

    /// A cheap, conservative pre-filter: reads the value of every `"eventType"`
    /// key in the text (in one scan) and passes the event if one is a selected
    /// type, or holds an escape, or if the text escapes anything with `\\u`
    /// (the key itself may be spelled that way). Most of a tenant's events are
    /// detections and API logs; this skips them without parsing.
    pub fn may_be_selected(&self, value: &[u8]) -> bool {
        let Some(types) = &self.event_types else {
            return true;
        };
        for at in self.key_finder.find_iter(value) {
            match string_after_key(&value[at + EVENT_TYPE_KEY.len()..]) {
                Some(Ok(found)) if types.iter().any(|t| t.as_bytes() == found) => return true,
                Some(Err(Escaped)) => return true,
                _ => {}
            }
        }
        self.escape_finder.find(value).is_some()
    }
}

/// A JSON string that holds an escape: only a parser can tell what it says.
struct Escaped;

/// The string value after an object key (`: "…"`, whitespace allowed), as raw
/// bytes; `None` when something else follows.
fn string_after_key(rest: &[u8]) -> Option<Result<&[u8], Escaped>> {
    let is_space = |b: &u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    let mut at = rest.iter().position(|b| !is_space(b))?;
    if rest[at] != b':' {
        return None;
    }
    at += 1 + rest[at + 1..].iter().position(|b| !is_space(b))?;
    if rest[at] != b'"' {
        return None;
    }
    let text = &rest[at + 1..];
    let end = memchr::memchr2(b'"', b'\\', text)?;
    Some(if text[end] == b'"' {
        Ok(&text[..end])
    } else {
        Err(Escaped)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selector() -> Selector {
        let types = ["AuthActivityAuditEvent", "UserActivityAuditEvent"].map(String::from);
        Selector::new(Profile::Default, Some(types.to_vec()), Vec::new(), Vec::new())
    }

    #[test]
    fn the_prefilter_reads_every_event_type_key() {
        let selector = selector();
        let passes = |text: &str| selector.may_be_selected(text.as_bytes());
        assert!(passes(r#"{"metadata":{"eventType":"UserActivityAuditEvent"}}"#));
        assert!(passes(
            r#"{"metadata":{"eventType" :
            "AuthActivityAuditEvent"}}"#
        ));
        assert!(
            passes(r#"{"event":{"Attributes":{"eventType":"x"}},"metadata":{"eventType":"AuthActivityAuditEvent"}}"#),
            "a nested key before the real one does not hide it"
        );
        assert!(
            passes(r#"{"metadata":{"eventType":"Auth\"x"}}"#),
            "escaped value: parse to know"
        );
        assert!(passes(r#"{"metadata":{"event\u0054ype":"AuthActivityAuditEvent"}}"#));
        assert!(!passes(r#"{"metadata":{"eventType":"DetectionSummaryEvent"}}"#));
        assert!(!passes(r#"{"metadata":{"eventType":"AuthActivityAuditEventX"}}"#));
        assert!(!passes(
            r#"{"note":"mentions AuthActivityAuditEvent","metadata":{"eventType":1}}"#
        ));
        assert!(!passes(r#"{"metadata":{"eventType""#), "truncated text");
    }

    #[test]
    fn selects_and_reports_why_not() {
        let selector = selector();
        let ctx = RecordContext {
            key: Some(b"4_9"),
            timestamp_ms: 0,
        };
        let event = br#" {"metadata":{"eventType":"AuthActivityAuditEvent"},"event":{}}
"#;
        let got = selector.select(&ctx, event, |s| (s.partition, s.event_type.to_string(), s.raw.len()));
        assert_eq!(
            got,
            Ok((Some(4), "AuthActivityAuditEvent".to_string(), event.len() - 2))
        );
        let detection = br#"{"metadata":{"eventType":"DetectionSummaryEvent"}}"#;
        assert_eq!(selector.select(&ctx, detection, |_| ()), Err(Skip::NotSelected));
        let every = Selector::new(Profile::Default, None, Vec::new(), Vec::new());
        assert_eq!(every.select(&ctx, b"[1]", |_| ()), Err(Skip::NotJsonObject));
        assert_eq!(every.select(&ctx, b"{}", |_| ()), Err(Skip::NotFalconEvent));
    }
}
