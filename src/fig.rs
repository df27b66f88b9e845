//! Moving from CrowdStrike's Falcon Integration Gateway (FIG): its config
//! (`config.ini` and its environment variables, reference-behaviour §10) and
//! its last delivered offsets (the `last_seen_offsets` SSM parameter, §9) into
//! an equivalent embedded pipeline config.
//!
//! Where to start: FIG's watermark is the highest offset it *delivered* per
//! partition, and its stream opens after `events.offset` ("last seen"). So
//! every event above `max(watermark, events.offset)` is one FIG did not
//! deliver, and none at or below it is one falcon-lake should send again: each
//! partition starts at that maximum + 1, as `falcon.initial_offsets`, which only
//! applies while the topic holds nothing of that partition (later starts resume
//! after the last event in the topic).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{bail, Context, Result};

use crate::cloudtrail::ChannelArn;
use crate::falcon::cloud::Cloud;

/// A parsed INI file: section → key → value (keys lower-cased, as Python's configparser does).
pub type Ini = BTreeMap<String, BTreeMap<String, String>>;

/// Parses INI text (`[section]`, `key = value` or `key: value`, `;`/`#` comments).
pub fn parse_ini(text: &str) -> Result<Ini> {
    let mut ini = Ini::new();
    let mut section: Option<String> = None;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = Some(name.trim().to_string());
            ini.entry(name.trim().to_string()).or_default();
            continue;
        }
        let Some((key, value)) = line.split_once(['=', ':']) else {
            bail!("line {}: {line:?} is neither [section] nor key = value", n + 1);
        };
        let Some(section) = &section else {
            bail!("line {}: {key:?} comes before any [section]", n + 1);
        };
        ini.entry(section.clone())
            .or_default()
            .insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    Ok(ini)
}

/// Parses `KEY=VALUE` lines (`export ` and surrounding quotes allowed, `#` comments).
pub fn parse_env_file(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix("export ").unwrap_or(l).split_once('='))
        .map(|(k, v)| {
            let v = v.trim();
            let unquoted = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            (k.trim().to_string(), unquoted.to_string())
        })
        .collect()
}

/// FIG's environment variables and the `section.key` each overrides.
pub const ENV_KEYS: [(&str, &str, &str); 22] = [
    ("FIG_BACKENDS", "main", "backends"),
    ("FIG_WORKER_THREADS", "main", "worker_threads"),
    ("LOG_LEVEL", "logging", "level"),
    ("EVENTS_SEVERITY_THRESHOLD", "events", "severity_threshold"),
    (
        "EVENTS_OLDER_THAN_DAYS_THRESHOLD",
        "events",
        "older_than_days_threshold",
    ),
    ("EVENTS_OFFSET", "events", "offset"),
    ("EVENTS_START_FROM_NEWEST", "events", "start_from_newest"),
    ("FALCON_CLOUD_REGION", "falcon", "cloud_region"),
    ("FALCON_CLIENT_ID", "falcon", "client_id"),
    ("FALCON_CLIENT_SECRET", "falcon", "client_secret"),
    ("FALCON_APPLICATION_ID", "falcon", "application_id"),
    ("FALCON_RECONNECT_RETRY_COUNT", "falcon", "reconnect_retry_count"),
    ("CREDENTIALS_STORE", "credentials_store", "store"),
    ("SSM_REGION", "ssm", "region"),
    ("SSM_CLIENT_ID", "ssm", "ssm_client_id"),
    ("SSM_CLIENT_SECRET", "ssm", "ssm_client_secret"),
    ("SECRETS_MANAGER_REGION", "secrets_manager", "region"),
    (
        "SECRETS_MANAGER_SECRET_NAME",
        "secrets_manager",
        "secrets_manager_secret_name",
    ),
    (
        "SECRETS_MANAGER_CLIENT_ID_KEY",
        "secrets_manager",
        "secrets_manager_client_id_key",
    ),
    (
        "SECRETS_MANAGER_CLIENT_SECRET_KEY",
        "secrets_manager",
        "secrets_manager_client_secret_key",
    ),
    ("CLOUDTRAIL_LAKE_CHANNEL_ARN", "cloudtrail_lake", "channel_arn"),
    ("CLOUDTRAIL_LAKE_REGION", "cloudtrail_lake", "region"),
];

/// FIG's settings: the INI, then non-empty environment values over it (FIG's load order).
pub fn effective(ini: Ini, env: &BTreeMap<String, String>) -> Ini {
    let mut merged = ini;
    for (var, section, key) in ENV_KEYS {
        if let Some(value) = env.get(var).filter(|v| !v.trim().is_empty()) {
            merged
                .entry(section.to_string())
                .or_default()
                .insert(key.to_string(), value.trim().to_string());
        }
    }
    merged
}

/// Parses the `last_seen_offsets` value: a Python dict text such as
/// `{'0': 42599, '1': 1234}` (JSON and bare integer keys are accepted too).
pub fn parse_offsets(text: &str) -> Result<BTreeMap<u32, u64>> {
    let body = text
        .trim()
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .with_context(|| format!("--fig-offsets {text:?} is not a dict like {{'0': 42599, '1': 1234}}"))?;
    let mut offsets = BTreeMap::new();
    for entry in body.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (key, value) = entry
            .split_once(':')
            .with_context(|| format!("--fig-offsets: {entry:?} is not 'partition': offset"))?;
        let unquote = |s: &str| s.trim().trim_matches(|c| c == '\'' || c == '"').to_string();
        let partition: u32 = unquote(key)
            .parse()
            .with_context(|| format!("--fig-offsets: partition {key:?} is not a number"))?;
        let offset: u64 = unquote(value)
            .parse()
            .with_context(|| format!("--fig-offsets: offset {value:?} of partition {partition} is not a number"))?;
        offsets.insert(partition, offset);
    }
    Ok(offsets)
}

/// FIG backends other than CloudTrail Lake, which falcon-lake does not carry.
const OTHER_BACKENDS: [&str; 7] = ["AWS", "AWS_SQS", "AZURE", "GCP", "WORKSPACEONE", "CHRONICLE", "GENERIC"];

/// What the import needs besides FIG's settings.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// FIG's last delivered offsets, if known.
    pub offsets: Option<BTreeMap<u32, u64>>,
    /// The SmartModule's `uses:`.
    pub wasm: String,
    /// Where the config came from, for the header.
    pub source: String,
}

/// The result: the config text and what the user should know.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The pipeline config (YAML).
    pub yaml: String,
    /// Notes for the user (what was not carried, what to do).
    pub notes: Vec<String>,
    /// Per partition, the first offset falcon-lake reads.
    pub initial_offsets: BTreeMap<u32, u64>,
}

/// Builds the pipeline config from FIG's effective settings.
pub fn import(fig: &Ini, options: &ImportOptions) -> Result<Imported> {
    let get = |section: &str, key: &str| -> Option<&str> {
        fig.get(section)
            .and_then(|s| s.get(key))
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let backends: Vec<String> = get("main", "backends")
        .unwrap_or_default()
        .split(',')
        .map(|b| b.trim().to_ascii_uppercase())
        .filter(|b| !b.is_empty())
        .collect();
    if !backends.iter().any(|b| b == "CLOUDTRAIL_LAKE") {
        bail!(
            "main.backends (FIG_BACKENDS) is {:?}: the CLOUDTRAIL_LAKE backend is not enabled, so there is nothing to import",
            backends.join(",")
        );
    }
    let mut notes = Vec::new();
    let others: Vec<&String> = backends.iter().filter(|b| b.as_str() != "CLOUDTRAIL_LAKE").collect();
    if !others.is_empty() {
        let names: Vec<&str> = others.iter().map(|b| b.as_str()).collect();
        let unknown: Vec<&&str> = names.iter().filter(|b| !OTHER_BACKENDS.contains(b)).collect();
        notes.push(format!(
            "not carried: the FIG backends {} (falcon-lake delivers to CloudTrail Lake only; keep FIG for them, with another falcon.application_id){}",
            names.join(", "),
            if unknown.is_empty() { String::new() } else { format!("; unknown to FIG: {unknown:?}") }
        ));
    }
    let channel_arn = get("cloudtrail_lake", "channel_arn").context(
        "cloudtrail_lake.channel_arn (CLOUDTRAIL_LAKE_CHANNEL_ARN) is required with the CLOUDTRAIL_LAKE backend",
    )?;
    let channel: ChannelArn = channel_arn
        .parse()
        .map_err(|e| anyhow::anyhow!("cloudtrail_lake.channel_arn: {e}"))?;
    if let Some(region) = get("cloudtrail_lake", "region") {
        if region != channel.region {
            bail!(
                "cloudtrail_lake.region {region:?} differs from the channel's region {:?}; they must match",
                channel.region
            );
        }
    }
    let cloud = get("falcon", "cloud_region").unwrap_or("us-1");
    let cloud: Cloud = serde_yaml::from_str(&format!("{cloud:?}")).map_err(|_| {
        anyhow::anyhow!(
            "falcon.cloud_region {cloud:?} is not a Falcon cloud (us-1, us-2, eu-1, us-gov-1, us-gov-2, us-3)"
        )
    })?;
    let app_id = get("falcon", "application_id").unwrap_or("fig-default-app-id");
    let start = start_positions(fig, options, &mut notes)?;
    credential_notes(fig, &mut notes);
    for (section, key, why) in [
        (
            "main",
            "worker_threads",
            "falcon-lake sends batches of up to 100 events, in order",
        ),
        ("events", "severity_threshold", "it has no effect on audit events"),
        (
            "events",
            "older_than_days_threshold",
            "falcon-lake does not drop old events (Falcon keeps about 7 days)",
        ),
        (
            "falcon",
            "reconnect_retry_count",
            "falcon-lake retries discovery without limit, with back-off (falcon.discovery_backoff_max)",
        ),
    ] {
        if let Some(value) = get(section, key) {
            notes.push(format!("not carried: {section}.{key} = {value} ({why})"));
        }
    }
    if let Some(level) = get("logging", "level") {
        notes.push(format!(
            "logging.level {level}: set RUST_LOG={} in falcon-lake's environment",
            level.to_ascii_lowercase().replace("warning", "warn")
        ));
    }
    if get("falcon", "client_secret").is_some() {
        notes.push(
            "FIG's config holds the Falcon client secret; it is not copied: put FALCON_CLIENT_ID and FALCON_CLIENT_SECRET in the --secrets file or the environment".to_string(),
        );
    }
    notes.push(format!(
        "stop FIG before starting falcon-lake: the API holds appId {app_id} for one session at a time"
    ));
    let yaml = render(&Render {
        source: &options.source,
        cloud,
        app_id,
        channel_arn,
        region: &channel.region,
        wasm: &options.wasm,
        start: &start,
        notes: &notes,
    });
    Ok(Imported {
        yaml,
        notes,
        initial_offsets: start.initial,
    })
}

/// Where partitions start: the first offset per partition falcon-lake reads.
struct Start {
    initial: BTreeMap<u32, u64>,
}

fn start_positions(fig: &Ini, options: &ImportOptions, notes: &mut Vec<String>) -> Result<Start> {
    let get = |key: &str| fig.get("events").and_then(|s| s.get(key)).map(|v| v.trim().to_string());
    let floor = match get("offset").filter(|v| !v.is_empty()) {
        Some(v) => Some(
            v.parse::<u64>()
                .with_context(|| format!("events.offset (EVENTS_OFFSET) {v:?} is not a number"))?,
        )
        .filter(|o| *o > 0),
        None => None,
    };
    let newest = match get("start_from_newest").as_deref() {
        None | Some("") | Some("false") => false,
        Some("true") => true,
        Some(other) => bail!("events.start_from_newest (EVENTS_START_FROM_NEWEST) {other:?} is neither true nor false"),
    };
    if newest && floor.is_some() {
        bail!("events.offset and events.start_from_newest are both set; FIG refuses that too");
    }
    let mut initial = BTreeMap::new();
    match &options.offsets {
        Some(offsets) => {
            for (partition, delivered) in offsets {
                let last = floor.map_or(*delivered, |f| f.max(*delivered));
                initial.insert(*partition, last + 1);
            }
        }
        None => notes.push(
            "no --fig-offsets: give FIG's last delivered offsets (aws ssm get-parameter --name last_seen_offsets --query Parameter.Value --output text) so that nothing FIG delivered is sent again".to_string(),
        ),
    }
    if let Some(floor) = floor {
        // FIG applies events.offset to every partition ("useful for single-feed streams").
        if initial.is_empty() {
            initial.insert(0, floor + 1);
        }
        notes.push(format!(
            "events.offset {floor}: partitions without a FIG watermark other than {} start at the oldest retained event; add them to falcon.initial_offsets as N: {} to skip what FIG skipped",
            initial.keys().map(u32::to_string).collect::<Vec<_>>().join(", "),
            floor + 1
        ));
    }
    if newest {
        notes.push(
            "events.start_from_newest: partitions without a FIG watermark start at the oldest retained event (Falcon keeps about 7 days): the history FIG skipped is delivered, nothing twice".to_string(),
        );
    }
    Ok(Start { initial })
}

fn credential_notes(fig: &Ini, notes: &mut Vec<String>) {
    let get = |section: &str, key: &str| {
        fig.get(section)
            .and_then(|s| s.get(key))
            .cloned()
            .unwrap_or_else(|| "?".to_string())
    };
    match fig.get("credentials_store").and_then(|s| s.get("store")).map(String::as_str) {
        Some("ssm") => notes.push(format!(
            "FIG read the credentials from SSM parameters {} and {} in {}: inject them as FALCON_CLIENT_ID and FALCON_CLIENT_SECRET (ECS task definition `secrets` with valueFrom the parameter ARN; Kubernetes External Secrets or the Secrets Store CSI driver); see README \"Moving from FIG\"",
            get("ssm", "ssm_client_id"),
            get("ssm", "ssm_client_secret"),
            get("ssm", "region")
        )),
        Some("secrets_manager") => notes.push(format!(
            "FIG read the credentials from Secrets Manager secret {} (keys {} and {}) in {}: inject them as FALCON_CLIENT_ID and FALCON_CLIENT_SECRET (ECS `secrets` valueFrom <secret ARN>:<key>::; Kubernetes External Secrets or the Secrets Store CSI driver); see README \"Moving from FIG\"",
            get("secrets_manager", "secrets_manager_secret_name"),
            get("secrets_manager", "secrets_manager_client_id_key"),
            get("secrets_manager", "secrets_manager_client_secret_key"),
            get("secrets_manager", "region")
        )),
        Some(other) => notes.push(format!("credentials_store.store {other:?} is not one FIG knows (ssm, secrets_manager)")),
        None => {}
    }
}

struct Render<'a> {
    source: &'a str,
    cloud: Cloud,
    app_id: &'a str,
    channel_arn: &'a str,
    region: &'a str,
    wasm: &'a str,
    start: &'a Start,
    notes: &'a [String],
}

fn render(r: &Render<'_>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# falcon-lake pipeline imported from the Falcon Integration Gateway ({})",
        r.source
    );
    let _ = writeln!(
        out,
        "# by `falcon-lake import-fig`. Check it with `falcon-lake check --config FILE`."
    );
    for note in r.notes {
        let _ = writeln!(out, "#  - {note}");
    }
    let _ = write!(
        out,
        r#"apiVersion: 0.2.0
meta:
  name: falcon-lake
  type: falcon-lake-embedded
  version: 0.1.0
  topic: falcon-events
  consumer:
    id: cloudtrail-sink
    offset:
      start: beginning
      strategy: manual
  secrets:
    - name: FALCON_CLIENT_ID
    - name: FALCON_CLIENT_SECRET

falcon:
  cloud: {cloud}
  client_id: "${{{{ secrets.FALCON_CLIENT_ID }}}}"
  client_secret: "${{{{ secrets.FALCON_CLIENT_SECRET }}}}"
  app_id: {app_id}
  # FIG's stream filter for a CloudTrail Lake deployment; remove it to keep every
  # event in the topic (other modules, later replays).
  event_types: [AuthActivityAuditEvent]
"#,
        cloud = r.cloud.name(),
        app_id = yaml_string(r.app_id),
    );
    if r.start.initial.is_empty() {
        let _ = writeln!(
            out,
            "  # FIG delivered nothing known: every partition starts at the oldest retained event."
        );
    } else {
        let _ = writeln!(
            out,
            "  # The first start continues right after what FIG delivered (FIG's last_seen_offsets + 1);\n  # later starts resume after the last event in the topic."
        );
        let offsets: Vec<String> = r.start.initial.iter().map(|(p, o)| format!("{p}: {o}")).collect();
        let _ = writeln!(out, "  initial_offsets: {{{}}}", offsets.join(", "));
    }
    let _ = write!(
        out,
        r#"
transforms:
  # profile fig: FIG's filter (CrowdStrike Authentication events), field values
  # and ids (<partition>_<offset>), so existing Lake queries keep working.
  - uses: {wasm}
    with:
      profile: fig

cloudtrail:
  channel_arn: {channel}
  region: {region}

storage:
  path: falcon-lake.db
  sync: full
  retention:
    max_age: 7d

metrics:
  address: 127.0.0.1:9464
"#,
        wasm = yaml_string(r.wasm),
        channel = r.channel_arn,
        region = r.region,
    );
    out
}

/// A YAML scalar for `text`: plain when safe, else double-quoted JSON.
fn yaml_string(text: &str) -> String {
    let plain = !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c));
    if plain {
        text.to_string()
    } else {
        serde_json::to_string(text).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_parse_as_fig_writes_them() {
        let parsed = parse_offsets("{'0': 42599, '1': 1234}").expect("python dict");
        assert_eq!(parsed, BTreeMap::from([(0, 42599), (1, 1234)]));
        assert_eq!(parse_offsets("{\"2\": 7}").expect("json"), BTreeMap::from([(2, 7)]));
        assert!(parse_offsets("{}").expect("empty").is_empty());
        assert!(parse_offsets("42599").is_err());
        assert!(format!("{:#}", parse_offsets("{'0': -1}").expect_err("negative")).contains("partition 0"));
    }

    #[test]
    fn environment_overrides_only_when_not_empty() {
        let ini = parse_ini("[falcon]\ncloud_region = us-2\napplication_id: my-app\n").expect("ini");
        let env = BTreeMap::from([
            ("FALCON_CLOUD_REGION".to_string(), "eu-1".to_string()),
            ("FALCON_APPLICATION_ID".to_string(), "".to_string()),
        ]);
        let fig = effective(ini, &env);
        assert_eq!(fig["falcon"]["cloud_region"], "eu-1");
        assert_eq!(fig["falcon"]["application_id"], "my-app");
        assert!(parse_ini("key = before any section").is_err());
        let env = parse_env_file("# c\nexport A=\"x y\"\nB='z'\nC=plain\n");
        assert_eq!(
            (env["A"].as_str(), env["B"].as_str(), env["C"].as_str()),
            ("x y", "z", "plain")
        );
    }
}
