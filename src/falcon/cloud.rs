//! CrowdStrike clouds and their API base URLs.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;
use url::Url;

/// A CrowdStrike cloud (region).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Cloud {
    /// `us-1`, the default and the autodiscovery entry point.
    #[serde(rename = "us-1")]
    Us1,
    /// `us-2`.
    #[serde(rename = "us-2")]
    Us2,
    /// `eu-1`.
    #[serde(rename = "eu-1")]
    Eu1,
    /// `us-gov-1` (no autodiscovery).
    #[serde(rename = "us-gov-1")]
    UsGov1,
    /// `us-gov-2`.
    #[serde(rename = "us-gov-2")]
    UsGov2,
    /// `us-3`.
    #[serde(rename = "us-3")]
    Us3,
}

/// Every cloud, for listing in errors.
pub const ALL_CLOUDS: [Cloud; 6] = [
    Cloud::Us1,
    Cloud::Us2,
    Cloud::Eu1,
    Cloud::UsGov1,
    Cloud::UsGov2,
    Cloud::Us3,
];

impl Cloud {
    /// The cloud's name as Falcon spells it (`X-Cs-Region`).
    pub fn name(self) -> &'static str {
        match self {
            Cloud::Us1 => "us-1",
            Cloud::Us2 => "us-2",
            Cloud::Eu1 => "eu-1",
            Cloud::UsGov1 => "us-gov-1",
            Cloud::UsGov2 => "us-gov-2",
            Cloud::Us3 => "us-3",
        }
    }

    /// The cloud's API base URL.
    pub fn base_url(self) -> Url {
        let text = match self {
            Cloud::Us1 => "https://api.crowdstrike.com",
            Cloud::Us2 => "https://api.us-2.crowdstrike.com",
            Cloud::Eu1 => "https://api.eu-1.crowdstrike.com",
            Cloud::UsGov1 => "https://api.laggar.gcw.crowdstrike.com",
            Cloud::UsGov2 => "https://api.us-gov-2.crowdstrike.mil",
            Cloud::Us3 => "https://api.us-3.crowdstrike.com",
        };
        Url::parse(text).expect("static URL")
    }

    /// The cloud whose API host is `host`, if any.
    pub fn from_host(host: &str) -> Option<Cloud> {
        ALL_CLOUDS
            .into_iter()
            .find(|c| c.base_url().host_str().is_some_and(|h| h.eq_ignore_ascii_case(host)))
    }
}

impl fmt::Display for Cloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Cloud {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        ALL_CLOUDS.into_iter().find(|c| c.name() == s).ok_or_else(|| {
            let names: Vec<&str> = ALL_CLOUDS.iter().map(|c| c.name()).collect();
            format!("{s:?} is not a CrowdStrike cloud; expected one of {}", names.join(", "))
        })
    }
}

/// The registrable part of a host (its last two labels), used to check that
/// feed and refresh URLs stay within the API's own domain.
pub fn registrable_domain(host: &str) -> String {
    let labels: Vec<&str> = host.trim_end_matches('.').rsplitn(3, '.').collect();
    match labels.as_slice() {
        [tld, name, ..] => format!("{name}.{tld}").to_ascii_lowercase(),
        _ => host.to_ascii_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for cloud in ALL_CLOUDS {
            assert_eq!(cloud.name().parse::<Cloud>(), Ok(cloud));
            let host = cloud.base_url().host_str().map(str::to_string).expect("host");
            assert_eq!(Cloud::from_host(&host), Some(cloud));
        }
        assert!("mars-1".parse::<Cloud>().expect_err("unknown").contains("us-gov-2"));
    }

    #[test]
    fn registrable_domains() {
        assert_eq!(registrable_domain("firehose.eu-1.crowdstrike.com"), "crowdstrike.com");
        assert_eq!(registrable_domain("api.us-gov-2.crowdstrike.mil"), "crowdstrike.mil");
        assert_eq!(registrable_domain("localhost"), "localhost");
    }
}
