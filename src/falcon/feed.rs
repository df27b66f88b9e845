//! One feed connection: `GET <dataFeedURL>&offset=…` read line by line until it ends.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::falcon::discovery::StreamResource;
use crate::falcon::error::{envelope_message, error_chain, rate_limit_wait};
use crate::falcon::lines::{classify, Line, LineKind, LineSplitter};
use crate::falcon::metrics::FalconMetrics;

/// An event as received: partition, offset and the raw line, unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FalconRecord {
    /// Falcon partition.
    pub partition: u32,
    /// `metadata.offset`.
    pub offset: u64,
    /// The line as received (without its line terminator).
    pub raw: Bytes,
}

/// A line that is not a usable event, kept for the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedLine {
    /// Falcon partition.
    pub partition: u32,
    /// Offset of the last event delivered before this line, if any.
    pub previous_offset: Option<u64>,
    /// The line (or its first bytes when it was too long).
    pub raw: Bytes,
    /// Why it was rejected.
    pub reason: String,
}

/// What the client hands to its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedItem {
    /// An event.
    Event(FalconRecord),
    /// A rejected line.
    Rejected(RejectedLine),
}

/// Where a feed connection starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedStart {
    /// The oldest retained event (no `offset` parameter).
    Oldest,
    /// The first event with offset ≥ this one (`offset=` is inclusive).
    Offset(u64),
    /// After the newest event (`whence=2`).
    Latest,
}

/// Why a feed connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedEnd {
    /// Shutdown was requested.
    Cancelled,
    /// The receiver of events went away.
    ConsumerGone,
    /// The server ended the response (session expiry, hard cap, restart).
    Eof,
    /// The connection broke (read error, aborted chunked encoding, mid-line end).
    Broken(String),
    /// Nothing at all arrived for the idle timeout.
    Idle(Duration),
    /// HTTP 401: the session token is no longer valid.
    Unauthorized(String),
    /// HTTP 429.
    RateLimited(Duration),
    /// Any other non-200 answer.
    Http(u16, String),
}

/// Everything one feed connection needs.
#[derive(Debug, Clone)]
pub struct FeedSettings {
    /// Server-side `eventType` filter (empty: all types).
    pub event_types: Vec<String>,
    /// Idle watchdog.
    pub idle_timeout: Duration,
    /// Longest accepted line.
    pub max_line_bytes: usize,
    /// Wait after a 429 without a usable retry time.
    pub rate_limit_wait: Duration,
}

/// What every feed connection of one client shares.
#[derive(Debug, Clone)]
pub struct FeedContext {
    /// Streaming HTTP client (no overall timeout).
    pub http: reqwest::Client,
    /// Connection settings.
    pub settings: FeedSettings,
    /// Client counters.
    pub metrics: Arc<FalconMetrics>,
    /// Where batches of items go.
    pub out: mpsc::Sender<Vec<FeedItem>>,
}

/// Reads one partition's feed, sending batches of items to `ctx.out` and advancing
/// `last` (the partition's last delivered offset) as it goes.
pub async fn read_feed(
    ctx: &FeedContext,
    resource: &StreamResource,
    start: FeedStart,
    held: &HeldRuns,
    last: &mut Option<u64>,
    cancel: &CancellationToken,
) -> FeedEnd {
    let (http, settings, metrics, out) = (&ctx.http, &ctx.settings, &ctx.metrics, &ctx.out);
    let url = feed_url(resource, start, &settings.event_types);
    let request = http
        .get(url)
        .header(
            reqwest::header::AUTHORIZATION,
            format!("Token {}", resource.session_token.expose()),
        )
        .header(reqwest::header::ACCEPT, "application/json")
        .send();
    let response = tokio::select! {
        _ = cancel.cancelled() => return FeedEnd::Cancelled,
        r = tokio::time::timeout(settings.idle_timeout, request) => r,
    };
    let mut response = match response {
        Err(_) => return FeedEnd::Idle(settings.idle_timeout),
        Ok(Err(e)) => return FeedEnd::Broken(format!("connecting: {}", error_chain(&e))),
        Ok(Ok(r)) => r,
    };
    if response.status() != reqwest::StatusCode::OK {
        return non_ok(response, settings.rate_limit_wait).await;
    }
    FalconMetrics::inc(&metrics.connections);
    tracing::info!(partition = resource.partition, ?start, "feed connected");
    let mut reader = FeedReader {
        partition: resource.partition,
        last: *last,
        held,
        metrics,
        splitter: LineSplitter::new(settings.max_line_bytes),
    };
    loop {
        let chunk = tokio::select! {
            _ = cancel.cancelled() => return FeedEnd::Cancelled,
            c = tokio::time::timeout(settings.idle_timeout, response.chunk()) => c,
        };
        let bytes = match chunk {
            Err(_) => {
                FalconMetrics::inc(&metrics.idle_timeouts);
                return FeedEnd::Idle(settings.idle_timeout);
            }
            Ok(Err(e)) => return FeedEnd::Broken(format!("reading: {}", error_chain(&e))),
            Ok(Ok(None)) if reader.splitter.has_partial() => {
                return FeedEnd::Broken("the stream ended in the middle of a line".to_string())
            }
            Ok(Ok(None)) => return FeedEnd::Eof,
            Ok(Ok(Some(bytes))) => bytes,
        };
        let batch = reader.items(bytes);
        if batch.is_empty() {
            // Nothing to hand over (keep-alives, repeats, events the topic
            // holds): the cursor may move past what was skipped.
            *last = reader.last;
            continue;
        }
        let sent = tokio::select! {
            _ = cancel.cancelled() => return FeedEnd::Cancelled,
            s = out.send(batch) => s,
        };
        if sent.is_err() {
            return FeedEnd::ConsumerGone;
        }
        // Only now is the batch the caller's: a batch dropped by cancellation
        // must be read again on reconnect, so the cursor moves after the send.
        *last = reader.last;
    }
}

/// Offset ranges of one partition that the topic already holds (inclusive,
/// sorted): the source skips events in them instead of appending them again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeldRuns(Vec<(u64, u64)>);

impl HeldRuns {
    /// Runs `(first, last)`, in any order.
    pub fn new(mut runs: Vec<(u64, u64)>) -> Self {
        runs.sort_unstable();
        Self(runs)
    }

    /// True when `offset` lies in a run.
    pub fn contains(&self, offset: u64) -> bool {
        let after = self.0.partition_point(|(first, _)| *first <= offset);
        self.0[..after].iter().rev().any(|(_, last)| offset <= *last)
    }

    /// The first offset at or after `offset` that no run holds.
    pub fn first_not_held(&self, mut offset: u64) -> u64 {
        for (first, last) in &self.0 {
            if (*first..=*last).contains(&offset) {
                offset = last.saturating_add(1);
            }
        }
        offset
    }

    /// True when there is no run.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Turns chunks into items for one partition, dropping repeated offsets.
/// `last` is the last offset put into a batch, which becomes the partition's
/// cursor only once that batch has been sent.
struct FeedReader<'a> {
    partition: u32,
    last: Option<u64>,
    held: &'a HeldRuns,
    metrics: &'a Arc<FalconMetrics>,
    splitter: LineSplitter,
}

impl FeedReader<'_> {
    fn items(&mut self, chunk: Bytes) -> Vec<FeedItem> {
        let mut lines = Vec::new();
        self.splitter.push(chunk, &mut lines);
        let mut items = Vec::with_capacity(lines.len());
        for line in lines {
            match line {
                Line::Complete(raw) => self.complete(raw, &mut items),
                Line::TooLong { sample, length } => {
                    let reason = format!("line of {length} bytes exceeds falcon.max_line_bytes");
                    self.reject(sample, reason, &mut items);
                }
            }
        }
        items
    }

    fn complete(&mut self, raw: Bytes, items: &mut Vec<FeedItem>) {
        match classify(&raw) {
            LineKind::Blank => FalconMetrics::inc(&self.metrics.keepalives),
            LineKind::Rejected(reason) => self.reject(raw, reason, items),
            LineKind::Event(offset) if self.last.is_some_and(|last| offset <= last) => {
                FalconMetrics::inc(&self.metrics.duplicates);
                tracing::debug!(partition = self.partition, offset, last = ?self.last, "dropping repeated offset");
            }
            LineKind::Event(offset) if self.held.contains(offset) => {
                self.last = Some(offset);
                FalconMetrics::inc(&self.metrics.already_in_topic);
            }
            LineKind::Event(offset) => {
                self.last = Some(offset);
                FalconMetrics::inc(&self.metrics.events);
                self.metrics
                    .event_bytes
                    .fetch_add(raw.len() as u64, std::sync::atomic::Ordering::Relaxed);
                let raw = trim_terminator(raw);
                items.push(FeedItem::Event(FalconRecord {
                    partition: self.partition,
                    offset,
                    raw,
                }));
            }
        }
    }

    fn reject(&mut self, raw: Bytes, reason: String, items: &mut Vec<FeedItem>) {
        FalconMetrics::inc(&self.metrics.rejected);
        tracing::warn!(partition = self.partition, previous_offset = ?self.last, %reason, "rejected a line from the feed");
        items.push(FeedItem::Rejected(RejectedLine {
            partition: self.partition,
            previous_offset: self.last,
            raw,
            reason,
        }));
    }
}

/// The raw line without a trailing `\r` (events are stored as sent, minus framing).
fn trim_terminator(raw: Bytes) -> Bytes {
    match raw.last() {
        Some(b'\r') => raw.slice(..raw.len() - 1),
        _ => raw,
    }
}

/// The feed URL with the start position and type filter appended.
pub fn feed_url(resource: &StreamResource, start: FeedStart, event_types: &[String]) -> url::Url {
    let mut url = resource.feed_url.clone();
    {
        let mut query = url.query_pairs_mut();
        match start {
            FeedStart::Oldest => {}
            FeedStart::Offset(offset) => {
                query.append_pair("offset", &offset.to_string());
            }
            FeedStart::Latest => {
                query.append_pair("whence", "2");
            }
        }
        if !event_types.is_empty() {
            query.append_pair("eventType", &event_types.join(","));
        }
    }
    url
}

/// Reads a non-200 answer as an error (never as events), with a bounded read.
async fn non_ok(response: reqwest::Response, rate_limit_wait_min: Duration) -> FeedEnd {
    let status = response.status().as_u16();
    if status == 429 {
        return FeedEnd::RateLimited(rate_limit_wait(response.headers(), rate_limit_wait_min));
    }
    let body = tokio::time::timeout(Duration::from_secs(10), response.bytes())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let message = envelope_message(&body);
    match status {
        401 => FeedEnd::Unauthorized(message),
        code => FeedEnd::Http(code, message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn resource() -> StreamResource {
        StreamResource {
            partition: 0,
            feed_url: url::Url::parse("http://127.0.0.1:1/sensors/entities/datafeed/v1/0?appId=a").expect("url"),
            session_token: Secret::new("s"),
            refresh_url: url::Url::parse("http://127.0.0.1:1/r/0").expect("url"),
            refresh_interval: Duration::from_secs(1800),
        }
    }

    #[test]
    fn urls_carry_start_and_filter() {
        let r = resource();
        assert!(feed_url(&r, FeedStart::Oldest, &[]).as_str().ends_with("?appId=a"));
        assert!(feed_url(&r, FeedStart::Offset(42), &[])
            .as_str()
            .ends_with("&offset=42"));
        let types = vec!["A".to_string(), "B".to_string()];
        assert!(feed_url(&r, FeedStart::Latest, &types)
            .as_str()
            .ends_with("&whence=2&eventType=A%2CB"));
    }

    #[test]
    fn reader_drops_repeats_and_rejects_junk() {
        let metrics = Arc::new(FalconMetrics::default());
        let held = HeldRuns::default();
        let mut reader = FeedReader {
            partition: 1,
            last: Some(4),
            held: &held,
            metrics: &metrics,
            splitter: LineSplitter::new(1 << 20),
        };
        let chunk = Bytes::from_static(
            b"{\"metadata\":{\"offset\":4}}\n\n{\"metadata\":{\"offset\":6}}\r\nnope\n{\"metadata\":{\"offset\":5}}\n",
        );
        let items = reader.items(chunk);
        assert_eq!(items.len(), 2);
        assert_eq!(
            items[0],
            FeedItem::Event(FalconRecord {
                partition: 1,
                offset: 6,
                raw: Bytes::from_static(b"{\"metadata\":{\"offset\":6}}")
            })
        );
        assert!(matches!(&items[1], FeedItem::Rejected(r) if r.previous_offset == Some(6)));
        assert_eq!(reader.last, Some(6));
        assert_eq!(metrics.duplicates.load(std::sync::atomic::Ordering::Relaxed), 2);
        assert_eq!(metrics.keepalives.load(std::sync::atomic::Ordering::Relaxed), 1);
    }

    #[test]
    fn held_runs_skip_what_the_topic_has() {
        let held = HeldRuns::new(vec![(200, 300), (100, 150), (140, 210)]);
        assert!(!held.contains(99));
        assert!(held.contains(100) && held.contains(205) && held.contains(300));
        assert!(!held.contains(301));
        assert_eq!(held.first_not_held(120), 301);
        assert_eq!(held.first_not_held(50), 50);
        assert_eq!(held.first_not_held(301), 301);
    }
}
