//! `falcon-lake status`: is the sink healthy, how far behind is it, what was
//! refused. Exit code 0 running, 1 failing, 2 stopped (see `ops::report`).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use crate::config::secrets::SecretStore;
use crate::ops::report::{self, Options, DEFAULT_SCAN};
use crate::ops::topics;

/// `status` arguments.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The embedded config, or a sink (or source) connector config (Fluvio).
    #[arg(long)]
    pub config: PathBuf,
    /// `KEY=VALUE` file for `${{ secrets.KEY }}` (default: the environment).
    #[arg(long)]
    pub secrets: Option<PathBuf>,
    /// Print the report as JSON (the format is documented in the README).
    #[arg(long)]
    pub json: bool,
    /// Records to scan back from the end of the topic for Falcon partitions.
    #[arg(long, default_value_t = DEFAULT_SCAN)]
    pub scan: u64,
    /// A consumer with records to read whose offset has not moved for this long is stalled (failing).
    #[arg(long, default_value = "15m", value_parser = crate::config::units::parse_duration)]
    pub stalled_after: Duration,
}

/// Prints the report; returns the exit code.
pub async fn run(args: StatusArgs) -> Result<i32> {
    let store = SecretStore::from_arg(args.secrets.as_deref());
    let (target, backend) = topics::open(&args.config, &store).await?;
    let options = Options {
        scan: args.scan,
        stalled_after: args.stalled_after,
    };
    let report = report::build(&target, &backend, &options).await?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report).context("writing the report")?;
        writeln!(out)?;
    } else {
        write!(out, "{}", report::render(&report))?;
    }
    out.flush()?;
    Ok(report.verdict.exit_code)
}
