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
    /// A line of a Falcon feed.
    Feed {
        /// Falcon partition.
        partition: u32,
        /// Offset of the event delivered before it, if any.
        previous_offset: Option<u64>,
    },
}

impl DeadLetter {
    /// The record written to the dead-letter topic (JSON value).
    pub fn into_record(self) -> NewRecord {
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
        match self.origin {
            Origin::Topic {
                topic,
                partition,
                offset,
            } => {
                value["topic"] = json!(topic);
                value["partition"] = json!(partition);
                value["offset"] = json!(offset);
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
        if let Some((id, event_data)) = self.event {
            value["id"] = json!(id);
            value["eventData"] = json!(event_data);
        }
        NewRecord {
            key: self.key,
            value: Bytes::from(value.to_string()),
        }
    }
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
        let record = letter.into_record();
        let value: Value = serde_json::from_slice(&record.value).expect("json");
        assert_eq!(value["stage"], "publish");
        assert_eq!(value["offset"], 7);
        assert_eq!(value["recordBase64"], "/wA=");
        assert_eq!(value["eventData"], "{}");
        assert_eq!(record.key.as_deref(), Some(&b"0_1"[..]));
    }
}
