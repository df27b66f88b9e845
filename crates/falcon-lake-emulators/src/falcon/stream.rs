//! The emulated feed: `GET /sensors/entities/datafeed/v1/{partition}`, an endless
//! chunked NDJSON response with keep-alives, session expiry and injected faults.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::json::ObjectWriter;

use crate::falcon::api::{authorization, region_of, unauthorized, AppState, Params};
use crate::falcon::config::ControlFault;
use crate::falcon::state::{bump, EmulatorState, Session, StoredEvent};

/// Bytes gathered before a chunk is written.
const CHUNK_BYTES: usize = 64 * 1024;
/// Events read from the log at a time.
const READ_BATCH: usize = 512;
/// How often an idle feed re-checks its session.
const TICK: Duration = Duration::from_millis(100);

type Chunk = Result<Bytes, std::io::Error>;

/// `GET /sensors/entities/datafeed/v1/{partition}`.
pub async fn feed(
    State(state): State<AppState>,
    ConnectInfo(_client): ConnectInfo<SocketAddr>,
    Params(path): Params,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let region = region_of(&state, &path);
    let partition = path.get("partition").and_then(|p| p.parse::<u32>().ok());
    let session = authorization(&headers, "token").and_then(|t| state.session(&t));
    let app_id = query.get("appId").map(String::as_str).unwrap_or("");
    let session = match (session, partition) {
        (Some(s), Some(p)) if s.partition == p && s.region == region && s.app_id == app_id => s,
        _ => {
            bump(&state.stats.unauthorized);
            return unauthorized();
        }
    };
    if state.take_fault(|f| matches!(f, ControlFault::FeedHttp400)).is_some() {
        return (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "text/plain")],
            "Bad Request",
        )
            .into_response();
    }
    let log = &state.partitions[session.partition as usize];
    let offset_param = query.get("offset").and_then(|o| o.parse::<u64>().ok());
    let start = match (query.get("whence").map(String::as_str), offset_param) {
        (Some("2"), _) => log.len(),
        (_, Some(offset)) => log.index_of(offset),
        _ => 0,
    };
    let types: HashSet<String> = query
        .get("eventType")
        .map(|t| {
            t.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    state.mark_connection(&session.token, true);
    bump(&state.stats.feeds_opened);
    state.stats.feeds_open.fetch_add(1, Ordering::Relaxed);
    let offset_label = offset_param.map_or_else(|| "-1".to_string(), |o| o.to_string());
    inject_stream_event(&state, &session, "streamStarted", &offset_label, &types);
    let (tx, rx) = mpsc::channel::<Chunk>(8);
    let task = FeedTask {
        state: state.clone(),
        session,
        index: start,
        types,
        tx,
        buf: BytesMut::new(),
    };
    tokio::spawn(task.run());
    let body = Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|c| (c, rx))
    }));
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Writes one connection's events until the session ends or the client leaves.
struct FeedTask {
    state: Arc<EmulatorState>,
    session: Session,
    index: usize,
    types: HashSet<String>,
    tx: mpsc::Sender<Chunk>,
    buf: BytesMut,
}

/// How a step of the feed ended.
enum Step {
    Continue,
    /// End the response cleanly.
    End,
    /// Abort the connection (no terminating chunk).
    Abort,
    /// The client has gone.
    Gone,
}

impl FeedTask {
    async fn run(mut self) {
        let log_changes = self.state.partitions[self.session.partition as usize].subscribe();
        let step = self.stream(log_changes).await;
        match step {
            Step::End => {
                self.flush().await;
            }
            Step::Abort => {
                self.flush().await;
                let _ = self
                    .tx
                    .send(Err(std::io::Error::other("emulated connection abort")))
                    .await;
            }
            Step::Gone | Step::Continue => {}
        }
        self.state.mark_connection(&self.session.token, false);
        self.state.stats.feeds_open.fetch_sub(1, Ordering::Relaxed);
        inject_stream_event(&self.state, &self.session, "streamStopped", "-1", &self.types);
    }

    async fn stream(&mut self, mut log_changes: tokio::sync::watch::Receiver<u64>) -> Step {
        let mut last_write = Instant::now();
        let keepalive = self.state.config.keepalive;
        loop {
            if !self.state.session_alive(&self.session.token) {
                return Step::End;
            }
            let batch = self.state.partitions[self.session.partition as usize].read(self.index, READ_BATCH);
            if batch.is_empty() {
                if !self.flush().await {
                    return Step::Gone;
                }
                tokio::select! {
                    _ = log_changes.changed() => {}
                    _ = tokio::time::sleep(TICK) => {}
                    _ = self.tx.closed() => return Step::Gone,
                }
                if last_write.elapsed() >= keepalive {
                    if !self.send(Bytes::from_static(b"\n")).await {
                        return Step::Gone;
                    }
                    bump(&self.state.stats.keepalives);
                    last_write = Instant::now();
                }
                continue;
            }
            for event in batch {
                self.index += 1;
                if !self.types.is_empty() && !self.types.contains(event.event_type.as_ref()) {
                    continue;
                }
                match self.write_event(&event).await {
                    Step::Continue => {}
                    other => return other,
                }
            }
            if self.buf.len() >= CHUNK_BYTES && !self.flush().await {
                return Step::Gone;
            }
            last_write = Instant::now();
        }
    }

    /// Writes one event, applying a queued or random fault first.
    async fn write_event(&mut self, event: &StoredEvent) -> Step {
        match self.next_fault() {
            Some(ControlFault::FeedMalformed { .. }) => self.buf.put_slice(b"{\"metadata\":{\"offset\": oops\n"),
            Some(ControlFault::FeedNonObject { .. }) => self.buf.put_slice(b"400\n"),
            Some(ControlFault::FeedStall { millis, .. }) => {
                if !self.flush().await {
                    return Step::Gone;
                }
                tokio::time::sleep(Duration::from_millis(millis)).await;
            }
            Some(ControlFault::FeedTruncate { .. }) => {
                self.buf.put_slice(&event.line[..event.line.len() / 2]);
                return Step::Abort;
            }
            Some(ControlFault::FeedDisconnect { .. }) => {
                self.push_line(&event.line);
                return Step::End;
            }
            Some(ControlFault::FeedDuplicate { .. }) => {
                self.push_line(&event.line);
                let mut variant = BytesMut::from(&b"{\"duplicateOfOffset\":true,"[..]);
                variant.put_slice(&event.line[1..]);
                self.push_line(&variant);
                return Step::Continue;
            }
            _ => {}
        }
        self.push_line(&event.line);
        if self.buf.len() >= CHUNK_BYTES && !self.flush().await {
            return Step::Gone;
        }
        Step::Continue
    }

    fn push_line(&mut self, line: &[u8]) {
        self.buf.put_slice(line);
        self.buf.put_u8(b'\n');
        bump(&self.state.stats.events_served);
    }

    fn next_fault(&self) -> Option<ControlFault> {
        let partition = self.session.partition;
        let queued = self
            .state
            .take_fault(|f| f.is_stream_fault() && f.partition().is_none_or(|p| p == partition));
        if queued.is_some() {
            return queued;
        }
        let rates = self.state.config.faults;
        let p = Some(partition);
        let stall = self.state.config.stall.as_millis() as u64;
        let candidates = [
            (rates.truncate, ControlFault::FeedTruncate { partition: p }),
            (rates.disconnect, ControlFault::FeedDisconnect { partition: p }),
            (rates.malformed, ControlFault::FeedMalformed { partition: p }),
            (rates.non_object, ControlFault::FeedNonObject { partition: p }),
            (rates.duplicate, ControlFault::FeedDuplicate { partition: p }),
            (
                rates.stall,
                ControlFault::FeedStall {
                    partition: p,
                    millis: stall,
                },
            ),
        ];
        let fault = candidates
            .into_iter()
            .find(|(rate, _)| self.state.chance(*rate))
            .map(|(_, f)| f);
        if fault.is_some() {
            bump(&self.state.stats.faults_applied);
        }
        fault
    }

    async fn send(&self, bytes: Bytes) -> bool {
        self.tx.send(Ok(bytes)).await.is_ok()
    }

    async fn flush(&mut self) -> bool {
        if self.buf.is_empty() {
            return true;
        }
        let chunk = self.buf.split().freeze();
        self.send(chunk).await
    }
}

/// Appends the stream's own audit event (`streamStarted` / `streamStopped`).
fn inject_stream_event(
    state: &EmulatorState,
    session: &Session,
    operation: &str,
    offset: &str,
    types: &HashSet<String>,
) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let client = &state.config.client_id;
    let type_label = if types.is_empty() {
        "All event type(s)".to_string()
    } else {
        let mut sorted: Vec<&str> = types.iter().map(String::as_str).collect();
        sorted.sort_unstable();
        format!("[{}]", sorted.join(" "))
    };
    let pairs = [
        ("APIClientID", client.as_str()),
        ("partition", &session.partition.to_string()),
        ("offset", offset),
        ("appId", &session.app_id),
        ("eventType", &type_label),
    ]
    .iter()
    .map(|(k, v)| {
        let mut o = ObjectWriter::new();
        o.string("Key", k).string("ValueString", v);
        o.finish()
    })
    .collect::<Vec<_>>()
    .join(",");
    let mut event = ObjectWriter::new();
    event
        .string("UserId", &format!("api-client-id:{client}"))
        .string("UserIp", "127.0.0.1")
        .string("OperationName", operation)
        .string("ServiceName", "Crowdstrike Streaming API")
        .bool("Success", true)
        .int("UTCTimestamp", i128::from(now.as_secs()))
        .raw("AuditKeyValues", &format!("[{pairs}]"));
    let mut metadata = ObjectWriter::new();
    metadata
        .string("customerIDString", &state.config.cid)
        .string("eventType", "AuthActivityAuditEvent")
        .int("eventCreationTime", now.as_millis() as i128)
        .string("version", "1.0");
    let mut line = ObjectWriter::new();
    line.object("metadata", metadata).object("event", event);
    if let Err(e) = state.append_line(session.partition, &line.finish()) {
        tracing::warn!(error = %e, "could not append a stream audit event");
    }
}
