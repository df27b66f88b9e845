//! Dead letters read back from the dead-letter topic (the format written by
//! `pipeline::deadletter`), the marks redrive leaves, and the selection the
//! `dlq` commands take (`--stage`, `--code`, `--since`, `--until`, `--offset`).

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use base64::Engine;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ops::topics::{marks_topic, Backend};
use crate::ops::{format_ms, now_ms};
use crate::topic::{NewRecord, TopicRecord};

/// A dead letter's place in the dead-letter topic.
pub type LetterId = (u32, u64);

/// One dead letter.
#[derive(Debug, Clone, PartialEq)]
pub struct Letter {
    /// Partition of the dead-letter topic.
    pub partition: u32,
    /// Offset in the dead-letter topic.
    pub offset: u64,
    /// When it was written, epoch milliseconds (the record's timestamp).
    pub timestamp_ms: i64,
    /// The record's key (the raw record's, `<partition>_<offset>`).
    pub key: Option<Bytes>,
    /// The letter as written (JSON object); `Value::Null` when it is not JSON.
    pub body: Value,
}

impl Letter {
    /// Reads a record of the dead-letter topic.
    pub fn from_record(record: &TopicRecord) -> Self {
        Self {
            partition: record.partition,
            offset: record.offset,
            timestamp_ms: record.timestamp_ms,
            key: record.key.clone(),
            body: serde_json::from_slice(&record.value).unwrap_or(Value::Null),
        }
    }

    /// Where it is in the dead-letter topic.
    pub fn id(&self) -> LetterId {
        (self.partition, self.offset)
    }

    fn text(&self, field: &str) -> Option<&str> {
        self.body.get(field).and_then(Value::as_str)
    }

    /// `source`, `transform` or `publish` (`unknown` for an unreadable letter).
    pub fn stage(&self) -> &str {
        self.text("stage").unwrap_or("unknown")
    }

    /// The error code.
    pub fn code(&self) -> &str {
        self.text("code").unwrap_or("unknown")
    }

    /// What went wrong.
    pub fn reason(&self) -> &str {
        self.text("reason").unwrap_or("")
    }

    /// Where it came from, for people: `topic/partition@offset` or the Falcon position.
    pub fn origin(&self) -> String {
        let b = &self.body;
        if let (Some(topic), Some(p), Some(o)) = (b["topic"].as_str(), b["partition"].as_u64(), b["offset"].as_u64()) {
            let topic = if topic.is_empty() { "raw topic" } else { topic };
            return format!("{topic} {p}@{o}");
        }
        match (b["falconPartition"].as_u64(), b["falconOffset"].as_u64()) {
            (Some(p), Some(o)) => format!("falcon {p}@{o}"),
            (Some(p), None) => match b["previousOffset"].as_u64() {
                Some(prev) => format!("falcon {p}, after {prev}"),
                None => format!("falcon {p}, first line"),
            },
            _ => "unknown".to_string(),
        }
    }

    /// The raw record or line it carries, whole (not a truncated sample).
    pub fn raw(&self) -> Option<Bytes> {
        if self.body["recordTruncated"].as_bool() == Some(true) {
            return None;
        }
        if let Some(text) = self.text("record") {
            return Some(Bytes::from(text.to_string()));
        }
        let encoded = self.text("recordBase64")?;
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()
            .map(Bytes::from)
    }

    /// `(id, eventData)` of a refused audit event.
    pub fn event(&self) -> Option<(String, String)> {
        let data = self.text("eventData")?;
        Some((self.text("id").unwrap_or_default().to_string(), data.to_string()))
    }

    /// The raw topic position it came from (`partition`, `offset`), if it came from the raw topic.
    pub fn raw_position(&self) -> Option<(u32, u64)> {
        let p = u32::try_from(self.body["partition"].as_u64()?).ok()?;
        Some((p, self.body["offset"].as_u64()?))
    }

    /// When it was written: the record's timestamp, else its `at`.
    pub fn at_ms(&self) -> i64 {
        if self.timestamp_ms > 0 {
            return self.timestamp_ms;
        }
        self.text("at")
            .and_then(|at| time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).ok())
            .map_or(0, |t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
    }
}

/// Which letters a command works on.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Only this stage.
    pub stage: Option<String>,
    /// Only this code.
    pub code: Option<String>,
    /// Only letters written at or after this time (epoch ms).
    pub since_ms: Option<i64>,
    /// Only letters written before this time (epoch ms).
    pub until_ms: Option<i64>,
    /// Only these offsets of the dead-letter topic.
    pub offsets: Vec<u64>,
}

impl Selection {
    /// True when `letter` is selected.
    pub fn matches(&self, letter: &Letter) -> bool {
        let at = letter.at_ms();
        self.stage
            .as_deref()
            .is_none_or(|s| letter.stage().eq_ignore_ascii_case(s))
            && self
                .code
                .as_deref()
                .is_none_or(|c| letter.code().eq_ignore_ascii_case(c))
            && self.since_ms.is_none_or(|since| at >= since)
            && self.until_ms.is_none_or(|until| at < until)
            && (self.offsets.is_empty() || self.offsets.contains(&letter.offset))
    }
}

/// Every letter of the dead-letter topic, in order.
pub async fn read_letters(backend: &Backend, topic: &str) -> Result<Vec<Letter>> {
    let mut letters: Vec<Letter> = backend.read_all(topic).await?.iter().map(Letter::from_record).collect();
    letters.sort_by_key(|l| (l.timestamp_ms, l.partition, l.offset));
    Ok(letters)
}

/// A redrive mark: this letter was re-sent and settled so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    /// Dead-letter topic partition.
    pub partition: u32,
    /// Dead-letter topic offset.
    pub offset: u64,
    /// `delivered` or `filtered` (today's chain emits nothing for it).
    pub outcome: String,
    /// The ids CloudTrail stored.
    #[serde(default)]
    pub ids: Vec<String>,
    /// When, as text.
    pub at: String,
}

impl Mark {
    /// A mark for `letter`, now.
    pub fn new(letter: LetterId, outcome: &str, ids: Vec<String>) -> Self {
        Self {
            partition: letter.0,
            offset: letter.1,
            outcome: outcome.to_string(),
            ids,
            at: format_ms(now_ms()),
        }
    }

    fn to_record(&self) -> NewRecord {
        NewRecord {
            key: Some(Bytes::from(format!("{}_{}", self.partition, self.offset))),
            value: Bytes::from(serde_json::to_vec(self).unwrap_or_default()),
        }
    }
}

/// Every mark of `dead_letter_topic`, by letter.
pub async fn read_marks(backend: &Backend, dead_letter_topic: &str) -> Result<BTreeMap<LetterId, Mark>> {
    let records = backend.read_all(&marks_topic(dead_letter_topic)).await?;
    Ok(records
        .iter()
        .filter_map(|r| serde_json::from_slice::<Mark>(&r.value).ok())
        .map(|m| ((m.partition, m.offset), m))
        .collect())
}

/// Durably records `marks` (before they count as redriven).
pub async fn write_marks(backend: &Backend, dead_letter_topic: &str, marks: &[Mark]) -> Result<()> {
    if marks.is_empty() {
        return Ok(());
    }
    let records = marks.iter().map(Mark::to_record).collect();
    backend.append(&marks_topic(dead_letter_topic), records).await
}

/// Letters per (stage, code): count, how many were redriven, oldest and newest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Group {
    /// Stage.
    pub stage: String,
    /// Code.
    pub code: String,
    /// Letters.
    pub count: u64,
    /// Of which redriven.
    pub redriven: u64,
    /// Oldest letter's time.
    pub oldest: String,
    /// Newest letter's time.
    pub newest: String,
    /// Offset of the oldest letter in the dead-letter topic.
    pub oldest_offset: u64,
    /// Offset of the newest.
    pub newest_offset: u64,
}

/// Groups `letters` by stage and code.
pub fn group(letters: &[Letter], marks: &BTreeMap<LetterId, Mark>) -> Vec<Group> {
    let mut groups: BTreeMap<(String, String), Vec<&Letter>> = BTreeMap::new();
    for letter in letters {
        groups
            .entry((letter.stage().to_string(), letter.code().to_string()))
            .or_default()
            .push(letter);
    }
    groups
        .into_iter()
        .map(|((stage, code), list)| {
            let oldest = list.iter().min_by_key(|l| l.at_ms()).copied();
            let newest = list.iter().max_by_key(|l| l.at_ms()).copied();
            let ids: BTreeSet<LetterId> = list.iter().map(|l| l.id()).collect();
            Group {
                stage,
                code,
                count: list.len() as u64,
                redriven: ids.iter().filter(|id| marks.contains_key(id)).count() as u64,
                oldest: oldest.map(|l| format_ms(l.at_ms())).unwrap_or_default(),
                newest: newest.map(|l| format_ms(l.at_ms())).unwrap_or_default(),
                oldest_offset: oldest.map_or(0, |l| l.offset),
                newest_offset: newest.map_or(0, |l| l.offset),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::deadletter::{DeadLetter, Origin, Stage};

    fn letter(offset: u64, stage: Stage, code: &str, raw: Option<&[u8]>) -> Letter {
        let record = DeadLetter {
            stage,
            code: code.into(),
            reason: format!("reason {offset}"),
            origin: Origin::Topic {
                topic: "raw".into(),
                partition: 0,
                offset: offset + 100,
            },
            key: Some(Bytes::from(format!("0_{offset}"))),
            raw: raw.map(Bytes::copy_from_slice),
            event: (stage == Stage::Publish).then(|| (format!("id_{offset}"), "{}".to_string())),
        }
        .into_record(None);
        Letter::from_record(&TopicRecord {
            partition: 0,
            offset,
            timestamp_ms: now_ms(),
            key: record.key,
            value: record.value,
        })
    }

    #[test]
    fn letters_read_back_what_the_pipeline_wrote() {
        let l = letter(3, Stage::Publish, "InvalidData", None);
        assert_eq!(
            (l.stage(), l.code(), l.reason()),
            ("publish", "InvalidData", "reason 3")
        );
        assert_eq!(l.origin(), "raw 0@103");
        assert_eq!(l.raw_position(), Some((0, 103)));
        assert_eq!(l.event(), Some(("id_3".to_string(), "{}".to_string())));
        assert_eq!(l.raw(), None);
        let t = letter(4, Stage::Transform, "TransformFailed", Some(b"\xff\x01"));
        assert_eq!(
            t.raw().as_deref(),
            Some(&b"\xff\x01"[..]),
            "binary records come back from base64"
        );
        assert!((t.at_ms() - now_ms()).abs() < 5_000);
    }

    #[test]
    fn selections_filter_by_stage_code_time_and_offset() {
        let letters = [
            letter(0, Stage::Publish, "InvalidData", None),
            letter(1, Stage::Publish, "Throttling", None),
            letter(2, Stage::Transform, "TransformFailed", Some(b"{}")),
        ];
        let count = |s: &Selection| letters.iter().filter(|l| s.matches(l)).count();
        assert_eq!(count(&Selection::default()), 3);
        let publish = Selection {
            stage: Some("PUBLISH".into()),
            ..Default::default()
        };
        assert_eq!(count(&publish), 2);
        let code = Selection {
            code: Some("throttling".into()),
            ..Default::default()
        };
        assert_eq!(count(&code), 1);
        let future = Selection {
            since_ms: Some(now_ms() + 60_000),
            ..Default::default()
        };
        assert_eq!(count(&future), 0);
        let past = Selection {
            until_ms: Some(now_ms() - 60_000),
            ..Default::default()
        };
        assert_eq!(count(&past), 0);
        let one = Selection {
            offsets: vec![2],
            ..Default::default()
        };
        assert_eq!(count(&one), 1);
        let marks = BTreeMap::from([((0, 1), Mark::new((0, 1), "delivered", vec!["id_1".into()]))]);
        let groups = group(&letters, &marks);
        assert_eq!(groups.len(), 3);
        let throttled = groups.iter().find(|g| g.code == "Throttling").expect("group");
        assert_eq!((throttled.count, throttled.redriven), (1, 1));
    }
}
