//! `falcon-lake check`: validates a config (every error names its key) and tests
//! connectivity to what it describes: Falcon, the topic, the destination
//! (CloudTrail Lake or CloudWatch Logs), and the SmartModule's parameters.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Result};
use clap::Args;

use crate::cloudtrail::service::CloudTrailService;
use crate::cloudtrail::CloudTrailConfig;
use crate::cloudwatch::service::{CloudWatchService, Reachable};
use crate::cloudwatch::CloudWatchConfig;
use crate::config::connector::ConnectorFile;
use crate::config::connectors::{ConfigKind, SinkConnectorConfig, SourceConnectorConfig};
use crate::config::destination::DestinationConfig;
use crate::config::embedded::EmbeddedConfig;
use crate::config::secrets::SecretStore;
use crate::falcon::{FalconClient, FalconConfig, FalconMetrics};
use crate::publish::RequestFailure;
use crate::topic::fluvio::FluvioBackend;
use crate::topic::sqlite::SqliteLog;
use crate::topic::TopicInspect;
use crate::transform::{load_chain, ModuleRegistry};

/// `check` arguments.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The embedded config (connector.yaml) or a connector config.
    #[arg(long, default_value = "connector.yaml")]
    pub config: PathBuf,
    /// `KEY=VALUE` file for `${{ secrets.KEY }}` (default: the environment).
    #[arg(long)]
    pub secrets: Option<PathBuf>,
    /// Also list the Falcon streams. Discovery starts new stream sessions, which
    /// can disturb an instance running with the same appId, so it is opt-in.
    #[arg(long)]
    pub discover: bool,
}

/// The result of one check.
struct Report {
    failures: usize,
}

impl Report {
    fn record(&mut self, what: &str, result: Result<String>) {
        match result {
            Ok(detail) => println!("ok      {what}: {detail}"),
            Err(e) => {
                self.failures += 1;
                println!("FAILED  {what}: {e:#}");
            }
        }
    }
}

/// Runs the checks; fails when any does.
pub async fn run(args: CheckArgs) -> Result<()> {
    let store = SecretStore::from_arg(args.secrets.as_deref());
    let mut report = Report { failures: 0 };
    match ConfigKind::of(&args.config)? {
        ConfigKind::Embedded => check_embedded(&args, &store, &mut report).await?,
        ConfigKind::Source => check_source(&args, &store, &mut report).await?,
        ConfigKind::Sink => check_sink(&args, &store, &mut report).await?,
    }
    if report.failures > 0 {
        bail!("{} check(s) failed", report.failures);
    }
    Ok(())
}

async fn check_embedded(args: &CheckArgs, store: &SecretStore, report: &mut Report) -> Result<()> {
    let config = EmbeddedConfig::load(&args.config, store)?;
    println!(
        "ok      config: {} (embedded pipeline, topic {})",
        args.config.display(),
        config.topic()
    );
    report.record("falcon", check_falcon(&config.falcon, args.discover).await);
    report.record("log", check_log(&config).await);
    report.record(
        "transforms",
        check_transforms(&config.transforms, &config.base_dir, None).await,
    );
    check_destination(&config.destination, report).await;
    Ok(())
}

async fn check_source(args: &CheckArgs, store: &SecretStore, report: &mut Report) -> Result<()> {
    let config = SourceConnectorConfig::load(&args.config, store)?;
    println!(
        "ok      config: {} (source connector {}, topic {})",
        args.config.display(),
        config.file.meta.name,
        config.topic()
    );
    report.record("falcon", check_falcon(&config.falcon, args.discover).await);
    report.record(
        "topic",
        check_fluvio_topic(&config.file)
            .await
            .map(|_| "the cluster answered".to_string()),
    );
    Ok(())
}

async fn check_sink(args: &CheckArgs, store: &SecretStore, report: &mut Report) -> Result<()> {
    let config = SinkConnectorConfig::load(&args.config, store)?;
    let file = &config.file;
    println!(
        "ok      config: {} (sink connector {}, topic {})",
        args.config.display(),
        file.meta.name,
        config.topic()
    );
    let backend = check_fluvio_topic(file).await;
    let registry = backend.as_ref().ok().map(|b| b as &dyn ModuleRegistry);
    report.record(
        "transforms",
        check_transforms(&file.transforms, &file.base_dir(), registry).await,
    );
    report.record("topic", backend.map(|_| "the cluster answered".to_string()));
    check_destination(&config.destination, report).await;
    Ok(())
}

async fn check_falcon(config: &FalconConfig, discover: bool) -> Result<String> {
    let client = FalconClient::new(config.clone(), Arc::new(FalconMetrics::default()))?;
    client.auth().token().await?;
    let base = client.auth().base_url();
    if !discover {
        return Ok(format!("authenticated at {base} (add --discover to list streams)"));
    }
    let streams = client.discover_once().await?;
    if streams.is_empty() {
        return Ok(format!(
            "authenticated at {base}; no streams free for appId {:?} right now (held by a running instance?)",
            config.app_id
        ));
    }
    Ok(format!(
        "authenticated at {base}; {} partition(s) available",
        streams.len()
    ))
}

async fn check_log(config: &EmbeddedConfig) -> Result<String> {
    let log = SqliteLog::open(&config.storage_path(), config.storage.sync)?;
    let topic = log.topic(config.topic())?;
    let bounds = topic.bounds().await?;
    let committed = topic.committed(&config.meta.consumer_id()).await?;
    let (first, next) = bounds.first().map_or((0, 0), |b| (b.first, b.next));
    let settled = committed.map_or_else(
        || "nothing committed yet".to_string(),
        |c| format!("committed up to {c}"),
    );
    Ok(format!(
        "{}: topic {} holds offsets {first}..{next}, {settled}",
        config.storage_path().display(),
        config.topic()
    ))
}

async fn check_fluvio_topic(file: &ConnectorFile) -> Result<FluvioBackend> {
    let backend = FluvioBackend::connect(&format!("fluvio_connector_{}-check", file.meta.name)).await?;
    backend.topic(file.meta.topic.name()).bounds().await?;
    Ok(backend)
}

async fn check_transforms(
    steps: &[fluvio_smartengine::transformation::TransformationStep],
    base_dir: &std::path::Path,
    registry: Option<&dyn ModuleRegistry>,
) -> Result<String> {
    let chain = load_chain(steps, base_dir, registry).await?;
    Ok(format!("{} loaded and initialised", chain.names().join(", ")))
}

async fn check_destination(destination: &DestinationConfig, report: &mut Report) {
    let result = match destination {
        DestinationConfig::CloudTrail(config) => check_cloudtrail(config).await,
        DestinationConfig::CloudWatch(config) => check_cloudwatch(config).await,
    };
    report.record(destination.section(), result);
}

/// An empty `PutAuditEvents`: refused as invalid once the request is signed and
/// authorised, without storing anything.
async fn check_cloudtrail(config: &CloudTrailConfig) -> Result<String> {
    let service = CloudTrailService::new(config, None).await?;
    match service.put(&[]).await {
        Err(RequestFailure::Fatal(fatal)) if fatal.code == "ValidationException" => Ok(format!(
            "{} reachable; credentials and signature accepted for channel {}",
            config
                .aws
                .endpoint_url
                .as_ref()
                .map_or_else(|| format!("region {}", service.channel().region), |u| u.to_string()),
            service.channel()
        )),
        Ok(_) => Ok(format!("reachable; channel {}", service.channel())),
        Err(RequestFailure::Fatal(fatal)) => Err(anyhow::anyhow!(fatal)),
        Err(RequestFailure::Transient { code, message, .. } | RequestFailure::OnePerRequest { code, message }) => {
            bail!("{code}: {message}")
        }
    }
}

/// `DescribeLogStreams` on the group, with the stream's name as prefix: proves
/// the credentials, the signature, the region and read access to the group,
/// and tells whether the group and stream exist, without writing anything.
async fn check_cloudwatch(config: &CloudWatchConfig) -> Result<String> {
    let service = CloudWatchService::new(config, None).await?;
    let (create_group, create_stream) = service.creates();
    let place = config
        .aws
        .endpoint_url
        .as_ref()
        .map_or_else(|| format!("region {}", service.region()), |u| u.to_string());
    let found = match service.check().await {
        Ok(found) => found,
        Err(RequestFailure::Fatal(fatal)) => return Err(anyhow::anyhow!(fatal)),
        Err(RequestFailure::Transient { code, message, .. } | RequestFailure::OnePerRequest { code, message }) => {
            bail!("{code}: {message}")
        }
    };
    let state = match found {
        Reachable::Stream => "the log stream exists".to_string(),
        Reachable::GroupOnly if create_stream => "the log group exists; the stream will be created".to_string(),
        Reachable::Nothing if create_group && create_stream => {
            "the log group does not exist yet; the sink will create it and the stream".to_string()
        }
        Reachable::GroupOnly => bail!(
            "log stream {:?} does not exist in {:?} and cloudwatch.create_missing_stream is false",
            config.log_stream,
            config.log_group
        ),
        Reachable::Nothing => bail!(
            "log group {:?} does not exist and cloudwatch.create_missing_group (or _stream) is false",
            config.log_group
        ),
    };
    Ok(format!(
        "{place} reachable; credentials and signature accepted; {}/{}: {state}",
        config.log_group, config.log_stream
    ))
}
