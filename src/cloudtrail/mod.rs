//! The CloudTrail Lake destination: `PutAuditEvents` through the AWS SDK, with
//! its config, request builder (schema checks, recipient, checksums, unique
//! ids per request), service and error classification. Batching, rate,
//! retries and settlement are the publisher core's (`crate::publish`).

pub mod arn;
pub mod check;
pub mod checksum;
pub mod config;
pub mod error;
pub mod request;
pub mod service;
pub mod sink;

pub use arn::ChannelArn;
pub use config::CloudTrailConfig;
pub use sink::CloudTrailDestination;

/// The operation, as errors and logs name it.
pub const OPERATION: &str = "CloudTrail PutAuditEvents";
