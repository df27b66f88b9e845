//! The test cluster: an SC and an SPU on loopback ports, served by a runtime
//! of their own, so a test that blocks its own thread (waiting on a child
//! process, say) never stalls the cluster.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use fluvio_protocol::record::ReplicaKey;
use fluvio_types::defaults::STORAGE_MAX_REQUEST_SIZE;
use tempfile::TempDir;
use tokio::runtime::Runtime;
use tokio::sync::Mutex as AsyncMutex;

use crate::inspect::{self, BatchInfo, PartitionBounds, StoredRecord};
use crate::listener::Server;
use crate::state::{Config, Shared};
use crate::{profile, sc, spu};

/// Default interval of the retention check (the SPU's cleaner).
pub const DEFAULT_RETENTION_INTERVAL: Duration = Duration::from_secs(60);
/// The real SC's `FLV_TOPIC_WAIT` default.
pub const DEFAULT_TOPIC_PROVISION_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a restarted SPU is not yet the leader of its partitions (a real
/// 0.18.1 SPU answered NotLeaderForPartition for about 1.3 s after a restart).
pub const DEFAULT_SPU_RESTART_WARMUP: Duration = Duration::from_secs(1);
/// Largest frame accepted before the connection is closed.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 256 * 1024 * 1024;

/// Options of a [`TestCluster`]; every default is the real cluster's.
#[derive(Debug, Clone)]
pub struct TestClusterBuilder {
    host: IpAddr,
    sc_port: u16,
    spu_port: u16,
    spu_id: i32,
    retention_interval: Duration,
    max_request_bytes: u64,
    max_frame_bytes: usize,
    topic_provision_timeout: Duration,
    spu_restart_warmup: Duration,
    profile_path: Option<PathBuf>,
}

impl Default for TestClusterBuilder {
    fn default() -> Self {
        Self {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            sc_port: 0,
            spu_port: 0,
            spu_id: 5001,
            retention_interval: DEFAULT_RETENTION_INTERVAL,
            max_request_bytes: u64::from(STORAGE_MAX_REQUEST_SIZE),
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            topic_provision_timeout: DEFAULT_TOPIC_PROVISION_TIMEOUT,
            spu_restart_warmup: DEFAULT_SPU_RESTART_WARMUP,
            profile_path: None,
        }
    }
}

impl TestClusterBuilder {
    /// The SC's port (0, the default: any free port).
    pub fn sc_port(mut self, port: u16) -> Self {
        self.sc_port = port;
        self
    }

    /// The SPU's port (0, the default: any free port; kept across restarts).
    pub fn spu_port(mut self, port: u16) -> Self {
        self.spu_port = port;
        self
    }

    /// The SPU's id (default 5001, as a local cluster's first SPU).
    pub fn spu_id(mut self, id: i32) -> Self {
        self.spu_id = id;
        self
    }

    /// How often retention runs (default 60 s; zero: only [`TestCluster::run_retention`]).
    pub fn retention_interval(mut self, interval: Duration) -> Self {
        self.retention_interval = interval;
        self
    }

    /// Largest produce entry the SPU takes (default 32 MiB); larger ones get MessageTooLarge.
    pub fn max_request_bytes(mut self, bytes: u64) -> Self {
        self.max_request_bytes = bytes;
        self
    }

    /// Largest frame read before the connection is dropped (default 256 MiB).
    pub fn max_frame_bytes(mut self, bytes: usize) -> Self {
        self.max_frame_bytes = bytes;
        self
    }

    /// How long a create waits for its partitions (default 90 s, then TopicNotProvisioned).
    pub fn topic_provision_timeout(mut self, timeout: Duration) -> Self {
        self.topic_provision_timeout = timeout;
        self
    }

    /// How long an SPU started again by [`TestCluster::start_spu`] is not yet
    /// the leader of its partitions (default 1 s, as a real SPU loading its
    /// replicas from the SC): Produce answers NotLeaderForPartition and
    /// FetchConsumerOffsets PartitionNotLeader meanwhile.
    pub fn spu_restart_warmup(mut self, warmup: Duration) -> Self {
        self.spu_restart_warmup = warmup;
        self
    }

    /// Where to write the profile (default: a temporary directory removed on drop).
    pub fn profile_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.profile_path = Some(path.into());
        self
    }

    /// Starts the cluster.
    pub async fn start(self) -> Result<TestCluster> {
        let runtime = OwnRuntime(Some(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("fluvio-testbed")
                .enable_all()
                .build()
                .context("building the test cluster's runtime")?,
        ));
        let started = runtime.get()?.spawn(Servers::start(self.clone())).await;
        let servers = Arc::new(started.map_err(|e| anyhow!("starting the test cluster: {e}"))??);
        let (profile_dir, profile_path) = match self.profile_path {
            Some(path) => (None, path),
            None => {
                let dir = tempfile::Builder::new()
                    .prefix("fluvio-testbed-")
                    .tempdir()
                    .context("creating the profile directory")?;
                let path = dir.path().join("config");
                (Some(dir), path)
            }
        };
        profile::write(&profile_path, servers.sc_addr)?;
        tracing::debug!(sc = %servers.sc_addr, spu = %servers.spu_addr, profile = %profile_path.display(), "fluvio-testbed started");
        Ok(TestCluster {
            runtime,
            servers,
            _profile_dir: profile_dir,
            profile_path,
        })
    }
}

/// The SC and SPU servers and the state they share.
struct Servers {
    shared: Arc<Shared>,
    sc_addr: SocketAddr,
    spu_addr: SocketAddr,
    sc: AsyncMutex<Option<Server>>,
    spu: AsyncMutex<Option<Server>>,
}

impl Servers {
    async fn start(options: TestClusterBuilder) -> Result<Self> {
        let shared = Arc::new(Shared::new(Config {
            spu_id: options.spu_id,
            max_request_bytes: options.max_request_bytes,
            max_frame_bytes: options.max_frame_bytes,
            topic_provision_timeout: options.topic_provision_timeout,
            spu_restart_warmup: options.spu_restart_warmup,
        }));
        let (spu, spu_addr) = start_spu(&shared, SocketAddr::new(options.host, options.spu_port)).await?;
        {
            let mut state = shared.lock();
            state.set_spu_endpoint(spu_addr);
            state.set_spu_online(true);
        }
        let (sc, sc_addr) = start_sc(&shared, SocketAddr::new(options.host, options.sc_port)).await?;
        if !options.retention_interval.is_zero() {
            tokio::spawn(retention_timer(Arc::downgrade(&shared), options.retention_interval));
        }
        Ok(Self {
            shared,
            sc_addr,
            spu_addr,
            sc: AsyncMutex::new(Some(sc)),
            spu: AsyncMutex::new(Some(spu)),
        })
    }

    async fn stop_spu(&self) {
        let Some(server) = self.spu.lock().await.take() else {
            return;
        };
        server.stop().await;
        self.shared.lock().set_spu_online(false);
        tracing::info!(spu = %self.spu_addr, "SPU stopped");
    }

    async fn start_spu(&self) -> Result<()> {
        let mut slot = self.spu.lock().await;
        if slot.is_some() {
            return Ok(());
        }
        let (server, _) = start_spu(&self.shared, self.spu_addr).await?;
        *slot = Some(server);
        let warmup = self.shared.config.spu_restart_warmup;
        self.shared.lock().begin_spu_warmup(warmup);
        if self.shared.lock().set_spu_online(true) {
            self.shared.signal_topic_change();
        }
        tracing::info!(spu = %self.spu_addr, "SPU started");
        Ok(())
    }

    async fn stop_sc(&self) {
        let Some(server) = self.sc.lock().await.take() else {
            return;
        };
        server.stop().await;
        tracing::info!(sc = %self.sc_addr, "SC stopped");
    }

    async fn start_sc(&self) -> Result<()> {
        let mut slot = self.sc.lock().await;
        if slot.is_none() {
            *slot = Some(start_sc(&self.shared, self.sc_addr).await?.0);
            tracing::info!(sc = %self.sc_addr, "SC started");
        }
        Ok(())
    }
}

async fn start_spu(shared: &Arc<Shared>, addr: SocketAddr) -> Result<(Server, SocketAddr)> {
    let shared = Arc::clone(shared);
    Server::start("SPU", addr, move |stream, peer, stop| {
        spu::serve(Arc::clone(&shared), stream, peer, stop)
    })
    .await
}

async fn start_sc(shared: &Arc<Shared>, addr: SocketAddr) -> Result<(Server, SocketAddr)> {
    let shared = Arc::clone(shared);
    Server::start("SC", addr, move |stream, peer, stop| {
        sc::serve(Arc::clone(&shared), stream, peer, stop)
    })
    .await
}

/// Runs retention every `interval` while the cluster lives.
async fn retention_timer(shared: std::sync::Weak<Shared>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(shared) = shared.upgrade() else { return };
        shared.lock().run_retention();
    }
}

/// A runtime shut down in the background on drop: dropping a runtime the
/// normal way panics inside an async context, where tests drop clusters.
struct OwnRuntime(Option<Runtime>);

impl OwnRuntime {
    fn get(&self) -> Result<&Runtime> {
        self.0.as_ref().context("the test cluster is shut down")
    }
}

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// A running test cluster. Dropping it stops both servers at once.
pub struct TestCluster {
    runtime: OwnRuntime,
    servers: Arc<Servers>,
    _profile_dir: Option<TempDir>,
    profile_path: PathBuf,
}

impl std::fmt::Debug for TestCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCluster")
            .field("sc", &self.servers.sc_addr)
            .field("spu", &self.servers.spu_addr)
            .field("profile", &self.profile_path)
            .finish()
    }
}

impl TestCluster {
    /// Starts a cluster with the defaults on free loopback ports.
    pub async fn start() -> Result<Self> {
        Self::builder().start().await
    }

    /// Options.
    pub fn builder() -> TestClusterBuilder {
        TestClusterBuilder::default()
    }

    /// The SC's address (what a profile's `endpoint` holds).
    pub fn sc_addr(&self) -> SocketAddr {
        self.servers.sc_addr
    }

    /// The SC's address as `host:port`, for `FluvioClusterConfig::new`.
    pub fn sc_endpoint(&self) -> String {
        self.servers.sc_addr.to_string()
    }

    /// The SPU's address (the same after a restart).
    pub fn spu_addr(&self) -> SocketAddr {
        self.servers.spu_addr
    }

    /// The SPU's id.
    pub fn spu_id(&self) -> i32 {
        self.servers.shared.config.spu_id
    }

    /// A Fluvio profile file for this cluster: pass it to child processes as
    /// `FLV_PROFILE_PATH`.
    pub fn profile_path(&self) -> &Path {
        &self.profile_path
    }

    /// Stops the SPU: its port closes, every connection to it drops, and the
    /// SC reports it Offline and its partitions LeaderOffline. Data and
    /// consumer offsets are kept.
    pub async fn stop_spu(&self) -> Result<()> {
        let servers = Arc::clone(&self.servers);
        self.run(async move { servers.stop_spu().await }).await
    }

    /// Starts the SPU again on the same port; partitions come back Online.
    pub async fn start_spu(&self) -> Result<()> {
        let servers = Arc::clone(&self.servers);
        self.run(async move { servers.start_spu().await }).await?
    }

    /// Stops the SC (existing client connections drop; clients do not
    /// reconnect their SC socket, as with a real SC). State is kept.
    pub async fn stop_sc(&self) -> Result<()> {
        let servers = Arc::clone(&self.servers);
        self.run(async move { servers.stop_sc().await }).await
    }

    /// Starts the SC again on the same port.
    pub async fn start_sc(&self) -> Result<()> {
        let servers = Arc::clone(&self.servers);
        self.run(async move { servers.start_sc().await }).await?
    }

    /// Whether the SPU is running.
    pub fn spu_running(&self) -> bool {
        self.servers.shared.lock().spu_online()
    }

    /// Holds back every stream-fetch frame of one partition, as a slow or
    /// distant replica would, until [`TestCluster::release_fetches`]:
    /// consumers of that partition see no records meanwhile, others are served.
    pub fn hold_fetches(&self, topic: &str, partition: u32) {
        self.servers
            .shared
            .hold_fetches(ReplicaKey::new(topic, partition), true);
    }

    /// Lets a partition's held frames go.
    pub fn release_fetches(&self, topic: &str, partition: u32) {
        self.servers
            .shared
            .hold_fetches(ReplicaKey::new(topic, partition), false);
    }

    /// Runs retention now; returns the number of records removed.
    pub fn run_retention(&self) -> i64 {
        self.servers.shared.lock().run_retention()
    }

    /// Moves the retention clock forward (segments look older by `by`), so
    /// time-based retention can be tested without waiting.
    pub fn advance_clock(&self, by: Duration) {
        self.servers.shared.lock().advance_clock(by);
    }

    /// Topic names, system topics included.
    pub fn topics(&self) -> Vec<String> {
        self.servers
            .shared
            .lock()
            .topic_list(&[], None)
            .into_iter()
            .map(|t| t.name)
            .collect()
    }

    /// Store keys of the registered SmartModules.
    pub fn smartmodules(&self) -> Vec<String> {
        self.servers.shared.lock().smartmodule_keys()
    }

    /// A partition's log start and end, if it exists.
    pub fn partition_bounds(&self, topic: &str, partition: u32) -> Option<PartitionBounds> {
        self.servers
            .shared
            .lock()
            .partition_bounds(&ReplicaKey::new(topic, partition))
            .map(|(start, end)| PartitionBounds { start, end })
    }

    /// A partition's stored batches, oldest first (empty if it doesn't exist).
    pub fn batches(&self, topic: &str, partition: u32) -> Vec<BatchInfo> {
        let state = self.servers.shared.lock();
        state
            .partition_log(&ReplicaKey::new(topic, partition))
            .map(|log| log.batches().map(BatchInfo::from).collect())
            .unwrap_or_default()
    }

    /// A partition's stored records, decoded, oldest first.
    pub fn records(&self, topic: &str, partition: u32) -> Result<Vec<StoredRecord>> {
        let batches: Vec<_> = {
            let state = self.servers.shared.lock();
            let log = state
                .partition_log(&ReplicaKey::new(topic, partition))
                .with_context(|| format!("no partition {topic}-{partition}"))?;
            log.batches().cloned().collect()
        };
        let mut records = Vec::new();
        for batch in &batches {
            records.extend(inspect::decode_batch(batch)?);
        }
        Ok(records)
    }

    /// A stored consumer offset (the last record handed to the application).
    pub fn consumer_offset(&self, topic: &str, partition: u32, consumer_id: &str) -> Option<i64> {
        self.servers
            .shared
            .lock()
            .consumer_offsets(Some(&ReplicaKey::new(topic, partition)), Some(consumer_id))
            .first()
            .map(|(_, _, stored)| stored.offset)
    }

    /// Runs `task` on the cluster's runtime and waits for it from any context.
    async fn run<F>(&self, task: F) -> Result<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.runtime
            .get()?
            .spawn(task)
            .await
            .map_err(|e| anyhow!("test cluster task failed: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use fluvio_protocol::api::RequestHeader;
    use fluvio_protocol::link::versions::{ApiVersionsRequest, ApiVersionsResponse};
    use fluvio_protocol::{Decoder, Encoder};

    use super::*;

    /// An ApiVersions round trip on a blocking socket.
    fn blocking_api_versions(addr: SocketAddr) -> Result<ApiVersionsResponse> {
        let mut socket = std::net::TcpStream::connect(addr)?;
        socket.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut header = RequestHeader::new_with_client(18, "blocking");
        header.set_api_version(2);
        let mut payload = Vec::new();
        header.encode(&mut payload, 0)?;
        ApiVersionsRequest::default().encode(&mut payload, 2)?;
        socket.write_all(&(payload.len() as i32).to_be_bytes())?;
        socket.write_all(&payload)?;
        let mut size = [0u8; 4];
        socket.read_exact(&mut size)?;
        let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
        socket.read_exact(&mut body)?;
        Ok(ApiVersionsResponse::decode_from(
            &mut std::io::Cursor::new(&body[4..]),
            2,
        )?)
    }

    #[tokio::test]
    async fn a_cluster_can_be_driven_from_another_task() -> Result<()> {
        let cluster = Arc::new(TestCluster::start().await?);
        let chaos = Arc::clone(&cluster);
        tokio::spawn(async move { chaos.stop_spu().await }).await??;
        assert!(!cluster.spu_running());
        assert!(tokio::net::TcpStream::connect(cluster.spu_addr()).await.is_err());
        let chaos = Arc::clone(&cluster);
        tokio::spawn(async move { chaos.start_spu().await }).await??;
        assert!(cluster.spu_running());
        assert!(tokio::net::TcpStream::connect(cluster.spu_addr()).await.is_ok());
        Ok(())
    }

    #[test]
    fn a_cluster_can_be_used_without_any_runtime_of_the_callers() -> Result<()> {
        let caller = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let cluster = caller.block_on(TestCluster::start())?;
        assert!(std::fs::read_to_string(cluster.profile_path())?.contains(&cluster.sc_endpoint()));
        // The caller's thread blocks on plain sockets; the cluster still answers.
        assert_eq!(
            blocking_api_versions(cluster.sc_addr())?
                .platform_version
                .to_semver()
                .to_string(),
            "0.18.1"
        );
        let profile = cluster.profile_path().to_path_buf();
        drop(cluster);
        assert!(!profile.exists(), "the profile goes with the cluster");
        Ok(())
    }
}
