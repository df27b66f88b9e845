//! `falcon-lake sm test`: run a SmartModule in-process on JSONL from stdin, like `smdk test`.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use fluvio_smartengine::SmartEngine;

use crate::audit::event::probe_offset;
use crate::audit::SourceKey;
use crate::transform::{InputRecord, ModuleSpec, TransformChain};

/// Records handed to the engine per call.
const BATCH: usize = 1_000;

/// SmartModule commands.
#[derive(Debug, Subcommand)]
pub enum SmCommand {
    /// Run a SmartModule on records read from stdin (one per line); print one
    /// `{"key":…,"value":…}` line per emitted record.
    Test(SmTest),
}

/// `sm test` arguments.
#[derive(Debug, Args)]
pub struct SmTest {
    /// The SmartModule (.wasm, either target).
    #[arg(long)]
    pub wasm: PathBuf,
    /// A parameter, `key=value` (repeatable), as in a transform's `with:`.
    #[arg(short = 'e', long = "param", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// Key every record with this instead of the source's `<partition>_<offset>`.
    #[arg(long)]
    pub key: Option<String>,
    /// Falcon partition used in the `<partition>_<offset>` key the source writes.
    #[arg(long, default_value_t = 0)]
    pub partition: u32,
}

fn parse_param(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("{text:?} is not key=value"))
}

/// Runs `sm test`; returns the number of records the module failed on. Says
/// on stderr how many records went in and came out.
pub fn run(command: SmCommand) -> Result<usize> {
    let SmCommand::Test(args) = command;
    let wasm = std::fs::read(&args.wasm).with_context(|| format!("reading {}", args.wasm.display()))?;
    let name = args
        .wasm
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "module".into());
    let spec = ModuleSpec {
        name,
        params: args.params.iter().cloned().collect(),
        wasm,
    };
    let mut chain = TransformChain::new(&SmartEngine::new(), vec![spec])?;
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut lines: Vec<(usize, Vec<u8>)> = Vec::with_capacity(BATCH);
    let mut counts = Counts::default();
    for (number, line) in stdin.lock().split(b'\n').enumerate() {
        let line = line.context("reading stdin")?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        lines.push((number + 1, line));
        if lines.len() == BATCH {
            counts.add(run_batch(&mut chain, &args, &lines, &mut out)?);
            lines.clear();
        }
    }
    counts.add(run_batch(&mut chain, &args, &lines, &mut out)?);
    out.flush().context("writing stdout")?;
    // On stderr, so that stdout stays the module's output: an input the module
    // filters entirely is then not met with silence.
    eprintln!("{}", counts.summary());
    Ok(counts.failed)
}

/// Records in and out of the module.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    read: usize,
    emitted: usize,
    failed: usize,
}

impl Counts {
    fn add(&mut self, other: Counts) {
        self.read += other.read;
        self.emitted += other.emitted;
        self.failed += other.failed;
    }

    fn summary(&self) -> String {
        let mut line = format!("{} records in, {} out, {} failed", self.read, self.emitted, self.failed);
        if self.read == 0 {
            line.push_str(" (stdin held no records)");
        } else if self.emitted == 0 && self.failed == 0 {
            line.push_str(" (the module kept none of them: check its parameters, e.g. event_types)");
        }
        line
    }
}

fn run_batch(
    chain: &mut TransformChain,
    args: &SmTest,
    lines: &[(usize, Vec<u8>)],
    out: &mut impl Write,
) -> Result<Counts> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let keys: Vec<Option<Vec<u8>>> = lines
        .iter()
        .map(|(_, value)| match &args.key {
            Some(key) => Some(key.clone().into_bytes()),
            None => probe_offset(value)
                .ok()
                .flatten()
                .map(|o| SourceKey::new(args.partition, o).encode()),
        })
        .collect();
    let records: Vec<InputRecord<'_>> = lines
        .iter()
        .zip(&keys)
        .map(|((_, value), key)| InputRecord {
            key: key.as_deref(),
            value,
            timestamp_ms: now,
        })
        .collect();
    let output = chain.process(&records)?;
    for record in &output.outputs {
        let line = serde_json::json!({
            "key": record.key.as_ref().map(|k| String::from_utf8_lossy(k).into_owned()),
            "value": String::from_utf8_lossy(&record.value),
        });
        writeln!(out, "{line}").context("writing stdout")?;
    }
    for failure in &output.failures {
        eprintln!("line {}: {}", lines[failure.index].0, failure.reason);
    }
    Ok(Counts {
        read: lines.len(),
        emitted: output.outputs.len(),
        failed: output.failures.len(),
    })
}
