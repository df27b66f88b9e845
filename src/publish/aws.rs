//! What the AWS destinations share: the SDK configuration (default credential
//! chain or given credentials, profile, region, endpoint, explicit timeouts,
//! SDK retries off), built in one function so another HTTP client can be
//! plugged in there, and the classification of SDK errors that are not the
//! service's own answer (timeouts, connection and credential failures).

use std::time::Duration;

use anyhow::{Context, Result};
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use url::Url;

use crate::publish::settings::take_keys;
use crate::publish::{PublishSettings, RequestFailure};

/// The keys of a destination section that say how to reach the service.
pub const CONNECTION_KEYS: [&str; 7] = [
    "region",
    "endpoint_url",
    "profile",
    "allow_insecure_http",
    "proxy",
    "no_proxy",
    "ca_file",
];

/// How to reach an AWS service, as a destination section configures it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsConnection {
    /// Region; what the destination does without one is its own.
    #[serde(default)]
    pub region: Option<String>,
    /// Endpoint override (the emulator, a VPC endpoint).
    #[serde(default)]
    pub endpoint_url: Option<Url>,
    /// Named profile of the shared AWS config files (default: the default chain).
    #[serde(default)]
    pub profile: Option<String>,
    /// Permit plain http endpoints other than loopback.
    #[serde(default)]
    pub allow_insecure_http: bool,
    /// Proxy for the endpoint (`http://host:port`, or `none`); default `HTTPS_PROXY`.
    #[serde(default)]
    pub proxy: Option<crate::net::ProxyChoice>,
    /// Hosts reached without the proxy (`NO_PROXY` syntax); default `NO_PROXY`.
    #[serde(default)]
    pub no_proxy: Option<String>,
    /// PEM certificates trusted besides the system's roots (a private endpoint's CA).
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
}

/// Reads a destination section: the publisher's keys (over `defaults`), the
/// connection's, and the destination's own (`T`, which refuses unknown keys).
pub fn destination_section<T: serde::de::DeserializeOwned>(
    section: &str,
    value: serde_yaml::Value,
    defaults: PublishSettings,
) -> Result<(T, AwsConnection, PublishSettings)> {
    let (publish, rest) = PublishSettings::take_from(section, value, defaults)?;
    let (ours, rest) = take_keys(section, rest, &CONNECTION_KEYS)?;
    let aws = crate::config::from_section(section, ours)?;
    Ok((crate::config::from_section(section, rest)?, aws, publish))
}

impl AwsConnection {
    /// Checks the region's shape and the endpoint's transport; errors name `section.key`.
    pub fn validate(&self, section: &str) -> Result<()> {
        if let Some(region) = &self.region {
            let ok = !region.is_empty()
                && region
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            anyhow::ensure!(ok, "{section}.region {region:?} is not a region name like us-east-1");
        }
        if let Some(url) = &self.endpoint_url {
            crate::net::check_transport(url, self.allow_insecure_http, &format!("{section}.endpoint_url"))?;
        }
        Ok(())
    }

    /// The section's network settings (proxy, CA file).
    pub fn network(&self, section: &'static str) -> crate::net::NetworkSettings {
        crate::net::NetworkSettings {
            proxy: self.proxy.clone(),
            no_proxy: self.no_proxy.clone(),
            ca_file: self.ca_file.clone(),
            section,
        }
    }

    /// What [`sdk_config`] needs, signing for `region`; checks the endpoint the
    /// SDK would read from `endpoint_env` first.
    pub fn client_settings<'a>(
        &'a self,
        section: &'static str,
        region: Option<String>,
        endpoint_env: &str,
        publish: &PublishSettings,
    ) -> Result<AwsClientSettings<'a>> {
        check_env_endpoint(endpoint_env, self.endpoint_url.is_some(), self.allow_insecure_http)?;
        Ok(AwsClientSettings {
            network: self.network(section),
            region,
            endpoint_url: self.endpoint_url.as_ref(),
            profile: self.profile.as_deref(),
            connect_timeout: publish.connect_timeout,
            request_timeout: publish.request_timeout,
        })
    }
}

/// How to reach one AWS service.
#[derive(Debug, Clone)]
pub struct AwsClientSettings<'a> {
    /// Proxy and trusted CAs.
    pub network: crate::net::NetworkSettings,
    /// Region requests are signed for; `None` leaves it to the default chain
    /// (`AWS_REGION`, the profile).
    pub region: Option<String>,
    /// Endpoint override.
    pub endpoint_url: Option<&'a Url>,
    /// Named profile of the shared config files.
    pub profile: Option<&'a str>,
    /// TCP + TLS connect.
    pub connect_timeout: Duration,
    /// One request attempt.
    pub request_timeout: Duration,
}

/// The SDK configuration every AWS client of falcon-lake is built from.
/// Credentials come from the default chain (or the profile) unless given. SDK
/// retries are off: the publisher retries itself, without limit and within
/// the rate limit, which the SDK's retry quota would not allow during long
/// throttling.
pub async fn sdk_config(settings: &AwsClientSettings<'_>, credentials: Option<Credentials>) -> Result<SdkConfig> {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(settings.connect_timeout)
        .operation_attempt_timeout(settings.request_timeout)
        .read_timeout(settings.request_timeout)
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::disabled())
        .timeout_config(timeouts)
        .http_client(crate::net::aws::http_client(&settings.network)?);
    if let Some(region) = &settings.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(profile) = settings.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(url) = settings.endpoint_url {
        loader = loader.endpoint_url(url.as_str().trim_end_matches('/'));
    }
    if let Some(credentials) = credentials {
        loader = loader.credentials_provider(credentials);
    }
    Ok(loader.load().await)
}

/// The SDK reads `variable` (a service's endpoint) itself; hold it to the same
/// transport rule as a configured endpoint. Nothing to check when an endpoint
/// is configured, since it wins.
fn check_env_endpoint(variable: &str, configured: bool, allow_insecure_http: bool) -> Result<()> {
    if configured {
        return Ok(());
    }
    if let Ok(text) = std::env::var(variable) {
        let url = Url::parse(&text).with_context(|| format!("{variable}={text:?} is not a URL"))?;
        crate::net::check_transport(&url, allow_insecure_http, variable)?;
    }
    Ok(())
}

/// The service's own answer to a request, as the SDK parsed it.
#[derive(Debug, Clone, Copy)]
pub struct ServiceAnswer<'a> {
    /// The error code (`ThrottlingException`), when there is one.
    pub code: Option<&'a str>,
    /// The message.
    pub message: &'a str,
    /// The HTTP status.
    pub status: u16,
}

/// Splits an SDK error into the service's own answer (for the destination to
/// classify) and everything else, which is classified here: timeouts,
/// connection and credential failures, unreadable replies are transient.
pub fn service_answer<'a, E>(
    err: &'a SdkError<E, HttpResponse>,
    timeout_key: &str,
) -> Result<ServiceAnswer<'a>, RequestFailure>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match err {
        SdkError::ServiceError(context) => Ok(ServiceAnswer {
            code: context.err().code(),
            message: context.err().message().unwrap_or("no message"),
            status: context.raw().status().as_u16(),
        }),
        SdkError::TimeoutError(_) => Err(transient("Timeout", &format!("the request timed out ({timeout_key})"))),
        SdkError::DispatchFailure(failure) => {
            let detail = match failure.as_connector_error() {
                Some(e) => crate::falcon::error::error_chain(e),
                None => format!("{failure:?}"),
            };
            // The SDK resolves credentials while dispatching; say so plainly.
            if detail.contains("loading credentials") {
                let advice = "no usable AWS credentials: set AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run with an instance or task role";
                Err(transient("CredentialsError", &format!("{advice} ({detail})")))
            } else {
                Err(transient("ConnectionError", &detail))
            }
        }
        SdkError::ResponseError(_) => Err(transient("MalformedResponse", "the response could not be read")),
        other => Err(transient("RequestError", &crate::falcon::error::error_chain(other))),
    }
}

/// A failure worth retrying after a back-off.
pub fn transient(code: &str, message: &str) -> RequestFailure {
    RequestFailure::Transient {
        code: code.to_string(),
        message: message.to_string(),
        throttled: false,
    }
}

/// The throttling codes the AWS SDKs recognise.
pub fn is_throttling(code: &str) -> bool {
    matches!(
        code,
        "Throttling"
            | "ThrottlingException"
            | "ThrottledException"
            | "RequestThrottledException"
            | "TooManyRequestsException"
            | "ProvisionedThroughputExceededException"
            | "TransactionInProgressException"
            | "RequestLimitExceeded"
            | "BandwidthLimitExceeded"
            | "LimitExceededException"
            | "RequestThrottled"
            | "SlowDown"
            | "PriorRequestNotComplete"
            | "EC2ThrottledException"
    )
}

/// Throttled by code, or by a bare 429.
pub fn throttled(code: Option<&str>, status: u16) -> bool {
    code.is_some_and(is_throttling) || status == 429
}

/// Codes of credential and signature failures: only the user can fix them.
pub const AUTH_FAILURES: [(&str, &str); 5] = [
    ("UnrecognizedClientException", "AWS does not know the access key in use: check the credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID, the instance role)"),
    ("InvalidSignatureException", "AWS rejected the request signature: check the secret access key and that the clock is correct"),
    ("SignatureDoesNotMatch", "AWS rejected the request signature: check the secret access key and that the clock is correct"),
    ("MissingAuthenticationToken", "the request was not signed: no AWS credentials were found (AWS_PROFILE, AWS_ACCESS_KEY_ID, the instance role)"),
    ("IncompleteSignature", "the request signature is incomplete: check the AWS credentials in use"),
];

/// The advice for a credential or signature failure `code`, if it is one.
pub fn auth_failure_advice(code: &str) -> Option<&'static str> {
    let code = code.strip_suffix("Exception").unwrap_or(code);
    AUTH_FAILURES
        .iter()
        .find(|(c, _)| c.strip_suffix("Exception").unwrap_or(c) == code)
        .map(|(_, advice)| *advice)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_failures_match_with_or_without_the_suffix() {
        assert!(auth_failure_advice("UnrecognizedClientException").is_some());
        assert!(auth_failure_advice("MissingAuthenticationTokenException").is_some());
        assert!(auth_failure_advice("InvalidSignature").is_some());
        assert!(auth_failure_advice("ThrottlingException").is_none());
        assert!(throttled(Some("ThrottlingException"), 400) && throttled(None, 429) && !throttled(None, 500));
    }
}
