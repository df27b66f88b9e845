//! The Fluvio deployment end to end: the connector binaries as child processes
//! (`--config`, `--secrets`, `FLV_PROFILE_PATH`) against the test cluster
//! (`crates/fluvio-testbed`, the real wire protocol) and both emulators.
//! `cargo test --workspace --test fluvio -- --nocapture` prints the figures.

mod common;
#[path = "fluvio/deployment.rs"]
mod deployment;

use std::time::Duration;

use deployment::*;

/// A small deployment delivers everything, once, and both connectors stop
/// cleanly on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_and_sink_deliver_everything_once() {
    let d = Deployment::start(Setup::new(3_000, 2, TopicSpec::partitions(1))).await;
    let source = d.spawn(Role::Source);
    d.wait_topic().await;
    let sink = d.spawn(Role::Sink);
    d.wait_topic_keys(1, 3_000, Duration::from_secs(60)).await;
    let expected = d.expected().await;
    assert!(!expected.is_empty());
    d.wait_delivered(&expected, Duration::from_secs(60)).await;
    assert_eq!(source.terminate(Duration::from_secs(10)), Some(0), "source exit");
    assert_eq!(sink.terminate(Duration::from_secs(10)), Some(0), "sink exit");
    let stored = d.stored().await;
    let duplicates: u64 = stored.values().map(|n| n - 1).sum();
    assert_eq!(duplicates, 0);
    let keys = d.topic_keys(1);
    let distinct: std::collections::HashSet<_> = keys.iter().collect();
    assert_eq!(distinct.len(), keys.len(), "each event once in the topic");
}
