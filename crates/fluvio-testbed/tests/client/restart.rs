//! The SPU going away and coming back on the same port: producers and
//! consumers recover, data and consumer offsets survive, the SC reports it.

use std::time::Duration;

use fluvio::consumer::OffsetManagementStrategy;
use fluvio::metadata::partition::{PartitionResolution, PartitionSpec};
use fluvio::metadata::spu::SpuSpec;
use fluvio::{Offset, RecordKey};

use crate::support::{cluster, commit, connect, create_topic, offsets, open, take, values, within};

#[tokio::test]
async fn producer_and_consumer_recover_from_an_spu_restart_on_the_same_port() -> anyhow::Result<()> {
    let cluster = cluster().await?;
    let fluvio = connect(&cluster).await?;
    create_topic(&fluvio, "bounce", 1).await?;
    let producer = within(fluvio.topic_producer("bounce")).await?;
    let sent = values(20, 50);
    for value in &sent[..10] {
        within(producer.send(RecordKey::NULL, value.clone())).await?;
    }
    within(producer.flush()).await?;
    let mut stream = open(&fluvio, |b| {
        b.topic("bounce")
            .partition(0)
            .offset_start(Offset::beginning())
            .offset_consumer("bouncer")
            .offset_strategy(OffsetManagementStrategy::Manual);
    })
    .await?;
    assert_eq!(offsets(&take(&mut stream, 10).await?), (0..10).collect::<Vec<_>>());
    commit(&mut stream).await?;

    let spu = cluster.spu_addr();
    cluster.stop_spu().await?;
    assert!(
        tokio::net::TcpStream::connect(spu).await.is_err(),
        "the SPU port is closed"
    );
    let admin = fluvio.admin().await;
    let spus = within(admin.all::<SpuSpec>()).await?;
    assert!(
        spus.iter().all(|s| s.status.is_offline()),
        "the SC reports the SPU offline"
    );
    let partitions = within(admin.all::<PartitionSpec>()).await?;
    assert!(partitions
        .iter()
        .all(|p| p.status.resolution == PartitionResolution::LeaderOffline));

    tokio::time::sleep(Duration::from_millis(200)).await;
    cluster.start_spu().await?;
    assert_eq!(cluster.spu_addr(), spu);
    let partitions = within(admin.all::<PartitionSpec>()).await?;
    assert!(partitions
        .iter()
        .all(|p| p.status.resolution == PartitionResolution::Online));
    // A restarted SPU refuses produces until it leads its partitions again
    // (see the warm-up test); these records are sent once it does.
    tokio::time::sleep(fluvio_testbed::DEFAULT_SPU_RESTART_WARMUP + Duration::from_millis(200)).await;

    for value in &sent[10..] {
        within(producer.send(RecordKey::NULL, value.clone())).await?;
    }
    within(producer.flush()).await?;
    let after = take(&mut stream, 10).await?;
    assert_eq!(
        offsets(&after),
        (10..20).collect::<Vec<_>>(),
        "the consumer resumes after its last record"
    );
    assert_eq!(
        after.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
        sent[10..].to_vec()
    );
    assert_eq!(
        cluster.consumer_offset("bounce", 0, "bouncer"),
        Some(9),
        "offsets survive the restart"
    );
    assert_eq!(cluster.records("bounce", 0)?.len(), 20);
    Ok(())
}

#[tokio::test]
async fn a_new_client_reads_what_was_written_before_the_restart() -> anyhow::Result<()> {
    let cluster = cluster().await?;
    let fluvio = connect(&cluster).await?;
    create_topic(&fluvio, "kept", 2).await?;
    crate::support::produce(&fluvio, "kept", 1, &values(5, 10), 5).await?;
    cluster.stop_spu().await?;
    cluster.start_spu().await?;
    let again = connect(&cluster).await?;
    let mut stream = crate::support::consumer(&again, "kept", 1, Offset::beginning(), None).await?;
    assert_eq!(offsets(&take(&mut stream, 5).await?), (0..5).collect::<Vec<_>>());
    Ok(())
}

#[tokio::test]
async fn the_sc_can_restart_too() -> anyhow::Result<()> {
    let cluster = cluster().await?;
    let fluvio = connect(&cluster).await?;
    create_topic(&fluvio, "survivor", 1).await?;
    cluster.stop_sc().await?;
    assert!(tokio::net::TcpStream::connect(cluster.sc_addr()).await.is_err());
    cluster.start_sc().await?;
    let again = connect(&cluster).await?;
    let topics = within(again.admin().await.all::<fluvio::metadata::topic::TopicSpec>()).await?;
    assert_eq!(topics.len(), 1);
    Ok(())
}

/// A restarted SPU leads nothing until it has loaded its replicas, as a real
/// one: produces are refused with NotLeaderForPartition (seen only through
/// `wait()`; `flush()` is Ok) and consumer offsets with PartitionNotLeader.
#[tokio::test]
async fn a_restarted_spu_is_not_the_leader_during_its_warmup() -> anyhow::Result<()> {
    crate::support::init_logs();
    let cluster = fluvio_testbed::TestCluster::builder()
        .spu_restart_warmup(Duration::from_secs(3))
        .start()
        .await?;
    let fluvio = connect(&cluster).await?;
    create_topic(&fluvio, "warm", 1).await?;
    let producer = within(fluvio.topic_producer("warm")).await?;
    within(producer.send(RecordKey::NULL, "before")).await?;
    within(producer.flush()).await?;
    cluster.stop_spu().await?;
    cluster.start_spu().await?;
    // A new client: the old one's first calls would go out on the sockets the
    // stop closed (and its producer's retry waits out a 60 s socket timeout),
    // which is not what this test is about.
    let fluvio = connect(&cluster).await?;
    let producer = within(fluvio.topic_producer("warm")).await?;
    let offsets_error = within(fluvio.consumer_offsets())
        .await
        .expect_err("offsets during the warm-up");
    assert!(
        format!("{offsets_error:#}").contains("not a leader"),
        "{offsets_error:#}"
    );
    let output = within(producer.send(RecordKey::NULL, "during")).await?;
    within(producer.flush()).await?;
    let refused = within(output.wait()).await.expect_err("refused during the warm-up");
    assert!(format!("{refused:#}").contains("not the leader"), "{refused:#}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    producer.clear_errors().await;
    let output = within(producer.send(RecordKey::NULL, "after")).await?;
    within(producer.flush()).await?;
    assert_eq!(
        within(output.wait()).await?.offset(),
        1,
        "the refused record was not written"
    );
    within(fluvio.consumer_offsets()).await?;
    Ok(())
}
