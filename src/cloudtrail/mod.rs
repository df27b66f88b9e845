//! The CloudTrail Lake publisher: `PutAuditEvents` through the AWS SDK, batched,
//! checksummed, rate-limited, retried, and settled per event.

pub mod arn;
pub mod batch;
pub mod checksum;
pub mod config;
pub mod error;
pub mod metrics;
pub mod publisher;
pub mod rate;
pub mod service;

pub use arn::ChannelArn;
pub use config::CloudTrailConfig;
pub use error::FatalError;
pub use metrics::CloudTrailMetrics;
pub use publisher::{Outcome, PublishItem, Publisher, Settlement};
