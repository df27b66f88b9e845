//! The wire itself: the profile file, and bad frames (which close only their
//! own connection or get an error code, never stop the servers).

use std::io::Cursor;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::{BufMut, Bytes, BytesMut};
use fluvio::config::{ConfigFile, TlsPolicy};
use fluvio::Fluvio;
use fluvio_protocol::api::RequestHeader;
use fluvio_protocol::link::versions::{ApiVersionsRequest, ApiVersionsResponse};
use fluvio_protocol::link::ErrorCode;
use fluvio_protocol::{Decoder, Encoder};
use fluvio_spu_schema::produce::ProduceResponse;
use fluvio_spu_schema::server::consumer_offset::{UpdateConsumerOffsetRequest, UpdateConsumerOffsetResponse};
use fluvio_spu_schema::server::update_offset::{OffsetUpdate, UpdateOffsetsRequest, UpdateOffsetsResponse};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{cluster, connect, create_topic, within};

#[tokio::test]
async fn the_profile_file_points_the_client_at_the_cluster() -> Result<()> {
    let cluster = cluster().await?;
    let path = cluster.profile_path().to_string_lossy().into_owned();
    let file = ConfigFile::load(Some(path))?;
    let config = file.config().current_cluster()?.clone();
    assert_eq!(config.endpoint, cluster.sc_endpoint());
    assert!(matches!(config.tls, TlsPolicy::Disabled));
    let fluvio = within(Fluvio::connect_with_config(&config)).await?;
    assert_eq!(fluvio.platform_version().to_string(), "0.18.1");
    Ok(())
}

fn frame(api_key: u16, version: i16, correlation_id: i32, body: &impl Encoder) -> Result<Bytes> {
    let mut header = RequestHeader::new_with_client(api_key, "wire-test");
    header.set_api_version(version).set_correlation_id(correlation_id);
    let mut payload = Vec::new();
    header.encode(&mut payload, 0)?;
    body.encode(&mut payload, version)?;
    Ok(sized(&payload))
}

fn sized(payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(4 + payload.len());
    out.put_i32(payload.len() as i32);
    out.put_slice(payload);
    out.freeze()
}

/// Reads one response; returns its correlation id and body.
async fn response(stream: &mut TcpStream) -> Result<(i32, Bytes)> {
    let mut size = [0u8; 4];
    within(stream.read_exact(&mut size)).await?;
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    within(stream.read_exact(&mut body)).await?;
    let correlation_id = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
    Ok((correlation_id, Bytes::from(body).slice(4..)))
}

fn decode<T: Decoder>(body: &Bytes, version: i16) -> Result<T> {
    T::decode_from(&mut Cursor::new(body.as_ref()), version).context("decoding the response")
}

/// Whether the server closes the connection (EOF) soon.
async fn closed(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(crate::support::PATIENCE, stream.read(&mut byte)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

async fn api_versions(stream: &mut TcpStream) -> Result<ApiVersionsResponse> {
    let request = ApiVersionsRequest {
        client_version: "0.50.1".to_owned(),
        ..Default::default()
    };
    stream.write_all(&frame(18, 2, 99, &request)?).await?;
    let (correlation_id, body) = response(stream).await?;
    if correlation_id != 99 {
        bail!("correlation id {correlation_id}");
    }
    decode(&body, 2)
}

fn key_ranges(table: &ApiVersionsResponse) -> Vec<(i16, i16, i16)> {
    table
        .api_keys
        .iter()
        .map(|k| (k.api_key, k.min_version, k.max_version))
        .collect()
}

#[tokio::test]
async fn api_versions_tables_are_the_real_ones() -> Result<()> {
    let cluster = cluster().await?;
    let mut sc = TcpStream::connect(cluster.sc_addr()).await?;
    let table = api_versions(&mut sc).await?;
    let keys = key_ranges(&table);
    assert_eq!(
        keys,
        [
            (1001, 9, 19),
            (1002, 1, 19),
            (1003, 15, 19),
            (1004, 15, 19),
            (1005, 14, 19),
            (1006, 1, 19)
        ]
    );
    assert_eq!(table.platform_version.to_semver().to_string(), "0.18.1");
    let mut spu = TcpStream::connect(cluster.spu_addr()).await?;
    let table = api_versions(&mut spu).await?;
    let keys = key_ranges(&table);
    assert_eq!(
        keys,
        [(0, 0, 25), (1, 0, 25), (1002, 25, 25), (1003, 0, 25), (1005, 0, 0)]
    );
    assert_eq!(table.platform_version.to_semver().to_string(), "0.0.0");
    Ok(())
}

#[tokio::test]
async fn garbage_closes_only_its_own_connection() -> Result<()> {
    let cluster = cluster().await?;
    for addr in [cluster.sc_addr(), cluster.spu_addr()] {
        let mut garbage = TcpStream::connect(addr).await?;
        garbage.write_all(&sized(&[0xff; 9])).await?;
        assert!(
            closed(&mut garbage).await,
            "{addr}: an undecodable request closes the connection"
        );
        let mut negative = TcpStream::connect(addr).await?;
        negative.write_all(&(-5i32).to_be_bytes()).await?;
        assert!(
            closed(&mut negative).await,
            "{addr}: a negative frame size closes the connection"
        );
        let mut unknown = TcpStream::connect(addr).await?;
        unknown.write_all(&frame(4242, 0, 1, &0u8)?).await?;
        assert!(
            closed(&mut unknown).await,
            "{addr}: an unknown api closes the connection"
        );
    }
    let fluvio = connect(&cluster).await?;
    create_topic(&fluvio, "still-up", 1).await?;
    Ok(())
}

/// A produce body: no transactional id, acks 1, timeout 1500 ms, one entry
/// per record set, all for `topic`-0.
fn produce_body(topic: &str, entries: &[&[u8]]) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    Option::<String>::None.encode(&mut body, 25)?;
    1i16.encode(&mut body, 25)?;
    1500i32.encode(&mut body, 25)?;
    1i32.encode(&mut body, 25)?;
    topic.to_owned().encode(&mut body, 25)?;
    (entries.len() as i32).encode(&mut body, 25)?;
    for records in entries {
        0u32.encode(&mut body, 25)?;
        (records.len() as i32).encode(&mut body, 25)?;
        body.extend_from_slice(records);
    }
    0i32.encode(&mut body, 25)?;
    Ok(body)
}

/// A one-record batch with the given codec bits and (unchecked) record bytes.
fn batch(codec: i16, records: &[u8]) -> Vec<u8> {
    let mut batch = Vec::new();
    batch.put_i64(12345);
    batch.put_i32(45 + records.len() as i32);
    batch.put_i32(-1);
    batch.put_i8(2);
    batch.put_u32(0);
    batch.put_i16(codec);
    batch.put_i32(0);
    batch.put_i64(0);
    batch.put_i64(0);
    batch.put_i64(-1);
    batch.put_i16(-1);
    batch.put_i32(-1);
    batch.extend_from_slice(records);
    batch
}

#[tokio::test]
async fn produce_answers_each_entry_in_order_and_checks_codecs() -> Result<()> {
    let cluster = cluster().await?;
    let fluvio = connect(&cluster).await?;
    let mut spec = fluvio::metadata::topic::TopicSpec::new_computed(1, 1, None);
    spec.set_compression_type(fluvio::metadata::topic::CompressionAlgorithm::None);
    within(fluvio.admin().await.create("plain".to_owned(), false, spec)).await?;
    let mut spu = TcpStream::connect(cluster.spu_addr()).await?;
    let (plain, gzip) = (batch(0, b"not decoded"), batch(1, b"not decoded"));
    let entries: [&[u8]; 3] = [&plain, &gzip, &plain];
    spu.write_all(&frame(0, 25, 3, &Raw(produce_body("plain", &entries)?))?)
        .await?;
    let (_, body) = response(&mut spu).await?;
    let reply: ProduceResponse = decode(&body, 25)?;
    let answers: Vec<_> = reply.responses[0]
        .partitions
        .iter()
        .map(|p| (p.error_code.clone(), p.base_offset))
        .collect();
    assert_eq!(
        answers,
        [
            (ErrorCode::None, 0),
            (ErrorCode::CompressionError, -1),
            (ErrorCode::None, 1)
        ],
        "one reply per entry, in order; a gzip batch is refused by a topic without compression"
    );
    let stored = cluster.batches("plain", 0);
    assert_eq!(
        stored.iter().map(|b| b.base_offset).collect::<Vec<_>>(),
        [0, 1],
        "the server assigns base offsets"
    );
    assert!(stored.iter().all(|b| b.bytes == plain.len()), "stored as sent");
    Ok(())
}

struct Raw(Vec<u8>);

impl Encoder for Raw {
    fn write_size(&self, _version: i16) -> usize {
        self.0.len()
    }
    fn encode<T: BufMut>(&self, dest: &mut T, _version: i16) -> std::io::Result<()> {
        dest.put_slice(&self.0);
        Ok(())
    }
}

#[tokio::test]
async fn a_malformed_batch_gets_an_error_code_and_the_connection_stays() -> Result<()> {
    let cluster = cluster().await?;
    let fluvio = connect(&cluster).await?;
    create_topic(&fluvio, "raw", 1).await?;
    let mut spu = TcpStream::connect(cluster.spu_addr()).await?;
    let mut cut = vec![0u8; 30];
    cut[8..12].copy_from_slice(&500i32.to_be_bytes());
    spu.write_all(&frame(0, 25, 7, &Raw(produce_body("raw", &[&cut])?))?)
        .await?;
    let (correlation_id, body) = response(&mut spu).await?;
    assert_eq!(correlation_id, 7);
    let reply: ProduceResponse = decode(&body, 25)?;
    let entry = &reply.responses[0].partitions[0];
    assert!(
        matches!(&entry.error_code, ErrorCode::Other(m) if m.starts_with("malformed record batch")),
        "{:?}",
        entry.error_code
    );
    assert_eq!(
        cluster.partition_bounds("raw", 0).map(|b| b.end),
        Some(0),
        "nothing written"
    );

    spu.write_all(&frame(0, 25, 8, &Raw(produce_body("no-such-topic", &[&[]])?))?)
        .await?;
    let (_, body) = response(&mut spu).await?;
    let reply: ProduceResponse = decode(&body, 25)?;
    assert_eq!(reply.responses[0].partitions[0].error_code, ErrorCode::TopicNotFound);

    let updates = UpdateOffsetsRequest::new(vec![OffsetUpdate {
        offset: 3,
        session_id: 42,
    }]);
    spu.write_all(&frame(1005, 0, 9, &updates)?).await?;
    let (_, body) = response(&mut spu).await?;
    let reply: UpdateOffsetsResponse = decode(&body, 0)?;
    assert_eq!(reply.status[0].error, ErrorCode::FetchSessionNotFoud);

    spu.write_all(&frame(1006, 25, 10, &UpdateConsumerOffsetRequest::new(3, 42))?)
        .await?;
    let (_, body) = response(&mut spu).await?;
    let reply: UpdateConsumerOffsetResponse = decode(&body, 25)?;
    assert_eq!(reply.error_code, ErrorCode::FetchSessionNotFoud);

    assert_eq!(
        api_versions(&mut spu).await?.api_keys.len(),
        5,
        "the connection still serves"
    );
    Ok(())
}

#[tokio::test]
async fn a_client_that_stops_reading_does_not_block_an_spu_stop() -> Result<()> {
    use fluvio_protocol::record::{RawRecords, RecordSet};
    use fluvio_spu_schema::server::stream_fetch::StreamFetchRequest;

    let cluster = cluster().await?;
    let fluvio = connect(&cluster).await?;
    create_topic(&fluvio, "unread", 1).await?;
    crate::support::produce(&fluvio, "unread", 0, &crate::support::values(40, 250_000), 4).await?;
    let mut stuck = TcpStream::connect(cluster.spu_addr()).await?;
    let request = StreamFetchRequest::<RecordSet<RawRecords>>::builder()
        .topic("unread")
        .partition(0u32)
        .fetch_offset(0i64)
        .max_bytes(64 * 1024 * 1024)
        .build()?;
    stuck.write_all(&frame(1003, 25, 1, &request)?).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    tokio::time::timeout(Duration::from_secs(30), cluster.stop_spu())
        .await
        .context("stop_spu waited for a client that does not read")??;
    cluster.start_spu().await?;
    Ok(())
}
