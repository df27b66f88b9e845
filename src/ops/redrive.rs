//! Redrive: dead letters sent again through today's transform chain to the
//! destination, at least once, and marked durably once settled so a second
//! redrive does not resend them. Nothing is deleted: a letter stays in the
//! dead-letter topic whatever happens; a mark only records that it was delivered
//! (or that today's chain selects nothing from it).
//!
//! What is sent for each letter:
//! - a letter carrying its raw record (transform letters; publish letters once
//!   they carry it), or whose raw record is still in the raw topic (publish
//!   letters), goes through today's chain, which may have been fixed since;
//! - a publish letter whose raw record is gone is sent as it was stored
//!   (`id`, `eventData`), e.g. after `max_retries` gave up on a throttled event;
//! - a source letter is a line Falcon sent that was not an event: there is
//!   nothing to redrive unless it holds a whole event with its offset.

use std::collections::BTreeMap;

use anyhow::Result;
use bytes::Bytes;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::audit::SourceKey;
use crate::ops::letters::{Letter, LetterId};
use crate::ops::topics::Backend;
use crate::publish::{FatalError, Outcome, PublishItem, Publisher, Settlement};
use crate::transform::{InputRecord, TransformChain};

/// How a letter is to be sent again.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Through the chain: the raw record.
    Chain {
        /// Raw key (`<partition>_<offset>`).
        key: Option<Bytes>,
        /// Raw value.
        value: Bytes,
        /// Where the raw record came from (`letter` or `raw topic`).
        from: &'static str,
    },
    /// As stored: the refused audit event.
    AsStored {
        /// `AuditEvent.id`.
        id: String,
        /// `eventData`.
        event_data: String,
    },
    /// Nothing to send, and why.
    Skip(String),
}

/// Decides what to send for `letter`; reads the raw topic for publish letters
/// that do not carry their raw record.
pub async fn plan(letter: &Letter, backend: &Backend, raw_topic: &str) -> Result<Plan> {
    if letter.stage() == "source" {
        return Ok(source_plan(letter));
    }
    if let Some(value) = letter.raw() {
        return Ok(Plan::Chain {
            key: letter.key.clone(),
            value,
            from: "letter",
        });
    }
    if let Some((partition, offset)) = letter.raw_position() {
        let found = backend.read_range(raw_topic, partition, offset, offset + 1).await?;
        if let Some(record) = found.into_iter().find(|r| r.offset == offset) {
            return Ok(Plan::Chain {
                key: record.key,
                value: record.value,
                from: "raw topic",
            });
        }
    }
    match letter.event() {
        Some((id, event_data)) if !id.is_empty() => Ok(Plan::AsStored { id, event_data }),
        _ => Ok(Plan::Skip(
            "neither the raw record nor the audit event is available (deleted by retention?)".to_string(),
        )),
    }
}

/// A source letter can be redriven only when it holds a whole event with its offset.
fn source_plan(letter: &Letter) -> Plan {
    let rejected = || {
        Plan::Skip(format!(
            "a rejected line ({}): there is no raw event to redrive",
            letter.code()
        ))
    };
    let Some(raw) = letter.raw() else {
        return match letter.body["recordTruncated"].as_bool() {
            Some(true) => Plan::Skip("only a sample of the event was kept: there is no whole event to redrive (re-read it from Falcon with falcon.partition_start)".to_string()),
            _ => rejected(),
        };
    };
    let Ok(event) = serde_json::from_slice::<Value>(&raw) else {
        return rejected();
    };
    let partition = letter.body["falconPartition"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok());
    match (partition, event["metadata"]["offset"].as_u64()) {
        (Some(partition), Some(offset)) if event.is_object() => Plan::Chain {
            key: Some(Bytes::from(SourceKey::new(partition, offset).encode())),
            value: raw,
            from: "letter",
        },
        _ => rejected(),
    }
}

/// What the chain made of one letter.
#[derive(Debug, Clone, PartialEq)]
pub enum Transformed {
    /// Audit events to send: `(id, eventData)`.
    Events(Vec<(String, String)>),
    /// Today's chain selects nothing from it.
    Filtered,
    /// The chain failed on it, or emitted something that is not an audit event.
    Failed(String),
}

/// Runs one letter's raw record through the chain (one record per call, so
/// every output is attributed to its letter whatever the modules are).
pub fn transform(chain: &mut TransformChain, key: Option<&[u8]>, value: &[u8]) -> Transformed {
    let input = InputRecord {
        key,
        value,
        timestamp_ms: crate::ops::now_ms(),
    };
    let output = match chain.process(&[input]) {
        Ok(output) => output,
        Err(e) => return Transformed::Failed(format!("the chain failed: {e:#}")),
    };
    if let Some(failure) = output.failures.first() {
        return Transformed::Failed(format!("TransformFailed: {}", failure.reason));
    }
    if output.outputs.is_empty() {
        return Transformed::Filtered;
    }
    let mut events = Vec::new();
    for out in output.outputs {
        let id = out.key.map(String::from_utf8);
        match (id, String::from_utf8(out.value)) {
            (Some(Ok(id)), Ok(data)) => events.push((id, data)),
            _ => {
                return Transformed::Failed(
                    "InvalidOutput: the chain emitted a record without a UTF-8 id and eventData".to_string(),
                )
            }
        }
    }
    Transformed::Events(events)
}

/// The one place redrive meets the publisher: starts `publisher` on `items` and
/// returns its settlements as they come, and how it ended. Porting redrive to
/// another publisher means changing this function only.
pub fn deliver<T: Send + Sync + 'static>(
    publisher: Publisher,
    items: Vec<PublishItem<T>>,
) -> (mpsc::Receiver<Settlement<T>>, JoinHandle<Result<(), FatalError>>) {
    let (in_tx, in_rx) = mpsc::channel(items.len().max(1));
    let (out_tx, out_rx) = mpsc::channel(items.len().max(1));
    for item in items {
        // The channel holds every item, so this never waits.
        let _ = in_tx.try_send(item);
    }
    drop(in_tx);
    let run = tokio::spawn(publisher.run(in_rx, out_tx));
    (out_rx, run)
}

/// The settlements of one letter's events, gathered until all are in.
#[derive(Debug, Default)]
pub struct Pending {
    expected: BTreeMap<LetterId, usize>,
    delivered: BTreeMap<LetterId, Vec<String>>,
    refused: BTreeMap<LetterId, (String, String)>,
}

/// A letter whose events have all settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// Every event stored; their ids.
    Delivered(Vec<String>),
    /// At least one event refused again: code and message.
    Refused(String, String),
}

impl Pending {
    /// Expects `events` settlements for `letter`.
    pub fn expect(&mut self, letter: LetterId, events: usize) {
        self.expected.insert(letter, events);
    }

    /// Takes one settlement; returns the letter's result once its last one is in.
    pub fn settle(&mut self, letter: LetterId, id: &str, outcome: &Outcome) -> Option<Settled> {
        match outcome {
            Outcome::Delivered { .. } => self.delivered.entry(letter).or_default().push(id.to_string()),
            Outcome::DeadLettered { code, message } => {
                self.refused.entry(letter).or_insert((code.clone(), message.clone()));
            }
        }
        let left = self.expected.get_mut(&letter)?;
        *left = left.saturating_sub(1);
        if *left > 0 {
            return None;
        }
        self.expected.remove(&letter);
        let ids = self.delivered.remove(&letter).unwrap_or_default();
        Some(match self.refused.remove(&letter) {
            Some((code, message)) => Settled::Refused(code, message),
            None => Settled::Delivered(ids),
        })
    }

    /// Letters still waiting for settlements.
    pub fn unsettled(&self) -> Vec<LetterId> {
        self.expected.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::deadletter::{DeadLetter, Origin, Stage};
    use crate::topic::TopicRecord;

    fn source_letter(raw: &str, origin: Origin) -> Letter {
        let record = DeadLetter {
            stage: Stage::Source,
            code: "RejectedLine".into(),
            reason: "not JSON".into(),
            origin,
            key: None,
            raw: Some(Bytes::from(raw.to_string())),
            event: None,
        }
        .into_record(None);
        Letter::from_record(&TopicRecord {
            partition: 0,
            offset: 1,
            timestamp_ms: 1,
            key: record.key,
            value: record.value,
        })
    }

    #[test]
    fn source_letters_redrive_only_whole_events() {
        let feed = Origin::Feed {
            partition: 2,
            previous_offset: Some(41),
        };
        let Plan::Skip(why) = source_plan(&source_letter("{\"metadata\":", feed.clone())) else {
            panic!("a broken line has nothing to redrive");
        };
        assert!(why.contains("no raw event to redrive"), "{why}");
        let whole = "{\"metadata\":{\"offset\":42,\"eventType\":\"AuthActivityAuditEvent\"},\"event\":{}}";
        match source_plan(&source_letter(whole, feed)) {
            Plan::Chain { key, .. } => assert_eq!(key.as_deref(), Some(&b"2_42"[..])),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_letter_settles_when_its_last_event_does() {
        let mut pending = Pending::default();
        pending.expect((0, 1), 2);
        pending.expect((0, 2), 1);
        let delivered = Outcome::Delivered {
            event_id: Some("e".into()),
        };
        assert_eq!(pending.settle((0, 1), "a", &delivered), None);
        assert_eq!(
            pending.settle((0, 1), "b", &delivered),
            Some(Settled::Delivered(vec!["a".into(), "b".into()]))
        );
        let refused = Outcome::DeadLettered {
            code: "InvalidData".into(),
            message: "bad".into(),
        };
        assert_eq!(
            pending.settle((0, 2), "c", &refused),
            Some(Settled::Refused("InvalidData".into(), "bad".into()))
        );
        assert!(pending.unsettled().is_empty());
    }
}
