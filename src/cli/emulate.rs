//! `falcon-lake emulate falcon|cloudtrail|cloudwatch`.

use anyhow::Result;
use clap::Subcommand;

use crate::emulate::cloudtrail::{CloudTrailEmulator, CloudTrailEmulatorConfig};
use crate::emulate::cloudwatch::{CloudWatchEmulator, CloudWatchEmulatorConfig};
use crate::emulate::falcon::{FalconEmulator, FalconEmulatorConfig};

/// Which emulator.
#[derive(Debug, Subcommand)]
pub enum Which {
    /// The CrowdStrike Falcon Event Streams API (OAuth2, discovery, feeds, refresh).
    Falcon(Box<FalconEmulatorConfig>),
    /// The AWS CloudTrail Data API (PutAuditEvents, SigV4, limits, throttling, faults).
    Cloudtrail(Box<CloudTrailEmulatorConfig>),
    /// The AWS CloudWatch Logs API (log groups and streams, PutLogEvents, reads, SigV4, throttling, faults).
    Cloudwatch(Box<CloudWatchEmulatorConfig>),
}

/// Starts the emulator, prints its URL and serves until Ctrl-C.
pub async fn run(which: Which) -> Result<()> {
    match which {
        Which::Falcon(config) => {
            let emulator = FalconEmulator::start(*config).await?;
            println!("falcon emulator listening on {}", emulator.url());
            println!("control API: {}_emulator/stats", emulator.url());
            wait_for_ctrl_c().await;
            emulator.server.stop().await;
        }
        Which::Cloudtrail(config) => {
            let emulator = CloudTrailEmulator::start(*config).await?;
            println!("cloudtrail emulator listening on {}", emulator.url());
            for channel in &emulator.state.channels {
                println!("channel: {} (owner {})", channel.arn.arn, channel.arn.account);
            }
            println!("inspection API: {}_emulator/stats", emulator.url());
            wait_for_ctrl_c().await;
            emulator.server.stop().await;
        }
        Which::Cloudwatch(config) => {
            let emulator = CloudWatchEmulator::start(*config).await?;
            println!("cloudwatch logs emulator listening on {}", emulator.url());
            for (name, group) in crate::emulate::lock(&emulator.state.groups).iter() {
                let streams: Vec<&String> = group.streams.keys().collect();
                println!(
                    "log group: {name} (retention {:?} days, streams {streams:?})",
                    group.retention_days
                );
            }
            println!("inspection API: {}_emulator/stats", emulator.url());
            wait_for_ctrl_c().await;
            emulator.server.stop().await;
        }
    }
    Ok(())
}

async fn wait_for_ctrl_c() {
    if let Err(e) = tokio::signal::ctrl_c().await {
        tracing::error!(error = %e, "cannot listen for Ctrl-C; stopping");
    }
}
