//! Dead-letter records: what could not be delivered, with the reason, written to
//! the dead-letter topic so that nothing is dropped without a trace.

use base64::Engine;
use bytes::Bytes;
use serde_json::{json, Value};

use crate::topic::NewRecord;

/// Where in the pipeline a record was given up on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The source rejected a line from Falcon.
    Source,
    /// The SmartModule failed on a raw record.
    Transform,
    /// CloudTrail (or the sink's own checks) refused an audit event.
    Publish,
}

impl Stage {
    fn as_str(self) -> &'static str {
        match self {
            Stage::Source => "source",
            Stage::Transform => "transform",
            Stage::Publish => "publish",
        }
    }
}

/// One dead-lettered item.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Stage that gave up.
    pub stage: Stage,
    /// Error code (CloudTrail's, or ours).
    pub code: String,
    /// What went wrong.
    pub reason: String,
    /// Where the raw record came from: (topic, partition, offset), or for the
    /// source (Falcon partition, offset of the previous event).
    pub origin: Origin,
    /// The raw record's key, kept as the dead letter's key.
    pub key: Option<Bytes>,
    /// The raw record or line, if any.
    pub raw: Option<Bytes>,
    /// The audit event, for publish failures: (`id`, `eventData`).
    pub event: Option<(String, String)>,
}

/// Where a dead letter came from.
#[derive(Debug, Clone)]
pub enum Origin {
    /// A record of the raw topic.
    Topic {
        /// Topic name.
        topic: String,
        /// Partition.
        partition: u32,
        /// Offset.
        offset: u64,
    },
    /// An event of a Falcon feed that never reached the topic.
    Event {
        /// Falcon partition.
        partition: u32,
        /// The event's `metadata.offset`.
        offset: u64,
    },
    /// A line of a Falcon feed.
    Feed {
        /// Falcon partition.
        partition: u32,
        /// Offset of the event delivered before it, if any.
        previous_offset: Option<u64>,
    },
}

/// Bytes of an oversized record kept in its dead letter.
pub const SAMPLE_BYTES: usize = 64 * 1024;

impl DeadLetter {
    /// The record written to the dead-letter topic (JSON value). When it would
    /// exceed `max_bytes` (the topic's record limit), the raw record is cut to
    /// its first [`SAMPLE_BYTES`] and its full size recorded, so the letter itself
    /// can always be written.
    pub fn into_record(mut self, max_bytes: Option<usize>) -> NewRecord {
        let value = self.render(None);
        let value = match (max_bytes, &self.raw) {
            (Some(limit), Some(raw)) if value.len() > limit && raw.len() > SAMPLE_BYTES => {
                let full = raw.len();
                self.raw = Some(cut(raw, SAMPLE_BYTES));
                self.render(Some(full))
            }
            _ => value,
        };
        NewRecord {
            key: self.key,
            value: Bytes::from(value),
        }
    }

    fn render(&self, truncated_from: Option<usize>) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let mut value = json!({
            "stage": self.stage.as_str(),
            "code": self.code,
            "reason": self.reason,
            "at": crate::audit::time::format_event_time(now),
        });
        match &self.origin {
            Origin::Topic {
                topic,
                partition,
                offset,
            } => {
                value["topic"] = json!(topic);
                value["partition"] = json!(partition);
                value["offset"] = json!(offset);
            }
            Origin::Event { partition, offset } => {
                value["falconPartition"] = json!(partition);
                value["falconOffset"] = json!(offset);
            }
            Origin::Feed {
                partition,
                previous_offset,
            } => {
                value["falconPartition"] = json!(partition);
                value["previousOffset"] = json!(previous_offset);
            }
        }
        if let Some(raw) = &self.raw {
            match std::str::from_utf8(raw) {
                Ok(text) => value["record"] = Value::String(text.to_string()),
                Err(_) => value["recordBase64"] = json!(base64::engine::general_purpose::STANDARD.encode(raw)),
            }
        }
        if let Some(full) = truncated_from {
            value["recordBytes"] = json!(full);
            value["recordTruncated"] = json!(true);
        }
        if let Some((id, event_data)) = &self.event {
            value["id"] = json!(id);
            value["eventData"] = json!(event_data);
        }
        value.to_string()
    }
}

/// The first `max` bytes of `raw`, cut back to a UTF-8 boundary when it is text.
pub fn cut(raw: &Bytes, max: usize) -> Bytes {
    if raw.len() <= max {
        return raw.clone();
    }
    let mut end = max;
    if std::str::from_utf8(raw).is_ok() {
        while end > 0 && (raw[end] & 0xC0) == 0x80 {
            end -= 1;
        }
    }
    raw.slice(..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_carry_reason_origin_and_payload() {
        let letter = DeadLetter {
            stage: Stage::Publish,
            code: "InvalidData".into(),
            reason: "eventTime is bad".into(),
            origin: Origin::Topic {
                topic: "raw".into(),
                partition: 0,
                offset: 7,
            },
            key: Some(Bytes::from_static(b"0_1")),
            raw: Some(Bytes::from_static(b"\xff\x00")),
            event: Some(("id_1".into(), "{}".into())),
        };
        let record = letter.into_record(None);
        let value: Value = serde_json::from_slice(&record.value).expect("json");
        assert_eq!(value["stage"], "publish");
        assert_eq!(value["offset"], 7);
        assert_eq!(value["recordBase64"], "/wA=");
        assert_eq!(value["eventData"], "{}");
        assert_eq!(record.key.as_deref(), Some(&b"0_1"[..]));
    }

    #[test]
    fn oversized_letters_keep_a_sample_and_the_size() {
        let raw = Bytes::from("é".repeat(100_000));
        let letter = DeadLetter {
            stage: Stage::Source,
            code: "EventTooLarge".into(),
            reason: "too large".into(),
            origin: Origin::Event {
                partition: 1,
                offset: 42,
            },
            key: None,
            raw: Some(raw.clone()),
            event: None,
        };
        let whole = letter.clone().into_record(None);
        assert!(whole.value.len() > 200_000);
        let record = letter.into_record(Some(100_000));
        assert!(record.value.len() < 100_000, "{}", record.value.len());
        let value: Value = serde_json::from_slice(&record.value).expect("json");
        assert_eq!(value["recordBytes"], 200_000);
        assert_eq!(value["recordTruncated"], true);
        assert_eq!(value["falconOffset"], 42);
        assert!(value["record"].as_str().expect("text").starts_with("éé"));
    }
}
