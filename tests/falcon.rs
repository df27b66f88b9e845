//! The Falcon Event Streams client against the Falcon emulator over loopback HTTP.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;

use common::*;
use falcon_lake::emulate::falcon::SessionLinger;
use falcon_lake::falcon::{FalconError, StartPosition};

const WAIT: Duration = Duration::from_secs(30);

/// Every event the client delivered for `partition` must be exactly the log's
/// distinct offsets, in order, with the bytes first served for that offset, up
/// to the last one delivered: no loss, no duplicate, no reordering.
async fn assert_exact_prefix(control: &Control, client: &RunningClient, partition: u32) -> usize {
    let log = control.falcon_events(partition).await;
    let mut expected: Vec<(u64, String)> = Vec::new();
    for (offset, line) in log {
        if expected.last().is_none_or(|(last, _)| offset > *last) {
            expected.push((offset, line));
        }
    }
    let delivered: Vec<(u64, String)> = client
        .events()
        .into_iter()
        .filter(|(p, _, _)| *p == partition)
        .map(|(_, o, raw)| (o, String::from_utf8(raw).expect("utf8")))
        .collect();
    assert!(delivered.len() <= expected.len(), "more events than the log holds");
    for (i, (got, want)) in delivered.iter().zip(&expected).enumerate() {
        assert_eq!(got.0, want.0, "partition {partition}: event #{i} has the wrong offset");
        assert_eq!(
            got.1, want.1,
            "partition {partition}: event #{i} (offset {}) differs",
            got.0
        );
    }
    delivered.len()
}

async fn start(events: u64, partitions: u32) -> (falcon_lake::emulate::falcon::FalconEmulator, Control) {
    let mut config = falcon_emulator_config();
    config.events = events;
    config.partitions = partitions;
    config.offset_gaps = 0.05;
    start_falcon(config).await
}

#[tokio::test]
async fn reads_every_partition_completely_and_in_order() {
    let (emulator, control) = start(3_000, 3).await;
    let client = RunningClient::start(client_config(emulator.url()), MapCursors::default());
    wait_until("3,000 events", WAIT, || client.events().len() >= 3_000).await;
    let mut total = 0;
    for partition in 0..3 {
        total += assert_exact_prefix(&control, &client, partition).await;
    }
    assert!(total >= 3_000);
    assert_eq!(control.stat("feeds_opened").await, 3, "one connection per partition");
    assert_eq!(client.counter("reconnects"), 0);
    client.stop().await.expect("clean stop");
}

#[tokio::test]
async fn refreshes_sessions_on_their_own_timer() {
    let mut config = falcon_emulator_config();
    config.refresh_interval = 1;
    config.partitions = 2;
    config.events = 10;
    let (emulator, control) = start_falcon(config).await;
    let client = RunningClient::start(client_config(emulator.url()), MapCursors::default());
    // A quiet stream: sessions of 1 s survive 4 s only if refreshed.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        client.counter("refreshes") >= 6,
        "refreshes: {}",
        client.counter("refreshes")
    );
    assert_eq!(client.counter("reconnects"), 0, "no session expired");
    assert_eq!(control.stat("feeds_opened").await, 2);
    control.post("_emulator/events/generate?count=20", "").await;
    wait_until("new events", WAIT, || client.events().len() >= 30).await;
    client.stop().await.expect("clean stop");
}

#[tokio::test]
async fn forced_expiry_reconnects_without_loss_or_duplicates() {
    let (emulator, control) = start(2_000, 2).await;
    let client = RunningClient::start(client_config(emulator.url()), MapCursors::default());
    wait_until("first events", WAIT, || client.events().len() >= 100).await;
    control.post("_emulator/sessions/expire", "").await;
    control.post("_emulator/events/generate?count=1000", "").await;
    wait_until("all 3,000 events", WAIT, || client.events().len() >= 3_000).await;
    assert!(client.counter("reconnects") >= 1);
    assert!(control.stat("discoveries").await >= 2, "re-discovered");
    for partition in 0..2 {
        assert_exact_prefix(&control, &client, partition).await;
    }
    client.stop().await.expect("clean stop");
}

#[tokio::test]
async fn refresh_404_and_feed_401_lead_to_rediscovery() {
    let mut config = falcon_emulator_config();
    config.refresh_interval = 1;
    config.events = 500;
    let (emulator, control) = start_falcon(config).await;
    control.fault(json!({"fault": "refresh_status", "status": 404})).await;
    let client = RunningClient::start(client_config(emulator.url()), MapCursors::default());
    wait_until("a reconnect after the refresh 404", WAIT, || {
        client.counter("connections") >= 2
    })
    .await;
    // Expired bearer tokens: the next refresh gets 401, the client authenticates again.
    control.post("_emulator/tokens/expire", "").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    control.post("_emulator/events/generate?count=500", "").await;
    wait_until("all events", WAIT, || client.events().len() >= 1_000).await;
    assert_exact_prefix(&control, &client, 0).await;
    assert!(control.stat("tokens_issued").await >= 3);
    client.stop().await.expect("clean stop");
}

/// Each fault: the client recovers and still delivers exactly the log. Stream
/// faults hit the open feeds; connection faults (token, discovery, feed status)
/// hit the next connection, so those are followed by a forced session expiry.
#[tokio::test]
async fn recovers_from_every_fault() {
    let (emulator, control) = start(0, 2).await;
    let mut config = client_config(emulator.url());
    config.idle_timeout = Duration::from_millis(1_500);
    let client = RunningClient::start(config, MapCursors::default());
    let faults = [
        (json!({"fault": "feed_truncate", "partition": 0}), false),
        (json!({"fault": "feed_disconnect", "partition": 1}), false),
        (json!({"fault": "feed_malformed", "partition": 0}), false),
        (json!({"fault": "feed_non_object", "partition": 1}), false),
        (json!({"fault": "feed_duplicate", "partition": 0}), false),
        (json!({"fault": "feed_stall", "partition": 1, "millis": 3_000}), false),
        (json!({"fault": "feed_http_400"}), true),
        (json!({"fault": "discovery_status", "status": 503}), true),
        (json!({"fault": "discovery_empty_body"}), true),
        (json!({"fault": "token_status", "status": 500}), true),
    ];
    let mut expected = 0;
    for (fault, on_reconnect) in faults {
        control.fault(fault.clone()).await;
        if on_reconnect {
            control.post("_emulator/sessions/expire", "").await;
        }
        control.post("_emulator/events/generate?count=200", "").await;
        expected += 200;
        wait_until(&format!("events after {fault}"), WAIT, || {
            client.events().len() >= expected
        })
        .await;
    }
    let deadline = Instant::now() + WAIT;
    while control.stat("faults_applied").await < 10 {
        assert!(Instant::now() < deadline, "not every fault was applied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for partition in 0..2 {
        assert_exact_prefix(&control, &client, partition).await;
    }
    let rejected = client.rejected();
    assert_eq!(rejected.len(), 2, "the malformed line and the non-object: {rejected:?}");
    assert!(rejected.iter().any(|r| r.raw.as_ref() == b"400" && r.partition == 1));
    assert!(rejected.iter().all(|r| r.reason.contains("not a JSON object")));
    assert!(client.counter("duplicates") >= 1, "the repeated offset was dropped");
    assert!(client.counter("idle_timeouts") >= 1, "the stall tripped the watchdog");
    assert!(client.counter("reconnects") >= 6);
    client.stop().await.expect("clean stop");
}

#[tokio::test]
async fn rejected_lines_name_partition_and_previous_offset() {
    let (emulator, control) = start(5, 1).await;
    let client = RunningClient::start(client_config(emulator.url()), MapCursors::default());
    wait_until("5 events", WAIT, || client.events().len() >= 5).await;
    let last = client.events().last().map(|e| e.1).expect("events");
    control
        .post("_emulator/events?partition=0&raw=true", "{\"event\":{}}")
        .await;
    control.fault(json!({"fault": "feed_malformed"})).await;
    control.post("_emulator/events/generate?count=1", "").await;
    wait_until("two rejections", WAIT, || client.rejected().len() >= 2).await;
    let rejected = client.rejected();
    assert_eq!(rejected[0].previous_offset, Some(last));
    assert!(rejected[0].reason.contains("metadata.offset"), "{}", rejected[0].reason);
    assert!(rejected[1].reason.contains("not a JSON object"));
    wait_until("the event after them", WAIT, || client.events().len() >= 6).await;
    client.stop().await.expect("clean stop");
}

#[tokio::test]
async fn held_app_id_is_retried_until_free() {
    let mut config = falcon_emulator_config();
    config.session_linger = SessionLinger::For(Duration::from_millis(1_500));
    config.events = 50;
    let (emulator, control) = start_falcon(config).await;
    let first = RunningClient::start(client_config(emulator.url()), MapCursors::default());
    wait_until("first client streaming", WAIT, || first.events().len() >= 50).await;
    first.stop().await.expect("clean stop");
    let began = Instant::now();
    let second = RunningClient::start(client_config(emulator.url()), MapCursors::default());
    wait_until("second client streaming", WAIT, || second.events().len() >= 50).await;
    assert!(second.counter("discovery_empty") >= 1, "the appId was held at first");
    assert!(control.stat("discoveries_empty").await >= 1);
    assert!(began.elapsed() >= Duration::from_millis(1_000), "waited for the linger");
    second.stop().await.expect("clean stop");
}

/// Issue 9 §8: at the emulator's default, as with the real API, a session
/// outlives its connection and holds the appId until it expires unrefreshed
/// (30 min). A restarted client gets its streams back within 30 s anyway (a
/// derived appId), resumes exactly after the last event, and only one set of
/// feeds is ever open.
#[tokio::test]
async fn a_restart_gets_its_streams_back_while_the_old_session_holds_the_app_id() {
    let (emulator, control) = start(300, 2).await;
    let url = emulator.url().clone();
    let first = RunningClient::start(client_config(&url), MapCursors::default());
    wait_until("first client streaming", WAIT, || first.events().len() >= 300).await;
    // A crash: the connections drop, nothing is closed cleanly.
    first.task.abort();
    let delivered = first.events();
    let last: HashMap<u32, u64> = delivered.iter().fold(HashMap::new(), |mut last, (p, o, _)| {
        last.insert(*p, (*o).max(last.get(p).copied().unwrap_or(0)));
        last
    });
    let deadline = Instant::now() + WAIT;
    while control.stat("feeds_open").await > 0 {
        assert!(Instant::now() < deadline, "the old feeds never closed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let began = Instant::now();
    let second = RunningClient::start(client_config(&url), MapCursors(last.clone()));
    control.post("_emulator/events/generate?count=100", "").await;
    wait_until("the second client streaming", Duration::from_secs(30), || {
        second.counter("connections") >= 2
    })
    .await;
    let took = began.elapsed();
    wait_until("the new events", WAIT, || second.events().len() >= 100).await;
    assert!(
        control.stat("discoveries_empty").await >= 1,
        "the configured appId was held"
    );
    assert_eq!(
        control.stat("feeds_open").await,
        2,
        "one feed per partition, no second set"
    );
    for partition in 0..2 {
        let log = control.falcon_events(partition).await;
        let after: Vec<u64> = log.iter().map(|(o, _)| *o).filter(|o| *o > last[&partition]).collect();
        let got: Vec<u64> = second
            .events()
            .iter()
            .filter(|(p, _, _)| *p == partition)
            .map(|(_, o, _)| *o)
            .collect();
        assert_eq!(
            got,
            after[..got.len()],
            "partition {partition}: resumed exactly after the last event"
        );
        assert!(got.len() >= 50, "partition {partition}: {} events", got.len());
    }
    println!("restart with the appId held: streaming again after {took:?}");
    second.stop().await.expect("clean stop");
}

#[tokio::test]
async fn honours_rate_limit_retry_after() {
    let (emulator, control) = start(10, 1).await;
    control
        .fault(json!({"fault": "token_rate_limited", "retry_after_secs": 2}))
        .await;
    let began = Instant::now();
    let client = RunningClient::start(client_config(emulator.url()), MapCursors::default());
    wait_until("events after the 429", WAIT, || client.events().len() >= 10).await;
    assert!(
        began.elapsed() >= Duration::from_millis(1_000),
        "waited per X-RateLimit-RetryAfter"
    );
    assert_eq!(client.counter("rate_limited"), 1);
    client.stop().await.expect("clean stop");
}

#[tokio::test]
async fn start_positions() {
    let (emulator, control) = start(100, 1).await;
    let log = control.falcon_events(0).await;
    let url = emulator.url().clone();

    let resume = RunningClient::start(client_config(&url), MapCursors(HashMap::from([(0, log[49].0)])));
    wait_until("resumed events", WAIT, || resume.events().len() >= 50).await;
    assert_eq!(
        resume.events()[0].1,
        log[50].0,
        "resume starts right after the last written offset"
    );
    resume.stop().await.expect("stop");

    let mut absolute = client_config(&url);
    absolute.start = StartPosition::Offset(log[90].0);
    let client = RunningClient::start(absolute, MapCursors(HashMap::from([(0, log[10].0)])));
    wait_until("events from the absolute offset", WAIT, || client.events().len() >= 10).await;
    assert_eq!(
        client.events()[0].1,
        log[90].0,
        "an explicit offset overrides the cursor"
    );
    client.stop().await.expect("stop");

    let mut latest = client_config(&url);
    latest.start = StartPosition::Latest;
    let client = RunningClient::start(latest, MapCursors::default());
    wait_until("connected", WAIT, || client.counter("connections") >= 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    control.post("_emulator/events/generate?count=5", "").await;
    wait_until("new events only", WAIT, || client.events().len() >= 5).await;
    assert!(
        client.events().iter().all(|e| e.1 > log[99].0),
        "whence=2 skips the backlog"
    );
    client.stop().await.expect("stop");
}

#[tokio::test]
async fn server_side_event_type_filter() {
    let (emulator, _control) = start(500, 1).await;
    let mut config = client_config(emulator.url());
    config.event_types = vec!["UserActivityAuditEvent".to_string()];
    let client = RunningClient::start(config, MapCursors::default());
    wait_until("filtered events", WAIT, || client.events().len() >= 20).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (_, _, raw) in client.events() {
        assert!(String::from_utf8_lossy(&raw).contains("\"eventType\":\"UserActivityAuditEvent\""));
    }
    client.stop().await.expect("stop");
}

#[tokio::test]
async fn keepalives_keep_an_idle_feed_open() {
    let (emulator, control) = start(1, 1).await;
    let mut config = client_config(emulator.url());
    config.idle_timeout = Duration::from_secs(1);
    let client = RunningClient::start(config, MapCursors::default());
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert!(
        client.counter("keepalives") >= 5,
        "keepalives: {}",
        client.counter("keepalives")
    );
    assert_eq!(client.counter("idle_timeouts"), 0);
    assert_eq!(control.stat("feeds_opened").await, 1);
    client.stop().await.expect("stop");
}

#[tokio::test]
async fn long_lines_are_accepted_and_overlong_ones_rejected() {
    let (emulator, control) = start(0, 1).await;
    let mut config = client_config(emulator.url());
    config.max_line_bytes = 17 * 1024 * 1024;
    let client = RunningClient::start(config, MapCursors::default());
    let big = "x".repeat(16 * 1024 * 1024 + 10);
    let line =
        json!({"metadata": {"eventType": "EppDetectionSummaryEvent"}, "event": {"CommandLine": big}}).to_string();
    control.post("_emulator/events?partition=0", line.clone()).await;
    let huge =
        json!({"metadata": {"eventType": "EppDetectionSummaryEvent"}, "event": {"x": "y".repeat(18 * 1024 * 1024)}});
    control.post("_emulator/events?partition=0", huge.to_string()).await;
    control.post("_emulator/events/generate?count=1", "").await;
    wait_until("the big event and the next one", WAIT, || client.events().len() >= 2).await;
    let events = client.events();
    let big_event = events
        .iter()
        .find(|e| e.2.len() > 16 * 1024 * 1024)
        .expect("the 16 MiB line arrived");
    let served = control.falcon_events(0).await;
    let (_, served_line) = served.iter().find(|(o, _)| *o == big_event.1).expect("in the log");
    assert_eq!(big_event.2, served_line.as_bytes(), "and arrived whole, byte for byte");
    assert!(line.len() > 16 * 1024 * 1024);
    let rejected = client.rejected();
    assert_eq!(rejected.len(), 1);
    assert!(
        rejected[0].reason.contains("exceeds falcon.max_line_bytes"),
        "{}",
        rejected[0].reason
    );
    assert_eq!(rejected[0].raw.len(), 64 * 1024, "a sample is kept, not the whole line");
    client.stop().await.expect("stop");
}

#[tokio::test]
async fn follows_a_308_to_the_home_cloud() {
    let mut config = falcon_emulator_config();
    config.home_region = Some("eu-1".to_string());
    config.events = 20;
    let (emulator, control) = start_falcon(config).await;
    let client = RunningClient::start(client_config(emulator.url()), MapCursors::default());
    wait_until("events from the home cloud", WAIT, || client.events().len() >= 20).await;
    assert_eq!(
        client.counter("token_requests"),
        2,
        "the 308 was followed with a second POST"
    );
    client.stop().await.expect("stop");

    // A token of eu-1 used against us-1 looks like the wrong cloud: 401, errors, no resources.
    let http = reqwest::Client::builder().no_proxy().build().expect("client");
    let token: serde_json::Value = http
        .post(emulator.url().join("_region/eu-1/oauth2/token").expect("url"))
        .body(format!("client_id={CLIENT_ID}&client_secret={CLIENT_SECRET}"))
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    let reply = http
        .get(
            emulator
                .url()
                .join("sensors/entities/datafeed/v2?appId=x")
                .expect("url"),
        )
        .bearer_auth(token["access_token"].as_str().expect("token"))
        .send()
        .await
        .expect("discovery");
    assert_eq!(reply.status(), 401);
    let body: serde_json::Value = reply.json().await.expect("json");
    assert!(body.get("resources").is_none() && body["errors"][0]["message"] == "access denied, invalid bearer token");
    drop(control);
}

#[tokio::test]
async fn bad_credentials_fail_fast_with_a_clear_message() {
    let (emulator, _control) = start(1, 1).await;
    let mut config = client_config(emulator.url());
    config.client_secret = falcon_lake::secret::Secret::new("WrongSecretWrongSecretWrongSecret0123456");
    let client = RunningClient::start(config, MapCursors::default());
    let result = tokio::time::timeout(WAIT, client.task)
        .await
        .expect("ends")
        .expect("task");
    let err = result.expect_err("credentials rejected");
    assert!(
        matches!(err, FalconError::CredentialsRejected { status: 403, .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("falcon.client_secret") && !text.contains("WrongSecret"),
        "{text}"
    );
}

/// Logs at trace level (ours, reqwest's, hyper's, the emulator's), `Debug` output
/// and errors never contain the client secret, a bearer token or a session token.
#[tokio::test(flavor = "current_thread")]
async fn secrets_never_reach_logs_debug_or_errors() {
    use std::sync::{Arc, Mutex};
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    // reqwest logs through `log`: route it into the same capture.
    let _ = tracing_log::LogTracer::init();

    let mut emulator_config = falcon_emulator_config();
    emulator_config.events = 300;
    emulator_config.refresh_interval = 1;
    let (emulator, control) = start_falcon(emulator_config).await;
    let config = client_config(emulator.url());
    let debug_config = format!("{config:?}");
    let client = RunningClient::start(config, MapCursors::default());
    wait_until("events", WAIT, || client.events().len() >= 300).await;
    control.fault(json!({"fault": "feed_truncate"})).await;
    control.post("_emulator/events/generate?count=10", "").await;
    wait_until("recovered", WAIT, || client.events().len() >= 310).await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    client.stop().await.expect("stop");

    let logs = String::from_utf8(capture.0.lock().expect("lock").clone()).expect("utf8");
    assert!(
        logs.contains("feed connected") && logs.contains("session refreshed"),
        "trace logs were captured"
    );
    for (what, text) in [("logs", &logs), ("Debug of the config", &debug_config)] {
        assert!(!text.contains(CLIENT_SECRET), "the client secret appears in {what}");
        assert!(
            !text.contains("client_secret="),
            "a token request body appears in {what}"
        );
        assert!(!credential_after(text, "token "), "a session token appears in {what}");
        assert!(!credential_after(text, "bearer "), "a bearer token appears in {what}");
    }
}

/// True when `scheme` (any case) is followed by something shaped like the
/// emulator's tokens (20+ characters of the base64url alphabet).
fn credential_after(text: &str, scheme: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    lower.match_indices(scheme).any(|(at, _)| {
        let rest = &text[at + scheme.len()..];
        rest.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .count()
            >= 20
    })
}
