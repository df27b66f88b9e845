//! A section's network settings (`proxy`, `no_proxy`, `ca_file`) and how they
//! combine with the environment (`HTTPS_PROXY`, `NO_PROXY`). One resolution for
//! every client, so the Falcon client and the AWS SDK route the same way.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Deserializer};
use url::Url;

/// Hosts an environment proxy never carries: this machine, and the link-local
/// instance and task metadata endpoints the AWS credential chain calls (a proxy
/// cannot reach them, and would see the credentials).
pub const ALWAYS_DIRECT: &str = "localhost,127.0.0.0/8,::1,169.254.169.254,169.254.170.2,fd00:ec2::254";

/// A proxy URL. Its password (if any) never appears in `Debug` or errors.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl(Url);

impl ProxyUrl {
    /// Parses `http://[user:password@]host:port`; `what` names the setting in errors.
    pub fn parse(text: &str, what: &str) -> Result<Self> {
        let url = Url::parse(text.trim())
            .map_err(|e| anyhow::anyhow!("{what}: not a URL like http://proxy.example.com:3128 ({e})"))?;
        match url.scheme() {
            "http" | "https" => {}
            other => bail!("{what}: scheme {other:?} is not supported; use an http:// (CONNECT) or https:// proxy"),
        }
        if url.host_str().is_none_or(str::is_empty) {
            bail!("{what}: the proxy URL has no host");
        }
        Ok(Self(url))
    }

    /// The URL without credentials, for logs and for the clients.
    pub fn without_credentials(&self) -> Url {
        let mut url = self.0.clone();
        let _ = url.set_username("");
        let _ = url.set_password(None);
        url
    }

    /// `(user, password)` for `Proxy-Authorization: Basic`, percent-decoded.
    pub fn credentials(&self) -> Option<(String, String)> {
        if self.0.username().is_empty() {
            return None;
        }
        let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
        Some((decode(self.0.username()), decode(self.0.password().unwrap_or(""))))
    }
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = self.without_credentials();
        if self.0.username().is_empty() {
            write!(f, "{shown}")
        } else {
            write!(f, "{shown} (with credentials ****)")
        }
    }
}

/// The `proxy:` key of a section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyChoice {
    /// `none`: connect directly, whatever `HTTPS_PROXY` says.
    Direct,
    /// Every request of the section goes through this proxy.
    Url(ProxyUrl),
}

impl<'de> Deserialize<'de> for ProxyChoice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        match text.trim() {
            "none" | "direct" => Ok(ProxyChoice::Direct),
            other => ProxyUrl::parse(other, "proxy")
                .map(ProxyChoice::Url)
                .map_err(|e| serde::de::Error::custom(format!("{e:#}"))),
        }
    }
}

/// Where a section's connections go and which roots they trust.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkSettings {
    /// `proxy:`; absent means "as the environment says".
    pub proxy: Option<ProxyChoice>,
    /// `no_proxy:`; absent means `NO_PROXY` from the environment.
    pub no_proxy: Option<String>,
    /// `ca_file:`: PEM certificates trusted besides the system's roots.
    pub ca_file: Option<PathBuf>,
    /// The section's name, for errors (`falcon`, `cloudtrail`).
    pub section: &'static str,
}

/// The proxy a client uses, once settings and environment are combined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The proxy.
    pub proxy: ProxyUrl,
    /// Which requests it carries: every one (`true`, an explicit `proxy:`) or
    /// only `https://` ones (`false`, `HTTPS_PROXY`).
    pub all_schemes: bool,
    /// Hosts reached directly (`NO_PROXY` syntax).
    pub no_proxy: String,
}

impl NetworkSettings {
    /// The proxy route, reading the environment through `env`.
    pub fn route_with(&self, env: impl Fn(&str) -> Option<String>) -> Result<Option<Route>> {
        let var = |names: &[&str]| names.iter().find_map(|n| env(n).filter(|v| !v.trim().is_empty()));
        let env_no_proxy = || var(&["NO_PROXY", "no_proxy"]).unwrap_or_default();
        let (proxy, all_schemes) = match &self.proxy {
            Some(ProxyChoice::Direct) => return Ok(None),
            Some(ProxyChoice::Url(url)) => (url.clone(), true),
            None => match var(&["HTTPS_PROXY", "https_proxy"]) {
                Some(text) => (ProxyUrl::parse(&text, "HTTPS_PROXY")?, false),
                None => return Ok(None),
            },
        };
        let listed = self.no_proxy.clone().unwrap_or_else(env_no_proxy);
        let no_proxy = if listed.trim().is_empty() {
            ALWAYS_DIRECT.to_string()
        } else {
            format!("{listed},{ALWAYS_DIRECT}")
        };
        Ok(Some(Route {
            proxy,
            all_schemes,
            no_proxy,
        }))
    }

    /// The proxy route from the process environment.
    pub fn route(&self) -> Result<Option<Route>> {
        self.route_with(|name| std::env::var(name).ok())
    }

    /// The PEM text of `ca_file`, checked to hold at least one certificate.
    pub fn ca_pem(&self) -> Result<Option<Vec<u8>>> {
        let Some(path) = &self.ca_file else { return Ok(None) };
        let what = format!("{}.ca_file", self.section);
        let pem = std::fs::read(path).with_context(|| format!("{what}: reading {}", path.display()))?;
        let count = pem_certificates(&pem);
        if count == 0 {
            bail!(
                "{what}: {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                path.display()
            );
        }
        Ok(Some(pem))
    }

    /// Resolves a relative `ca_file` against the config file's directory.
    pub fn resolve_paths(ca_file: &mut Option<PathBuf>, base_dir: &Path) {
        if let Some(path) = ca_file.as_mut() {
            if path.is_relative() {
                *path = base_dir.join(&*path);
            }
        }
    }
}

/// How many PEM certificate blocks `pem` holds.
fn pem_certificates(pem: &[u8]) -> usize {
    String::from_utf8_lossy(pem)
        .matches("-----BEGIN CERTIFICATE-----")
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| map.get(name).cloned()
    }

    fn settings(proxy: Option<&str>, no_proxy: Option<&str>) -> NetworkSettings {
        NetworkSettings {
            proxy: proxy.map(|p| serde_yaml::from_str(&format!("{p:?}")).expect("proxy")),
            no_proxy: no_proxy.map(str::to_string),
            ca_file: None,
            section: "falcon",
        }
    }

    #[test]
    fn the_environment_is_the_default() {
        let route = settings(None, None)
            .route_with(env(&[("HTTPS_PROXY", "http://proxy:3128"), ("NO_PROXY", ".corp")]))
            .expect("valid")
            .expect("proxied");
        assert_eq!(route.proxy.without_credentials().as_str(), "http://proxy:3128/");
        assert!(!route.all_schemes, "HTTPS_PROXY carries https only");
        assert!(route.no_proxy.starts_with(".corp,localhost,127.0.0.0/8"));
        assert!(route.no_proxy.contains("169.254.169.254"));
        let lower = settings(None, None)
            .route_with(env(&[("https_proxy", "http://p:1")]))
            .expect("valid");
        assert!(lower.is_some());
        assert_eq!(settings(None, None).route_with(env(&[])).expect("valid"), None);
        assert_eq!(
            settings(None, None)
                .route_with(env(&[("HTTPS_PROXY", " ")]))
                .expect("valid"),
            None,
            "an empty variable is unset"
        );
    }

    #[test]
    fn the_section_overrides_the_environment() {
        let vars = env(&[("HTTPS_PROXY", "http://env:1"), ("NO_PROXY", "a.example")]);
        let route = settings(Some("http://section:2"), Some("b.example"))
            .route_with(&vars)
            .expect("valid")
            .expect("proxied");
        assert_eq!(route.proxy.without_credentials().as_str(), "http://section:2/");
        assert!(route.all_schemes);
        assert!(route.no_proxy.starts_with("b.example,"));
        assert_eq!(settings(Some("none"), None).route_with(&vars).expect("valid"), None);
    }

    #[test]
    fn credentials_never_show() {
        let url = ProxyUrl::parse("http://user:p%40ss@proxy:3128", "falcon.proxy").expect("valid");
        assert_eq!(url.credentials(), Some(("user".to_string(), "p@ss".to_string())));
        let shown = format!("{url:?}");
        assert!(!shown.contains("p%40ss") && !shown.contains("p@ss"), "{shown}");
        for bad in ["socks5://proxy:1080", "not a url", "http://"] {
            let err = ProxyUrl::parse(bad, "falcon.proxy").expect_err(bad);
            assert!(format!("{err:#}").contains("falcon.proxy"), "{bad}: {err:#}");
        }
        let parsed: Result<ProxyChoice, _> = serde_yaml::from_str("\"http://u:secretpw@p:1\"");
        assert!(!format!("{parsed:?}").contains("secretpw"));
    }

    #[test]
    fn ca_files_must_hold_certificates() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate").expect("write");
        let mut s = settings(None, None);
        s.ca_file = Some(path);
        let err = s.ca_pem().expect_err("no certificate");
        assert!(format!("{err:#}").contains("falcon.ca_file"), "{err:#}");
        s.ca_file = Some(dir.path().join("missing.pem"));
        assert!(format!("{:#}", s.ca_pem().expect_err("missing")).contains("falcon.ca_file"));
        let mut relative = Some(PathBuf::from("certs/ca.pem"));
        NetworkSettings::resolve_paths(&mut relative, Path::new("/etc/falcon-lake"));
        assert_eq!(relative, Some(PathBuf::from("/etc/falcon-lake/certs/ca.pem")));
    }
}
