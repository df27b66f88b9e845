//! The AWS SDK's HTTP client for a section's network settings: rustls with the
//! system's roots plus `ca_file`, and the proxy route of [`super::settings`].
//! One function, used by every AWS destination (CloudTrail Data, CloudWatch Logs).

use anyhow::{anyhow, Result};
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider, TlsContext, TrustStore};
use aws_smithy_http_client::{Builder, Connector};
use aws_smithy_runtime_api::client::http::SharedHttpClient;

use super::settings::NetworkSettings;

/// An HTTP client for `aws_config::ConfigLoader::http_client`. Timeouts still
/// come from the SDK's timeout config, which the client is handed per request.
pub fn http_client(network: &NetworkSettings) -> Result<SharedHttpClient> {
    let mut trust = TrustStore::default();
    if let Some(pem) = network.ca_pem()? {
        trust = trust.with_pem_certificate(pem);
    }
    let tls = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .map_err(|e| anyhow!("{}.ca_file: {e}", network.section))?;
    let proxy = proxy_config(network)?;
    let client = Builder::new().build_with_connector_fn(move |settings, components| {
        let mut connector = Connector::builder();
        if let Some(settings) = settings {
            connector = connector.connector_settings(settings.clone());
        }
        if let Some(sleep) = components.and_then(|c| c.sleep_impl()) {
            connector = connector.sleep_impl(sleep);
        }
        connector
            .proxy_config(proxy.clone())
            .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
            .tls_context(tls.clone())
            .build()
    });
    Ok(client)
}

fn proxy_config(network: &NetworkSettings) -> Result<ProxyConfig> {
    let Some(route) = network.route()? else {
        return Ok(ProxyConfig::disabled());
    };
    let url = route.proxy.without_credentials();
    let what = format!("{}.proxy", network.section);
    let config = if route.all_schemes {
        ProxyConfig::all(url.as_str())
    } else {
        ProxyConfig::https(url.as_str())
    }
    .map_err(|e| anyhow!("{what}: {e}"))?;
    let config = config.no_proxy(&route.no_proxy);
    Ok(match route.proxy.credentials() {
        Some((user, password)) => config.with_basic_auth(user, password),
        None => config,
    })
}
