//! The `PutAuditEvents` call through the AWS SDK: the client for one channel,
//! and one request mapped to a result per event.

use anyhow::Result;
use aws_credential_types::Credentials;
use aws_sdk_cloudtraildata::operation::put_audit_events::PutAuditEventsOutput;
use aws_smithy_types::body::SdkBody;
use bytes::Bytes;

use crate::cloudtrail::arn::ChannelArn;
use crate::cloudtrail::config::CloudTrailConfig;
use crate::cloudtrail::error::{classify_event, classify_request};
use crate::cloudtrail::request;
use crate::publish::aws::{sdk_config, service_answer};
use crate::publish::{EventResult, Prepared, SendResult};

/// The environment variable the SDK reads for this service's endpoint.
pub const ENDPOINT_ENV: &str = "AWS_ENDPOINT_URL_CLOUDTRAIL_DATA";

/// A CloudTrail Data client bound to one channel.
#[derive(Debug, Clone)]
pub struct CloudTrailService {
    client: aws_sdk_cloudtraildata::Client,
    channel: ChannelArn,
    external_id: Option<String>,
}

impl CloudTrailService {
    /// Builds the SDK client; credentials come from the default chain (or the
    /// configured profile) unless `credentials` is given.
    pub async fn new(config: &CloudTrailConfig, credentials: Option<Credentials>) -> Result<Self> {
        config.validate()?;
        let settings = config.aws.client_settings(
            "cloudtrail",
            Some(config.signing_region()?),
            ENDPOINT_ENV,
            &config.publish,
        )?;
        let sdk_config = sdk_config(&settings, credentials).await?;
        Ok(Self {
            client: aws_sdk_cloudtraildata::Client::new(&sdk_config),
            channel: config.channel()?,
            external_id: config.external_id.clone(),
        })
    }

    /// The channel events go to.
    pub fn channel(&self) -> &ChannelArn {
        &self.channel
    }

    /// Sends one request; on success, one result per event, in order.
    ///
    /// The SDK builds, signs (SigV4 over the body below), sends and parses
    /// the call; only the body is [`request::body`]'s, swapped in before
    /// signing, for each attempt.
    pub async fn put(&self, events: &[&Prepared]) -> SendResult {
        let body = Bytes::from(request::body(events));
        let mut request = self
            .client
            .put_audit_events()
            .channel_arn(&self.channel.arn)
            .set_audit_events(Some(Vec::new()));
        if let Some(id) = &self.external_id {
            request = request.external_id(id);
        }
        let request = request.customize().mutate_request(move |http| {
            http.headers_mut().insert("content-length", body.len().to_string());
            *http.body_mut() = SdkBody::from(body.clone());
        });
        match request.send().await {
            Ok(output) => Ok(per_event(events, &output)),
            Err(err) => Err(match service_answer(&err, "cloudtrail.request_timeout") {
                Ok(answer) => classify_request(answer.code, answer.message, answer.status),
                Err(failure) => failure,
            }),
        }
    }
}

/// Matches the reply's entries to the events by id (the reply's order is not
/// guaranteed).
fn per_event(events: &[&Prepared], output: &PutAuditEventsOutput) -> Vec<EventResult> {
    events
        .iter()
        .map(|event| {
            if let Some(stored) = output.successful().iter().find(|s| s.id() == event.id) {
                return EventResult::Stored(Some(stored.event_id().to_string()));
            }
            match output.failed().iter().find(|f| f.id() == event.id) {
                Some(failed) => classify_event(failed.error_code(), failed.error_message()),
                None => EventResult::Unmentioned,
            }
        })
        .collect()
}
