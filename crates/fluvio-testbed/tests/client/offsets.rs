//! Consumer offsets through the stream session: manual commit and flush,
//! resume at stored + 1, listing, deletion.

use fluvio::consumer::OffsetManagementStrategy;
use fluvio::Offset;

use crate::support::{cluster, commit, connect, create_topic, offsets, open, produce, take, values, within};

#[tokio::test]
async fn manual_offsets_are_committed_flushed_fetched_and_deleted() -> anyhow::Result<()> {
    let cluster = cluster().await?;
    let fluvio = connect(&cluster).await?;
    create_topic(&fluvio, "orders", 1).await?;
    produce(&fluvio, "orders", 0, &values(20, 30), 5).await?;
    let manual = |b: &mut fluvio::consumer::ConsumerConfigExtBuilder| {
        b.topic("orders")
            .partition(0)
            .offset_start(Offset::beginning())
            .offset_consumer("sink-1")
            .offset_strategy(OffsetManagementStrategy::Manual);
    };

    let mut stream = open(&fluvio, manual).await?;
    assert_eq!(offsets(&take(&mut stream, 8).await?), (0..8).collect::<Vec<_>>());
    assert_eq!(
        cluster.consumer_offset("orders", 0, "sink-1"),
        None,
        "nothing stored before a flush"
    );
    commit(&mut stream).await?;
    assert_eq!(
        cluster.consumer_offset("orders", 0, "sink-1"),
        Some(7),
        "the last record handed over"
    );
    drop(stream);

    let listed = within(fluvio.consumer_offsets()).await?;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (
            listed[0].consumer_id.as_str(),
            listed[0].topic.as_str(),
            listed[0].partition,
            listed[0].offset
        ),
        ("sink-1", "orders", 0, 7)
    );

    let mut resumed = open(&fluvio, manual).await?;
    assert_eq!(
        offsets(&take(&mut resumed, 2).await?),
        [8, 9],
        "beginning() resumes at stored + 1"
    );
    drop(resumed);

    within(fluvio.delete_consumer_offset("sink-1", ("orders".to_owned(), 0))).await?;
    assert!(within(fluvio.consumer_offsets()).await?.is_empty());
    let mut fresh = open(&fluvio, manual).await?;
    assert_eq!(
        offsets(&take(&mut fresh, 1).await?),
        [0],
        "without a stored offset, beginning() is the log start"
    );
    Ok(())
}

#[tokio::test]
async fn offsets_are_per_consumer_and_partition_and_go_with_the_topic() -> anyhow::Result<()> {
    let cluster = cluster().await?;
    let fluvio = connect(&cluster).await?;
    create_topic(&fluvio, "pair", 2).await?;
    for partition in 0..2 {
        produce(&fluvio, "pair", partition, &values(10, 10), 10).await?;
    }
    for (id, partition, count) in [("a", 0u32, 3usize), ("a", 1, 5), ("b", 0, 9)] {
        let mut stream = open(&fluvio, |b| {
            b.topic("pair")
                .partition(partition)
                .offset_start(Offset::beginning())
                .offset_consumer(id)
                .offset_strategy(OffsetManagementStrategy::Manual);
        })
        .await?;
        take(&mut stream, count).await?;
        commit(&mut stream).await?;
    }
    let mut listed: Vec<_> = within(fluvio.consumer_offsets())
        .await?
        .into_iter()
        .map(|o| (o.consumer_id, o.partition, o.offset))
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        [("a".to_owned(), 0, 2), ("a".to_owned(), 1, 4), ("b".to_owned(), 0, 8)]
    );
    let admin = fluvio.admin().await;
    within(admin.delete::<fluvio::metadata::topic::TopicSpec>("pair")).await?;
    assert!(
        within(fluvio.consumer_offsets()).await?.is_empty(),
        "deleted with the topic"
    );
    Ok(())
}
