//! The embedded durable log: topics in one SQLite file (WAL), for one machine.
//!
//! Each topic is a table keyed by offset; an append is one transaction, so a
//! record acknowledged to the caller survives `kill -9` (and, with
//! `sync: full`, power loss). Consumer offsets live in the same file and only
//! ever move forward.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Deserialize;
use tokio::sync::Notify;

use crate::topic::{
    check_topic_name, ConsumerPosition, NewRecord, OffsetCommitter, PartitionBounds, StartFrom, TopicInspect,
    TopicReader, TopicRecord, TopicWriter,
};

/// How hard SQLite syncs commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// fsync on every commit: survives power loss.
    #[default]
    Full,
    /// fsync at checkpoints: survives process crashes (`kill -9`), not power loss.
    Normal,
}

/// The embedded log. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SqliteLog {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    write: Mutex<Connection>,
    read: Mutex<Connection>,
    appended: Notify,
}

fn lock(mutex: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Runs blocking SQLite work off the async runtime.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| anyhow!("SQLite worker failed: {e}"))?
}

impl SqliteLog {
    /// Opens (creating if needed) the log at `path`.
    pub fn open(path: &Path, sync: SyncMode) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let write = connect(path, sync)?;
        write
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS topics (
                     name TEXT PRIMARY KEY,
                     next_offset INTEGER NOT NULL,
                     bytes INTEGER NOT NULL DEFAULT 0);
                 CREATE TABLE IF NOT EXISTS consumer_offsets (
                     consumer TEXT NOT NULL,
                     topic TEXT NOT NULL,
                     partition INTEGER NOT NULL,
                     offset INTEGER NOT NULL,
                     updated_ms INTEGER NOT NULL,
                     PRIMARY KEY (consumer, topic, partition));",
            )
            .map_err(|e| unusable(path, "initialising", e))?;
        let read = connect(path, sync)?;
        Ok(Self {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                write: Mutex::new(write),
                read: Mutex::new(read),
                appended: Notify::new(),
            }),
        })
    }

    /// Where the log lives.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Claims the log for one source: a second process (or pipeline) that
    /// tries while this one holds the claim gets a clear error instead of
    /// appending the same Falcon events beside it. Released when the returned
    /// guard drops, or when the process dies however it dies (`flock`).
    pub fn claim_for_source(&self) -> Result<SourceClaim> {
        let path = &self.inner.path;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .open(path)
            .with_context(|| format!("opening the log {} to claim it", path.display()))?;
        // SAFETY: flock on a descriptor this function owns for the call.
        let rc = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&file), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let error = std::io::Error::last_os_error();
            if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
                bail!(
                    "the log {} is in use by another falcon-lake source (a second `run` on the same storage.path?); \
                     stop it first",
                    path.display()
                );
            }
            return Err(anyhow::Error::new(error).context(format!("claiming the log {}", path.display())));
        }
        Ok(SourceClaim { _file: file })
    }

    /// Caps the log file at `max_pages` pages (SQLite's `max_page_count`), or
    /// lifts the cap: past it an append fails as on a full disk. Returns the
    /// pages the log has now. Lets an operator bound the file, and tests fill
    /// the "disk" without filling the machine's.
    pub async fn cap_pages(&self, max_pages: Option<u64>) -> Result<u64> {
        let inner = self.inner.clone();
        blocking(move || {
            let conn = lock(&inner.write);
            // SQLite's own ceiling (2^32 - 2 pages) stands for "no cap".
            let max = max_pages.unwrap_or(4_294_967_294).min(4_294_967_294);
            conn.query_row(&format!("PRAGMA max_page_count = {max}"), [], |r| r.get::<_, i64>(0))
                .context("setting max_page_count")?;
            let pages: i64 = conn
                .query_row("PRAGMA page_count", [], |r| r.get(0))
                .context("reading page_count")?;
            Ok(pages as u64)
        })
        .await
    }

    /// A topic, created if it does not exist.
    pub fn topic(&self, name: &str) -> Result<SqliteTopic> {
        check_topic_name(name, "topic")?;
        let table = format!("\"log_{}\"", name.replace('-', "_"));
        let conn = lock(&self.inner.write);
        conn.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {table} (
                 offset INTEGER PRIMARY KEY,
                 ts INTEGER NOT NULL,
                 key BLOB,
                 value BLOB NOT NULL);
             CREATE INDEX IF NOT EXISTS \"ts_{n}\" ON {table}(ts);
             CREATE INDEX IF NOT EXISTS \"keys_{n}\" ON {table}(offset, key);",
            n = name.replace('-', "_")
        ))
        .with_context(|| format!("creating topic {name}"))?;
        conn.execute(
            "INSERT OR IGNORE INTO topics(name, next_offset) VALUES (?1, 0)",
            params![name],
        )
        .with_context(|| format!("registering topic {name}"))?;
        Ok(SqliteTopic {
            log: self.clone(),
            name: name.to_string(),
            keys_index: format!("\"keys_{}\"", name.replace('-', "_")),
            table,
        })
    }
}

fn connect(path: &Path, sync: SyncMode) -> Result<Connection> {
    if path.is_dir() {
        bail!(
            "the log {} (storage.path) is a directory, not a SQLite file; point storage.path at a file",
            path.display()
        );
    }
    let conn = Connection::open(path).map_err(|e| unusable(path, "opening", e))?;
    let synchronous = match sync {
        SyncMode::Full => "FULL",
        SyncMode::Normal => "NORMAL",
    };
    conn.execute_batch(&format!(
        "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous};"
    ))
    .map_err(|e| unusable(path, "configuring", e))?;
    // SQLite as bundled plans with STAT4, which marks a cached statement with
    // a range on a bound value for re-preparing whenever the value changes:
    // every read of the log parsed and planned its SELECT again. The plans of
    // these queries never depend on the values, so fix them.
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .map_err(|e| unusable(path, "configuring", e))?;
    // The first read of the schema is where a file that is not a database, or
    // one that cannot be read, shows itself.
    conn.query_row("SELECT COUNT(*) FROM sqlite_schema", [], |r| r.get::<_, i64>(0))
        .map_err(|e| unusable(path, "reading", e))?;
    Ok(conn)
}

/// An error for a log file SQLite cannot use, saying which file and what to do.
fn unusable(path: &Path, doing: &str, error: rusqlite::Error) -> anyhow::Error {
    let code = match &error {
        rusqlite::Error::SqliteFailure(e, _) => Some(e.code),
        _ => None,
    };
    let hint = match code {
        Some(rusqlite::ErrorCode::NotADatabase) | Some(rusqlite::ErrorCode::DatabaseCorrupt) => {
            "it is not a SQLite database or it is corrupt: restore it from a backup, or move it away to start an \
             empty log (the source then re-reads what Falcon still retains)"
        }
        Some(rusqlite::ErrorCode::CannotOpen) | Some(rusqlite::ErrorCode::PermissionDenied) => {
            "it cannot be opened for reading and writing: check that it is a file and the permissions of it and \
             of its directory"
        }
        Some(rusqlite::ErrorCode::ReadOnly) => "it is read-only: falcon-lake needs to write to it",
        Some(rusqlite::ErrorCode::DiskFull) => "the disk is full",
        _ => "SQLite cannot use it",
    };
    anyhow::Error::new(error).context(format!("{doing} the log {}: {hint}", path.display()))
}

/// The claim of [`SqliteLog::claim_for_source`]; dropping it releases the log.
#[derive(Debug)]
pub struct SourceClaim {
    _file: std::fs::File,
}

/// One topic of the embedded log (a single partition, 0). Cheap to clone.
#[derive(Debug, Clone)]
pub struct SqliteTopic {
    log: SqliteLog,
    name: String,
    table: String,
    /// Offsets and keys alone: what cursor recovery reads, without touching
    /// the values (a key scan of 2,000,000 records then reads ~60 MB, not the
    /// whole log).
    keys_index: String,
}

/// What a retention pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Records deleted.
    pub deleted: u64,
    /// True when records over the limits were kept because a consumer still needs them.
    pub held_back: bool,
}

impl SqliteTopic {
    /// The topic's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A reader that starts after `consumer`'s committed offset, or at `start`
    /// when it has none (or when no consumer is given).
    pub async fn reader(&self, consumer: Option<&str>, start: StartFrom) -> Result<SqliteReader> {
        let committed = match consumer {
            Some(consumer) => self.committed(consumer).await?,
            None => None,
        };
        let next = match (committed, start) {
            (Some(offset), _) => offset + 1,
            (None, StartFrom::Beginning) => 0,
            (None, StartFrom::Absolute(offset)) => offset,
            (None, StartFrom::End) => self.bounds().await?.first().map_or(0, |b| b.next),
        };
        Ok(SqliteReader {
            topic: self.clone(),
            next,
            until: None,
        })
    }

    /// A reader of `from..to` (no consumer offset involved).
    pub fn range_reader(&self, from: u64, to: Option<u64>) -> SqliteReader {
        SqliteReader {
            topic: self.clone(),
            next: from,
            until: to,
        }
    }

    /// Commits offsets for `consumer`.
    pub fn committer(&self, consumer: &str) -> SqliteCommitter {
        SqliteCommitter {
            topic: self.clone(),
            consumer: consumer.to_string(),
        }
    }

    /// The last offset `consumer` committed, if any.
    pub async fn committed(&self, consumer: &str) -> Result<Option<u64>> {
        let inner = self.log.inner.clone();
        let (topic, consumer) = (self.name.clone(), consumer.to_string());
        blocking(move || {
            let conn = lock(&inner.read);
            let mut query = conn.prepare_cached(
                "SELECT offset FROM consumer_offsets WHERE consumer = ?1 AND topic = ?2 AND partition = 0",
            )?;
            let offset = query
                .query_row(params![consumer, topic], |row| row.get::<_, i64>(0))
                .optional()
                .context("reading a consumer offset")?;
            Ok(offset.map(|o| o as u64))
        })
        .await
    }

    /// Every consumer's committed offset on this topic.
    pub async fn consumers(&self) -> Result<Vec<ConsumerPosition>> {
        let inner = self.log.inner.clone();
        let topic = self.name.clone();
        blocking(move || {
            let conn = lock(&inner.read);
            let mut query = conn.prepare_cached(
                "SELECT consumer, partition, offset, updated_ms FROM consumer_offsets WHERE topic = ?1 ORDER BY consumer, partition",
            )?;
            let rows = query.query_map(params![topic], |row| {
                Ok(ConsumerPosition {
                    consumer: row.get(0)?,
                    partition: row.get::<_, i64>(1)? as u32,
                    offset: row.get::<_, i64>(2)? as u64,
                    updated_ms: row.get(3)?,
                })
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
                .context("listing consumer offsets")
        })
        .await
    }

    /// The first offset appended at or after `timestamp_ms`.
    pub async fn offset_at(&self, timestamp_ms: i64) -> Result<Option<u64>> {
        let (inner, table) = (self.log.inner.clone(), self.table.clone());
        blocking(move || {
            let conn = lock(&inner.read);
            conn.query_row(
                &format!("SELECT MIN(offset) FROM {table} WHERE ts >= ?1"),
                params![timestamp_ms],
                |row| row.get::<_, Option<i64>>(0),
            )
            .map(|o| o.map(|o| o as u64))
            .context("finding an offset by time")
        })
        .await
    }

    /// Deletes records older than `max_age` and the oldest records beyond
    /// `max_bytes`, but never one at or after `keep_from` (the first offset a
    /// consumer has not settled).
    pub async fn enforce_retention(
        &self,
        max_age: Option<Duration>,
        max_bytes: Option<u64>,
        keep_from: Option<u64>,
    ) -> Result<RetentionReport> {
        let (inner, table, name) = (self.log.inner.clone(), self.table.clone(), self.name.clone());
        blocking(move || {
            let mut conn = lock(&inner.write);
            let tx = conn.transaction().context("starting a retention pass")?;
            let keep = keep_from.map_or(i64::MAX, |k| k as i64);
            let mut report = RetentionReport::default();
            if let Some(age) = max_age {
                let cutoff = now_ms() - age.as_millis() as i64;
                let (deleted, held) = delete_where(&tx, &table, &name, "ts < ?1", cutoff, keep)?;
                report.deleted += deleted;
                report.held_back |= held;
            }
            if let Some(limit) = max_bytes {
                loop {
                    let bytes: i64 =
                        tx.query_row("SELECT bytes FROM topics WHERE name = ?1", params![name], |r| r.get(0))?;
                    if bytes <= limit as i64 {
                        break;
                    }
                    let oldest: Option<i64> =
                        tx.query_row(&format!("SELECT MIN(offset) FROM {table}"), [], |r| r.get(0))?;
                    let Some(oldest) = oldest else { break };
                    if oldest >= keep {
                        report.held_back = true;
                        break;
                    }
                    let (deleted, _) = delete_where(&tx, &table, &name, "offset < ?1", oldest + 1_000, keep)?;
                    report.deleted += deleted;
                }
            }
            tx.commit().context("committing a retention pass")?;
            Ok(report)
        })
        .await
    }
}

/// Deletes the records matching `condition` (with `?1` = `value`) below `keep`;
/// returns (deleted, whether matching records were kept for a consumer).
fn delete_where(
    tx: &rusqlite::Transaction<'_>,
    table: &str,
    name: &str,
    condition: &str,
    value: i64,
    keep: i64,
) -> Result<(u64, bool)> {
    let (bytes, count): (i64, i64) = tx.query_row(
        &format!("SELECT COALESCE(SUM(LENGTH(value) + COALESCE(LENGTH(key), 0)), 0), COUNT(*) FROM {table} WHERE {condition} AND offset < ?2"),
        params![value, keep],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let held: i64 = tx.query_row(
        &format!("SELECT COUNT(*) FROM {table} WHERE {condition} AND offset >= ?2"),
        params![value, keep],
        |r| r.get(0),
    )?;
    tx.execute(
        &format!("DELETE FROM {table} WHERE {condition} AND offset < ?2"),
        params![value, keep],
    )?;
    tx.execute(
        "UPDATE topics SET bytes = MAX(0, bytes - ?1) WHERE name = ?2",
        params![bytes, name],
    )?;
    Ok((count as u64, held > 0))
}

impl TopicWriter for SqliteTopic {
    async fn append(&self, records: Vec<NewRecord>) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let (inner, table, name) = (self.log.inner.clone(), self.table.clone(), self.name.clone());
        let log = self.log.clone();
        blocking(move || {
            let mut conn = lock(&inner.write);
            let tx = conn.transaction().context("starting an append")?;
            let next: i64 = tx
                .prepare_cached("SELECT next_offset FROM topics WHERE name = ?1")?
                .query_row(params![name], |r| r.get(0))?;
            let ts = now_ms();
            let mut bytes = 0i64;
            {
                let mut insert = tx.prepare_cached(&format!(
                    "INSERT INTO {table}(offset, ts, key, value) VALUES (?1, ?2, ?3, ?4)"
                ))?;
                for (i, record) in records.iter().enumerate() {
                    bytes += (record.value.len() + record.key.as_ref().map_or(0, |k| k.len())) as i64;
                    insert.execute(params![
                        next + i as i64,
                        ts,
                        record.key.as_deref(),
                        record.value.as_ref()
                    ])?;
                }
            }
            tx.prepare_cached("UPDATE topics SET next_offset = ?1, bytes = bytes + ?2 WHERE name = ?3")?
                .execute(params![next + records.len() as i64, bytes, name])?;
            tx.commit()?;
            Ok(())
        })
        .await
        .with_context(|| format!("appending to {} in the log {}", self.name, log.path().display()))?;
        self.log.inner.appended.notify_waiters();
        Ok(())
    }
}

impl TopicInspect for SqliteTopic {
    async fn bounds(&self) -> Result<Vec<PartitionBounds>> {
        let (inner, table, name) = (self.log.inner.clone(), self.table.clone(), self.name.clone());
        blocking(move || {
            let conn = lock(&inner.read);
            let next: i64 = conn
                .prepare_cached("SELECT next_offset FROM topics WHERE name = ?1")?
                .query_row(params![name], |r| r.get(0))?;
            let first: Option<i64> = conn
                .prepare_cached(&format!("SELECT MIN(offset) FROM {table}"))?
                .query_row([], |r| r.get(0))?;
            Ok(vec![PartitionBounds {
                partition: 0,
                first: first.unwrap_or(next) as u64,
                next: next as u64,
            }])
        })
        .await
    }

    async fn read_range(&self, partition: u32, from: u64, to: u64) -> Result<Vec<TopicRecord>> {
        if partition != 0 || from >= to {
            return Ok(Vec::new());
        }
        let (inner, table) = (self.log.inner.clone(), self.table.clone());
        blocking(move || select_records(&lock(&inner.read), &table, from, to, usize::MAX)).await
    }

    async fn scan_keys(
        &self,
        partition: u32,
        from: u64,
        to: u64,
        visit: &mut (dyn FnMut(u64, Option<&[u8]>) + Send),
    ) -> Result<()> {
        if partition != 0 {
            return Ok(());
        }
        let mut start = from;
        while start < to {
            let (inner, table, index) = (self.log.inner.clone(), self.table.clone(), self.keys_index.clone());
            let keys =
                blocking(move || select_keys(&lock(&inner.read), &table, &index, start, to, KEYS_AT_A_TIME)).await?;
            let Some(last) = keys.last().map(|(offset, _)| *offset) else {
                return Ok(());
            };
            for (offset, key) in &keys {
                visit(*offset, key.as_deref());
            }
            start = last + 1;
        }
        Ok(())
    }
}

/// Keys read per query of a key scan: about 30 bytes each.
const KEYS_AT_A_TIME: usize = 10_000;

fn select_keys(
    conn: &Connection,
    table: &str,
    index: &str,
    from: u64,
    to: u64,
    max: usize,
) -> Result<Vec<(u64, Option<Vec<u8>>)>> {
    // INDEXED BY: the planner would otherwise walk the table by rowid and read
    // every value's page.
    let mut query = conn.prepare_cached(&format!(
        "SELECT offset, key FROM {table} INDEXED BY {index} WHERE offset >= ?1 AND offset < ?2 ORDER BY offset LIMIT ?3"
    ))?;
    let rows = query.query_map(
        params![from as i64, to.min(i64::MAX as u64) as i64, max as i64],
        |row| Ok((row.get::<_, i64>(0)? as u64, row.get::<_, Option<Vec<u8>>>(1)?)),
    )?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .context("reading record keys")
}

fn records_query(table: &str) -> String {
    format!("SELECT offset, ts, key, value FROM {table} WHERE offset >= ?1 AND offset < ?2 ORDER BY offset LIMIT ?3")
}

fn select_records(conn: &Connection, table: &str, from: u64, to: u64, max: usize) -> Result<Vec<TopicRecord>> {
    let mut query = conn.prepare_cached(&records_query(table))?;
    let rows = query.query_map(
        params![
            from as i64,
            to.min(i64::MAX as u64) as i64,
            max.min(i64::MAX as usize) as i64
        ],
        |row| {
            Ok(TopicRecord {
                partition: 0,
                offset: row.get::<_, i64>(0)? as u64,
                timestamp_ms: row.get(1)?,
                key: row.get::<_, Option<Vec<u8>>>(2)?.map(Bytes::from),
                value: Bytes::from(row.get::<_, Vec<u8>>(3)?),
            })
        },
    )?;
    rows.collect::<rusqlite::Result<Vec<_>>>().context("reading records")
}

/// Reads one topic in order.
#[derive(Debug)]
pub struct SqliteReader {
    topic: SqliteTopic,
    next: u64,
    until: Option<u64>,
}

impl SqliteReader {
    /// The offset the next record read will have (at least).
    pub fn position(&self) -> u64 {
        self.next
    }
}

/// How often a waiting reader looks for records appended by another process.
const POLL: Duration = Duration::from_millis(200);

impl TopicReader for SqliteReader {
    async fn next_batch(&mut self, max: usize, wait: Duration) -> Result<Vec<TopicRecord>> {
        let deadline = tokio::time::Instant::now() + wait;
        let until = self.until.unwrap_or(u64::MAX);
        loop {
            if self.next >= until {
                return Ok(Vec::new());
            }
            let inner = self.topic.log.inner.clone();
            let notified = inner.appended.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (table, from) = (self.topic.table.clone(), self.next);
            let reader = inner.clone();
            let batch = blocking(move || select_records(&lock(&reader.read), &table, from, until, max)).await?;
            if let Some(last) = batch.last() {
                self.next = last.offset + 1;
                return Ok(batch);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(batch);
            }
            let _ = tokio::time::timeout((deadline - now).min(POLL), notified).await;
        }
    }

    fn positions(&self) -> Vec<(u32, u64)> {
        vec![(0, self.next)]
    }
}

/// Commits one consumer's offsets.
#[derive(Debug, Clone)]
pub struct SqliteCommitter {
    topic: SqliteTopic,
    consumer: String,
}

impl OffsetCommitter for SqliteCommitter {
    async fn commit(&self, offsets: &[(u32, u64)]) -> Result<()> {
        let Some(offset) = offsets.iter().filter(|(p, _)| *p == 0).map(|(_, o)| *o).max() else {
            return Ok(());
        };
        let inner = self.topic.log.inner.clone();
        let (consumer, topic) = (self.consumer.clone(), self.topic.name.clone());
        blocking(move || {
            lock(&inner.write)
                .prepare_cached(
                    "INSERT INTO consumer_offsets(consumer, topic, partition, offset, updated_ms) VALUES (?1, ?2, 0, ?3, ?4)
                     ON CONFLICT(consumer, topic, partition) DO UPDATE
                     SET offset = excluded.offset, updated_ms = excluded.updated_ms
                     WHERE excluded.offset > consumer_offsets.offset",
                )
                .and_then(|mut commit| commit.execute(params![consumer, topic, offset as i64, now_ms()]))
                .context("committing a consumer offset")?;
            Ok(())
        })
        .await
    }

    async fn committed(&self) -> Result<Vec<(u32, u64)>> {
        Ok(self
            .topic
            .committed(&self.consumer)
            .await?
            .map(|o| (0, o))
            .into_iter()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(values: &[&str]) -> Vec<NewRecord> {
        values
            .iter()
            .map(|v| NewRecord {
                key: Some(Bytes::from(format!("k{v}"))),
                value: Bytes::from(v.to_string()),
            })
            .collect()
    }

    #[tokio::test]
    async fn appends_reads_and_commits() {
        let dir = tempfile::tempdir().expect("dir");
        let log = SqliteLog::open(&dir.path().join("log.db"), SyncMode::Normal).expect("open");
        let topic = log.topic("raw-events").expect("topic");
        topic.append(records(&["a", "b", "c"])).await.expect("append");
        let mut reader = topic.reader(Some("sink"), StartFrom::Beginning).await.expect("reader");
        let batch = reader.next_batch(2, Duration::ZERO).await.expect("read");
        assert_eq!(batch.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(batch[1].key.as_deref(), Some(&b"kb"[..]));
        topic.committer("sink").commit(&[(0, 1)]).await.expect("commit");
        topic.committer("sink").commit(&[(0, 0)]).await.expect("commit");
        assert_eq!(
            topic.committed("sink").await.expect("read"),
            Some(1),
            "offsets never move back"
        );
        let mut resumed = topic.reader(Some("sink"), StartFrom::Beginning).await.expect("reader");
        assert_eq!(resumed.next_batch(10, Duration::ZERO).await.expect("read")[0].offset, 2);
        assert_eq!(
            topic.bounds().await.expect("bounds"),
            vec![PartitionBounds {
                partition: 0,
                first: 0,
                next: 3
            }]
        );
    }

    #[tokio::test]
    async fn readers_wake_on_appends() {
        let dir = tempfile::tempdir().expect("dir");
        let log = SqliteLog::open(&dir.path().join("log.db"), SyncMode::Normal).expect("open");
        let topic = log.topic("t").expect("topic");
        let mut reader = topic.reader(None, StartFrom::End).await.expect("reader");
        let writer = topic.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            writer.append(records(&["x"])).await.expect("append");
        });
        let began = std::time::Instant::now();
        let batch = reader.next_batch(10, Duration::from_secs(5)).await.expect("read");
        assert_eq!(batch.len(), 1);
        assert!(began.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn reads_do_not_parse_their_query_again() {
        let dir = tempfile::tempdir().expect("dir");
        let log = SqliteLog::open(&dir.path().join("log.db"), SyncMode::Full).expect("open");
        let topic = log.topic("t").expect("topic");
        let mut reader = topic.reader(None, StartFrom::Beginning).await.expect("reader");
        for value in ["a", "b", "c"] {
            topic.append(records(&[value])).await.expect("append");
            assert_eq!(reader.next_batch(10, Duration::ZERO).await.expect("read").len(), 1);
        }
        let conn = lock(&log.inner.read);
        let statement = conn.prepare_cached(&records_query(&topic.table)).expect("cached");
        assert_eq!(statement.get_status(rusqlite::StatementStatus::RePrepare), 0);
    }

    #[tokio::test]
    async fn retention_spares_what_a_consumer_has_not_settled() {
        let dir = tempfile::tempdir().expect("dir");
        let log = SqliteLog::open(&dir.path().join("log.db"), SyncMode::Normal).expect("open");
        let topic = log.topic("t").expect("topic");
        let values: Vec<String> = (0..50).map(|i| format!("{i:0>100}")).collect();
        topic
            .append(records(&values.iter().map(String::as_str).collect::<Vec<_>>()))
            .await
            .expect("append");
        let report = topic
            .enforce_retention(None, Some(1_000), Some(20))
            .await
            .expect("retention");
        assert_eq!(report.deleted, 20);
        assert!(report.held_back);
        assert_eq!(topic.bounds().await.expect("bounds")[0].first, 20);
        // Records must be older than the cutoff, not from the same millisecond.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let report = topic
            .enforce_retention(Some(Duration::ZERO), None, None)
            .await
            .expect("retention");
        assert_eq!(report.deleted, 30);
        assert_eq!(
            topic.bounds().await.expect("bounds")[0],
            PartitionBounds {
                partition: 0,
                first: 50,
                next: 50
            }
        );
        topic.append(records(&["after"])).await.expect("append");
        assert_eq!(
            topic.bounds().await.expect("bounds")[0].next,
            51,
            "offsets are never reused"
        );
    }

    #[tokio::test]
    async fn range_readers_stop_at_the_end_of_the_range() {
        let dir = tempfile::tempdir().expect("dir");
        let log = SqliteLog::open(&dir.path().join("log.db"), SyncMode::Full).expect("open");
        let topic = log.topic("t").expect("topic");
        topic.append(records(&["a", "b", "c", "d"])).await.expect("append");
        let mut reader = topic.range_reader(1, Some(3));
        let batch = reader.next_batch(10, Duration::from_secs(1)).await.expect("read");
        assert_eq!(batch.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![1, 2]);
        assert!(reader
            .next_batch(10, Duration::from_secs(1))
            .await
            .expect("read")
            .is_empty());
        assert!(log.topic("Bad_Name").is_err());
    }

    #[test]
    fn one_source_at_a_time() {
        let dir = tempfile::tempdir().expect("dir");
        let log = SqliteLog::open(&dir.path().join("log.db"), SyncMode::Full).expect("open");
        let claim = log.claim_for_source().expect("first claim");
        let other = SqliteLog::open(&dir.path().join("log.db"), SyncMode::Full).expect("open again");
        let error = format!("{:#}", other.claim_for_source().expect_err("second claim"));
        assert!(error.contains("in use by another falcon-lake source"), "{error}");
        drop(claim);
        other.claim_for_source().expect("free again");
    }
}
