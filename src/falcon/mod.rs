//! CrowdStrike Falcon Event Streams client: OAuth2, stream discovery, one feed per
//! partition, session refresh, reconnects that resume exactly after the last
//! delivered event. It hands out `(partition, offset, raw bytes)` unchanged.

pub mod auth;
pub mod client;
pub mod cloud;
pub mod config;
pub mod discovery;
pub mod error;
pub mod feed;
pub mod lines;
pub mod metrics;
pub mod refresh;

pub use client::{CursorStore, FalconClient, NoCursors};
pub use config::{FalconConfig, StartPosition};
pub use error::FalconError;
pub use feed::{FalconRecord, FeedItem, HeldRuns, RejectedLine};
pub use metrics::FalconMetrics;
