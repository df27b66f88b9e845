//! Connecting, topic create / list / delete, partition bounds.

use fluvio::metadata::partition::PartitionSpec;
use fluvio::metadata::topic::TopicSpec;

use crate::support::{cluster, connect, create_topic, produce, values, within};

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
    assert_eq!(names, [("one".into(), 1), ("three".into(), 3), ("two".into(), 2)], "system topics are hidden");
    let partitions = within(admin.all::<PartitionSpec>()).await?;
    assert_eq!(partitions.len(), 6);
    within(admin.delete::<TopicSpec>("two")).await?;
    let left: Vec<String> = within(admin.all::<TopicSpec>()).await?.into_iter().map(|t| t.name).collect();
    assert!(!left.contains(&"two".to_owned()));
    assert_eq!(within(admin.all::<PartitionSpec>()).await?.len(), 4);
    Ok(())
}
