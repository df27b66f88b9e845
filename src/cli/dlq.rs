//! `falcon-lake dlq list|show|redrive`: the dead letters, their reasons, and
//! sending them again once the cause is fixed (see `ops::redrive`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use fluvio_smartengine::transformation::TransformationStep;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use crate::config::connectors::{ConfigKind, SinkConnectorConfig};
use crate::config::destination::DestinationConfig;
use crate::config::embedded::EmbeddedConfig;
use crate::config::secrets::SecretStore;
use crate::ops::letters::{read_letters, read_marks, write_marks, Letter, LetterId, Mark, Selection};
use crate::ops::redrive::{deliver, plan, transform, Pending, Plan, Settled, Transformed};
use crate::ops::topics::{self, Backend, Target};
use crate::ops::{format_ms, parse_time};
use crate::publish::{PublishItem, PublishMetrics, Publisher};
use crate::transform::{load_chain, ModuleRegistry, TransformChain};

/// `dlq` subcommands.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// One line per dead letter: where, when, stage, code, reason.
    List(DlqArgs),
    /// Every field of the selected dead letters, with the refused event and raw record.
    Show(DlqArgs),
    /// Send the selected dead letters again through today's transforms to the destination.
    Redrive(RedriveArgs),
}

/// Which dead letters, of which pipeline.
#[derive(Debug, Args)]
pub struct DlqArgs {
    /// The embedded config, or a sink connector config (Fluvio).
    #[arg(long)]
    pub config: PathBuf,
    /// `KEY=VALUE` file for `${{ secrets.KEY }}` (default: the environment).
    #[arg(long)]
    pub secrets: Option<PathBuf>,
    /// Only this stage: source, transform or publish.
    #[arg(long)]
    pub stage: Option<String>,
    /// Only this error code (e.g. InvalidData).
    #[arg(long)]
    pub code: Option<String>,
    /// Only letters written at or after this time (RFC 3339, or an age such as 2h).
    #[arg(long, value_parser = parse_time)]
    pub since: Option<i64>,
    /// Only letters written before this time.
    #[arg(long, value_parser = parse_time)]
    pub until: Option<i64>,
    /// Only the letter at this offset of the dead-letter topic (repeatable).
    #[arg(long = "offset")]
    pub offsets: Vec<u64>,
    /// JSON output.
    #[arg(long)]
    pub json: bool,
}

/// `redrive` arguments.
#[derive(Debug, Args)]
pub struct RedriveArgs {
    /// Which letters.
    #[command(flatten)]
    pub select: DlqArgs,
    /// Also resend letters an earlier redrive delivered.
    #[arg(long)]
    pub again: bool,
    /// Show what would be sent, send nothing.
    #[arg(long)]
    pub dry_run: bool,
}

impl DlqArgs {
    fn selection(&self) -> Result<Selection> {
        if let Some(stage) = &self.stage {
            if !["source", "transform", "publish"].contains(&stage.to_ascii_lowercase().as_str()) {
                bail!("--stage {stage:?} is not source, transform or publish");
            }
        }
        Ok(Selection {
            stage: self.stage.clone(),
            code: self.code.clone(),
            since_ms: self.since,
            until_ms: self.until,
            offsets: self.offsets.clone(),
        })
    }
}

/// Runs a `dlq` command; returns the exit code.
pub async fn run(command: DlqCommand) -> Result<i32> {
    match command {
        DlqCommand::List(args) => list(&args, false).await,
        DlqCommand::Show(args) => list(&args, true).await,
        DlqCommand::Redrive(args) => redrive(&args).await,
    }
}

async fn open(args: &DlqArgs) -> Result<(Target, Backend, SecretStore)> {
    let store = SecretStore::from_arg(args.secrets.as_deref());
    let (target, backend) = topics::open(&args.config, &store).await?;
    Ok((target, backend, store))
}

async fn list(args: &DlqArgs, full: bool) -> Result<i32> {
    let selection = args.selection()?;
    let (target, backend, _) = open(args).await?;
    let letters = read_letters(&backend, &target.dead_letter_topic).await?;
    let marks = read_marks(&backend, &target.dead_letter_topic).await?;
    let selected: Vec<&Letter> = letters.iter().filter(|l| selection.matches(l)).collect();
    let mut out = std::io::stdout().lock();
    if args.json {
        let values: Vec<Value> = selected
            .iter()
            .map(|l| letter_json(l, marks.get(&l.id()), full))
            .collect();
        serde_json::to_writer_pretty(&mut out, &values)?;
        writeln!(out)?;
    } else if full {
        for letter in &selected {
            write!(out, "{}", show_text(letter, marks.get(&letter.id())))?;
        }
    } else {
        writeln!(
            out,
            "{:>8}  {:<24}  {:<9}  {:<24}  {:<22}  {:<9}  reason",
            "offset", "at", "stage", "code", "origin", "redriven"
        )?;
        for l in &selected {
            let redriven = if marks.contains_key(&l.id()) { "yes" } else { "no" };
            writeln!(
                out,
                "{:>8}  {:<24}  {:<9}  {:<24}  {:<22}  {:<9}  {}",
                l.offset,
                format_ms(l.at_ms()),
                l.stage(),
                l.code(),
                l.origin(),
                redriven,
                one_line(l.reason(), 100)
            )?;
        }
    }
    out.flush()?;
    eprintln!(
        "{} of {} dead letters in {} selected",
        selected.len(),
        letters.len(),
        target.dead_letter_topic
    );
    Ok(0)
}

fn one_line(text: &str, max: usize) -> String {
    let flat: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    match flat.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &flat[..cut]),
        None => flat,
    }
}

fn letter_json(letter: &Letter, mark: Option<&Mark>, full: bool) -> Value {
    let mut value = json!({
        "partition": letter.partition,
        "offset": letter.offset,
        "at": format_ms(letter.at_ms()),
        "stage": letter.stage(),
        "code": letter.code(),
        "reason": letter.reason(),
        "origin": letter.origin(),
        "redriven": mark.map(|m| json!(m)),
    });
    if full {
        value["letter"] = letter.body.clone();
    }
    value
}

fn show_text(letter: &Letter, mark: Option<&Mark>) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "── dead letter {}@{} ──", letter.partition, letter.offset);
    let _ = writeln!(out, "at:      {}", format_ms(letter.at_ms()));
    let _ = writeln!(out, "stage:   {}", letter.stage());
    let _ = writeln!(out, "code:    {}", letter.code());
    let _ = writeln!(out, "reason:  {}", letter.reason());
    let _ = writeln!(out, "origin:  {}", letter.origin());
    match mark {
        Some(m) => {
            let _ = writeln!(out, "redriven: {} at {} ({})", m.outcome, m.at, m.ids.join(", "));
        }
        None => {
            let _ = writeln!(out, "redriven: no");
        }
    }
    if let Some((id, data)) = letter.event() {
        let pretty = serde_json::from_str::<Value>(&data)
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            .unwrap_or(data);
        let _ = writeln!(out, "id:      {id}\neventData:\n{pretty}");
    }
    match letter.raw() {
        Some(raw) => {
            let text = String::from_utf8_lossy(&raw);
            let _ = writeln!(out, "record ({} bytes):\n{}", raw.len(), one_line(&text, 4_000));
        }
        None if letter.body["recordTruncated"].as_bool() == Some(true) => {
            let _ = writeln!(
                out,
                "record: a {}-byte sample of {} bytes",
                letter.body["record"].as_str().map_or(0, str::len),
                letter.body["recordBytes"]
            );
        }
        None => {}
    }
    let _ = writeln!(out);
    out
}

/// The destination side of a config: what redrive sends through and to.
struct SinkSide {
    destination: DestinationConfig,
    transforms: Vec<TransformationStep>,
    base_dir: PathBuf,
}

fn sink_side(path: &Path, store: &SecretStore) -> Result<SinkSide> {
    match ConfigKind::of(path)? {
        ConfigKind::Embedded => {
            let c = EmbeddedConfig::load(path, store)?;
            Ok(SinkSide {
                destination: c.destination,
                transforms: c.transforms,
                base_dir: c.base_dir,
            })
        }
        ConfigKind::Sink => {
            let c = SinkConnectorConfig::load(path, store)?;
            Ok(SinkSide {
                base_dir: c.file.base_dir(),
                transforms: c.file.transforms,
                destination: c.destination,
            })
        }
        ConfigKind::Source => bail!(
            "{} is a source connector config; redrive needs the embedded config or a sink connector config",
            path.display()
        ),
    }
}

/// What redrive did, for the summary.
#[derive(Debug, Default)]
struct Tally {
    selected: usize,
    already: usize,
    delivered: usize,
    events: usize,
    filtered: usize,
    refused: usize,
    failed: usize,
    skipped: usize,
    unsettled: usize,
}

async fn redrive(args: &RedriveArgs) -> Result<i32> {
    let selection = args.select.selection()?;
    let (target, backend, store) = open(&args.select).await?;
    topics::require_sink(&target, &args.select.config)?;
    let side = sink_side(&args.select.config, &store)?;
    let registry: Option<&dyn ModuleRegistry> = match &backend {
        Backend::Fluvio(fluvio) => Some(fluvio),
        Backend::Embedded(_) => None,
    };
    let mut chain = load_chain(&side.transforms, &side.base_dir, registry).await?;
    let letters = read_letters(&backend, &target.dead_letter_topic).await?;
    let marks = read_marks(&backend, &target.dead_letter_topic).await?;
    let mut tally = Tally::default();
    let mut selected = Vec::new();
    for letter in letters.iter().filter(|l| selection.matches(l)) {
        if marks.contains_key(&letter.id()) && !args.again {
            tally.already += 1;
        } else {
            selected.push(letter);
        }
    }
    tally.selected = selected.len();
    let bar = progress_bar(selected.len() as u64);
    let mut items = Vec::new();
    let mut pending = Pending::default();
    for letter in &selected {
        let outcome = prepare(letter, &backend, &target.topic, &mut chain).await?;
        match outcome {
            Prepared::Send(events) => {
                pending.expect(letter.id(), events.len());
                for (id, event_data) in events {
                    if args.dry_run {
                        report(letter, &format!("would send {id}"));
                    }
                    items.push(PublishItem {
                        id,
                        event_data,
                        // The record's time is not in the letter; the event's own
                        // time stamps it.
                        record_time_ms: None,
                        token: letter.id(),
                    });
                }
            }
            Prepared::Filtered => {
                tally.filtered += 1;
                report(letter, "filtered by today's transforms: nothing to send");
                bar.inc(1);
            }
            Prepared::Failed(why) => {
                tally.failed += 1;
                report(letter, &format!("not sent: {why}"));
                bar.inc(1);
            }
            Prepared::Skipped(why) => {
                tally.skipped += 1;
                report(letter, &format!("skipped: {why}"));
                bar.inc(1);
            }
        }
    }
    let fatal = if args.dry_run || items.is_empty() {
        tally.unsettled = if args.dry_run { pending.unsettled().len() } else { 0 };
        None
    } else {
        send(&side.destination, items, pending, &backend, &target, &bar, &mut tally).await?
    };
    bar.finish_and_clear();
    summary(&tally, args.dry_run);
    if let Some(fatal) = fatal {
        bail!("redrive stopped: {fatal}");
    }
    Ok(if tally.refused + tally.failed + tally.unsettled > 0 {
        1
    } else {
        0
    })
}

/// What one letter becomes before sending.
enum Prepared {
    Send(Vec<(String, String)>),
    Filtered,
    Failed(String),
    Skipped(String),
}

async fn prepare(letter: &Letter, backend: &Backend, raw_topic: &str, chain: &mut TransformChain) -> Result<Prepared> {
    Ok(match plan(letter, backend, raw_topic).await? {
        Plan::Chain { key, value, .. } => match transform(chain, key.as_deref(), &value) {
            Transformed::Events(events) => Prepared::Send(events),
            Transformed::Filtered => Prepared::Filtered,
            Transformed::Failed(why) => Prepared::Failed(why),
        },
        Plan::AsStored { id, event_data } => Prepared::Send(vec![(id, event_data)]),
        Plan::Skip(why) => Prepared::Skipped(why),
    })
}

/// Publishes, marks each letter once all its events are stored, and returns
/// the fatal error that stopped the publisher, if one did.
async fn send(
    destination: &DestinationConfig,
    items: Vec<PublishItem<LetterId>>,
    mut pending: Pending,
    backend: &Backend,
    target: &Target,
    bar: &ProgressBar,
    tally: &mut Tally,
) -> Result<Option<String>> {
    let publisher = Publisher::new(destination, None, Arc::new(PublishMetrics::default())).await?;
    let (mut settled, run) = deliver(publisher, items);
    let mut marks = Vec::new();
    let mut flushed = tokio::time::Instant::now();
    while let Some(settlement) = settled.recv().await {
        let letter = settlement.token;
        let Some(done) = pending.settle(letter, &settlement.id, &settlement.outcome) else {
            continue;
        };
        bar.inc(1);
        match done {
            Settled::Delivered(ids) => {
                tally.delivered += 1;
                tally.events += ids.len();
                marks.push(Mark::new(letter, "delivered", ids));
            }
            Settled::Refused(code, message) => {
                tally.refused += 1;
                bar.suspend(|| println!("{:>8}  refused again: {code}: {message}", letter.1));
            }
        }
        // Marks are written in small batches: a crash re-sends at most those.
        if marks.len() >= 100 || (!marks.is_empty() && flushed.elapsed() >= Duration::from_secs(1)) {
            write_marks(backend, &target.dead_letter_topic, &marks).await?;
            marks.clear();
            flushed = tokio::time::Instant::now();
        }
    }
    write_marks(backend, &target.dead_letter_topic, &marks)
        .await
        .context("recording what was redriven")?;
    let end = run.await.context("the publisher task failed")?;
    tally.unsettled = pending.unsettled().len();
    Ok(end.err().map(|fatal| fatal.to_string()))
}

fn progress_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} dead letters ({eta} left)")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

fn report(letter: &Letter, what: &str) {
    println!(
        "{:>8}  {:<9}  {:<24}  {what}",
        letter.offset,
        letter.stage(),
        letter.code()
    );
}

fn summary(t: &Tally, dry_run: bool) {
    let verb = if dry_run { "would be sent" } else { "delivered" };
    eprintln!(
        "redrive: {} selected; {} {verb} ({} events); {} filtered by today's transforms; {} refused again; {} failed in the transforms; {} skipped (nothing to redrive); {} unsettled; {} already redriven (not resent; --again resends them)",
        t.selected,
        if dry_run { t.selected - t.filtered - t.failed - t.skipped } else { t.delivered },
        t.events,
        t.filtered,
        t.refused,
        t.failed,
        t.skipped,
        t.unsettled,
        t.already
    );
}
