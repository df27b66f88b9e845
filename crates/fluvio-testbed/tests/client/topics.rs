//! Connecting, topic create / list / delete with the real SC's checks and
//! filters, partition bounds.

use std::time::Duration;

use fluvio::dataplane::link::ErrorCode;
use fluvio::metadata::partition::{PartitionResolution, PartitionSpec};
use fluvio::metadata::topic::{CleanupPolicy, SegmentBasedPolicy, TopicResolution, TopicSpec, TopicStorageConfig};
use fluvio_testbed::TestCluster;

use crate::support::{api_code, cluster, connect, create_topic, init_logs, produce, values, within};

#[tokio::test]
async fn connects_and_reports_the_platform_version() -> anyhow::Result<()> {
    let cluster = cluster().await?;
    let fluvio = connect(&cluster).await?;
    assert_eq!(fluvio.platform_version().to_string(), "0.18.1");
    Ok(())
}

#[tokio::test]
async fn creates_lists_and_deletes_topics_of_one_to_three_partitions() -> anyhow::Result<()> {
    let cluster = cluster().await?;
    let fluvio = connect(&cluster).await?;
    let admin = fluvio.admin().await;
    for (name, partitions) in [("one", 1), ("two", 2), ("three", 3)] {
        create_topic(&fluvio, name, partitions).await?;
    }
    let topics = within(admin.all::<TopicSpec>()).await?;
    let mut names: Vec<_> = topics.iter().map(|t| (t.name.clone(), t.spec.partitions())).collect();
    names.sort();
    assert_eq!(
        names,
        [("one".into(), 1), ("three".into(), 3), ("two".into(), 2)],
        "system topics are hidden"
    );
    assert!(topics
        .iter()
        .all(|t| t.status.resolution == TopicResolution::Provisioned));
    let mut partitions: Vec<String> = within(admin.all::<PartitionSpec>())
        .await?
        .into_iter()
        .map(|p| p.name)
        .collect();
    partitions.sort();
    assert_eq!(partitions, ["one-0", "three-0", "three-1", "three-2", "two-0", "two-1"]);
    assert!(
        cluster.topics().contains(&"consumer-offset".to_owned()),
        "the system topic exists"
    );

    within(admin.delete::<TopicSpec>("two")).await?;
    let left: Vec<String> = within(admin.all::<TopicSpec>())
        .await?
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert!(!left.contains(&"two".to_owned()));
    assert_eq!(within(admin.all::<PartitionSpec>()).await?.len(), 4);
    assert_eq!(cluster.partition_bounds("two", 0), None, "the data went with the topic");
    Ok(())
}

fn spec_with(retention_secs: Option<u32>, segment: Option<u32>, max_partition: Option<u64>) -> TopicSpec {
    let mut spec = TopicSpec::new_computed(1, 1, None);
    if let Some(time_in_seconds) = retention_secs {
        spec.set_cleanup_policy(CleanupPolicy::Segment(SegmentBasedPolicy { time_in_seconds }));
    }
    if segment.is_some() || max_partition.is_some() {
        spec.set_storage(TopicStorageConfig {
            segment_size: segment,
            max_partition_size: max_partition,
        });
    }
    spec
}

#[tokio::test]
async fn refuses_invalid_topics_with_the_real_codes_in_the_real_order() -> anyhow::Result<()> {
    let cluster = cluster().await?;
    let fluvio = connect(&cluster).await?;
    let admin = fluvio.admin().await;
    create_topic(&fluvio, "taken", 1).await?;
    let long = "a".repeat(64);
    let cases: Vec<(&str, TopicSpec, ErrorCode)> = vec![
        ("Upper", spec_with(None, None, None), ErrorCode::TopicInvalidName),
        ("under_score", spec_with(None, None, None), ErrorCode::TopicInvalidName),
        ("-lead", spec_with(None, None, None), ErrorCode::TopicInvalidName),
        ("trail-", spec_with(None, None, None), ErrorCode::TopicInvalidName),
        (long.as_str(), spec_with(None, None, None), ErrorCode::TopicInvalidName),
        // The name is checked first, then existence, then the configuration.
        ("Bad_Name", spec_with(Some(1), None, None), ErrorCode::TopicInvalidName),
        ("taken", spec_with(Some(1), None, None), ErrorCode::TopicAlreadyExists),
        (
            "short-retention",
            spec_with(Some(9), None, None),
            ErrorCode::TopicInvalidConfiguration,
        ),
        (
            "small-segment",
            spec_with(None, Some(1023), None),
            ErrorCode::TopicInvalidConfiguration,
        ),
        (
            "small-partition",
            spec_with(None, None, Some(2047)),
            ErrorCode::TopicInvalidConfiguration,
        ),
        (
            "partition-under-segment",
            spec_with(None, Some(4096), Some(4095)),
            ErrorCode::TopicInvalidConfiguration,
        ),
        (
            "no-partitions",
            TopicSpec::new_computed(0, 1, None),
            ErrorCode::TopicError,
        ),
        (
            "no-replicas",
            TopicSpec::new_computed(1, 0, None),
            ErrorCode::TopicError,
        ),
    ];
    for (name, spec, expected) in cases {
        let error = within(admin.create(name.to_owned(), false, spec))
            .await
            .expect_err(&format!("{name} must be refused"));
        assert_eq!(api_code(&error), Some(expected), "topic {name}: {error:#}");
    }
    let minimal = spec_with(Some(10), Some(1024), Some(2048));
    within(admin.create("minimal".to_owned(), false, minimal)).await?;
    let names: Vec<String> = within(admin.all::<TopicSpec>())
        .await?
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names.len(), 2, "only the valid topics exist: {names:?}");
    Ok(())
}

#[tokio::test]
async fn a_dry_run_creates_nothing() -> anyhow::Result<()> {
    let cluster = cluster().await?;
    let fluvio = connect(&cluster).await?;
    let admin = fluvio.admin().await;
    within(admin.create("dry".to_owned(), true, TopicSpec::new_computed(2, 1, None))).await?;
    assert!(within(admin.all::<TopicSpec>()).await?.is_empty());
    let error = within(admin.create("Dry".to_owned(), true, TopicSpec::new_computed(2, 1, None)))
        .await
        .expect_err("checks run on a dry run too");
    assert_eq!(api_code(&error), Some(ErrorCode::TopicInvalidName));
    Ok(())
}

#[tokio::test]
async fn more_replicas_than_spus_is_not_provisioned_and_the_topic_stays() -> anyhow::Result<()> {
    init_logs();
    let cluster = TestCluster::builder()
        .topic_provision_timeout(Duration::from_millis(300))
        .start()
        .await?;
    let fluvio = connect(&cluster).await?;
    let admin = fluvio.admin().await;
    let error = within(admin.create("wide".to_owned(), false, TopicSpec::new_computed(1, 2, None)))
        .await
        .expect_err("two replicas need two SPUs");
    assert_eq!(api_code(&error), Some(ErrorCode::TopicNotProvisioned));
    let topics = within(admin.list::<TopicSpec, String>(vec!["wide".to_owned()])).await?;
    assert_eq!(topics.len(), 1);
    assert_eq!(topics[0].status.resolution, TopicResolution::InsufficientResources);
    assert!(within(admin.all::<PartitionSpec>()).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn deletes_follow_the_real_rules() -> anyhow::Result<()> {
    let cluster = cluster().await?;
    let fluvio = connect(&cluster).await?;
    let admin = fluvio.admin().await;
    let error = within(admin.delete::<TopicSpec>("missing"))
        .await
        .expect_err("no such topic");
    assert_eq!(api_code(&error), Some(ErrorCode::TopicNotFound));
    let error = within(admin.delete::<TopicSpec>("consumer-offset"))
        .await
        .expect_err("a system topic needs force");
    assert!(
        matches!(api_code(&error), Some(ErrorCode::SystemSpecDeletionAttempt { .. })),
        "{error:#}"
    );
    assert!(cluster.topics().contains(&"consumer-offset".to_owned()));
    Ok(())
}

#[tokio::test]
async fn topic_filters_are_substrings_and_partition_lists_ignore_filters() -> anyhow::Result<()> {
    let cluster = cluster().await?;
    let fluvio = connect(&cluster).await?;
    let admin = fluvio.admin().await;
    for name in ["foo", "foo-bar", "bar"] {
        create_topic(&fluvio, name, 1).await?;
    }
    let mut found: Vec<String> = within(admin.list::<TopicSpec, String>(vec!["foo".to_owned()]))
        .await?
        .into_iter()
        .map(|t| t.name)
        .collect();
    found.sort();
    assert_eq!(found, ["foo", "foo-bar"]);
    let partitions = within(admin.list::<PartitionSpec, String>(vec!["bar-0".to_owned()])).await?;
    assert_eq!(
        partitions.len(),
        3,
        "the filter is ignored, the system partition hidden"
    );
    assert!(within(admin.list::<TopicSpec, String>(vec!["consumer".to_owned()]))
        .await?
        .is_empty());
    Ok(())
}

#[tokio::test]
async fn partition_status_reports_bounds_after_writes() -> anyhow::Result<()> {
    let cluster = cluster().await?;
    let fluvio = connect(&cluster).await?;
    let admin = fluvio.admin().await;
    create_topic(&fluvio, "bounds", 2).await?;
    produce(&fluvio, "bounds", 1, &values(25, 100), 10).await?;
    let mut partitions = within(admin.all::<PartitionSpec>()).await?;
    partitions.sort_by(|a, b| a.name.cmp(&b.name));
    let status: Vec<_> = partitions
        .iter()
        .map(|p| {
            (
                p.name.as_str(),
                p.status.leader.hw,
                p.status.leader.leo,
                p.status.base_offset,
            )
        })
        .collect();
    assert_eq!(status, [("bounds-0", 0, 0, 0), ("bounds-1", 25, 25, 0)]);
    assert!(partitions
        .iter()
        .all(|p| p.status.resolution == PartitionResolution::Online));
    assert!(partitions.iter().all(|p| p.spec.leader == cluster.spu_id()));
    Ok(())
}

/// The refusals read as a real 0.18.1 SC words them (seen on a local cluster
/// built from the fetched sources).
#[tokio::test]
async fn refusals_carry_the_real_sc_messages() -> anyhow::Result<()> {
    let cluster = cluster().await?;
    let fluvio = connect(&cluster).await?;
    let admin = fluvio.admin().await;
    let message = |error: anyhow::Error| match error.downcast_ref::<fluvio_sc_schema::ApiError>() {
        Some(fluvio_sc_schema::ApiError::Code(code, message)) => (Some(code.clone()), message.clone()),
        _ => (None, None),
    };
    create_topic(&fluvio, "taken", 1).await?;
    let again = within(admin.create("taken".to_owned(), false, TopicSpec::new_computed(1, 1, None)))
        .await
        .expect_err("exists");
    assert_eq!(
        message(again),
        (
            Some(ErrorCode::TopicAlreadyExists),
            Some("Topic 'taken' already exists".to_owned())
        )
    );
    let bad = within(admin.create("Bad_Name".to_owned(), false, TopicSpec::new_computed(1, 1, None)))
        .await
        .expect_err("invalid");
    let (code, text) = message(bad);
    assert_eq!(code, Some(ErrorCode::TopicInvalidName));
    assert!(
        text.as_deref()
            .is_some_and(|t| t.starts_with("Invalid topic name: 'Bad_Name'. ")),
        "{text:?}"
    );
    let missing = within(admin.delete::<TopicSpec>("absent".to_owned()))
        .await
        .expect_err("missing");
    assert_eq!(
        message(missing),
        (Some(ErrorCode::TopicNotFound), Some("not found".to_owned()))
    );
    Ok(())
}
