//! `status` and `dlq` on the Fluvio backend, against the test cluster
//! (`crates/fluvio-testbed`) through the real `fluvio` client and a profile
//! file, as an operator runs them next to the connectors.

mod common;

use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;

use common::*;
use falcon_lake::pipeline::deadletter::{DeadLetter, Origin, Stage};
use falcon_lake::topic::fluvio::{FluvioBackend, ProducerSettings, TopicDefinition};
use falcon_lake::topic::{NewRecord, OffsetCommitter, TopicWriter};

const TOPIC: &str = "falcon-events";

fn cli(profile: &std::path::Path, config: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_falcon-lake"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env("FLV_PROFILE_PATH", profile)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("falcon-lake runs")
}

fn json_of(output: &std::process::Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_and_redrive_on_fluvio() {
    init_logs();
    let cluster = fluvio_testbed::TestCluster::start().await.expect("test cluster");
    let profile = cluster.profile_path().to_path_buf();
    // Only this test runs in this binary: the client reads the profile from the environment.
    std::env::set_var("FLV_PROFILE_PATH", &profile);
    let backend = FluvioBackend::connect("ops-test").await.expect("connect");
    let dlq = format!("{TOPIC}-dlq");
    for topic in [TOPIC, dlq.as_str()] {
        backend
            .ensure_topic(&TopicDefinition::Name(topic.to_string()))
            .await
            .expect("topic");
    }

    // Raw events from the Falcon emulator's generator, keyed as the source keys them.
    let mut falcon = falcon_emulator_config();
    falcon.events = 300;
    let (emulator, _) = start_falcon(falcon).await;
    let events = emulator.state.partitions[0].read(0, usize::MAX);
    let raw = backend
        .writer(TOPIC, &ProducerSettings::default())
        .await
        .expect("writer");
    let records: Vec<NewRecord> = events
        .iter()
        .map(|e| NewRecord {
            key: Some(Bytes::from(falcon_lake::audit::SourceKey::new(0, e.offset).encode())),
            value: e.line.clone(),
        })
        .collect();
    raw.append(records).await.expect("append raw");

    // Three audit events CloudTrail refused (publish letters point at their raw record), one rejected line.
    let mapper = falcon_lake::audit::Mapper::new(falcon_lake::audit::MappingParams::default());
    let mut refused = Vec::new();
    let mut letters = Vec::new();
    for (topic_offset, event) in events.iter().enumerate() {
        let key = falcon_lake::audit::SourceKey::new(0, event.offset).encode();
        let ctx = falcon_lake::audit::RecordContext {
            key: Some(&key),
            timestamp_ms: 0,
        };
        if let falcon_lake::audit::Outcome::Emit(audit) = mapper.map(&ctx, &event.line) {
            letters.push(DeadLetter {
                stage: Stage::Publish,
                code: "InvalidData".into(),
                reason: "refused before the fix".into(),
                origin: Origin::Topic {
                    topic: TOPIC.into(),
                    partition: 0,
                    offset: topic_offset as u64,
                },
                key: Some(Bytes::from(key.clone())),
                raw: None,
                event: Some((audit.id.clone(), audit.event_data)),
            });
            refused.push(audit.id);
            if refused.len() == 3 {
                break;
            }
        }
    }
    letters.push(DeadLetter {
        stage: Stage::Source,
        code: "RejectedLine".into(),
        reason: "not a JSON object".into(),
        origin: Origin::Feed {
            partition: 0,
            previous_offset: Some(1_000),
        },
        key: None,
        raw: Some(Bytes::from_static(b"{\"metadata\":")),
        event: None,
    });
    let dead = backend
        .writer(&dlq, &ProducerSettings::default())
        .await
        .expect("writer");
    dead.append(letters.into_iter().map(|l| l.into_record(None)).collect())
        .await
        .expect("append letters");
    backend
        .committer(TOPIC, "lake-sink")
        .commit(&[(0, 99)])
        .await
        .expect("commit");

    let (cloudtrail, control) = start_cloudtrail(cloudtrail_emulator_config()).await;
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("sink.yaml");
    std::fs::write(
        &config,
        format!(
            "apiVersion: 0.2.0\nmeta:\n  name: lake-sink\n  type: cloudtrail-lake-sink\n  version: 0.1.0\n  topic: {TOPIC}\n  consumer:\n    id: lake-sink\n    offset:\n      start: beginning\n      strategy: manual\n\
             cloudtrail:\n  channel_arn: {CHANNEL_ARN}\n  endpoint_url: {}\n  linger: 20ms\ntransforms:\n  - uses: {}\n",
            cloudtrail.url(),
            module_wasm().display()
        ),
    )
    .expect("config");

    let status = cli(&profile, &config, &["status", "--json"]);
    assert_eq!(status.status.code(), Some(2), "no sink has run: stopped");
    let report = json_of(&status);
    assert_eq!(report["backend"], "fluvio");
    assert_eq!(report["topic"]["partitions"][0]["records"], events.len());
    let consumer = report["consumers"]
        .as_array()
        .expect("consumers")
        .iter()
        .find(|c| c["consumer"] == "lake-sink")
        .expect("the sink's consumer")
        .clone();
    assert_eq!(consumer["committed"], 99);
    assert_eq!(consumer["lag"], events.len() - 100);
    assert_eq!(
        report["falcon_partitions"][0]["last_offset"],
        events.last().expect("events").offset
    );
    assert_eq!(report["dead_letters"]["total"], 4);
    let groups = report["dead_letters"]["groups"].as_array().expect("groups");
    assert!(groups.iter().any(|g| g["code"] == "InvalidData" && g["count"] == 3));

    let redrive = cli(&profile, &config, &["dlq", "redrive", "--stage", "publish"]);
    let summary = String::from_utf8_lossy(&redrive.stderr);
    assert_eq!(redrive.status.code(), Some(0), "{summary}");
    assert!(summary.contains("3 selected; 3 delivered (3 events)"), "{summary}");
    let stored = control.get("_emulator/ids").await;
    for id in &refused {
        assert_eq!(stored["ids"][id], 1, "{id} delivered once: {stored}");
    }
    let again = cli(&profile, &config, &["dlq", "redrive", "--stage", "publish"]);
    let summary = String::from_utf8_lossy(&again.stderr);
    assert!(
        summary.contains("0 selected") && summary.contains("3 already redriven"),
        "{summary}"
    );
    assert_eq!(control.get("_emulator/ids").await, stored, "nothing resent");
    let listed = json_of(&cli(&profile, &config, &["dlq", "list", "--json"]));
    let marked = listed
        .as_array()
        .expect("letters")
        .iter()
        .filter(|l| l["redriven"]["outcome"] == "delivered")
        .count();
    assert_eq!(marked, 3);
    tokio::time::sleep(Duration::from_millis(10)).await;
}
