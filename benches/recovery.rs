//! Start-up cost of the source's cursor recovery on a large embedded log:
//! N records (default 2,000,000) of Falcon partition 0, and a second
//! discovered partition that has no record at all (a new or quiet one), so
//! recovery must look through the whole topic for it.
//!
//! The log is built once; recovery then runs in a child process (this binary
//! again, with `--child`), as a restarted source would, and the parent prints
//! the child's peak RSS (VmHWM, and getrusage's ru_maxrss as a check) and how
//! long it took. Goal: under 64 MiB, in seconds.
//!
//! `cargo bench --bench recovery [-- RECORDS [VALUE_BYTES]]` (defaults
//! 2,000,000 records of 700 bytes).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use bytes::Bytes;
use falcon_lake::audit::SourceKey;
use falcon_lake::falcon::CursorStore;
use falcon_lake::pipeline::recovery::TopicCursors;
use falcon_lake::topic::sqlite::{SqliteLog, SyncMode};
use falcon_lake::topic::{NewRecord, TopicWriter};

const TOPIC: &str = "falcon-events";
const FIRST_OFFSET: u64 = 1_000;
const GOAL_MIB: f64 = 64.0;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let path = PathBuf::from(args.get(i + 1).ok_or_else(|| anyhow::anyhow!("--child needs a path"))?);
        return child(&path);
    }
    let mut numbers = args.iter().filter_map(|a| a.parse::<u64>().ok());
    let records = numbers.next().unwrap_or(2_000_000);
    let value_bytes = numbers.next().unwrap_or(700) as usize;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("falcon-lake.db");
    let began = Instant::now();
    build(&path, records, value_bytes)?;
    let size = std::fs::metadata(&path)?.len() + wal_size(&path);
    println!(
        "recovery: built a log of {records} records of {value_bytes} B ({:.0} MiB) in {:.1?}",
        size as f64 / 1_048_576.0,
        began.elapsed()
    );
    let began = Instant::now();
    let output = Command::new(std::env::current_exe()?)
        .arg("--child")
        .arg(&path)
        .output()?;
    let elapsed = began.elapsed();
    anyhow::ensure!(
        output.status.success(),
        "recovery child failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = String::from_utf8_lossy(&output.stdout);
    let hwm_kib: f64 = field(&report, "vmhwm_kib")?;
    let keys: u64 = field(&report, "keys_read")?;
    let recovery_ms: f64 = field(&report, "recovery_ms")?;
    let found = report
        .split_whitespace()
        .find_map(|w| w.strip_prefix("found="))
        .unwrap_or("?");
    let expected = format!("{}/none", FIRST_OFFSET + records - 1);
    anyhow::ensure!(found == expected, "recovered {found}, expected {expected}");
    let held_ms: f64 = field(&report, "held_ms")?;
    let hwm_held_kib: f64 = field(&report, "vmhwm_after_held_kib")?;
    let maxrss_kib = children_maxrss_kib();
    let peak_mib = hwm_kib / 1024.0;
    println!(
        "recovery: partition 0 at offset {}, partition 1 absent; {keys} keys read",
        FIRST_OFFSET + records - 1
    );
    println!(
        "recovery: peak RSS {peak_mib:.1} MiB (VmHWM; ru_maxrss {:.1} MiB) = {:.2} of the {GOAL_MIB} MiB goal",
        maxrss_kib / 1024.0,
        peak_mib / GOAL_MIB
    );
    println!(
        "recovery: {recovery_ms:.0} ms for both partitions ({:.0} keys/s); child process {:.2?} in all",
        keys as f64 / (recovery_ms / 1000.0).max(1e-9),
        elapsed
    );
    println!(
        "recovery: `start: earliest` reads the held ranges in {held_ms:.0} ms more; peak RSS then {:.1} MiB",
        hwm_held_kib / 1024.0
    );
    Ok(())
}

/// Appends `records` records keyed `0_<offset>` with values of about `value_bytes`.
fn build(path: &Path, records: u64, value_bytes: usize) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let log = SqliteLog::open(path, SyncMode::Normal)?;
        let topic = log.topic(TOPIC)?;
        let filler = "x".repeat(value_bytes.saturating_sub(120));
        let mut offset = FIRST_OFFSET;
        while offset < FIRST_OFFSET + records {
            let end = (offset + 20_000).min(FIRST_OFFSET + records);
            let batch = (offset..end)
                .map(|o| NewRecord {
                    key: Some(Bytes::from(SourceKey::new(0, o).encode())),
                    value: Bytes::from(format!(
                        r#"{{"metadata":{{"customerIDString":"0123456789abcdef","offset":{o},"eventType":"DetectionSummaryEvent"}},"event":{{"pad":"{filler}"}}}}"#
                    )),
                })
                .collect();
            topic.append(batch).await?;
            offset = end;
        }
        anyhow::Ok(())
    })
}

/// Recovers both partitions' cursors, as a restarted source does, and reports.
fn child(path: &Path) -> anyhow::Result<()> {
    falcon_lake::memory::limit_malloc_arenas();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let began = Instant::now();
        let log = SqliteLog::open(path, SyncMode::Full)?;
        let cursors = TopicCursors::new(log.topic(TOPIC)?);
        let present = cursors.last_written(0).await?;
        let absent = cursors.last_written(1).await?;
        let recovery_ms = began.elapsed().as_secs_f64() * 1000.0;
        let keys_read = cursors.keys_read().await;
        let hwm_recovery = own_hwm_kib()?;
        // What `start: earliest` adds: every key once, for the held ranges.
        let began = Instant::now();
        let held = cursors.held_runs(0).await?;
        let held_ms = began.elapsed().as_secs_f64() * 1000.0;
        anyhow::ensure!(held.contains(FIRST_OFFSET) && !held.is_empty(), "held runs not found");
        let show = |o: Option<u64>| o.map_or("none".to_string(), |o| o.to_string());
        println!(
            "found={}/{} keys_read={keys_read} recovery_ms={recovery_ms:.1} vmhwm_kib={hwm_recovery} held_ms={held_ms:.1} \
             vmhwm_after_held_kib={}",
            show(present),
            show(absent),
            own_hwm_kib()?
        );
        anyhow::Ok(())
    })
}

fn own_hwm_kib() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmHWM in /proc/self/status"))
}

fn children_maxrss_kib() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage struct.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    if rc == 0 {
        usage.ru_maxrss as f64
    } else {
        f64::NAN
    }
}

fn field<T: std::str::FromStr>(report: &str, name: &str) -> anyhow::Result<T> {
    report
        .split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{name}=")).and_then(|v| v.parse().ok()))
        .ok_or_else(|| anyhow::anyhow!("the child's report has no {name}: {report}"))
}

fn wal_size(path: &Path) -> u64 {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(PathBuf::from(wal)).map_or(0, |m| m.len())
}
