//! Reading back (§1.8): `GetLogEvents` (one stream; `startTime` inclusive,
//! `endTime` exclusive; newest page first unless `startFromHead`; forward and
//! backward tokens never absent, the same token returned at either end) and
//! `FilterLogEvents` (a group, optionally some streams; both ends inclusive;
//! oldest first; `nextToken` absent when done).

use serde_json::{json, Map, Value};

use crate::cloudwatch::api::{read_group, stream_name, ApiError};
use crate::cloudwatch::state::{CloudWatchState, StoredEvent};
use crate::cloudwatch::validate::{stream_char, Violations, STREAM_PATTERN};
use crate::lock;

/// Most events a page holds.
const MAX_LIMIT: i64 = 10_000;
/// Most bytes a default page holds.
const PAGE_BYTES: usize = 1_048_576;

/// How many of `events` (from the front) fit a default page: 1 MB or 10,000 events.
fn default_page(events: &[&StoredEvent]) -> usize {
    let mut bytes = 0;
    events
        .iter()
        .take(MAX_LIMIT as usize)
        .take_while(|e| {
            bytes += e.message.len() + 26;
            bytes <= PAGE_BYTES
        })
        .count()
        .max(1)
        .min(events.len())
}

fn token_index(token: &str, direction: &str, len: usize) -> Result<usize, ApiError> {
    token
        .strip_prefix(direction)
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|n| *n <= len)
        .ok_or_else(|| ApiError::invalid("The specified nextToken is invalid."))
}

/// `GetLogEvents`.
pub fn get_log_events(state: &CloudWatchState, body: &Map<String, Value>) -> Result<Value, ApiError> {
    let mut v = Violations::default();
    let group = read_group(&mut v, body);
    let stream = stream_name(&mut v, body).unwrap_or_default().to_string();
    let start_time = v.optional_int(body, "startTime", 0, i64::MAX);
    let end_time = v.optional_int(body, "endTime", 0, i64::MAX);
    let limit = v.optional_int(body, "limit", 1, MAX_LIMIT);
    let from_head = v.optional_bool(body, "startFromHead").unwrap_or(false);
    let token = v
        .optional_string(body, "nextToken", (1, 4096), None)
        .map(str::to_string);
    v.finish()?;
    let group = group?.unwrap_or_default();
    let groups = lock(&state.groups);
    let log_stream = groups
        .get(&group)
        .ok_or_else(ApiError::no_group)?
        .streams
        .get(&stream)
        .ok_or_else(ApiError::no_stream)?;
    let events: Vec<&StoredEvent> = log_stream
        .sorted()
        .into_iter()
        .filter(|e| start_time.is_none_or(|s| e.timestamp >= s) && end_time.is_none_or(|end| e.timestamp < end))
        .collect();
    let len = events.len();
    let (start, end) = match token.as_deref() {
        Some(t) if t.starts_with("f/") => {
            let from = token_index(t, "f/", len)?;
            let n = limit.map_or_else(|| default_page(&events[from..]), |l| l as usize);
            (from, (from + n).min(len))
        }
        Some(t) => {
            let to = token_index(t, "b/", len)?;
            let n = limit.map_or_else(|| default_page(&events[..to]), |l| l as usize);
            (to.saturating_sub(n), to)
        }
        None if from_head => (0, limit.map_or_else(|| default_page(&events), |l| l as usize).min(len)),
        None => {
            let n = limit.map_or_else(|| default_page(&events), |l| l as usize);
            (len.saturating_sub(n), len)
        }
    };
    let page: Vec<Value> = events[start..end]
        .iter()
        .map(|e| json!({"timestamp": e.timestamp, "message": e.message, "ingestionTime": e.ingestion_time}))
        .collect();
    Ok(json!({
        "events": page,
        "nextForwardToken": format!("f/{end}"),
        "nextBackwardToken": format!("b/{start}"),
    }))
}

/// `FilterLogEvents`.
pub fn filter_log_events(state: &CloudWatchState, body: &Map<String, Value>) -> Result<Value, ApiError> {
    let mut v = Violations::default();
    let group = read_group(&mut v, body);
    let names = stream_names(&mut v, body);
    let prefix = v.optional_string(
        body,
        "logStreamNamePrefix",
        (1, 512),
        Some((STREAM_PATTERN, stream_char)),
    );
    let start_time = v.optional_int(body, "startTime", 0, i64::MAX);
    let end_time = v.optional_int(body, "endTime", 0, i64::MAX);
    let pattern = v.optional_string(body, "filterPattern", (0, 1024), None).unwrap_or("");
    let limit = v.optional_int(body, "limit", 1, MAX_LIMIT).unwrap_or(MAX_LIMIT);
    let token = v
        .optional_string(body, "nextToken", (1, 4096), None)
        .map(str::to_string);
    v.optional_bool(body, "interleaved");
    v.optional_bool(body, "startFromHead");
    v.finish()?;
    if names.is_some() && prefix.is_some() {
        return Err(ApiError::invalid(
            "logStreamNames and logStreamNamePrefix are mutually exclusive parameters.",
        ));
    }
    let pattern = Pattern::parse(pattern)?;
    let group = group?.unwrap_or_default();
    let groups = lock(&state.groups);
    let log_group = groups.get(&group).ok_or_else(ApiError::no_group)?;
    let mut events: Vec<(&String, &StoredEvent)> = log_group
        .streams
        .iter()
        .filter(|(name, _)| names.as_ref().is_none_or(|n| n.contains(name)))
        .filter(|(name, _)| prefix.is_none_or(|p| name.starts_with(p)))
        .flat_map(|(name, stream)| stream.events.iter().map(move |e| (name, e)))
        .filter(|(_, e)| start_time.is_none_or(|s| e.timestamp >= s) && end_time.is_none_or(|end| e.timestamp <= end))
        .filter(|(_, e)| pattern.matches(&e.message))
        .collect();
    events.sort_by_key(|(_, e)| (e.timestamp, e.ingestion_time, e.seq));
    let from = match token.as_deref() {
        Some(t) => token_index(t, "p/", events.len())?,
        None => 0,
    };
    let to = (from + limit as usize).min(events.len());
    let page: Vec<Value> = events[from..to]
        .iter()
        .map(|(name, e)| {
            json!({
                "logStreamName": name,
                "timestamp": e.timestamp,
                "message": e.message,
                "ingestionTime": e.ingestion_time,
                "eventId": e.event_id,
            })
        })
        .collect();
    let mut reply = json!({"events": page, "searchedLogStreams": []});
    if to < events.len() {
        reply["nextToken"] = json!(format!("p/{to}"));
    }
    Ok(reply)
}

fn stream_names(v: &mut Violations, body: &Map<String, Value>) -> Option<Vec<String>> {
    let value = body.get("logStreamNames").filter(|v| !v.is_null())?;
    let Some(list) = value.as_array() else {
        v.push(Some(value), "logStreamNames", "Member must be a list");
        return None;
    };
    if list.is_empty() || list.len() > 100 {
        v.push(
            Some(value),
            "logStreamNames",
            "Member must have length less than or equal to 100 and greater than or equal to 1",
        );
    }
    Some(list.iter().filter_map(Value::as_str).map(str::to_string).collect())
}

/// A filter pattern: terms that must all appear (quoted phrases as one term,
/// `-term` must not appear), or a JSON pattern `{ $.a.b = "x" && $.c != 5 }`.
#[derive(Debug, Clone, PartialEq)]
enum Pattern {
    Terms { include: Vec<String>, exclude: Vec<String> },
    Json(Vec<(Vec<String>, bool, Value)>),
}

impl Pattern {
    fn parse(text: &str) -> Result<Self, ApiError> {
        let text = text.trim();
        if let Some(inner) = text.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
            return Self::parse_json(inner);
        }
        let (mut include, mut exclude) = (Vec::new(), Vec::new());
        for term in terms(text) {
            match term.strip_prefix('-') {
                Some(rest) if !rest.is_empty() => exclude.push(rest.to_string()),
                _ => include.push(term),
            }
        }
        Ok(Self::Terms { include, exclude })
    }

    fn parse_json(inner: &str) -> Result<Self, ApiError> {
        let bad = || ApiError::invalid(format!("Invalid character(s) in term '{{{inner}}}'"));
        let mut conditions = Vec::new();
        for condition in inner.split("&&") {
            let (path, equal, value) = match condition.split_once("!=") {
                Some((p, v)) => (p, false, v),
                None => {
                    let (p, v) = condition.split_once('=').ok_or_else(bad)?;
                    (p, true, v)
                }
            };
            let path = path.trim().strip_prefix("$.").ok_or_else(bad)?;
            let value = value.trim();
            let value = match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                Some(quoted) => json!(quoted),
                None => serde_json::from_str(value).unwrap_or_else(|_| json!(value)),
            };
            conditions.push((path.split('.').map(str::to_string).collect(), equal, value));
        }
        Ok(Self::Json(conditions))
    }

    fn matches(&self, message: &str) -> bool {
        match self {
            Self::Terms { include, exclude } => {
                include.iter().all(|t| message.contains(t.as_str()))
                    && !exclude.iter().any(|t| message.contains(t.as_str()))
            }
            Self::Json(conditions) => {
                let Ok(value) = serde_json::from_str::<Value>(message) else {
                    return false;
                };
                conditions.iter().all(|(path, equal, expected)| {
                    let found = path.iter().try_fold(&value, |v, key| v.get(key));
                    (found == Some(expected)) == *equal
                })
            }
        }
    }
}

/// Splits on whitespace, keeping `"quoted phrases"` whole (without the quotes).
fn terms(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            out.push(quoted[..end].to_string());
            rest = quoted.get(end + 1..).unwrap_or("").trim_start();
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            out.push(rest[..end].to_string());
            rest = rest[end..].trim_start();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_terms_phrases_and_json_fields() {
        let terms = Pattern::parse("ERROR \"user alice\" -debug").expect("pattern");
        assert!(terms.matches("ERROR: login of user alice failed"));
        assert!(!terms.matches("ERROR: login of user bob failed"));
        assert!(!terms.matches("ERROR user alice debug"));
        assert!(Pattern::parse("").expect("pattern").matches("anything"));
        let json = Pattern::parse("{ $.status_id = 2 && $.user.name = \"alice\" }").expect("pattern");
        assert!(json.matches(r#"{"status_id":2,"user":{"name":"alice"}}"#));
        assert!(!json.matches(r#"{"status_id":1,"user":{"name":"alice"}}"#));
        assert!(!json.matches("not json"));
        let not = Pattern::parse("{ $.status_id != 1 }").expect("pattern");
        assert!(not.matches(r#"{"status_id":2}"#) && !not.matches(r#"{"status_id":1}"#));
    }
}
