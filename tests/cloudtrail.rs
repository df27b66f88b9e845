//! The CloudTrail publisher, with the real AWS SDK signing real SigV4, against
//! the CloudTrail Data emulator over loopback HTTP.

mod common;

use std::time::Duration;

use serde_json::json;

use common::*;
use falcon_lake::publish::PublishItem;

fn all(count: u64) -> Vec<u64> {
    (0..count).collect()
}

#[tokio::test]
async fn delivers_in_batches_of_100_with_checksums_and_the_recipient() {
    let (emulator, control) = start_cloudtrail(cloudtrail_emulator_config()).await;
    let mut config = publisher_config(emulator.url());
    // Batches close when full or when the input ends, not by time. How the input
    // arrives depends on scheduling, so only the lower bound is exact; the
    // emulator refuses a request over 100 events, so none was.
    config.publish.linger = Duration::from_secs(30);
    let published = publish(config, items(250, 10)).await;
    published.result.as_ref().expect("no fatal error");
    assert_eq!(published.delivered(), all(250));
    let requests = control.stat("requests").await;
    assert!(
        requests >= 3,
        "250 events need at least 3 requests of 100, got {requests}"
    );
    assert_eq!(
        control.get("_emulator/stats").await["codes"],
        json!({}),
        "no request was refused"
    );
    let ids = control.stored_ids().await;
    assert_eq!(ids.len(), 250);
    assert!(ids.values().all(|n| *n == 1), "stored once each");
    let events = control.get("_emulator/events?limit=1").await;
    let record = &events["events"][0]["record"];
    assert_eq!(record["eventCategory"], "ActivityAuditLog");
    assert_eq!(record["eventType"], "ActivityLog");
    assert_eq!(record["awsRegion"], "us-east-1");
    assert_eq!(record["metadata"]["channelARN"], CHANNEL_ARN);
    assert_eq!(
        record["eventData"]["recipientAccountId"], OWNER,
        "filled from the channel ARN"
    );
    assert_eq!(
        record["eventData"]["UID"],
        events["events"][0]["id"].as_str().map(|id| id.to_string()).expect("id")
    );
}

#[tokio::test]
async fn splits_requests_before_one_megabyte() {
    let (emulator, control) = start_cloudtrail(cloudtrail_emulator_config()).await;
    let published = publish(publisher_config(emulator.url()), items(100, 40_000)).await;
    published.result.as_ref().expect("no fatal error");
    assert_eq!(published.delivered(), all(100));
    let requests = control.stat("requests").await;
    assert!(
        requests >= 5,
        "100 events of ~40 kB need at least 5 requests under 900 kB, got {requests}"
    );
    assert_eq!(
        control.get("_emulator/stats").await["codes"],
        json!({}),
        "no request was refused"
    );
}

#[tokio::test]
async fn mixed_batches_retry_transient_events_and_dead_letter_the_rest() {
    let mut config = cloudtrail_emulator_config();
    config.strict_fields = true;
    let (emulator, control) = start_cloudtrail(config).await;
    control
        .post(
            "_emulator/faults?count=3",
            json!({"fault": "event_code", "code": "Throttling"}).to_string(),
        )
        .await;
    control
        .post(
            "_emulator/faults?count=2",
            json!({"fault": "event_code", "code": "InternalFailure"}).to_string(),
        )
        .await;
    let mut batch = items(50, 10);
    for i in [7u64, 19] {
        // An extra field the strict channel refuses per event, not per request.
        batch[i as usize].event_data = event_data(i, 10).replacen('{', "{\"undocumented\":1,", 1);
    }
    let published = publish(publisher_config(emulator.url()), batch).await;
    published.result.as_ref().expect("no fatal error");
    let dead = published.dead();
    assert_eq!(dead.iter().map(|d| d.0).collect::<Vec<_>>(), vec![7, 19]);
    assert!(
        dead.iter()
            .all(|d| d.1 == "InvalidData" && d.2.contains("undocumented")),
        "{dead:?}"
    );
    assert_eq!(published.delivered().len(), 48);
    assert_eq!(
        published.metrics.event_retries.get(),
        5,
        "only the throttled and failed events were resent"
    );
    let ids = control.stored_ids().await;
    assert_eq!(ids.len(), 48);
    assert!(ids.values().all(|n| *n == 1));
}

#[tokio::test]
async fn retries_and_slows_down_when_throttled() {
    let mut config = cloudtrail_emulator_config();
    config.tps = 10.0;
    config.burst = Some(2.0);
    let (emulator, control) = start_cloudtrail(config).await;
    let mut publisher = publisher_config(emulator.url());
    publisher.publish.batch_max_events = 10;
    let published = publish(publisher, items(300, 10)).await;
    published.result.as_ref().expect("no fatal error");
    assert_eq!(published.delivered(), all(300));
    assert!(published.metrics.throttled.get() > 0, "the emulator throttled");
    assert_eq!(
        control.stat("throttled_requests").await,
        published.metrics.throttled.get()
    );
    assert!(control.stored_ids().await.values().all(|n| *n == 1));
}

#[tokio::test]
async fn random_event_and_server_failures_lose_nothing() {
    let mut config = cloudtrail_emulator_config();
    config.event_failures =
        falcon_lake::emulate::cloudtrail::config::parse_event_rates("throttling=0.1,internal=0.05").expect("rates");
    config.request_failures =
        falcon_lake::emulate::cloudtrail::config::parse_request_rates("500=0.15,503=0.15").expect("rates");
    let (emulator, control) = start_cloudtrail(config).await;
    let published = publish(publisher_config(emulator.url()), items(1_000, 10)).await;
    published.result.as_ref().expect("no fatal error");
    assert_eq!(published.delivered(), all(1_000));
    assert!(published.metrics.event_retries.get() > 0 && published.metrics.request_retries.get() > 0);
    let ids = control.stored_ids().await;
    assert_eq!(ids.len(), 1_000);
    assert!(
        ids.values().all(|n| *n == 1),
        "5xx and per-event failures never store twice"
    );
}

#[tokio::test]
async fn lost_replies_are_retried_at_least_once() {
    let (emulator, control) = start_cloudtrail(cloudtrail_emulator_config()).await;
    control
        .post("_emulator/faults", json!({"fault": "malformed_body"}).to_string())
        .await;
    control
        .post(
            "_emulator/faults",
            json!({"fault": "slow", "millis": 2_000}).to_string(),
        )
        .await;
    let mut config = publisher_config(emulator.url());
    config.publish.request_timeout = Duration::from_millis(700);
    config.publish.batch_max_events = 10;
    config.publish.max_in_flight = 1;
    config.publish.linger = Duration::from_secs(30);
    let published = publish(config, items(40, 10)).await;
    published.result.as_ref().expect("no fatal error");
    assert_eq!(published.delivered(), all(40));
    let ids = control.stored_ids().await;
    let twice = ids.values().filter(|n| **n == 2).count();
    assert_eq!(
        twice, 20,
        "the malformed and the timed-out request were stored, then resent"
    );
}

#[tokio::test]
async fn duplicated_audit_event_id_is_resent_deduplicated() {
    let (emulator, control) = start_cloudtrail(cloudtrail_emulator_config()).await;
    control
        .post(
            "_emulator/faults",
            json!({"fault": "exception", "code": "DuplicatedAuditEventId"}).to_string(),
        )
        .await;
    let mut batch = items(30, 10);
    batch.push(PublishItem {
        token: 99,
        ..batch[5].clone()
    });
    let published = publish(publisher_config(emulator.url()), batch).await;
    published.result.as_ref().expect("no fatal error");
    let mut expected = all(30);
    expected.push(99);
    assert_eq!(
        published.delivered(),
        expected,
        "the repeated submission is settled with its twin"
    );
    let ids = control.stored_ids().await;
    assert_eq!(ids.len(), 30);
    assert!(ids.values().all(|n| *n == 1));
}

#[tokio::test]
async fn refuses_before_sending_what_would_never_be_accepted() {
    let (emulator, control) = start_cloudtrail(cloudtrail_emulator_config()).await;
    let mut batch = items(6, 10);
    batch[0].id = "has spaces".to_string();
    batch[1].event_data = "not json".to_string();
    batch[2].event_data = json!({"version": "1.0"}).to_string();
    batch[3].event_data = event_data(3, 1_200_000);
    // Within every field limit (details has none), yet larger than any request.
    let mut huge: serde_json::Value = serde_json::from_str(&event_data(4, 10)).expect("json");
    huge["userIdentity"]["details"] = json!({"blob": "b".repeat(950_000)});
    batch[4].event_data = huge.to_string();
    let published = publish(publisher_config(emulator.url()), batch).await;
    published.result.as_ref().expect("no fatal error");
    let codes: Vec<(u64, String)> = published.dead().into_iter().map(|(t, c, _)| (t, c)).collect();
    assert_eq!(
        codes,
        vec![
            (0, "InvalidId".into()),
            (1, "InvalidData".into()),
            (2, "FieldNotFound".into()),
            (3, "FieldTooLong".into()),
            (4, "EventTooLarge".into()),
        ]
    );
    assert!(
        published.dead().iter().all(|d| !d.2.is_empty()),
        "every dead letter has a reason"
    );
    assert_eq!(published.delivered(), vec![5]);
    assert_eq!(control.stored_ids().await.len(), 1);
}

/// A fatal error stops delivery with advice, and nothing is acknowledged.
async fn assert_fatal(published: Published, code: &str, advice: &str) {
    let err = published.result.expect_err("fatal");
    assert_eq!(err.code, code);
    assert!(err.to_string().contains(advice), "{err}");
    assert!(
        published.settlements.is_empty(),
        "nothing may be acknowledged after {code}"
    );
}

#[tokio::test]
async fn fatal_channel_errors_stop_with_advice() {
    let (emulator, control) = start_cloudtrail(cloudtrail_emulator_config()).await;
    let url = emulator.url().clone();

    let mut unknown = publisher_config(&url);
    unknown.channel_arn =
        "arn:aws:cloudtrail:us-east-1:111122223333:channel/00000000-0000-0000-0000-000000000000".into();
    assert_fatal(publish(unknown, items(10, 10)).await, "ChannelNotFound", "get-channel").await;

    for (code, advice) in [
        ("InvalidChannelARN", "not a valid channel ARN"),
        ("ChannelUnsupportedSchema", "ActivityAuditLog"),
        ("UnsupportedOperationException", "region"),
        ("AccessDeniedException", "cloudtrail-data:PutAuditEvents"),
    ] {
        control
            .post(
                "_emulator/faults",
                json!({"fault": "exception", "code": code}).to_string(),
            )
            .await;
        assert_fatal(publish(publisher_config(&url), items(10, 10)).await, code, advice).await;
    }
    assert_eq!(control.stat("stored_events").await, 0);
}

#[tokio::test]
async fn permissions_external_ids_and_signatures() {
    let mut config = cloudtrail_emulator_config();
    config.external_id = Some("falcon-lake-ext-42".to_string());
    let (emulator, control) = start_cloudtrail(config).await;
    let url = emulator.url().clone();

    assert_fatal(
        publish(publisher_config(&url), items(3, 10)).await,
        "ChannelInsufficientPermission",
        "cloudtrail.external_id",
    )
    .await;

    let mut with_id = publisher_config(&url);
    with_id.external_id = Some("falcon-lake-ext-42".to_string());
    let published = publish(with_id.clone(), items(3, 10)).await;
    published.result.as_ref().expect("delivered with the external ID");
    assert_eq!(published.delivered(), all(3));

    let metrics = std::sync::Arc::new(falcon_lake::publish::PublishMetrics::default());
    for (key, secret, code) in [
        (
            ACCESS_KEY_ID,
            "WrongSecretWrongSecretWrongSecretWrong00",
            "InvalidSignatureException",
        ),
        ("AKIAUNKNOWNKEY000000", SECRET_ACCESS_KEY, "UnrecognizedClientException"),
    ] {
        let creds = aws_sdk_cloudtraildata::config::Credentials::new(key, secret, None, None, "test");
        let publisher = falcon_lake::publish::Publisher::new(&with_id, Some(creds), metrics.clone())
            .await
            .expect("publisher");
        let (tx, rx) = tokio::sync::mpsc::channel(10);
        let (out, _settled) = tokio::sync::mpsc::channel(10);
        tx.send(items(1, 10).remove(0)).await.expect("send");
        drop(tx);
        let err = publisher.run(rx, out).await.expect_err("refused");
        assert_eq!(err.code, code);
        assert!(!err.to_string().contains("WrongSecret"));
    }
    assert_eq!(control.stat("stored_events").await, 3);
}

#[tokio::test]
async fn account_not_subscribed_and_wrong_recipient_are_fatal() {
    let mut config = cloudtrail_emulator_config();
    config.not_subscribed = true;
    let (emulator, _control) = start_cloudtrail(config).await;
    assert_fatal(
        publish(publisher_config(emulator.url()), items(5, 10)).await,
        "AccountNotSubscribed",
        "closed to new customers",
    )
    .await;

    let (emulator, _control) = start_cloudtrail(cloudtrail_emulator_config()).await;
    let mut batch = items(5, 10);
    batch[2].event_data = batch[2]
        .event_data
        .replacen('{', "{\"recipientAccountId\":\"999999999999\",", 1);
    let published = publish(publisher_config(emulator.url()), batch).await;
    let err = published.result.expect_err("fatal");
    assert_eq!(err.code, "InvalidRecipient");
    assert!(err.advice.contains("recipient_account_id"));
}

#[tokio::test]
async fn emulator_checks_limits_and_errors_in_aws_wire_format() {
    let (emulator, _control) = start_cloudtrail(cloudtrail_emulator_config()).await;
    let http = reqwest::Client::builder().no_proxy().build().expect("client");
    let mut url = emulator.url().join("PutAuditEvents").expect("url");
    url.query_pairs_mut().append_pair("channelArn", CHANNEL_ARN);
    let unsigned = http.post(url).body("{}").send().await.expect("request");
    assert_eq!(unsigned.status(), 403);
    assert_eq!(
        unsigned.headers()["x-amzn-errortype"],
        "MissingAuthenticationTokenException"
    );
    assert!(unsigned.headers().contains_key("x-amzn-requestid"));
    let body: serde_json::Value = unsigned.json().await.expect("json");
    assert_eq!(body["message"], "Missing Authentication Token");
    let other = http
        .get(emulator.url().join("nowhere").expect("url"))
        .send()
        .await
        .expect("request");
    assert_eq!(other.status(), 404);
}

#[tokio::test]
async fn request_level_validation_exception_stops_with_nothing_acknowledged() {
    let (emulator, control) = start_cloudtrail(cloudtrail_emulator_config()).await;
    control
        .post(
            "_emulator/faults",
            json!({"fault": "exception", "code": "ValidationException"}).to_string(),
        )
        .await;
    // Our request is wrong: every event would fail alike, so nothing is
    // dead-lettered one by one and nothing is acknowledged.
    assert_fatal(
        publish(publisher_config(emulator.url()), items(30, 10)).await,
        "ValidationException",
        "report this as a bug",
    )
    .await;
    assert_eq!(control.stat("stored_events").await, 0);
}

/// The bare CloudTrail Data SDK against the emulator at `url`.
fn cloudtrail_sdk(url: &url::Url) -> aws_sdk_cloudtraildata::Client {
    let config = aws_sdk_cloudtraildata::Config::builder()
        .behavior_version(aws_sdk_cloudtraildata::config::BehaviorVersion::latest())
        .region(aws_sdk_cloudtraildata::config::Region::new("us-east-1"))
        .endpoint_url(url.as_str().trim_end_matches('/'))
        .credentials_provider(test_credentials())
        .build();
    aws_sdk_cloudtraildata::Client::from_conf(config)
}

#[tokio::test]
async fn emulator_checks_the_external_id_with_the_ascii_pattern() {
    use aws_sdk_cloudtraildata::error::ProvideErrorMetadata;
    let (emulator, control) = start_cloudtrail(cloudtrail_emulator_config()).await;
    let event = aws_sdk_cloudtraildata::types::AuditEvent::builder()
        .id("cid_0_1")
        .event_data(event_data(1, 10).replacen('{', &format!("{{\"recipientAccountId\":\"{OWNER}\","), 1))
        .build()
        .expect("event");
    let client = cloudtrail_sdk(emulator.url());
    let send = |external_id: &'static str| {
        client
            .put_audit_events()
            .channel_arn(CHANNEL_ARN)
            .external_id(external_id)
            .audit_events(event.clone())
            .send()
    };
    // `\w` in AWS's pattern `^[\w+=,.@:\/-]*$` is ASCII: letters beyond it are refused.
    let err = send("extérieur-42").await.expect_err("refused").into_service_error();
    assert_eq!(err.code(), Some("ValidationException"), "{err:?}");
    let err = send("x").await.expect_err("too short").into_service_error();
    assert_eq!(err.code(), Some("ValidationException"));
    send("falcon-lake_ext.42@acme:x/y=z+w,v").await.expect("ASCII is fine");
    assert_eq!(control.stat("stored_events").await, 1);
}

#[tokio::test]
async fn emulator_refuses_remote_listening_and_unbounded_counts() {
    let mut config = cloudtrail_emulator_config();
    config.listen = "0.0.0.0:0".parse().expect("addr");
    let err = falcon_lake::emulate::cloudtrail::CloudTrailEmulator::start(config)
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("--allow-remote"), "{err}");
    let (emulator, _control) = start_cloudtrail(cloudtrail_emulator_config()).await;
    let http = reqwest::Client::builder().no_proxy().build().expect("client");
    let fault = json!({"fault": "malformed_body"}).to_string();
    for (count, status) in [("10001", 400), ("abc", 400), ("0", 400), ("10000", 204)] {
        let answer = http
            .post(
                emulator
                    .url()
                    .join(&format!("_emulator/faults?count={count}"))
                    .expect("url"),
            )
            .body(fault.clone())
            .send()
            .await
            .expect("request");
        assert_eq!(answer.status(), status, "count={count}");
    }
}
