//! Metadata watches as the SC sends them: a full sync with the system
//! objects first, then change frames after each create, delete, write.

use fluvio::metadata::objects::MetadataUpdate;
use fluvio::metadata::partition::PartitionSpec;
use fluvio::metadata::smartmodule::{SmartModuleSpec, SmartModuleWasm};
use fluvio::metadata::spu::SpuSpec;
use fluvio::metadata::topic::TopicSpec;
use fluvio::metadata::AdminSpec;
use fluvio_controlplane_metadata::message::MsgType;
use fluvio_protocol::{Decoder, Encoder};
use futures::{Stream, StreamExt};

use crate::support::{cluster, connect, create_topic, produce, values, within};

async fn frame<S, W>(watch: &mut W) -> anyhow::Result<MetadataUpdate<S>>
where
    S: AdminSpec,
    S::Status: Encoder + Decoder,
    W: Stream<Item = std::io::Result<fluvio::metadata::objects::WatchResponse<S>>> + Unpin,
{
    match within(async { Ok::<_, anyhow::Error>(watch.next().await) }).await? {
        Some(response) => Ok(response?.inner()),
        None => anyhow::bail!("the {} watch ended", S::LABEL),
    }
}

#[tokio::test]
async fn the_first_sync_is_never_empty_and_changes_follow() -> anyhow::Result<()> {
    let cluster = cluster().await?;
    let fluvio = connect(&cluster).await?;
    let admin = fluvio.admin().await;

    let mut spus = within(admin.watch::<SpuSpec>()).await?;
    let first = frame(&mut spus).await?;
    assert_eq!(first.all.len(), 1);
    assert_eq!(first.all[0].spec.public_endpoint.addr(), cluster.spu_addr().to_string());

    let mut topics = within(admin.watch::<TopicSpec>()).await?;
    let first = frame(&mut topics).await?;
    assert_eq!(
        first.all.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        ["consumer-offset"]
    );
    assert!(first.all[0].spec.is_system());
    let mut partitions = within(admin.watch::<PartitionSpec>()).await?;
    let first = frame(&mut partitions).await?;
    assert_eq!(
        first.all.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        ["consumer-offset-0"]
    );

    create_topic(&fluvio, "watched", 2).await?;
    let change = frame(&mut topics).await?;
    assert!(change.all.is_empty());
    assert_eq!(change.changes.len(), 1);
    assert_eq!(
        (
            change.changes[0].header.clone(),
            change.changes[0].content.name.as_str()
        ),
        (MsgType::UPDATE, "watched")
    );
    let mut names = Vec::new();
    while names.len() < 2 {
        names.extend(
            frame(&mut partitions)
                .await?
                .changes
                .into_iter()
                .map(|c| c.content.name),
        );
    }
    names.sort();
    assert_eq!(names, ["watched-0", "watched-1"]);

    produce(&fluvio, "watched", 1, &values(3, 10), 3).await?;
    let change = frame(&mut partitions).await?;
    let status = &change.changes[0].content;
    assert_eq!(
        (status.name.as_str(), status.status.leader.leo, status.status.leader.hw),
        ("watched-1", 3, 3)
    );

    within(admin.delete::<TopicSpec>("watched")).await?;
    let change = frame(&mut topics).await?;
    assert_eq!(change.changes[0].header, MsgType::DELETE);
    assert_eq!(change.changes[0].content.name, "watched");
    Ok(())
}

#[tokio::test]
async fn smartmodule_watches_send_summaries() -> anyhow::Result<()> {
    let cluster = cluster().await?;
    let fluvio = connect(&cluster).await?;
    let admin = fluvio.admin().await;
    let mut modules = within(admin.watch::<SmartModuleSpec>()).await?;
    assert!(frame(&mut modules).await?.all.is_empty());
    let spec = SmartModuleSpec {
        wasm: SmartModuleWasm::from_raw_wasm_bytes(&[1; 300])?,
        ..Default::default()
    };
    within(admin.create("watched-module".to_owned(), false, spec)).await?;
    let change = frame(&mut modules).await?;
    let module = &change.changes[0].content;
    assert_eq!(module.name, "watched-module");
    assert!(module.spec.wasm.payload.is_empty(), "summary watch: no payload");
    assert!(module.spec.summary.as_ref().is_some_and(|s| s.wasm_length > 0));
    Ok(())
}
