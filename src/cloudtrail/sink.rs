//! The CloudTrail Lake destination for the publisher core: the request builder
//! and the `PutAuditEvents` service of one channel.

use std::sync::Arc;

use anyhow::Result;
use aws_credential_types::Credentials;

use crate::cloudtrail::config::CloudTrailConfig;
use crate::cloudtrail::request;
use crate::cloudtrail::service::CloudTrailService;
use crate::publish::{
    BatchLimits, ConnectDestination, Destination, Prepared, PublishSettings, Refusal, SendFuture, Submitted,
};

/// `PutAuditEvents` to one channel.
#[derive(Debug)]
pub struct CloudTrailDestination {
    service: CloudTrailService,
}

impl CloudTrailDestination {
    /// The destination for `service`'s channel.
    pub fn new(service: CloudTrailService) -> Self {
        Self { service }
    }
}

impl Destination for CloudTrailDestination {
    fn operation(&self) -> &'static str {
        super::OPERATION
    }

    fn metric_name(&self) -> &'static str {
        "put_audit_events"
    }

    fn limits(&self) -> BatchLimits {
        request::LIMITS
    }

    fn prepare(&self, event: Submitted<'_>) -> Result<Prepared, Refusal> {
        request::prepare(event, &self.service.channel().account)
    }

    fn plan(&self, events: &[&Prepared]) -> Vec<Vec<usize>> {
        request::plan(events)
    }

    fn send<'a>(&'a self, events: &'a [&'a Prepared]) -> SendFuture<'a> {
        Box::pin(self.service.put(events))
    }
}

impl ConnectDestination for CloudTrailConfig {
    fn settings(&self) -> &PublishSettings {
        &self.publish
    }

    async fn connect(&self, credentials: Option<Credentials>) -> Result<Arc<dyn Destination>> {
        let service = CloudTrailService::new(self, credentials).await?;
        Ok(Arc::new(CloudTrailDestination::new(service)))
    }
}
