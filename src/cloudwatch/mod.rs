//! The CloudWatch Logs destination: `PutLogEvents` through the AWS SDK, with
//! its config, request builder (timestamps, age and size rules, sorting, 24 h
//! splits), service (creating a missing group or stream) and retry rules.
//! Batching, rate, retries and settlement are the publisher core's
//! (`crate::publish`).

pub mod config;
pub mod error;
pub mod request;
pub mod service;
pub mod sink;

pub use config::CloudWatchConfig;
pub use sink::CloudWatchDestination;

/// The operation, as errors and logs name it.
pub const OPERATION: &str = "CloudWatch Logs PutLogEvents";
