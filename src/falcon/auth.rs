//! OAuth2 client credentials: token requests, caching, renewal and region autodiscovery.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;
use url::Url;

use crate::falcon::cloud::Cloud;
use crate::falcon::error::{envelope_message, rate_limit_wait, FalconError};
use crate::falcon::metrics::FalconMetrics;
use crate::secret::Secret;

/// Most 308 redirects followed for one token request.
const MAX_REDIRECTS: usize = 3;

/// Issues and caches OAuth2 bearer tokens; knows the current API base URL.
#[derive(Debug)]
pub struct Auth {
    http: reqwest::Client,
    client_id: String,
    secret: Secret,
    member_cid: Option<String>,
    autodiscover: bool,
    allow_insecure_http: bool,
    rate_limit_wait: Duration,
    base: RwLock<Url>,
    cached: Mutex<Option<CachedToken>>,
    metrics: Arc<FalconMetrics>,
}

#[derive(Debug, Clone)]
struct CachedToken {
    value: Secret,
    renew_at: Instant,
}

#[derive(Deserialize)]
struct TokenReply {
    access_token: String,
    #[serde(default = "default_ttl")]
    expires_in: u64,
}

fn default_ttl() -> u64 {
    1799
}

/// How [`Auth`] is set up.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// API base URL to start from.
    pub base: Url,
    /// OAuth2 client ID.
    pub client_id: String,
    /// OAuth2 client secret.
    pub secret: Secret,
    /// Optional child CID.
    pub member_cid: Option<String>,
    /// Follow `X-Cs-Region` / 308 to the home cloud.
    pub autodiscover: bool,
    /// Permit plain http to non-loopback hosts.
    pub allow_insecure_http: bool,
    /// Wait after a 429 without a usable retry time.
    pub rate_limit_wait: Duration,
}

impl Auth {
    /// A token manager using `http` for its requests.
    pub fn new(http: reqwest::Client, settings: AuthSettings, metrics: Arc<FalconMetrics>) -> Self {
        Self {
            http,
            client_id: settings.client_id,
            secret: settings.secret,
            member_cid: settings.member_cid.filter(|c| !c.is_empty()),
            autodiscover: settings.autodiscover,
            allow_insecure_http: settings.allow_insecure_http,
            rate_limit_wait: settings.rate_limit_wait,
            base: RwLock::new(settings.base),
            cached: Mutex::new(None),
            metrics,
        }
    }

    /// The API base URL currently in use (it changes with region autodiscovery).
    pub fn base_url(&self) -> Url {
        self.base
            .read()
            .map(|b| b.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// A valid bearer token, requesting a new one when the cached one is due for renewal.
    pub async fn token(&self) -> Result<Secret, FalconError> {
        let mut cached = self.cached.lock().await;
        if let Some(token) = cached.as_ref().filter(|t| Instant::now() < t.renew_at) {
            return Ok(token.value.clone());
        }
        let fresh = self.request_token().await?;
        let value = fresh.value.clone();
        *cached = Some(fresh);
        Ok(value)
    }

    /// Forgets the cached token so that the next call authenticates again.
    pub async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }

    async fn request_token(&self) -> Result<CachedToken, FalconError> {
        let mut url = endpoint(&self.base_url(), "oauth2/token");
        for _ in 0..=MAX_REDIRECTS {
            FalconMetrics::inc(&self.metrics.token_requests);
            let response = self
                .http
                .post(url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(reqwest::header::ACCEPT, "application/json")
                .body(self.form())
                .send()
                .await
                .map_err(|e| FalconError::transport("token request", &e))?;
            let status = response.status();
            if status == StatusCode::PERMANENT_REDIRECT {
                url = self.follow_redirect(&response)?;
                continue;
            }
            if status == StatusCode::CREATED {
                self.adopt_region(&response);
                return parse_token(response).await;
            }
            return Err(self.token_error(response).await);
        }
        Err(FalconError::Fatal(format!(
            "the token endpoint redirected more than {MAX_REDIRECTS} times; check falcon.cloud / falcon.base_url"
        )))
    }

    fn form(&self) -> String {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("client_id", &self.client_id);
        form.append_pair("client_secret", self.secret.expose());
        if let Some(cid) = &self.member_cid {
            form.append_pair("member_cid", cid);
        }
        form.finish()
    }

    /// Follows a 308 from the token endpoint: re-POST the form to `Location`, but
    /// only to a known CrowdStrike cloud or the same origin, since the form carries
    /// the client secret.
    fn follow_redirect(&self, response: &reqwest::Response) -> Result<Url, FalconError> {
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| FalconError::Transient {
                what: "token request",
                message: "HTTP 308 without a Location header".to_string(),
            })?;
        let target = response.url().join(location).map_err(|e| FalconError::Transient {
            what: "token request",
            message: format!("HTTP 308 to an unreadable Location {location:?}: {e}"),
        })?;
        if !self.autodiscover {
            return Err(FalconError::Fatal(format!(
                "the token endpoint redirects to {target} (X-Cs-Region {:?}) but falcon.autodiscover_region is off; \
                 set falcon.cloud to the tenant's cloud",
                region_header(response).unwrap_or_default()
            )));
        }
        let current = response.url();
        let same_origin = target.origin() == current.origin();
        let known_cloud = target.scheme() == "https" && target.host_str().and_then(Cloud::from_host).is_some();
        if !(same_origin || known_cloud) {
            return Err(FalconError::Fatal(format!(
                "refusing to send credentials to {target}: the token endpoint redirected outside CrowdStrike's clouds"
            )));
        }
        crate::net::check_transport(&target, self.allow_insecure_http, "falcon token redirect")
            .map_err(|e| FalconError::Fatal(e.to_string()))?;
        let new_base = base_of_token_url(&target);
        tracing::info!(from = %current, to = %new_base, region = region_header(response).unwrap_or_default(),
            "token endpoint redirected (HTTP 308); using the tenant's home cloud");
        self.set_base(new_base);
        Ok(target)
    }

    /// On a 201, `X-Cs-Region` names the tenant's home cloud; switch to it when we
    /// are talking to a different known cloud (custom base URLs are kept as given).
    fn adopt_region(&self, response: &reqwest::Response) {
        let Some(region) = region_header(response) else { return };
        let base = self.base_url();
        let current = base.host_str().and_then(Cloud::from_host);
        match (region.parse::<Cloud>(), current) {
            (Ok(home), Some(current)) if home != current && self.autodiscover => {
                tracing::info!(from = %current, to = %home, "X-Cs-Region names another cloud; switching API base URL");
                self.set_base(home.base_url());
            }
            _ => tracing::debug!(region, "token issued"),
        }
    }

    fn set_base(&self, url: Url) {
        match self.base.write() {
            Ok(mut base) => *base = url,
            Err(poisoned) => *poisoned.into_inner() = url,
        }
    }

    async fn token_error(&self, response: reqwest::Response) -> FalconError {
        let status = response.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            let wait = rate_limit_wait(response.headers(), self.rate_limit_wait);
            return FalconError::RateLimited {
                what: "token request",
                wait,
            };
        }
        let message = envelope_message(&response.bytes().await.unwrap_or_default());
        match status.as_u16() {
            400 | 401 | 403 => FalconError::CredentialsRejected {
                status: status.as_u16(),
                message,
            },
            code => FalconError::Transient {
                what: "token request",
                message: format!("HTTP {code}: {message}"),
            },
        }
    }
}

async fn parse_token(response: reqwest::Response) -> Result<CachedToken, FalconError> {
    let body = response
        .bytes()
        .await
        .map_err(|e| FalconError::transport("token request", &e))?;
    let reply: TokenReply = serde_json::from_slice(&body).map_err(|e| FalconError::Transient {
        what: "token request",
        message: format!("HTTP 201 with an unreadable body: {e}"),
    })?;
    let ttl = Duration::from_secs(reply.expires_in.max(1));
    // Renew a minute early (a fifth of the lifetime for short-lived test tokens) so
    // a token never expires between being handed out and being used.
    let margin = (ttl / 5).min(Duration::from_secs(60));
    Ok(CachedToken {
        value: Secret::new(reply.access_token),
        renew_at: Instant::now() + ttl - margin,
    })
}

fn region_header(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get("x-cs-region")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase())
}

/// `base` joined with `path`, whether or not `base` ends with a slash.
pub fn endpoint(base: &Url, path: &str) -> Url {
    let text = format!(
        "{}/{}",
        base.as_str().trim_end_matches('/'),
        path.trim_start_matches('/')
    );
    Url::parse(&text).unwrap_or_else(|_| base.clone())
}

/// The API base of a token endpoint URL (`…/oauth2/token` removed).
fn base_of_token_url(url: &Url) -> Url {
    let mut base = url.clone();
    let path = url.path().trim_end_matches('/');
    let trimmed = path.strip_suffix("/oauth2/token").unwrap_or(path);
    base.set_path(if trimmed.is_empty() { "/" } else { trimmed });
    base.set_query(None);
    base
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_join_with_or_without_slash() {
        let a = Url::parse("http://127.0.0.1:1/_region/eu-1").expect("url");
        let b = Url::parse("http://127.0.0.1:1/_region/eu-1/").expect("url");
        assert_eq!(
            endpoint(&a, "oauth2/token").as_str(),
            "http://127.0.0.1:1/_region/eu-1/oauth2/token"
        );
        assert_eq!(
            endpoint(&b, "/oauth2/token").as_str(),
            "http://127.0.0.1:1/_region/eu-1/oauth2/token"
        );
        let t = Url::parse("https://api.eu-1.crowdstrike.com/oauth2/token").expect("url");
        assert_eq!(base_of_token_url(&t).as_str(), "https://api.eu-1.crowdstrike.com/");
    }
}
