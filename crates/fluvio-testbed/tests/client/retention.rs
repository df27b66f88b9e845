//! Retention: old segments go (by age and by size), the log start advances,
//! and a consumer below it is sent to the next available offset.

use std::time::Duration;

use fluvio::metadata::partition::PartitionSpec;
use fluvio::metadata::topic::{CleanupPolicy, SegmentBasedPolicy, TopicSpec, TopicStorageConfig};
use fluvio::{Fluvio, Offset};
use fluvio_testbed::TestCluster;

use crate::support::{cluster, connect, consumer, init_logs, offsets, produce, take, values, within, PATIENCE};

async fn small_segment_topic(fluvio: &Fluvio, name: &str, max_partition: Option<u64>) -> anyhow::Result<()> {
    let mut spec = TopicSpec::new_computed(1, 1, None);
    spec.set_cleanup_policy(CleanupPolicy::Segment(SegmentBasedPolicy { time_in_seconds: 10 }));
    spec.set_storage(TopicStorageConfig {
        segment_size: Some(1024),
        max_partition_size: max_partition,
    });
    within(fluvio.admin().await.create(name.to_owned(), false, spec)).await
}

#[tokio::test]
async fn expired_segments_are_removed_and_a_consumer_below_the_start_jumps_ahead() -> anyhow::Result<()> {
    let cluster = cluster().await?;
    let fluvio = connect(&cluster).await?;
    small_segment_topic(&fluvio, "aging", None).await?;
    produce(&fluvio, "aging", 0, &values(40, 200), 2).await?;
    assert_eq!(cluster.run_retention(), 0, "nothing is old yet");

    cluster.advance_clock(Duration::from_secs(11));
    let removed = cluster.run_retention();
    let bounds = cluster.partition_bounds("aging", 0).expect("partition");
    assert!(
        removed > 0 && bounds.start == removed,
        "removed {removed}, bounds {bounds:?}"
    );
    assert_eq!(bounds.end, 40);
    let left = cluster.batches("aging", 0);
    assert_eq!(
        left.first().map(|b| b.base_offset),
        Some(bounds.start),
        "whole segments go"
    );
    assert!(
        left.iter().map(|b| b.bytes).sum::<usize>() <= 1024,
        "only the active segment stays"
    );

    let partitions = within(fluvio.admin().await.all::<PartitionSpec>()).await?;
    assert_eq!(
        partitions[0].status.base_offset, 0,
        "the SC's status keeps base_offset 0 after retention, as the real SC does"
    );

    let mut stream = consumer(&fluvio, "aging", 0, Offset::absolute(0)?, None).await?;
    let got = take(&mut stream, (40 - bounds.start) as usize).await?;
    assert_eq!(
        offsets(&got),
        (bounds.start..40).collect::<Vec<_>>(),
        "OffsetEvicted sends the client to next_available"
    );
    Ok(())
}

#[tokio::test]
async fn a_partition_over_its_maximum_size_loses_its_oldest_segments() -> anyhow::Result<()> {
    let cluster = cluster().await?;
    let fluvio = connect(&cluster).await?;
    small_segment_topic(&fluvio, "bounded", Some(2048)).await?;
    produce(&fluvio, "bounded", 0, &values(20, 200), 2).await?;
    let before: usize = cluster.batches("bounded", 0).iter().map(|b| b.bytes).sum();
    assert!(before > 2048);
    assert!(cluster.run_retention() > 0);
    let after: usize = cluster.batches("bounded", 0).iter().map(|b| b.bytes).sum();
    assert!(after <= 2048, "{after} bytes left");
    assert_eq!(cluster.partition_bounds("bounded", 0).map(|b| b.end), Some(20));
    Ok(())
}

#[tokio::test]
async fn retention_also_runs_on_its_timer() -> anyhow::Result<()> {
    init_logs();
    let cluster = TestCluster::builder()
        .retention_interval(Duration::from_millis(100))
        .start()
        .await?;
    let fluvio = connect(&cluster).await?;
    small_segment_topic(&fluvio, "timed", None).await?;
    produce(&fluvio, "timed", 0, &values(10, 200), 2).await?;
    cluster.advance_clock(Duration::from_secs(11));
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while cluster.partition_bounds("timed", 0).map(|b| b.start) == Some(0) {
        assert!(tokio::time::Instant::now() < deadline, "the timer never ran retention");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}
