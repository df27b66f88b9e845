//! Helpers shared by the client tests.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use fluvio::consumer::{ConsumerConfigExtBuilder, ConsumerStream, Record};
use fluvio::dataplane::link::ErrorCode;
use fluvio::metadata::topic::TopicSpec;
use fluvio::{Fluvio, FluvioClusterConfig, Offset, RecordKey, TopicProducerConfigBuilder};
use fluvio_testbed::TestCluster;
use futures::StreamExt;

/// How long any single wait in a test may take before it fails.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A cluster on free ports, with test logs when `RUST_LOG` asks for them.
pub async fn cluster() -> Result<TestCluster> {
    init_logs();
    TestCluster::start().await
}

pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
}

/// A client connected through the cluster's endpoint.
pub async fn connect(cluster: &TestCluster) -> Result<Fluvio> {
    let config = FluvioClusterConfig::new(cluster.sc_endpoint());
    within(Fluvio::connect_with_config(&config)).await
}

/// Creates a topic of `partitions` partitions.
pub async fn create_topic(fluvio: &Fluvio, name: &str, partitions: u32) -> Result<()> {
    let admin = fluvio.admin().await;
    within(admin.create(name.to_owned(), false, TopicSpec::new_computed(partitions, 1, None))).await
}

/// Produces `values` to one partition in batches of `per_batch` records (by
/// flushing after each group); returns each record's offset.
pub async fn produce(
    fluvio: &Fluvio,
    topic: &str,
    partition: u32,
    values: &[Vec<u8>],
    per_batch: usize,
) -> Result<Vec<i64>> {
    let config = TopicProducerConfigBuilder::default()
        .set_specific_partitioner(partition)
        .batch_size(64 * 1024 * 1024)
        .max_request_size(32 * 1024 * 1024)
        .linger(Duration::from_secs(3600))
        .build()
        .context("producer config")?;
    let producer = within(fluvio.topic_producer_with_config(topic, config)).await?;
    let mut offsets = Vec::with_capacity(values.len());
    for group in values.chunks(per_batch.max(1)) {
        let mut outputs = Vec::with_capacity(group.len());
        for value in group {
            outputs.push(within(producer.send(RecordKey::NULL, value.clone())).await?);
        }
        within(producer.flush()).await?;
        for output in outputs {
            offsets.push(within(output.wait()).await?.offset());
        }
    }
    Ok(offsets)
}

/// `count` values of `size` bytes, each starting with its index.
pub fn values(count: usize, size: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            let mut value = format!("{i:08}").into_bytes();
            value.resize(size.max(8), b'x');
            value
        })
        .collect()
}

/// The consumer stream type of the client.
pub type Stream = std::pin::Pin<Box<dyn ConsumerStream<Item = std::result::Result<Record, ErrorCode>> + Send>>;

/// A consumer of one partition from `offset`, optionally with `max_bytes`.
pub async fn consumer(
    fluvio: &Fluvio,
    topic: &str,
    partition: u32,
    offset: Offset,
    max_bytes: Option<i32>,
) -> Result<Stream> {
    open(fluvio, |b| {
        b.topic(topic).partition(partition).offset_start(offset);
        if let Some(max_bytes) = max_bytes {
            b.max_bytes(max_bytes);
        }
    })
    .await
}

/// A consumer configured by `configure`.
pub async fn open(fluvio: &Fluvio, configure: impl FnOnce(&mut ConsumerConfigExtBuilder)) -> Result<Stream> {
    let mut builder = ConsumerConfigExtBuilder::default();
    configure(&mut builder);
    let config = builder.build().context("consumer config")?;
    let stream = within(fluvio.consumer_with_config(config)).await?;
    Ok(Box::pin(stream))
}

/// The next `count` records of a stream (offset, value).
pub async fn take(stream: &mut Stream, count: usize) -> Result<Vec<(i64, Vec<u8>)>> {
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        match next(stream)
            .await
            .with_context(|| format!("after {} records", out.len()))?
        {
            Some(Ok(record)) => out.push((record.offset, record.value().to_vec())),
            Some(Err(code)) => bail!("stream error after {} records: {code:?}", out.len()),
            None => bail!("stream ended after {} records", out.len()),
        }
    }
    Ok(out)
}

/// The stream's next item, within [`PATIENCE`].
pub async fn next(stream: &mut Stream) -> Result<Option<std::result::Result<Record, ErrorCode>>> {
    tokio::time::timeout(PATIENCE, stream.next())
        .await
        .map_err(|_| anyhow::anyhow!("no record within {PATIENCE:?}"))
}

/// Whether the stream yields nothing within `wait`.
pub async fn quiet(stream: &mut Stream, wait: Duration) -> bool {
    tokio::time::timeout(wait, stream.next()).await.is_err()
}

/// Awaits `future` for at most [`PATIENCE`].
pub async fn within<T, E>(future: impl std::future::Future<Output = std::result::Result<T, E>>) -> Result<T>
where
    E: Into<anyhow::Error>,
{
    match tokio::time::timeout(PATIENCE, future).await {
        Ok(result) => result.map_err(Into::into),
        Err(_) => bail!("timed out after {PATIENCE:?}"),
    }
}

/// The offsets of `records`.
pub fn offsets(records: &[(i64, Vec<u8>)]) -> Vec<i64> {
    records.iter().map(|(offset, _)| *offset).collect()
}

/// The error code of a failed admin call.
pub fn api_code(error: &anyhow::Error) -> Option<ErrorCode> {
    match error.downcast_ref::<fluvio_sc_schema::ApiError>() {
        Some(fluvio_sc_schema::ApiError::Code(code, _)) => Some(code.clone()),
        _ => None,
    }
}

/// Commits the last yielded record of every partition and flushes it to the SPU.
pub async fn commit(stream: &mut Stream) -> Result<()> {
    stream
        .offset_commit()
        .await
        .map_err(|e| anyhow::anyhow!("offset commit: {e:?}"))?;
    within(stream.offset_flush())
        .await
        .map_err(|e| anyhow::anyhow!("offset flush: {e:#}"))
}
