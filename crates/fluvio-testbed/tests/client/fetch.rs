//! StreamFetch: the real SPU's byte-cut frames and what the 0.50.1 client
//! makes of them (quirk Q1), new-data wakeups, a start past the end.

use std::time::Duration;

use fluvio::consumer::RetryMode;
use fluvio::dataplane::link::ErrorCode;
use fluvio::Offset;

use crate::support::{cluster, connect, consumer, create_topic, next, offsets, open, produce, quiet, take, values};

/// Q1: the SPU cuts a frame at `max_bytes` inside a batch; the client keeps
/// the records that fit, acknowledges the whole batch and never sees the
/// rest. This asserts the observed client behaviour so that a client or
/// server change that alters it is noticed.
#[tokio::test]
async fn a_batch_larger_than_max_bytes_loses_its_tail_in_the_0_50_1_client() -> anyhow::Result<()> {
    let cluster = cluster().await?;
    let fluvio = connect(&cluster).await?;
    create_topic(&fluvio, "cut", 1).await?;
    produce(&fluvio, "cut", 0, &values(100, 10_000), 100).await?;
    produce(&fluvio, "cut", 0, &values(10, 100), 10).await?;
    assert_eq!(cluster.batches("cut", 0).len(), 2);

    let max_bytes = 256 * 1024;
    let mut stream = consumer(&fluvio, "cut", 0, Offset::beginning(), Some(max_bytes)).await?;
    let mut seen = Vec::new();
    while seen.last().copied() != Some(109) {
        let (offset, _) = take(&mut stream, 1).await?.remove(0);
        seen.push(offset);
    }
    let kept = seen.iter().take_while(|o| **o < 100).count();
    assert!(
        kept > 0 && kept < 100,
        "some of the first batch fits in {max_bytes} bytes: {kept}"
    );
    assert!(
        kept as i32 * 10_000 <= max_bytes,
        "only records entirely inside the frame are yielded"
    );
    let expected: Vec<i64> = (0..kept as i64).chain(100..110).collect();
    assert_eq!(seen, expected, "records {kept}..99 are lost, the stream goes on at 100");
    assert_eq!(
        cluster.records("cut", 0)?.len(),
        110,
        "the loss is the client's: everything is stored"
    );

    let mut whole = consumer(&fluvio, "cut", 0, Offset::beginning(), Some(4 * 1024 * 1024)).await?;
    assert_eq!(
        offsets(&take(&mut whole, 110).await?),
        (0..110).collect::<Vec<_>>(),
        "a big enough max_bytes loses nothing"
    );
    Ok(())
}

/// Q1, the extreme: the frame holds the batch header but no whole record;
/// the client yields nothing of that batch and still moves past it.
#[tokio::test]
async fn a_frame_with_no_whole_record_skips_the_entire_batch() -> anyhow::Result<()> {
    let cluster = cluster().await?;
    let fluvio = connect(&cluster).await?;
    create_topic(&fluvio, "skip", 1).await?;
    produce(&fluvio, "skip", 0, &values(5, 1000), 5).await?;
    produce(&fluvio, "skip", 0, &values(1, 8), 1).await?;
    let mut stream = consumer(&fluvio, "skip", 0, Offset::beginning(), Some(100)).await?;
    assert_eq!(offsets(&take(&mut stream, 1).await?), [5]);
    Ok(())
}

/// Q2: a fetch starts at the batch containing the offset; the client drops
/// the records before it.
#[tokio::test]
async fn a_fetch_inside_a_batch_yields_from_the_requested_offset() -> anyhow::Result<()> {
    let cluster = cluster().await?;
    let fluvio = connect(&cluster).await?;
    create_topic(&fluvio, "inside", 1).await?;
    produce(&fluvio, "inside", 0, &values(20, 50), 20).await?;
    let mut stream = consumer(&fluvio, "inside", 0, Offset::absolute(13)?, None).await?;
    assert_eq!(offsets(&take(&mut stream, 7).await?), (13..20).collect::<Vec<_>>());
    Ok(())
}

#[tokio::test]
async fn a_waiting_consumer_wakes_up_on_new_data() -> anyhow::Result<()> {
    let cluster = cluster().await?;
    let fluvio = connect(&cluster).await?;
    create_topic(&fluvio, "live", 1).await?;
    let mut stream = consumer(&fluvio, "live", 0, Offset::beginning(), None).await?;
    assert!(
        quiet(&mut stream, Duration::from_millis(300)).await,
        "nothing to read yet"
    );
    for round in 0..3 {
        produce(&fluvio, "live", 0, &values(4, 10), 2).await?;
        let got = take(&mut stream, 4).await?;
        assert_eq!(offsets(&got), (round * 4..round * 4 + 4).collect::<Vec<i64>>());
    }
    Ok(())
}

#[tokio::test]
async fn a_start_past_the_log_end_is_an_error_frame() -> anyhow::Result<()> {
    let cluster = cluster().await?;
    let fluvio = connect(&cluster).await?;
    create_topic(&fluvio, "short", 1).await?;
    produce(&fluvio, "short", 0, &values(10, 10), 10).await?;
    let mut stream = open(&fluvio, |b| {
        b.topic("short")
            .partition(0)
            .offset_start(Offset::absolute(1000).expect("valid offset"))
            .retry_mode(RetryMode::Disabled);
    })
    .await?;
    match next(&mut stream).await? {
        Some(Err(ErrorCode::Other(message))) => assert_eq!(message, "start offset 1000 is greater than leo 10"),
        Some(Err(code)) => panic!("expected the SPU's error, got {code:?}"),
        Some(Ok(record)) => panic!("expected the SPU's error, got the record at {}", record.offset),
        None => panic!("expected the SPU's error, the stream ended"),
    }
    Ok(())
}

#[tokio::test]
async fn a_consumer_of_every_partition_gets_every_record() -> anyhow::Result<()> {
    let cluster = cluster().await?;
    let fluvio = connect(&cluster).await?;
    create_topic(&fluvio, "spread", 3).await?;
    for partition in 0..3 {
        produce(&fluvio, "spread", partition, &values(10 + partition as usize, 20), 4).await?;
    }
    let mut stream = open(&fluvio, |b| {
        b.topic("spread").offset_start(Offset::beginning());
    })
    .await?;
    let mut seen = Vec::new();
    while seen.len() < 33 {
        match next(&mut stream).await? {
            Some(Ok(record)) => seen.push((record.partition, record.offset)),
            Some(Err(code)) => anyhow::bail!("stream error {code:?}"),
            None => anyhow::bail!("stream ended"),
        }
    }
    seen.sort();
    let expected: Vec<(u32, i64)> = (0..3u32)
        .flat_map(|p| (0..10 + i64::from(p)).map(move |o| (p, o)))
        .collect();
    assert_eq!(seen, expected);
    Ok(())
}

#[tokio::test]
async fn disable_continuous_ends_at_the_high_watermark() -> anyhow::Result<()> {
    let cluster = cluster().await?;
    let fluvio = connect(&cluster).await?;
    create_topic(&fluvio, "finite", 1).await?;
    produce(&fluvio, "finite", 0, &values(12, 20), 4).await?;
    let mut stream = open(&fluvio, |b| {
        b.topic("finite")
            .partition(0)
            .offset_start(Offset::beginning())
            .disable_continuous(true);
    })
    .await?;
    assert_eq!(offsets(&take(&mut stream, 12).await?), (0..12).collect::<Vec<_>>());
    assert!(
        next(&mut stream).await?.is_none(),
        "the stream ends at the end of the log"
    );
    Ok(())
}

/// Q1 with a frame cut inside the first batch's header: nothing decodes, the
/// client never acknowledges, the stream stalls.
#[tokio::test]
async fn a_frame_cut_inside_the_batch_header_stalls_the_stream() -> anyhow::Result<()> {
    let cluster = cluster().await?;
    let fluvio = connect(&cluster).await?;
    create_topic(&fluvio, "stall", 1).await?;
    produce(&fluvio, "stall", 0, &values(3, 10), 3).await?;
    let mut stream = consumer(&fluvio, "stall", 0, Offset::beginning(), Some(40)).await?;
    assert!(
        quiet(&mut stream, Duration::from_millis(500)).await,
        "no record although three exist"
    );
    Ok(())
}

/// Q1 with a compressed batch cut short: the client cannot decompress it and
/// reports an error (with retries disabled, the error itself).
#[tokio::test]
async fn a_compressed_batch_cut_short_is_an_error_in_the_client() -> anyhow::Result<()> {
    use fluvio::{Compression, RecordKey, TopicProducerConfigBuilder};

    let cluster = cluster().await?;
    let fluvio = connect(&cluster).await?;
    create_topic(&fluvio, "zip-cut", 1).await?;
    let config = TopicProducerConfigBuilder::default()
        .compression(Compression::Gzip)
        .batch_size(64 * 1024)
        .linger(Duration::from_secs(3600))
        .build()?;
    let producer = crate::support::within(fluvio.topic_producer_with_config("zip-cut", config)).await?;
    let mut seed = 7u64;
    for _ in 0..20 {
        // Incompressible values, so the compressed batch stays larger than max_bytes.
        let value: Vec<u8> = (0..1000)
            .map(|_| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (seed >> 56) as u8
            })
            .collect();
        crate::support::within(producer.send(RecordKey::NULL, value)).await?;
    }
    crate::support::within(producer.flush()).await?;
    let stored = cluster.batches("zip-cut", 0);
    assert_eq!(stored.len(), 1);
    assert!(
        stored[0].bytes > 4096,
        "the compressed batch is {} bytes",
        stored[0].bytes
    );
    let mut stream = open(&fluvio, |b| {
        b.topic("zip-cut")
            .partition(0)
            .offset_start(Offset::beginning())
            .max_bytes(4096)
            .retry_mode(RetryMode::Disabled);
    })
    .await?;
    match next(&mut stream).await? {
        Some(Err(code)) => assert!(matches!(code, ErrorCode::Other(_)), "{code:?}"),
        Some(Ok(record)) => panic!("a record at {} came out of a cut compressed batch", record.offset),
        None => panic!("the stream ended"),
    }
    Ok(())
}
