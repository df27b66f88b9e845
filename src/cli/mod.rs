//! The `falcon-lake` command line.

mod check;
mod demo;
mod dlq;
mod emulate;
mod import_fig;
mod replay;
mod run;
mod sm;
mod status;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::logging::{self, LogFormat};
use crate::memory;

/// CrowdStrike Falcon audit events into AWS CloudTrail Lake.
#[derive(Debug, Parser)]
#[command(name = "falcon-lake", version, about, long_about = None)]
pub struct Cli {
    /// Log format (filter with RUST_LOG, e.g. RUST_LOG=falcon_lake=debug).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "FALCON_LAKE_LOG_FORMAT")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the embedded pipeline (Falcon → SmartModule → CloudTrail Lake) from a config file.
    Run(run::RunArgs),
    /// Run both emulators and the whole pipeline, then print a summary.
    Demo(demo::DemoArgs),
    /// Backfill a range of the topic to CloudTrail (the live sink's offset is untouched).
    Replay(replay::ReplayArgs),
    /// Validate a config and test connectivity to Falcon, the topic and CloudTrail.
    Check(check::CheckArgs),
    /// Run an emulator of one of the external APIs on loopback.
    Emulate {
        #[command(subcommand)]
        which: emulate::Which,
    },
    /// SmartModule tools.
    Sm {
        #[command(subcommand)]
        command: sm::SmCommand,
    },
    /// Is the sink running, how far behind, what was refused (exit 0 running, 1 failing, 2 stopped).
    Status(status::StatusArgs),
    /// Dead letters: list, show, and redrive once the cause is fixed.
    Dlq {
        #[command(subcommand)]
        command: dlq::DlqCommand,
    },
    /// Write a pipeline config equivalent to a Falcon Integration Gateway config.
    ImportFig(import_fig::ImportFigArgs),
}

/// Parses arguments and runs the command.
pub fn main() -> Result<()> {
    memory::limit_malloc_arenas();
    let cli = Cli::parse();
    logging::init(cli.log_format);
    if let Command::ImportFig(args) = cli.command {
        return import_fig::run(args);
    }
    if let Command::Sm { command } = cli.command {
        let failures = sm::run(command)?;
        anyhow::ensure!(
            failures == 0,
            "the SmartModule failed on {failures} record(s); see above"
        );
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let code = runtime.block_on(async move {
        match cli.command {
            Command::Status(args) => status::run(args).await,
            Command::Dlq { command } => dlq::run(command).await,
            other => run_command(other).await.map(|()| 0),
        }
    })?;
    if code != 0 {
        // The report is already printed; the code is the answer.
        std::process::exit(code);
    }
    Ok(())
}

async fn run_command(command: Command) -> Result<()> {
    match command {
        Command::Run(args) => run::run(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Replay(args) => replay::run(args).await,
        Command::Check(args) => check::run(args).await,
        Command::Emulate { which } => emulate::run(which).await,
        Command::Sm { .. } | Command::Status(_) | Command::Dlq { .. } | Command::ImportFig(_) => Ok(()),
    }
}
