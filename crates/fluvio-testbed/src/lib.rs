//! A test-only Fluvio cluster: one SC and one SPU in this process on loopback
//! ports, speaking the wire protocol of the `fluvio` 0.50.1 client through
//! the published schema crates that pair with it. Written from
//! `shared/specs/fluvio-protocol.md` and the crates' public types, not from
//! Fluvio's SC or SPU, and including the real cluster's inconvenient habits
//! (byte-cut fetches, substring topic filters, retention evicting offsets).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let cluster = fluvio_testbed::TestCluster::start().await?;
//! // In process: FluvioClusterConfig::new(cluster.sc_endpoint()).
//! // Child processes: FLV_PROFILE_PATH=<cluster.profile_path()>.
//! cluster.stop_spu().await?;
//! cluster.start_spu().await?; // same port, same data
//! # Ok(())
//! # }
//! ```
//!
//! Never a dependency of shipped code: the main crate uses it as a
//! dev-dependency only.

mod cluster;
mod connection;
mod frame;
mod inspect;
mod listener;
mod log;
mod profile;
mod sc;
mod spu;
mod state;
mod versions;

pub use cluster::{
    TestCluster, TestClusterBuilder, DEFAULT_MAX_FRAME_BYTES, DEFAULT_RETENTION_INTERVAL, DEFAULT_SPU_RESTART_WARMUP,
    DEFAULT_TOPIC_PROVISION_TIMEOUT,
};
pub use inspect::{BatchInfo, PartitionBounds, StoredRecord};
pub use profile::{profile_toml, PROFILE_NAME};
pub use versions::PLATFORM_VERSION;
