//! `falcon-lake run`: the embedded pipeline.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::config::embedded::EmbeddedConfig;
use crate::config::secrets::SecretStore;
use crate::pipeline::embedded::EmbeddedPipeline;
use crate::pipeline::shutdown;

/// `run` arguments.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The pipeline's config (see connector.yaml).
    #[arg(long, default_value = "connector.yaml")]
    pub config: PathBuf,
    /// `KEY=VALUE` file for `${{ secrets.KEY }}` (default: the environment).
    #[arg(long)]
    pub secrets: Option<PathBuf>,
}

/// Runs the embedded pipeline until SIGTERM/SIGINT.
pub async fn run(args: RunArgs) -> Result<()> {
    let config = EmbeddedConfig::load(&args.config, &SecretStore::from_arg(args.secrets.as_deref()))?;
    tracing::info!(topic = config.topic(), log = %config.storage_path().display(), "starting the embedded pipeline");
    let pipeline = EmbeddedPipeline::build(config, None).await?;
    let cancel = CancellationToken::new();
    shutdown::install(cancel.clone());
    pipeline.run(cancel).await
}
