//! `falcon-lake import-fig`: see `crate::fig`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

/// `import-fig` arguments.
#[derive(Debug, Args)]
pub struct ImportFigArgs {
    /// FIG's config.ini.
    pub config: PathBuf,
}

/// Writes the config.
pub fn run(_args: ImportFigArgs) -> Result<()> {
    anyhow::bail!("not yet")
}
