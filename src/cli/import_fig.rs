//! `falcon-lake import-fig`: an embedded pipeline config equivalent to a Falcon
//! Integration Gateway config, starting right after what FIG delivered (see `crate::fig`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::fig::{effective, import, parse_env_file, parse_ini, parse_offsets, ImportOptions};

/// The SmartModule built by `make wasm`, relative to the repository (as in `connector.yaml`).
const DEFAULT_WASM: &str =
    "smartmodules/falcon-audit-to-cloudtrail/target/wasm32-wasip1/release/falcon_audit_to_cloudtrail.wasm";

/// `import-fig` arguments.
#[derive(Debug, Args)]
pub struct ImportFigArgs {
    /// FIG's config.ini (an empty file when FIG was configured by environment only).
    pub config: PathBuf,
    /// FIG's environment (`KEY=VALUE` lines: a Docker env file, the ECS task's variables).
    #[arg(long)]
    pub env_file: Option<PathBuf>,
    /// The value of FIG's `last_seen_offsets` SSM parameter, e.g. "{'0': 42599, '1': 1234}".
    #[arg(long)]
    pub fig_offsets: Option<String>,
    /// The SmartModule's path (or registered name) for `transforms[0].uses`.
    #[arg(long, default_value = DEFAULT_WASM)]
    pub wasm: String,
    /// Write the config here instead of to stdout (an existing file is not overwritten).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

/// Writes the config; notes go to stderr.
pub fn run(args: ImportFigArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.config).with_context(|| format!("reading {}", args.config.display()))?;
    let ini = parse_ini(&text).with_context(|| format!("{} is not an INI file", args.config.display()))?;
    let env = match &args.env_file {
        Some(path) => parse_env_file(
            &std::fs::read_to_string(path).with_context(|| format!("reading --env-file {}", path.display()))?,
        ),
        None => BTreeMap::new(),
    };
    let offsets = args.fig_offsets.as_deref().map(parse_offsets).transpose()?;
    let mut source = args.config.display().to_string();
    if let Some(path) = &args.env_file {
        source.push_str(&format!(" with {}", path.display()));
    }
    let options = ImportOptions {
        offsets,
        wasm: args.wasm.clone(),
        source,
    };
    let imported = import(&effective(ini, &env), &options)?;
    match &args.output {
        Some(path) => {
            if path.exists() {
                bail!("{} exists; not overwriting it", path.display());
            }
            std::fs::write(path, &imported.yaml).with_context(|| format!("writing {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(imported.yaml.as_bytes())?;
            out.flush()?;
        }
    }
    for note in &imported.notes {
        eprintln!("note: {note}");
    }
    Ok(())
}
