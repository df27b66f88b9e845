//! HTTP client construction and the transport-security policy shared by every
//! outbound connection: TLS with certificate checks by default (the system's
//! roots, plus a section's `ca_file`), plain HTTP only to loopback or when
//! explicitly allowed, and the proxy a section's settings and the environment
//! choose ([`settings`]). [`aws`] builds the same for the AWS SDK.

pub mod aws;
pub mod settings;

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use url::{Host, Url};

pub use settings::{NetworkSettings, ProxyChoice, ProxyUrl, Route};

/// True when `url` points at this machine (127.0.0.0/8, ::1 or `localhost`).
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Accepts `https://` URLs, and `http://` ones only to loopback unless
/// `allow_insecure_http` is set. `what` names the setting in the error.
pub fn check_transport(url: &Url, allow_insecure_http: bool, what: &str) -> Result<()> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(url) || allow_insecure_http => Ok(()),
        "http" => bail!(
            "{what}: {url} uses plain http to a non-loopback host; use https, or set allow_insecure_http: true if you really mean it"
        ),
        other => bail!("{what}: {url} has unsupported scheme {other:?} (expected https)"),
    }
}

/// An HTTP client for request/response APIs: overall `timeout`, no redirects
/// followed automatically (callers decide), routed and trusting as `network` says.
pub fn api_client(timeout: Duration, user_agent: &str, network: &NetworkSettings) -> Result<reqwest::Client> {
    base_builder(user_agent, network)?
        .timeout(timeout)
        .build()
        .context("building the HTTP client")
}

/// An HTTP client for endless streaming responses: no overall timeout (the feed
/// never ends by itself); callers enforce an idle timeout per read instead.
pub fn streaming_client(user_agent: &str, network: &NetworkSettings) -> Result<reqwest::Client> {
    base_builder(user_agent, network)?
        .tcp_keepalive(Duration::from_secs(30))
        .build()
        .context("building the streaming HTTP client")
}

fn base_builder(user_agent: &str, network: &NetworkSettings) -> Result<reqwest::ClientBuilder> {
    // reqwest would read the proxy variables itself; the route is decided once,
    // in `settings`, so that every client of a section goes the same way.
    let mut builder = reqwest::Client::builder()
        .user_agent(user_agent)
        .connect_timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .tcp_nodelay(true);
    if let Some(route) = network.route()? {
        builder = builder.proxy(reqwest_proxy(&route, network.section)?);
    }
    if let Some(pem) = network.ca_pem()? {
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("{}.ca_file: reading the PEM certificates", network.section))?;
        builder = builder.tls_certs_merge(certs);
    }
    Ok(builder)
}

fn reqwest_proxy(route: &Route, section: &str) -> Result<reqwest::Proxy> {
    let url = route.proxy.without_credentials();
    let proxy = if route.all_schemes {
        reqwest::Proxy::all(url.as_str())
    } else {
        reqwest::Proxy::https(url.as_str())
    }
    .with_context(|| format!("{section}.proxy: {url} is not a usable proxy"))?;
    let proxy = proxy.no_proxy(reqwest::NoProxy::from_string(&route.no_proxy));
    Ok(match route.proxy.credentials() {
        Some((user, password)) => proxy.basic_auth(&user, &password),
        None => proxy,
    })
}

/// `User-Agent` sent by falcon-lake.
pub fn user_agent() -> String {
    format!("falcon-lake/{}", env!("CARGO_PKG_VERSION"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).expect("url")
    }

    #[test]
    fn plain_http_only_to_loopback() {
        assert!(check_transport(&url("https://api.crowdstrike.com"), false, "x").is_ok());
        assert!(check_transport(&url("http://127.0.0.1:8080"), false, "x").is_ok());
        assert!(check_transport(&url("http://[::1]:8080"), false, "x").is_ok());
        assert!(check_transport(&url("http://localhost:1"), false, "x").is_ok());
        let err = check_transport(&url("http://example.com"), false, "falcon.base_url").expect_err("refused");
        assert!(err.to_string().contains("falcon.base_url"));
        assert!(check_transport(&url("http://example.com"), true, "x").is_ok());
        assert!(check_transport(&url("ftp://example.com"), true, "x").is_err());
    }
}
