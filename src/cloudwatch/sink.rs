//! The CloudWatch Logs destination for the publisher core: the request builder
//! and the `PutLogEvents` service of one log stream.

use std::sync::Arc;

use anyhow::Result;
use aws_credential_types::Credentials;

use crate::cloudwatch::config::CloudWatchConfig;
use crate::cloudwatch::request;
use crate::cloudwatch::service::CloudWatchService;
use crate::publish::{
    BatchLimits, ConnectDestination, Destination, Prepared, PublishSettings, Refusal, SendFuture, Submitted,
};

/// `PutLogEvents` to one log stream.
#[derive(Debug)]
pub struct CloudWatchDestination {
    service: CloudWatchService,
}

impl CloudWatchDestination {
    /// The destination for `service`'s log stream.
    pub fn new(service: CloudWatchService) -> Self {
        Self { service }
    }
}

impl Destination for CloudWatchDestination {
    fn operation(&self) -> &'static str {
        super::OPERATION
    }

    fn metric_name(&self) -> &'static str {
        "put_log_events"
    }

    fn limits(&self) -> BatchLimits {
        request::LIMITS
    }

    fn prepare(&self, event: Submitted<'_>) -> Result<Prepared, Refusal> {
        request::prepare(event, self.service.rules(), request::now_ms())
    }

    fn plan(&self, events: &[&Prepared]) -> Vec<Vec<usize>> {
        request::plan(events)
    }

    fn send<'a>(&'a self, events: &'a [&'a Prepared]) -> SendFuture<'a> {
        Box::pin(self.service.put(events))
    }
}

impl ConnectDestination for CloudWatchConfig {
    fn settings(&self) -> &PublishSettings {
        &self.publish
    }

    async fn connect(&self, credentials: Option<Credentials>) -> Result<Arc<dyn Destination>> {
        let service = CloudWatchService::new(self, credentials).await?;
        service.learn_retention().await;
        Ok(Arc::new(CloudWatchDestination::new(service)))
    }
}
