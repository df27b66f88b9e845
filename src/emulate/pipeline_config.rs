//! The embedded pipeline's config for a run against the two emulators, in the
//! same file format users write; shared by the demo, the tests and the benchmarks.

use std::fmt::Write as _;
use std::path::Path;

/// Name of the secret the config's `falcon.client_secret` refers to.
pub const CLIENT_SECRET_NAME: &str = "FALCON_CLIENT_SECRET";

/// What an emulated run's config needs; `extra_*` are YAML lines added to that
/// section (already indented), `extra` top-level sections.
#[derive(Debug, Clone)]
pub struct EmulatedConfig<'a> {
    /// `meta.name`.
    pub name: &'a str,
    /// The Falcon emulator's URL.
    pub falcon_url: &'a url::Url,
    /// OAuth2 client ID the Falcon emulator accepts.
    pub client_id: &'a str,
    /// The CloudTrail emulator's URL.
    pub cloudtrail_url: &'a url::Url,
    /// A channel the CloudTrail emulator serves.
    pub channel_arn: &'a str,
    /// The SmartModule.
    pub wasm: &'a Path,
    /// The embedded log's file.
    pub db: &'a Path,
    /// `storage.sync`: `full` (the default users get) or `normal`.
    pub sync: &'a str,
    /// More `falcon:` keys.
    pub extra_falcon: &'a str,
    /// More `cloudtrail:` keys.
    pub extra_cloudtrail: &'a str,
    /// More top-level sections.
    pub extra: &'a str,
}

/// A CloudWatch Logs destination for an emulated run, instead of the
/// `cloudtrail` one.
#[derive(Debug, Clone)]
pub struct EmulatedCloudWatch<'a> {
    /// The CloudWatch Logs emulator's URL.
    pub url: &'a url::Url,
    /// `cloudwatch.log_group`.
    pub log_group: &'a str,
    /// `cloudwatch.log_stream`.
    pub log_stream: &'a str,
    /// More `cloudwatch:` keys.
    pub extra: &'a str,
}

impl EmulatedConfig<'_> {
    /// The config file's text, delivering to the CloudTrail emulator.
    pub fn yaml(&self) -> String {
        let destination = format!(
            "cloudtrail:\n  channel_arn: {}\n  endpoint_url: {}\n{}",
            self.channel_arn, self.cloudtrail_url, self.extra_cloudtrail
        );
        self.render(&destination)
    }

    /// The config file's text, delivering to the CloudWatch Logs emulator.
    pub fn yaml_with_cloudwatch(&self, cloudwatch: &EmulatedCloudWatch<'_>) -> String {
        let destination = format!(
            "cloudwatch:\n  log_group: {}\n  log_stream: {}\n  endpoint_url: {}\n  region: us-east-1\n{}",
            cloudwatch.log_group, cloudwatch.log_stream, cloudwatch.url, cloudwatch.extra
        );
        self.render(&destination)
    }

    fn render(&self, destination: &str) -> String {
        let mut text = String::new();
        let _ = write!(
            text,
            r#"apiVersion: 0.2.0
meta:
  name: {name}
  type: falcon-lake-embedded
  version: 0.1.0
  topic: falcon-events
  secrets:
    - name: {CLIENT_SECRET_NAME}
falcon:
  base_url: {falcon}
  client_id: {client_id}
  client_secret: "${{{{ secrets.{CLIENT_SECRET_NAME} }}}}"
{extra_falcon}{destination}transforms:
  - uses: {wasm}
storage:
  path: {db}
  sync: {sync}
{extra}"#,
            name = self.name,
            falcon = self.falcon_url,
            client_id = self.client_id,
            extra_falcon = self.extra_falcon,
            wasm = self.wasm.display(),
            db = self.db.display(),
            sync = self.sync,
            extra = self.extra,
        );
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::connector::ConnectorFile;
    use crate::config::embedded::{EmbeddedConfig, SECTIONS};
    use crate::config::secrets::SecretStore;
    use crate::publish::ConnectDestination;
    use crate::secret::Secret;

    #[test]
    fn the_text_is_a_valid_embedded_config() {
        let falcon = url::Url::parse("http://127.0.0.1:1/").expect("url");
        let cloudtrail = url::Url::parse("http://127.0.0.1:2/").expect("url");
        let emulated = EmulatedConfig {
            name: "t",
            falcon_url: &falcon,
            client_id: "id",
            cloudtrail_url: &cloudtrail,
            channel_arn: "arn:aws:cloudtrail:us-east-1:111122223333:channel/x",
            wasm: Path::new("m.wasm"),
            db: Path::new("log.db"),
            sync: "normal",
            extra_falcon: "  app_id: test-app\n",
            extra_cloudtrail: "  linger: 20ms\n",
            extra: "metrics:\n  address: 127.0.0.1:9999\n",
        };
        let store = SecretStore::Map([(CLIENT_SECRET_NAME.to_string(), Secret::new("s"))].into());
        let parse = |text: &str| {
            let file = ConnectorFile::parse(text, Path::new("x.yaml"), &store, &SECTIONS).expect("parses");
            EmbeddedConfig::from_file(file).expect("valid")
        };
        let config = parse(&emulated.yaml());
        assert_eq!(config.falcon.app_id, "test-app");
        assert_eq!(
            config.destination.settings().linger,
            std::time::Duration::from_millis(20)
        );
        assert!(config.metrics.address.is_some());
        let cloudwatch = EmulatedCloudWatch {
            url: &cloudtrail,
            log_group: "/falcon/audit",
            log_stream: "tenant",
            extra: "  linger: 30ms\n",
        };
        let config = parse(&emulated.yaml_with_cloudwatch(&cloudwatch));
        assert_eq!(config.destination.section(), "cloudwatch");
        assert_eq!(
            config.destination.settings().linger,
            std::time::Duration::from_millis(30)
        );
    }
}
