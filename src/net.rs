//! HTTP client construction and the transport-security policy shared by every
//! outbound connection: TLS with certificate checks by default, plain HTTP only
//! to loopback or when explicitly allowed, never through an environment proxy.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use url::{Host, Url};

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
/// followed automatically (callers decide), no proxy from the environment.
pub fn api_client(timeout: Duration, user_agent: &str) -> Result<reqwest::Client> {
    base_builder(user_agent)
        .timeout(timeout)
        .build()
        .context("building the HTTP client")
}

/// An HTTP client for endless streaming responses: no overall timeout (the feed
/// never ends by itself); callers enforce an idle timeout per read instead.
pub fn streaming_client(user_agent: &str) -> Result<reqwest::Client> {
    base_builder(user_agent)
        .tcp_keepalive(Duration::from_secs(30))
        .build()
        .context("building the streaming HTTP client")
}

fn base_builder(user_agent: &str) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(user_agent)
        .connect_timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .tcp_nodelay(true)
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
