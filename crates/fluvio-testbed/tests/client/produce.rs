//! Produce: batches, server-assigned offsets, stored bytes, keys and
//! partitions, compression, the 32 MiB limit.

use std::time::Duration;

use fluvio::dataplane::link::ErrorCode;
use fluvio::{Compression, Offset, ProducerError, RecordKey, TopicProducerConfigBuilder};

use crate::support::{cluster, connect, consumer, create_topic, offsets, produce, take, values, within};

#[tokio::test]
async fn batches_get_dense_server_assigned_offsets_and_read_back_from_any_offset() -> anyhow::Result<()> {
    let cluster = cluster().await?;
    let fluvio = connect(&cluster).await?;
    create_topic(&fluvio, "batches", 1).await?;
    let sent = values(100, 200);
    let assigned = produce(&fluvio, "batches", 0, &sent, 10).await?;
    assert_eq!(assigned, (0..100).collect::<Vec<i64>>());
    let batches = cluster.batches("batches", 0);
    assert_eq!(batches.len(), 10, "one stored batch per producer batch");
    assert_eq!(
        batches.iter().map(|b| b.base_offset).collect::<Vec<_>>(),
        (0..100).step_by(10).collect::<Vec<i64>>()
    );
    let stored = cluster.records("batches", 0)?;
    assert_eq!(stored.iter().map(|r| r.value.clone()).collect::<Vec<_>>(), sent);

    for start in [0, 37, 90, 99] {
        let mut stream = consumer(&fluvio, "batches", 0, Offset::absolute(start)?, None).await?;
        let got = take(&mut stream, (100 - start) as usize).await?;
        assert_eq!(offsets(&got), (start..100).collect::<Vec<_>>(), "from {start}");
        assert_eq!(got[0].1, sent[start as usize]);
    }
    let mut tail = consumer(&fluvio, "batches", 0, Offset::from_end(3), None).await?;
    assert_eq!(offsets(&take(&mut tail, 3).await?), [97, 98, 99]);
    Ok(())
}

#[tokio::test]
async fn keyed_records_spread_over_partitions_and_keep_their_keys() -> anyhow::Result<()> {
    let cluster = cluster().await?;
    let fluvio = connect(&cluster).await?;
    create_topic(&fluvio, "keyed", 3).await?;
    let producer = within(fluvio.topic_producer("keyed")).await?;
    for i in 0..60 {
        within(producer.send(format!("key-{i}"), format!("value-{i}"))).await?;
    }
    within(producer.flush()).await?;
    let mut total = 0;
    for partition in 0..3 {
        let records = cluster.records("keyed", partition)?;
        assert!(!records.is_empty(), "partition {partition} got records");
        for record in &records {
            let key = String::from_utf8(record.key.clone().unwrap_or_default())?;
            let value = String::from_utf8(record.value.clone())?;
            assert_eq!(key.replace("key", "value"), value);
        }
        total += records.len();
    }
    assert_eq!(total, 60);
    Ok(())
}

#[tokio::test]
async fn compressed_batches_are_stored_as_sent() -> anyhow::Result<()> {
    let cluster = cluster().await?;
    let fluvio = connect(&cluster).await?;
    create_topic(&fluvio, "zipped", 1).await?;
    let config = TopicProducerConfigBuilder::default()
        .compression(Compression::Gzip)
        .linger(Duration::from_secs(3600))
        .build()?;
    let producer = within(fluvio.topic_producer_with_config("zipped", config)).await?;
    for value in values(20, 500) {
        within(producer.send(RecordKey::NULL, value)).await?;
    }
    within(producer.flush()).await?;
    let batches = cluster.batches("zipped", 0);
    assert!(batches.iter().all(|b| b.codec == 1), "gzip bits kept: {batches:?}");
    assert!(
        batches.iter().map(|b| b.bytes).sum::<usize>() < 20 * 500,
        "still compressed"
    );
    let mut stream = consumer(&fluvio, "zipped", 0, Offset::beginning(), None).await?;
    let got = take(&mut stream, 20).await?;
    assert_eq!(got.into_iter().map(|(_, v)| v).collect::<Vec<_>>(), values(20, 500));
    Ok(())
}

#[tokio::test]
async fn a_batch_over_32_mib_gets_message_too_large_and_nothing_is_written() -> anyhow::Result<()> {
    let cluster = cluster().await?;
    let fluvio = connect(&cluster).await?;
    create_topic(&fluvio, "big", 1).await?;
    let config = TopicProducerConfigBuilder::default()
        .max_request_size(64 * 1024 * 1024)
        .batch_size(64 * 1024 * 1024)
        .build()?;
    let producer = within(fluvio.topic_producer_with_config("big", config)).await?;
    let fits = within(producer.send(RecordKey::NULL, vec![b'a'; 32 * 1024 * 1024 - 1024])).await?;
    within(producer.flush()).await?;
    assert_eq!(
        within(fits.wait()).await?.offset(),
        0,
        "a batch just under 32 MiB is taken"
    );
    let too_big = within(producer.send(RecordKey::NULL, vec![b'b'; 32 * 1024 * 1024 + 1])).await?;
    within(producer.flush())
        .await
        .expect("flush ignores per-batch error codes (Q8)");
    let error = within(too_big.wait()).await.expect_err("over the limit");
    let code = error.downcast_ref::<fluvio::FluvioError>().and_then(|e| match e {
        fluvio::FluvioError::Producer(ProducerError::SpuErrorCode(code)) => Some(code.clone()),
        _ => None,
    });
    assert_eq!(code, Some(ErrorCode::MessageTooLarge), "{error:#}");
    assert_eq!(cluster.partition_bounds("big", 0).map(|b| b.end), Some(1));
    Ok(())
}

/// Volume through the default consumer: 1 MiB frames cut producer batches,
/// so the 0.50.1 client loses each cut batch's tail (Q1); every gap ends at a
/// stored batch boundary. A consumer whose frames hold the whole log loses
/// nothing.
#[tokio::test]
async fn twenty_thousand_records_go_through_with_q1_gaps_only_at_batch_boundaries() -> anyhow::Result<()> {
    let cluster = cluster().await?;
    let fluvio = connect(&cluster).await?;
    create_topic(&fluvio, "volume", 1).await?;
    let producer = within(fluvio.topic_producer("volume")).await?;
    for i in 0..20_000u32 {
        let mut value = i.to_be_bytes().to_vec();
        value.resize(1000, b'v');
        within(producer.send(RecordKey::NULL, value)).await?;
    }
    within(producer.flush()).await?;
    assert_eq!(cluster.partition_bounds("volume", 0).map(|b| b.end), Some(20_000));
    let boundaries: std::collections::BTreeSet<i64> =
        cluster.batches("volume", 0).iter().map(|b| b.base_offset).collect();

    let mut stream = consumer(&fluvio, "volume", 0, Offset::beginning(), None).await?;
    let mut seen: Vec<i64> = Vec::new();
    while seen.last() != Some(&19_999) {
        let (offset, value) = take(&mut stream, 1).await?.remove(0);
        assert_eq!(value[..4], (offset as u32).to_be_bytes());
        if let Some(previous) = seen.last() {
            assert!(offset > *previous, "in order, no duplicates");
            assert!(
                offset == previous + 1 || boundaries.contains(&offset),
                "a gap {previous} → {offset} ends at a batch start"
            );
        }
        seen.push(offset);
    }
    println!(
        "default consumer: {} of 20,000 records seen ({} batches stored)",
        seen.len(),
        boundaries.len()
    );

    let mut whole = consumer(&fluvio, "volume", 0, Offset::beginning(), Some(64 * 1024 * 1024)).await?;
    let got = take(&mut whole, 20_000).await?;
    assert!(got.iter().enumerate().all(|(i, (offset, _))| *offset == i as i64));
    Ok(())
}
