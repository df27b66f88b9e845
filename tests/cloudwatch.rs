//! The CloudWatch Logs destination, with the real AWS SDK signing real SigV4,
//! against the CloudWatch Logs emulator over loopback HTTP; and the emulator
//! itself, held to the specification (`cloudwatch-logs-and-ocsf.md` §1.11)
//! with the bare SDK.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_cloudwatchlogs::config::retry::RetryConfig;
use aws_sdk_cloudwatchlogs::config::{BehaviorVersion, Region};
use aws_sdk_cloudwatchlogs::error::ProvideErrorMetadata;
use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use serde_json::{json, Value};

use common::*;
use falcon_lake::cloudwatch::CloudWatchConfig;
use falcon_lake::emulate::cloudwatch::{CloudWatchEmulator, CloudWatchEmulatorConfig};
use falcon_lake::publish::{PublishItem, PublishMetrics, Publisher};

const GROUP: &str = "/falcon-lake/test";
const STREAM: &str = "tenant-1";
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as i64
}

fn emulator_config() -> CloudWatchEmulatorConfig {
    CloudWatchEmulatorConfig::new(ACCESS_KEY_ID, SECRET_ACCESS_KEY)
}

/// An emulator where the test group and stream exist already.
fn emulator_with_stream() -> CloudWatchEmulatorConfig {
    let mut config = emulator_config();
    config.log_streams = vec![format!("{GROUP}:{STREAM}")];
    config
}

async fn start(config: CloudWatchEmulatorConfig) -> (CloudWatchEmulator, Control) {
    init_logs();
    let emulator = CloudWatchEmulator::start(config).await.expect("emulator starts");
    let control = Control::new(emulator.url());
    (emulator, control)
}

/// A sink config for the emulator at `url`, with short back-offs.
fn sink_config(url: &url::Url) -> CloudWatchConfig {
    let mut config = CloudWatchConfig::new(GROUP, STREAM);
    config.aws.endpoint_url = Some(url.clone());
    config.aws.region = Some("us-east-1".to_string());
    config.publish.retry_initial_backoff = Duration::from_millis(20);
    config.publish.retry_max_backoff = Duration::from_millis(300);
    config.publish.linger = Duration::from_millis(20);
    config.publish.request_timeout = Duration::from_secs(5);
    config
}

/// An OCSF-like event at `time_ms`, keyed `cid_0_<i>`, `padding` bytes long at least.
fn item(i: u64, time_ms: i64, padding: usize) -> PublishItem<u64> {
    let uid = format!("cid_0_{i}");
    let message = json!({
        "class_uid": 3002,
        "activity_id": 1,
        "time": time_ms,
        "metadata": {"uid": uid, "version": "1.5.0", "product": {"name": "Falcon", "vendor_name": "CrowdStrike"}},
        "user": {"name": format!("user{i}@example.com")},
        "unmapped": {"padding": "p".repeat(padding)},
    })
    .to_string();
    PublishItem {
        id: uid,
        event_data: message,
        record_time_ms: None,
        token: i,
    }
}

/// `count` events spread over the last `span_ms`, in a scrambled order.
fn items(count: u64, span_ms: i64, padding: usize) -> Vec<PublishItem<u64>> {
    let now = now_ms() - 60_000;
    (0..count)
        .map(|i| {
            let scrambled = (i * 7919) % count.max(1);
            item(i, now - span_ms * scrambled as i64 / count.max(1) as i64, padding)
        })
        .collect()
}

fn all(count: u64) -> Vec<u64> {
    (0..count).collect()
}

/// Uids the emulator stored and how often.
async fn stored(control: &Control) -> BTreeMap<String, u64> {
    let messages = control.get("_emulator/messages").await;
    messages["uids"]
        .as_object()
        .expect("uids")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().expect("count")))
        .collect()
}

async fn stat(control: &Control, path: &str) -> u64 {
    let stats = control.get("_emulator/stats").await;
    path.split('.').fold(&stats, |v, k| &v[k]).as_u64().unwrap_or(0)
}

/// The bare SDK against the emulator, SDK retries off.
fn sdk(url: &url::Url) -> aws_sdk_cloudwatchlogs::Client {
    let config = aws_sdk_cloudwatchlogs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(url.as_str().trim_end_matches('/'))
        .credentials_provider(test_credentials())
        .retry_config(RetryConfig::disabled())
        .build();
    aws_sdk_cloudwatchlogs::Client::from_conf(config)
}

fn log_event(timestamp: i64, message: &str) -> InputLogEvent {
    InputLogEvent::builder()
        .timestamp(timestamp)
        .message(message)
        .build()
        .expect("event")
}

/// The code and message of a failed SDK call.
fn refusal<E: ProvideErrorMetadata, R>(
    result: Result<R, aws_sdk_cloudwatchlogs::error::SdkError<E>>,
) -> (String, String) {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(e) => (
            e.code().unwrap_or("none").to_string(),
            e.message().unwrap_or("").to_string(),
        ),
    }
}

/// A fatal error stops delivery with advice, and nothing is acknowledged.
fn assert_fatal(published: Published, code: &str, advice: &str) {
    let err = published.result.expect_err("fatal");
    assert_eq!(err.code, code, "{err}");
    assert!(err.to_string().contains(advice), "{err}");
    assert!(
        published.settlements.is_empty(),
        "nothing may be acknowledged after {code}: {:?}",
        published.settlements.len()
    );
}

#[tokio::test]
async fn delivers_sorted_requests_and_creates_the_missing_group_and_stream() {
    let (emulator, control) = start(emulator_config()).await;
    let mut sink = sink_config(emulator.url());
    // One batch, closed when the input ends: one request, sorted as a whole.
    sink.publish.linger = Duration::from_secs(30);
    sink.publish.max_in_flight = 1;
    let published = publish(sink, items(2_500, HOUR, 10)).await;
    published.result.as_ref().expect("no fatal error");
    assert_eq!(published.delivered(), all(2_500));
    let uids = stored(&control).await;
    assert_eq!(uids.len(), 2_500);
    assert!(uids.values().all(|n| *n == 1), "stored once each");
    assert_eq!(stat(&control, "requests.CreateLogGroup").await, 1);
    assert_eq!(stat(&control, "requests.CreateLogStream").await, 1);
    let codes = control.get("_emulator/stats").await["codes"].clone();
    assert_eq!(
        codes,
        json!({"ResourceNotFoundException": 1}),
        "only the first put found the group missing; no request was out of order"
    );
    let listed = control.get("_emulator/events").await;
    let times: Vec<i64> = listed["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["timestamp"].as_i64().expect("ts"))
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "each request arrived sorted");
}

#[tokio::test]
async fn a_missing_stream_is_created_in_an_existing_group() {
    let mut config = emulator_config();
    config.log_groups = vec![GROUP.to_string()];
    let (emulator, control) = start(config).await;
    let published = publish(sink_config(emulator.url()), items(10, HOUR, 10)).await;
    published.result.as_ref().expect("no fatal error");
    assert_eq!(published.delivered(), all(10));
    assert_eq!(stat(&control, "requests.CreateLogGroup").await, 0);
    assert_eq!(stat(&control, "requests.CreateLogStream").await, 1);
    assert_eq!(stored(&control).await.len(), 10);
}

#[tokio::test]
async fn missing_resources_stop_with_advice_when_creation_is_not_allowed() {
    let (emulator, control) = start(emulator_config()).await;
    let mut config = sink_config(emulator.url());
    config.create_missing_group = false;
    assert_fatal(
        publish(config, items(5, HOUR, 10)).await,
        "ResourceNotFoundException",
        "aws logs create-log-group",
    );
    let mut config = sink_config(emulator.url());
    config.create_missing_stream = false;
    let mut with_group = emulator_config();
    with_group.log_groups = vec![GROUP.to_string()];
    let (emulator2, _control2) = start(with_group).await;
    config.aws.endpoint_url = Some(emulator2.url().clone());
    assert_fatal(
        publish(config, items(5, HOUR, 10)).await,
        "ResourceNotFoundException",
        "create_missing_stream",
    );
    assert_eq!(stat(&control, "stored_events").await, 0);
}

#[tokio::test]
async fn too_old_too_new_and_valid_events_in_one_batch() {
    let (emulator, control) = start(emulator_with_stream()).await;
    let now = now_ms();
    let batch = vec![
        item(0, now - 15 * DAY, 10),
        item(1, now - HOUR, 10),
        item(2, now + 3 * HOUR, 10),
        item(3, now, 10),
        item(4, now - 14 * DAY + 60_000, 10),
    ];
    let published = publish(sink_config(emulator.url()), batch).await;
    published.result.as_ref().expect("no fatal error");
    let dead: Vec<(u64, String)> = published.dead().into_iter().map(|(t, c, _)| (t, c)).collect();
    assert_eq!(
        dead,
        vec![(0, "TooOld".into()), (2, "TooNew".into()), (4, "TooOld".into())],
        "refused before sending, with the reason"
    );
    assert!(
        published.dead().iter().all(|d| d.2.contains("CloudWatch Logs refuses")),
        "{:?}",
        published.dead()
    );
    assert_eq!(published.delivered(), vec![1, 3]);
    assert_eq!(stored(&control).await.len(), 2);
    assert_eq!(
        stat(&control, "too_old_events").await + stat(&control, "too_new_events").await,
        0,
        "nothing the service would refuse was sent"
    );
}

#[tokio::test]
async fn rejected_events_are_dead_lettered_exactly() {
    let mut config = emulator_with_stream();
    // The service's clock is an hour behind ours: what we find 1.5 h ahead, it
    // finds 2.5 h ahead.
    config.clock_offset_ms = -HOUR;
    let (emulator, control) = start(config).await;
    let sink = sink_config(emulator.url());
    let metrics = Arc::new(PublishMetrics::default());
    let publisher = Publisher::new(&sink, Some(test_credentials()), metrics.clone())
        .await
        .expect("publisher");
    // The retention shrinks after the sink looked: its own check passes what the
    // service now refuses as expired.
    sdk(emulator.url())
        .put_retention_policy()
        .log_group_name(GROUP)
        .retention_in_days(1)
        .send()
        .await
        .expect("retention");
    let now = now_ms();
    let batch = vec![
        item(0, now - 3 * DAY, 10),
        item(1, now - HOUR, 10),
        item(2, now, 10),
        item(3, now + 90 * 60_000, 10),
    ];
    let published = run_publisher(publisher, metrics, batch).await;
    published.result.as_ref().expect("no fatal error");
    let mut dead: Vec<(u64, String)> = published.dead().into_iter().map(|(t, c, _)| (t, c)).collect();
    dead.sort();
    assert_eq!(dead, vec![(0, "ExpiredLogEvent".into()), (3, "TooNewLogEvent".into())]);
    assert_eq!(
        published.delivered(),
        vec![1, 2],
        "Vector would count all four as delivered"
    );
    assert_eq!(
        stored(&control).await.keys().cloned().collect::<Vec<_>>(),
        ["cid_0_1", "cid_0_2"]
    );

    // A day ahead, with a long retention: what is 13.5 days old for us is too old for it.
    control
        .post("_emulator/clock", json!({"offset_ms": DAY}).to_string())
        .await;
    sdk(emulator.url())
        .put_retention_policy()
        .log_group_name(GROUP)
        .retention_in_days(30)
        .send()
        .await
        .expect("retention");
    let now = now_ms();
    let batch = vec![item(10, now - 13 * DAY - 12 * HOUR, 10), item(11, now - HOUR, 10)];
    let published = publish(sink, batch).await;
    published.result.as_ref().expect("no fatal error");
    let dead: Vec<(u64, String)> = published.dead().into_iter().map(|(t, c, _)| (t, c)).collect();
    assert_eq!(dead, vec![(10, "TooOldLogEvent".into())]);
    assert_eq!(published.delivered(), vec![11]);
    assert_eq!(stat(&control, "too_old_events").await, 1);
    assert_eq!(stat(&control, "expired_events").await, 1);
    assert_eq!(stat(&control, "too_new_events").await, 1);
}

#[tokio::test]
async fn splits_requests_that_would_span_more_than_a_day() {
    let (emulator, control) = start(emulator_with_stream()).await;
    let now = now_ms() - 60_000;
    // Hourly events over three days, newest first.
    let batch: Vec<PublishItem<u64>> = (0..=72).map(|h| item(h, now - h as i64 * HOUR, 10)).collect();
    let mut sink = sink_config(emulator.url());
    // One batch, closed when the input ends.
    sink.publish.linger = Duration::from_secs(30);
    let published = publish(sink, batch).await;
    published.result.as_ref().expect("no fatal error");
    assert_eq!(published.delivered(), all(73));
    assert_eq!(
        stat(&control, "requests.PutLogEvents").await,
        3,
        "25 + 25 + 23 hourly events, each request within 24 hours"
    );
    assert_eq!(
        control.get("_emulator/stats").await["codes"],
        json!({}),
        "the service refused none"
    );
}

#[tokio::test]
async fn keeps_requests_under_the_byte_limit_and_dead_letters_events_over_it() {
    let (emulator, control) = start(emulator_with_stream()).await;
    let mut batch = items(30, HOUR, 100_000);
    let mut huge = item(99, now_ms() - HOUR, 1_048_576);
    huge.token = 30;
    batch.push(huge);
    let published = publish(sink_config(emulator.url()), batch).await;
    published.result.as_ref().expect("no fatal error");
    assert_eq!(published.delivered(), all(30));
    let dead = published.dead();
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].0, dead[0].1.as_str()), (30, "EventTooLarge"));
    assert!(dead[0].2.contains("1 MB"), "{}", dead[0].2);
    let requests = stat(&control, "requests.PutLogEvents").await;
    assert!(
        requests >= 3,
        "30 events of 100 kB need at least 3 requests of 1 MiB, got {requests}"
    );
    assert_eq!(
        control.get("_emulator/stats").await["codes"],
        json!({}),
        "none was over the limit"
    );
}

#[tokio::test]
async fn retries_throttling_and_server_errors_without_storing_twice() {
    let mut config = emulator_with_stream();
    config.tps = 5.0;
    config.burst = Some(1.0);
    let (emulator, control) = start(config).await;
    for (fault, count) in [
        (
            json!({"fault": "exception", "code": "ThrottlingException", "operation": "PutLogEvents"}),
            3,
        ),
        (
            json!({"fault": "exception", "code": "ServiceUnavailableException", "status": 503, "operation": "PutLogEvents"}),
            2,
        ),
        (
            json!({"fault": "exception", "code": "InternalFailure", "status": 500, "operation": "PutLogEvents"}),
            1,
        ),
    ] {
        control
            .post(&format!("_emulator/faults?count={count}"), fault.to_string())
            .await;
    }
    let mut sink = sink_config(emulator.url());
    sink.publish.batch_max_events = 20;
    let published = publish(sink, items(200, HOUR, 10)).await;
    published.result.as_ref().expect("no fatal error");
    assert_eq!(published.delivered(), all(200));
    assert!(
        published.metrics.throttled.get() >= 3,
        "{}",
        published.metrics.throttled.get()
    );
    assert!(published.metrics.request_retries.get() >= 6);
    assert_eq!(
        stat(&control, "throttled_requests").await,
        published.metrics.throttled.get()
    );
    let uids = stored(&control).await;
    assert_eq!(uids.len(), 200);
    assert!(uids.values().all(|n| *n == 1), "refused requests stored nothing");
}

#[tokio::test]
async fn access_denied_stops_with_nothing_acknowledged() {
    let mut config = emulator_with_stream();
    config.denied = vec!["logs:PutLogEvents".to_string()];
    let (emulator, control) = start(config).await;
    assert_fatal(
        publish(sink_config(emulator.url()), items(20, HOUR, 10)).await,
        "AccessDeniedException",
        "logs:PutLogEvents",
    );
    assert_eq!(stat(&control, "stored_events").await, 0);

    let mut config = emulator_config();
    config.denied = vec!["logs:CreateLogGroup".to_string()];
    let (emulator, _control) = start(config).await;
    assert_fatal(
        publish(sink_config(emulator.url()), items(20, HOUR, 10)).await,
        "AccessDeniedException",
        "logs:CreateLogGroup",
    );
}

#[tokio::test]
async fn bad_credentials_are_fatal_and_never_printed() {
    let (emulator, _control) = start(emulator_with_stream()).await;
    let sink = sink_config(emulator.url());
    for (key, secret, code) in [
        (
            ACCESS_KEY_ID,
            "WrongSecretWrongSecretWrongSecretWrong00",
            "InvalidSignatureException",
        ),
        ("AKIAUNKNOWNKEY000000", SECRET_ACCESS_KEY, "UnrecognizedClientException"),
    ] {
        let creds = aws_credential_types::Credentials::new(key, secret, None, None, "test");
        let metrics = Arc::new(PublishMetrics::default());
        let publisher = Publisher::new(&sink, Some(creds), metrics.clone())
            .await
            .expect("publisher");
        let published = run_publisher(publisher, metrics, items(3, HOUR, 10)).await;
        let err = published.result.as_ref().expect_err("refused");
        assert_eq!(err.code, code);
        assert!(!err.to_string().contains("WrongSecret") && !err.to_string().contains(SECRET_ACCESS_KEY));
        assert!(published.settlements.is_empty());
    }
}

#[tokio::test]
async fn lost_replies_are_retried_at_least_once() {
    let (emulator, control) = start(emulator_with_stream()).await;
    control
        .post(
            "_emulator/faults",
            json!({"fault": "slow", "millis": 2_000}).to_string(),
        )
        .await;
    let mut sink = sink_config(emulator.url());
    sink.publish.request_timeout = Duration::from_millis(700);
    sink.publish.batch_max_events = 10;
    sink.publish.max_in_flight = 1;
    sink.publish.linger = Duration::from_secs(30);
    let published = publish(sink, items(30, HOUR, 10)).await;
    published.result.as_ref().expect("no fatal error");
    assert_eq!(published.delivered(), all(30));
    let uids = stored(&control).await;
    assert_eq!(uids.len(), 30);
    assert_eq!(
        uids.values().filter(|n| **n == 2).count(),
        10,
        "the timed-out request was stored, then resent: duplicates, never losses"
    );
}

// The emulator against the specification, with the bare SDK.

#[tokio::test]
async fn emulator_put_log_events_rules() {
    let (emulator, control) = start(emulator_with_stream()).await;
    let client = sdk(emulator.url());
    let now = now_ms();
    let put = |events: Vec<InputLogEvent>| {
        client
            .put_log_events()
            .log_group_name(GROUP)
            .log_stream_name(STREAM)
            .set_log_events(Some(events))
            .send()
    };

    let unsorted = put(vec![log_event(now, "b"), log_event(now - 1, "a")]).await;
    assert_eq!(
        refusal(unsorted),
        (
            "InvalidParameterException".to_string(),
            "Log events in a single PutLogEvents request must be in chronological order.".to_string()
        )
    );
    let span = put(vec![log_event(now - DAY - 1, "a"), log_event(now, "b")]).await;
    assert_eq!(
        refusal(span).1,
        "The batch of log events in a single PutLogEvents request cannot span more than 24 hours."
    );
    let exactly_a_day = put(vec![log_event(now - DAY, "a"), log_event(now, "b")]).await;
    assert!(exactly_a_day.is_ok(), "24 hours is not more than 24 hours");
    assert_eq!(
        stat(&control, "stored_events").await,
        2,
        "refused batches stored nothing"
    );

    let mixed = put(vec![
        log_event(now - 15 * DAY, "too old"),
        log_event(now - 20 * HOUR, "valid 1"),
        log_event(now, "valid 2"),
        log_event(now + 2 * HOUR - 1_000, "valid 3"),
        log_event(now + 3 * HOUR, "too new"),
    ])
    .await
    .expect("200 with rejects");
    let info = mixed.rejected_log_events_info().expect("rejected info");
    assert_eq!(
        info.too_old_log_event_end_index(),
        Some(1),
        "exclusive end: one old event"
    );
    assert_eq!(info.too_new_log_event_start_index(), Some(4), "inclusive start");
    assert_eq!(info.expired_log_event_end_index(), None);
    assert_eq!(stat(&control, "stored_events").await, 5);

    client
        .put_retention_policy()
        .log_group_name(GROUP)
        .retention_in_days(7)
        .send()
        .await
        .expect("retention");
    let expired = put(vec![log_event(now - 8 * DAY, "expired"), log_event(now, "valid")])
        .await
        .expect("200");
    let info = expired.rejected_log_events_info().expect("rejected info");
    assert_eq!(info.expired_log_event_end_index(), Some(1));
    assert_eq!(info.too_old_log_event_end_index(), None);
    let accepted = put(vec![log_event(now, "ok")]).await.expect("200");
    assert!(
        accepted.rejected_log_events_info().is_none(),
        "only when something was refused"
    );
    assert!(accepted.next_sequence_token().is_some());

    let fits = "x".repeat(1_048_576 / 2 - 26);
    assert!(
        put(vec![log_event(now, &fits), log_event(now, &fits)]).await.is_ok(),
        "exactly 1,048,576 bytes"
    );
    let over = put(vec![log_event(now, &fits), log_event(now, &format!("{fits}x"))]).await;
    assert_eq!(refusal(over).0, "InvalidParameterException");
    let many: Vec<InputLogEvent> = (0..10_001).map(|_| log_event(now, "m")).collect();
    let (code, message) = refusal(put(many).await);
    assert_eq!(code, "InvalidParameterException");
    assert!(message.starts_with("1 validation error detected: "), "{message}");
    let empty = put(vec![log_event(now, "")]).await;
    assert!(refusal(empty)
        .1
        .contains("'logEvents.1.member.message' failed to satisfy constraint"));
}

#[tokio::test]
async fn emulator_groups_streams_and_their_errors() {
    let (emulator, _control) = start(emulator_config()).await;
    let client = sdk(emulator.url());
    let put = client
        .put_log_events()
        .log_group_name(GROUP)
        .log_stream_name(STREAM)
        .log_events(log_event(now_ms(), "m"))
        .send()
        .await;
    assert_eq!(
        refusal(put),
        (
            "ResourceNotFoundException".to_string(),
            "The specified log group does not exist.".to_string()
        )
    );
    let reserved = client.create_log_group().log_group_name("aws/lambda").send().await;
    assert_eq!(refusal(reserved).0, "InvalidParameterException");
    let bad = client.create_log_group().log_group_name("a b").send().await;
    assert!(refusal(bad)
        .1
        .contains("Member must satisfy regular expression pattern: [\\.\\-_/#A-Za-z0-9]+"));
    client
        .create_log_group()
        .log_group_name(GROUP)
        .send()
        .await
        .expect("group");
    let twice = client.create_log_group().log_group_name(GROUP).send().await;
    assert_eq!(refusal(twice).0, "ResourceAlreadyExistsException");
    let put = client
        .put_log_events()
        .log_group_name(GROUP)
        .log_stream_name(STREAM)
        .log_events(log_event(now_ms(), "m"))
        .send()
        .await;
    assert_eq!(refusal(put).1, "The specified log stream does not exist.");
    for name in ["b", "a", STREAM] {
        client
            .create_log_stream()
            .log_group_name(GROUP)
            .log_stream_name(name)
            .send()
            .await
            .expect("stream");
    }
    let again = client
        .create_log_stream()
        .log_group_name(GROUP)
        .log_stream_name("a")
        .send()
        .await;
    assert_eq!(refusal(again).0, "ResourceAlreadyExistsException");
    let streams = client
        .describe_log_streams()
        .log_group_name(GROUP)
        .limit(2)
        .send()
        .await
        .expect("describe");
    let names: Vec<&str> = streams
        .log_streams()
        .iter()
        .filter_map(|s| s.log_stream_name())
        .collect();
    assert_eq!(names, ["a", "b"], "by name, paged");
    assert!(streams.next_token().is_some());
    let prefixed = client
        .describe_log_streams()
        .log_group_name(GROUP)
        .log_stream_name_prefix("ten")
        .send()
        .await
        .expect("describe");
    assert_eq!(prefixed.log_streams().len(), 1);
    let groups = client
        .describe_log_groups()
        .log_group_name_prefix("/falcon")
        .send()
        .await
        .expect("groups");
    assert_eq!(groups.log_groups().len(), 1);
    assert_eq!(groups.log_groups()[0].retention_in_days(), None);
    let bad_days = client
        .put_retention_policy()
        .log_group_name(GROUP)
        .retention_in_days(2)
        .send()
        .await;
    assert_eq!(refusal(bad_days).0, "InvalidParameterException");
}

#[tokio::test]
async fn emulator_reads_back_as_documented() {
    let (emulator, _control) = start(emulator_with_stream()).await;
    let client = sdk(emulator.url());
    let base = now_ms() - HOUR;
    let events: Vec<InputLogEvent> = (0..10)
        .map(|i| log_event(base + i * 1_000, &format!("event {i}")))
        .collect();
    client
        .put_log_events()
        .log_group_name(GROUP)
        .log_stream_name(STREAM)
        .set_log_events(Some(events))
        .send()
        .await
        .expect("put");
    let get = || client.get_log_events().log_group_name(GROUP).log_stream_name(STREAM);

    let newest = get().limit(3).send().await.expect("get");
    let messages = |o: &aws_sdk_cloudwatchlogs::operation::get_log_events::GetLogEventsOutput| {
        o.events()
            .iter()
            .filter_map(|e| e.message().map(str::to_string))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        messages(&newest),
        ["event 7", "event 8", "event 9"],
        "startFromHead defaults to false"
    );
    let oldest = get().limit(4).start_from_head(true).send().await.expect("get");
    assert_eq!(messages(&oldest), ["event 0", "event 1", "event 2", "event 3"]);
    let token = oldest.next_forward_token().expect("forward token").to_string();
    let next = get().limit(4).next_token(&token).send().await.expect("get");
    assert_eq!(messages(&next), ["event 4", "event 5", "event 6", "event 7"]);
    let mut token = next.next_forward_token().expect("token").to_string();
    let last = get().limit(4).next_token(&token).send().await.expect("get");
    assert_eq!(messages(&last), ["event 8", "event 9"]);
    token = last.next_forward_token().expect("token").to_string();
    let end = get().limit(4).next_token(&token).send().await.expect("get");
    assert!(end.events().is_empty());
    assert_eq!(
        end.next_forward_token(),
        Some(token.as_str()),
        "the same token at the end"
    );
    let back = get()
        .limit(2)
        .next_token(end.next_backward_token().expect("backward"))
        .send()
        .await
        .expect("get");
    assert_eq!(messages(&back), ["event 8", "event 9"]);
    let window = get()
        .start_time(base + 2_000)
        .end_time(base + 5_000)
        .start_from_head(true)
        .send()
        .await
        .expect("get");
    assert_eq!(
        messages(&window),
        ["event 2", "event 3", "event 4"],
        "start inclusive, end exclusive"
    );
    assert!(window.events().iter().all(|e| e.ingestion_time().is_some()));

    let filter = || client.filter_log_events().log_group_name(GROUP);
    let both = filter()
        .log_stream_names(STREAM)
        .log_stream_name_prefix("t")
        .send()
        .await;
    assert_eq!(refusal(both).0, "InvalidParameterException");
    let page = filter()
        .start_time(base + 2_000)
        .end_time(base + 5_000)
        .limit(2)
        .send()
        .await
        .expect("filter");
    let texts = |o: &aws_sdk_cloudwatchlogs::operation::filter_log_events::FilterLogEventsOutput| {
        o.events()
            .iter()
            .filter_map(|e| e.message().map(str::to_string))
            .collect::<Vec<_>>()
    };
    assert_eq!(texts(&page), ["event 2", "event 3"], "oldest first");
    let rest = filter()
        .start_time(base + 2_000)
        .end_time(base + 5_000)
        .limit(2)
        .next_token(page.next_token().expect("more"))
        .send()
        .await
        .expect("filter");
    assert_eq!(texts(&rest), ["event 4", "event 5"], "both ends inclusive");
    assert!(rest.next_token().is_none(), "absent when done");
    assert!(rest
        .events()
        .iter()
        .all(|e| e.event_id().is_some() && e.log_stream_name() == Some(STREAM)));
    let matched = filter().filter_pattern("\"event 7\"").send().await.expect("filter");
    assert_eq!(texts(&matched), ["event 7"]);
    let both_groups = client
        .get_log_events()
        .log_group_name(GROUP)
        .log_group_identifier(GROUP)
        .log_stream_name(STREAM)
        .send()
        .await;
    assert_eq!(refusal(both_groups).0, "InvalidParameterException");
}

#[tokio::test]
async fn emulator_speaks_aws_json_1_1_and_checks_signatures() {
    let (emulator, _control) = start(emulator_config()).await;
    let http = reqwest::Client::builder().no_proxy().build().expect("client");
    let unsigned = http
        .post(emulator.url().clone())
        .header("x-amz-target", "Logs_20140328.DescribeLogGroups")
        .header("content-type", "application/x-amz-json-1.1")
        .body("{}")
        .send()
        .await
        .expect("request");
    assert_eq!(unsigned.status(), 400);
    assert_eq!(unsigned.headers()["content-type"], "application/x-amz-json-1.1");
    assert!(unsigned.headers().contains_key("x-amzn-requestid"));
    let body: Value = unsigned.json().await.expect("json");
    assert_eq!(body["__type"], "MissingAuthenticationTokenException");
    let unknown = http
        .post(emulator.url().clone())
        .header("x-amz-target", "Logs_20140328.DeleteLogGroup")
        .header("content-type", "application/x-amz-json-1.1")
        .body("{}")
        .send()
        .await
        .expect("request");
    assert_eq!(unknown.status(), 400);
}

#[tokio::test]
async fn emulator_refuses_remote_listening_and_unbounded_counts() {
    let mut config = emulator_config();
    config.listen = "0.0.0.0:0".parse().expect("addr");
    let err = CloudWatchEmulator::start(config).await.expect_err("refused");
    assert!(err.to_string().contains("--allow-remote"), "{err}");
    let (emulator, _control) = start(emulator_config()).await;
    let http = reqwest::Client::builder().no_proxy().build().expect("client");
    let fault = json!({"fault": "exception", "code": "ThrottlingException"}).to_string();
    let too_many = http
        .post(emulator.url().join("_emulator/faults?count=10001").expect("url"))
        .body(fault.clone())
        .send()
        .await
        .expect("request");
    assert_eq!(too_many.status(), 400);
    assert!(too_many.text().await.expect("text").contains("10000"));
    let fine = http
        .post(emulator.url().join("_emulator/faults?count=10000").expect("url"))
        .body(fault)
        .send()
        .await
        .expect("request");
    assert_eq!(fine.status(), 204);
}

// The command line: demo and check against the emulators.

fn falcon_lake() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_falcon-lake"));
    command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_LOG", "warn");
    command
}

#[tokio::test]
async fn demo_delivers_to_cloudwatch_and_prints_the_summary() {
    let output = tokio::task::spawn_blocking(|| {
        falcon_lake()
            .args(["demo", "--sink", "cloudwatch", "--events", "600", "--timeout", "60s"])
            .output()
    })
    .await
    .expect("task")
    .expect("demo runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.contains("delivered to CloudWatch Logs:"))
        .unwrap_or_else(|| panic!("{stdout}"));
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    assert!(numbers.len() >= 4, "{line}");
    assert_eq!(numbers[0], numbers[1], "delivered all expected: {line}");
    assert!(numbers[0] > 0, "{line}");
    assert!(stdout.contains("dead-lettered:             0"), "{stdout}");
}

/// An embedded config for the Falcon emulator and a CloudWatch emulator, in a temp dir.
async fn check_against(cloudwatch: CloudWatchEmulatorConfig) -> (std::process::Output, CloudWatchEmulator) {
    let (falcon, _falcon_control) = start_falcon(falcon_emulator_config()).await;
    let (emulator, _control) = start(cloudwatch).await;
    let dir = tempfile::tempdir().expect("dir");
    let wasm = module_wasm();
    let db = dir.path().join("log.db");
    let text = falcon_lake::emulate::pipeline_config::EmulatedConfig {
        name: "check",
        falcon_url: falcon.url(),
        client_id: CLIENT_ID,
        cloudtrail_url: emulator.url(),
        channel_arn: CHANNEL_ARN,
        wasm: &wasm,
        db: &db,
        sync: "normal",
        extra_falcon: "",
        extra_cloudtrail: "",
        extra: "",
    }
    .yaml_with_cloudwatch(&falcon_lake::emulate::pipeline_config::EmulatedCloudWatch {
        url: emulator.url(),
        log_group: GROUP,
        log_stream: STREAM,
        extra: "",
    });
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, text).expect("config");
    let secrets = dir.path().join("secrets.txt");
    std::fs::write(&secrets, format!("FALCON_CLIENT_SECRET={CLIENT_SECRET}\n")).expect("secrets");
    let output = tokio::task::spawn_blocking(move || {
        let output = falcon_lake()
            .args(["check", "--config"])
            .arg(&config)
            .arg("--secrets")
            .arg(&secrets)
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
            .output();
        drop(dir);
        output
    })
    .await
    .expect("task")
    .expect("check runs");
    drop(falcon);
    (output, emulator)
}

#[tokio::test]
async fn check_proves_credentials_and_access_with_describe_log_streams() {
    let (output, emulator) = check_against(emulator_config()).await;
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("ok      cloudwatch:") && stdout.contains("will create it"),
        "{stdout}"
    );
    let stats = Control::new(emulator.url()).get("_emulator/stats").await;
    assert_eq!(stats["requests"]["DescribeLogStreams"], 1);
    assert_eq!(stats["stored_events"], 0, "check writes nothing");

    let mut denied = emulator_with_stream();
    denied.denied = vec!["logs:DescribeLogStreams".to_string()];
    let (output, _emulator) = check_against(denied).await;
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(!output.status.success(), "{stdout}");
    assert!(
        stdout.contains("FAILED  cloudwatch:") && stdout.contains("AccessDeniedException"),
        "{stdout}"
    );
}
