//! The `PutAuditEvents` call through the AWS SDK: client construction (default
//! credential chain, profile, region, endpoint, explicit timeouts) and one
//! request mapped to a classified outcome.

use anyhow::{Context, Result};
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_cloudtraildata::config::Credentials;
use aws_sdk_cloudtraildata::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_cloudtraildata::types::AuditEvent;

use crate::cloudtrail::arn::ChannelArn;
use crate::cloudtrail::batch::Entry;
use crate::cloudtrail::config::CloudTrailConfig;
use crate::cloudtrail::error::{classify_request, RequestFailure};

/// The environment variable the SDK reads for this service's endpoint.
pub const ENDPOINT_ENV: &str = "AWS_ENDPOINT_URL_CLOUDTRAIL_DATA";

/// What CloudTrail answered to one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutReply {
    /// `(id, eventID)` of stored events.
    pub successful: Vec<(String, String)>,
    /// `(id, errorCode, errorMessage)` of refused events.
    pub failed: Vec<(String, String, String)>,
}

/// A CloudTrail Data client bound to one channel.
#[derive(Debug, Clone)]
pub struct CloudTrailService {
    client: aws_sdk_cloudtraildata::Client,
    channel: ChannelArn,
    external_id: Option<String>,
}

impl CloudTrailService {
    /// Builds the SDK client. Credentials come from the default chain (or the
    /// configured profile) unless `credentials` is given. SDK retries are off:
    /// the publisher retries itself, without limit and within the rate limit,
    /// which the SDK's retry quota would not allow during long throttling.
    pub async fn new(config: &CloudTrailConfig, credentials: Option<Credentials>) -> Result<Self> {
        config.validate()?;
        check_env_endpoint(config)?;
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(config.connect_timeout)
            .operation_attempt_timeout(config.request_timeout)
            .read_timeout(config.request_timeout)
            .build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(config.signing_region()?))
            .retry_config(RetryConfig::disabled())
            .timeout_config(timeouts)
            .http_client(crate::net::aws::http_client(&config.network())?);
        if let Some(profile) = &config.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(url) = &config.endpoint_url {
            loader = loader.endpoint_url(url.as_str().trim_end_matches('/'));
        }
        if let Some(credentials) = credentials {
            loader = loader.credentials_provider(credentials);
        }
        let sdk_config = loader.load().await;
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

    /// Sends one request.
    pub async fn put<T: Sync>(&self, entries: &[Entry<T>]) -> Result<PutReply, RequestFailure> {
        let events = entries
            .iter()
            .map(|e| {
                AuditEvent::builder()
                    .id(&e.id)
                    .event_data(&e.event_data)
                    .event_data_checksum(&e.checksum)
                    .build()
                    .context("building an audit event")
            })
            .collect::<Result<Vec<_>>>()
            .map_err(|e| RequestFailure::Invalid {
                message: format!("{e:#}"),
            })?;
        let mut request = self
            .client
            .put_audit_events()
            .channel_arn(&self.channel.arn)
            .set_audit_events(Some(events));
        if let Some(id) = &self.external_id {
            request = request.external_id(id);
        }
        match request.send().await {
            Ok(output) => Ok(PutReply {
                successful: output
                    .successful()
                    .iter()
                    .map(|s| (s.id().to_string(), s.event_id().to_string()))
                    .collect(),
                failed: output
                    .failed()
                    .iter()
                    .map(|f| {
                        (
                            f.id().to_string(),
                            f.error_code().to_string(),
                            f.error_message().to_string(),
                        )
                    })
                    .collect(),
            }),
            Err(err) => Err(classify_sdk_error(&err)),
        }
    }
}

/// Maps an SDK error to what the publisher does about it.
fn classify_sdk_error<E: ProvideErrorMetadata + std::error::Error + 'static>(
    err: &SdkError<E, aws_sdk_cloudtraildata::config::http::HttpResponse>,
) -> RequestFailure {
    match err {
        SdkError::ServiceError(context) => {
            let status = context.raw().status().as_u16();
            let e = context.err();
            classify_request(e.code(), e.message().unwrap_or("no message"), Some(status))
        }
        SdkError::TimeoutError(_) => transient("Timeout", "the request timed out (cloudtrail.request_timeout)"),
        SdkError::DispatchFailure(failure) => {
            let detail = match failure.as_connector_error() {
                Some(e) => crate::falcon::error::error_chain(e),
                None => format!("{failure:?}"),
            };
            // The SDK resolves credentials while dispatching; say so plainly.
            if detail.contains("loading credentials") {
                let advice = "no usable AWS credentials: set AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run with an instance or task role";
                transient("CredentialsError", &format!("{advice} ({detail})"))
            } else {
                transient("ConnectionError", &detail)
            }
        }
        SdkError::ResponseError(_) => transient("MalformedResponse", "the response could not be read"),
        other => transient("RequestError", &crate::falcon::error::error_chain(other)),
    }
}

fn transient(code: &str, message: &str) -> RequestFailure {
    RequestFailure::Transient {
        code: code.to_string(),
        message: message.to_string(),
        throttled: false,
    }
}

/// The SDK reads `AWS_ENDPOINT_URL_CLOUDTRAIL_DATA` itself; hold it to the same
/// transport rule as a configured endpoint.
fn check_env_endpoint(config: &CloudTrailConfig) -> Result<()> {
    if config.endpoint_url.is_some() {
        return Ok(());
    }
    if let Ok(text) = std::env::var(ENDPOINT_ENV) {
        let url = url::Url::parse(&text).with_context(|| format!("{ENDPOINT_ENV}={text:?} is not a URL"))?;
        crate::net::check_transport(&url, config.allow_insecure_http, ENDPOINT_ENV)?;
    }
    Ok(())
}
