//! The publisher core shared by every destination: batching within the
//! destination's limits, one shared adaptive rate limit, requests in flight,
//! retries with back-off, per-event settlement and dead letters. A destination
//! (`crate::cloudtrail`, `crate::cloudwatch`) supplies only request building and
//! the service call, through [`Destination`].

pub mod aws;
pub mod batch;
pub mod destination;
pub mod item;
pub mod metrics;
pub mod publisher;
pub mod rate;
pub mod settings;

use std::future::Future;
use std::sync::Arc;

use anyhow::Result;
use aws_credential_types::Credentials;

pub use destination::{
    BatchLimits, Destination, EventResult, FatalError, Prepared, Refusal, RequestFailure, SendFuture, SendResult,
    Submitted,
};
pub use item::{Outcome, PublishItem, Settlement};
pub use metrics::PublishMetrics;
pub use publisher::Publisher;
pub use settings::PublishSettings;

/// A destination's configuration: its publisher settings, and how to reach it.
pub trait ConnectDestination {
    /// Batching, rate, retries.
    fn settings(&self) -> &PublishSettings;

    /// Builds the service client; `credentials` override the AWS default chain.
    fn connect(&self, credentials: Option<Credentials>) -> impl Future<Output = Result<Arc<dyn Destination>>> + Send;
}

impl Publisher {
    /// A publisher for the configured destination.
    pub async fn new(
        config: &impl ConnectDestination,
        credentials: Option<Credentials>,
        metrics: Arc<PublishMetrics>,
    ) -> Result<Self> {
        let destination = config.connect(credentials).await?;
        Ok(Self::with_destination(destination, config.settings(), metrics))
    }
}
