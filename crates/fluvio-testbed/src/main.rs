//! `fluvio-testbed`: the test cluster as a process, for manual runs.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use fluvio_testbed::TestCluster;

/// Runs a test-only Fluvio cluster (one SC, one SPU) on loopback until Ctrl-C or SIGTERM.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// SC port (0: any free port).
    #[arg(long, default_value_t = 0)]
    sc_port: u16,
    /// SPU port (0: any free port).
    #[arg(long, default_value_t = 0)]
    spu_port: u16,
    /// Where to write the Fluvio profile (default: a temporary file).
    #[arg(long)]
    profile: Option<PathBuf>,
    /// Seconds between retention checks (0: never).
    #[arg(long, default_value_t = 60)]
    retention_interval_secs: u64,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut builder = TestCluster::builder()
        .sc_port(args.sc_port)
        .spu_port(args.spu_port)
        .retention_interval(Duration::from_secs(args.retention_interval_secs));
    if let Some(path) = args.profile {
        builder = builder.profile_path(path);
    }
    let cluster = builder.start().await?;
    println!("{}", cluster.profile_path().display());
    eprintln!(
        "SC {} · SPU {} · export FLV_PROFILE_PATH={} · Ctrl-C or SIGTERM stops",
        cluster.sc_addr(),
        cluster.spu_addr(),
        cluster.profile_path().display()
    );
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        interrupted = tokio::signal::ctrl_c() => interrupted?,
        _ = terminate.recv() => {}
    }
    drop(cluster);
    Ok(())
}
