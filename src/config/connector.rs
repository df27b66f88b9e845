//! The Fluvio connector config file (`apiVersion`, `meta`, `transforms`, and the
//! connector's own section), loaded and rendered as `cdk deploy` runs it.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use fluvio_smartengine::transformation::TransformationStep;
use serde::Deserialize;

use crate::config::secrets::{render, SecretStore};
use crate::config::{from_section, units};
use crate::topic::fluvio::{ProducerSettings, TopicDefinition};
use crate::topic::StartFrom;

/// A declared secret (`meta.secrets[].name`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretDecl {
    /// Its name.
    pub name: String,
}

/// `meta`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetaConfig {
    /// Instance name (also the default consumer id and the log file name under cdk).
    pub name: String,
    /// Connector type (`…-source` for sources).
    #[serde(rename = "type")]
    pub connector_type: String,
    /// Connector version.
    pub version: String,
    /// The topic: a name, or Fluvio's topic config object (apiVersion 0.2.0).
    pub topic: TopicDefinition,
    /// Producer tuning (sources).
    #[serde(default)]
    pub producer: Option<ProducerSettings>,
    /// Consumer settings (sinks).
    #[serde(default)]
    pub consumer: Option<ConsumerSettings>,
    /// Secrets the file refers to.
    #[serde(default)]
    pub secrets: Vec<SecretDecl>,
    /// Legacy key Fluvio ignores.
    #[serde(default, rename = "create_topic")]
    _create_topic: Option<serde_yaml::Value>,
}

/// `meta.consumer`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConsumerSettings {
    /// Consumer offset name.
    #[serde(default)]
    pub id: Option<String>,
    /// `all`, a partition number or a list.
    #[serde(default)]
    pub partition: Option<serde_yaml::Value>,
    /// Fetch size.
    #[serde(default, alias = "max_bytes", deserialize_with = "opt_byte_size")]
    pub max_bytes: Option<u64>,
    /// Start and commit strategy.
    #[serde(default)]
    pub offset: Option<OffsetSettings>,
}

fn opt_byte_size<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<u64>, D::Error> {
    units::byte_size(d).map(Some)
}

/// `meta.consumer.offset`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OffsetSettings {
    /// Where to start without a stored offset.
    #[serde(default)]
    pub start: Option<OffsetStart>,
    /// `none`, `manual` or `auto` (required by Fluvio inside `offset`).
    pub strategy: String,
    /// `{secs, nanos}` (ignored: the sink commits after every settled batch).
    #[serde(default)]
    pub flush_period: Option<serde_yaml::Value>,
}

/// `meta.consumer.offset.start`: `beginning`, `end`, or a map such as `{absolute: 42}`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(try_from = "RawOffsetStart")]
pub enum OffsetStart {
    /// The oldest record.
    Beginning,
    /// New records only.
    End,
    /// This offset.
    Absolute(u64),
    /// `n` after the beginning.
    FromBeginning(u64),
    /// `n` before the end.
    FromEnd(u64),
}

/// The spellings Fluvio accepts for `offset.start`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawOffsetStart {
    Word(String),
    Absolute {
        absolute: u64,
    },
    FromBeginning {
        #[serde(rename = "from-beginning")]
        from_beginning: u64,
    },
    FromEnd {
        #[serde(rename = "from-end")]
        from_end: u64,
    },
}

impl TryFrom<RawOffsetStart> for OffsetStart {
    type Error = String;

    fn try_from(raw: RawOffsetStart) -> Result<Self, Self::Error> {
        match raw {
            RawOffsetStart::Word(word) if word == "beginning" => Ok(OffsetStart::Beginning),
            RawOffsetStart::Word(word) if word == "end" => Ok(OffsetStart::End),
            RawOffsetStart::Word(other) => Err(format!(
                "{other:?} is not beginning, end, {{absolute: N}}, {{from-beginning: N}} or {{from-end: N}}"
            )),
            RawOffsetStart::Absolute { absolute } => Ok(OffsetStart::Absolute(absolute)),
            RawOffsetStart::FromBeginning { from_beginning } => Ok(OffsetStart::FromBeginning(from_beginning)),
            RawOffsetStart::FromEnd { from_end } => Ok(OffsetStart::FromEnd(from_end)),
        }
    }
}

impl MetaConfig {
    /// The consumer id the sink commits under: `meta.consumer.id`, else `meta.name`.
    pub fn consumer_id(&self) -> String {
        self.consumer
            .as_ref()
            .and_then(|c| c.id.clone())
            .unwrap_or_else(|| self.name.clone())
    }

    /// The partitions the sink reads (`None`: all); errors name the key.
    pub fn consumer_partitions(&self) -> Result<Option<Vec<u32>>> {
        let Some(value) = self.consumer.as_ref().and_then(|c| c.partition.as_ref()) else {
            return Ok(None);
        };
        let number = |v: &serde_yaml::Value| v.as_u64().and_then(|n| u32::try_from(n).ok());
        match value {
            serde_yaml::Value::String(s) if s == "all" => Ok(None),
            serde_yaml::Value::Sequence(list) if !list.is_empty() => list
                .iter()
                .map(|v| number(v).ok_or_else(|| anyhow!("meta.consumer.partition: {v:?} is not a partition number")))
                .collect::<Result<Vec<u32>>>()
                .map(Some),
            other => number(other)
                .map(|p| Some(vec![p]))
                .ok_or_else(|| anyhow!("meta.consumer.partition must be `all`, a partition number or a list of them")),
        }
    }

    /// The sink's starting fetch size (`meta.consumer.max-bytes`).
    pub fn consumer_max_bytes(&self) -> Option<u64> {
        self.consumer.as_ref().and_then(|c| c.max_bytes)
    }

    /// Where the sink starts without a stored offset; errors name the key.
    pub fn consumer_start(&self) -> Result<StartFrom> {
        let Some(offset) = self.consumer.as_ref().and_then(|c| c.offset.as_ref()) else {
            return Ok(StartFrom::Beginning);
        };
        match offset.strategy.as_str() {
            "manual" | "none" => {}
            "auto" => bail!(
                "meta.consumer.offset.strategy: `auto` commits records before they are delivered; \
                 this sink commits exactly what it has settled, so use `manual`"
            ),
            other => bail!("meta.consumer.offset.strategy {other:?} is not none, manual or auto"),
        }
        match offset.start {
            None | Some(OffsetStart::Beginning) => Ok(StartFrom::Beginning),
            Some(OffsetStart::End) => Ok(StartFrom::End),
            Some(OffsetStart::Absolute(n)) => Ok(StartFrom::Absolute(n)),
            Some(OffsetStart::FromBeginning(_) | OffsetStart::FromEnd(_)) => bail!(
                "meta.consumer.offset.start: from-beginning and from-end are not supported here; use absolute, or \
                 `falcon-lake replay` for a backfill"
            ),
        }
    }
}

/// A loaded connector config.
#[derive(Debug)]
pub struct ConnectorFile {
    /// The file.
    pub path: PathBuf,
    /// `apiVersion`.
    pub api_version: String,
    /// `meta`.
    pub meta: MetaConfig,
    /// `transforms`.
    pub transforms: Vec<TransformationStep>,
    sections: serde_yaml::Mapping,
}

impl ConnectorFile {
    /// Reads and renders `path`. Top-level keys other than `apiVersion`, `meta`,
    /// `transforms` and `sections` are errors.
    pub fn load(path: &Path, store: &SecretStore, sections: &[&str]) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading the config {}", path.display()))?;
        Self::parse(&text, path, store, sections).with_context(|| format!("in {}", path.display()))
    }

    /// Like [`ConnectorFile::load`], from text.
    pub fn parse(text: &str, path: &Path, store: &SecretStore, sections: &[&str]) -> Result<Self> {
        let raw: serde_yaml::Value = serde_yaml::from_str(text).context("the config is not valid YAML")?;
        let api_version = match raw.get("apiVersion") {
            None => "0.0.0".to_string(),
            Some(serde_yaml::Value::String(v)) => v.clone(),
            Some(other) => bail!("apiVersion must be a string like \"0.2.0\", not {other:?}"),
        };
        if !["0.0.0", "0.1.0", "0.2.0"].contains(&api_version.as_str()) {
            bail!("apiVersion {api_version:?} is not 0.1.0 or 0.2.0");
        }
        // Before 0.1.0, Fluvio did not render secrets.
        let rendered = if api_version == "0.0.0" {
            text.to_string()
        } else {
            render(text, &declared_secrets(&raw), store)?
        };
        let serde_yaml::Value::Mapping(mut root) =
            serde_yaml::from_str(&rendered).context("the rendered config is not valid YAML")?
        else {
            bail!("the config must be a YAML mapping");
        };
        root.remove("apiVersion");
        let meta: MetaConfig = from_section(
            "meta",
            root.remove("meta").ok_or_else(|| anyhow::anyhow!("meta is missing"))?,
        )?;
        let transforms = match root.remove("transforms") {
            Some(value) => from_section("transforms", value)?,
            None => Vec::new(),
        };
        if let Some(unknown) = root.keys().filter_map(|k| k.as_str()).find(|k| !sections.contains(k)) {
            bail!(
                "unknown top-level key `{unknown}`; expected apiVersion, meta, transforms, {}",
                sections.join(", ")
            );
        }
        crate::topic::check_topic_name(meta.topic.name(), "meta.topic")?;
        Ok(Self {
            path: path.to_path_buf(),
            api_version,
            meta,
            transforms,
            sections: root,
        })
    }

    /// A top-level section, if present.
    pub fn section(&self, name: &str) -> Option<serde_yaml::Value> {
        self.sections.get(name).cloned()
    }

    /// A required top-level section, parsed.
    pub fn required<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<T> {
        let value = self
            .section(name)
            .ok_or_else(|| anyhow::anyhow!("the `{name}` section is missing"))?;
        from_section(name, value)
    }

    /// An optional top-level section, parsed (defaults when absent).
    pub fn optional<T: serde::de::DeserializeOwned + Default>(&self, name: &str) -> Result<T> {
        match self.section(name) {
            Some(value) => from_section(name, value),
            None => Ok(T::default()),
        }
    }

    /// The directory relative paths in the config are resolved against.
    pub fn base_dir(&self) -> PathBuf {
        self.path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    }
}

/// `meta.secrets[].name` from the unrendered file.
fn declared_secrets(raw: &serde_yaml::Value) -> Vec<String> {
    raw.get("meta")
        .and_then(|m| m.get("secrets"))
        .and_then(|s| s.as_sequence())
        .map(|list| {
            list.iter()
                .filter_map(|s| s.get("name")?.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SINK: &str = r#"
apiVersion: 0.2.0
meta:
  name: ct-sink
  type: cloudtrail-lake-sink
  version: 0.1.0
  topic:
    meta:
      name: falcon-events
    partition:
      count: 1
  consumer:
    id: ct-sink
    offset:
      start: beginning
      strategy: manual
  secrets:
    - name: CHANNEL
cloudtrail:
  channel_arn: "${{ secrets.CHANNEL }}"
transforms:
  - uses: ./module.wasm
    with:
      profile: fig
"#;

    fn store() -> (tempfile::TempDir, SecretStore) {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("secrets.txt");
        std::fs::write(&file, "CHANNEL=arn:aws:cloudtrail:us-east-1:111122223333:channel/x\n").expect("write");
        (dir, SecretStore::File(file))
    }

    #[test]
    fn loads_a_v2_sink_config() {
        let (_dir, store) = store();
        let file = ConnectorFile::parse(
            SINK,
            Path::new("/etc/sink.yaml"),
            &store,
            &["cloudtrail", "sink", "metrics"],
        )
        .expect("valid");
        assert_eq!(file.meta.topic.name(), "falcon-events");
        assert_eq!(file.meta.consumer_id(), "ct-sink");
        assert_eq!(file.meta.consumer_start().expect("start"), StartFrom::Beginning);
        assert_eq!(file.transforms[0].uses, "./module.wasm");
        assert_eq!(file.transforms[0].with["profile"].as_ref(), "fig");
        let section = file.section("cloudtrail").expect("section");
        assert_eq!(
            section["channel_arn"],
            "arn:aws:cloudtrail:us-east-1:111122223333:channel/x"
        );
        assert_eq!(file.base_dir(), Path::new("/etc"));
    }

    #[test]
    fn consumer_partitions_and_fetch_size() {
        let (_dir, store) = store();
        let parse = |extra: &str| {
            let text = SINK.replace("  consumer:\n", &format!("  consumer:\n{extra}"));
            ConnectorFile::parse(&text, Path::new("x.yaml"), &store, &["cloudtrail"]).expect("valid")
        };
        assert_eq!(parse("").meta.consumer_partitions().expect("ok"), None);
        assert_eq!(
            parse("    partition: all\n").meta.consumer_partitions().expect("ok"),
            None
        );
        assert_eq!(
            parse("    partition: 2\n").meta.consumer_partitions().expect("ok"),
            Some(vec![2])
        );
        assert_eq!(
            parse("    partition: [0, 3]\n").meta.consumer_partitions().expect("ok"),
            Some(vec![0, 3])
        );
        assert_eq!(
            parse("    max-bytes: 8 MiB\n").meta.consumer_max_bytes(),
            Some(8 * 1024 * 1024)
        );
    }

    #[test]
    fn errors_name_the_problem() {
        let (_dir, store) = store();
        let cases = [
            (SINK.replace("cloudtrail:\n", "cloudtrial:\n"), "cloudtrial"),
            (
                SINK.replace("strategy: manual", "strategy: auto"),
                "meta.consumer.offset.strategy",
            ),
            (SINK.replace("start: beginning", "start: {from-end: 5}"), "from-end"),
            (SINK.replace("version: 0.1.0", "versoin: 0.1.0"), "meta"),
            (SINK.replace("- name: CHANNEL", "- name: NOPE"), "secret NOPE"),
            (SINK.replace("secrets.CHANNEL", "secrets.UNDECLARED"), "line 20"),
            (SINK.replace("apiVersion: 0.2.0", "apiVersion: 9.9.9"), "apiVersion"),
            (SINK.replace("start: beginning", "start: middle"), "middle"),
            (
                SINK.replace("  consumer:\n", "  consumer:\n    partition: some\n"),
                "meta.consumer.partition",
            ),
            (
                SINK.replace("  consumer:\n", "  consumer:\n    partition: [0, x]\n"),
                "meta.consumer.partition",
            ),
        ];
        for (text, says) in cases {
            let err = ConnectorFile::parse(&text, Path::new("x.yaml"), &store, &["cloudtrail", "sink", "metrics"])
                .and_then(|f| f.meta.consumer_start().map(|_| f))
                .and_then(|f| f.meta.consumer_partitions().map(|_| f));
            let message = format!("{:#}", err.expect_err(says));
            assert!(message.contains(says), "{says}: {message}");
        }
    }
}
