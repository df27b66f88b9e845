//! `falcon-lake import-fig` on FIG configurations written from FIG's documented
//! keys and environment variables (reference-behaviour §9, §10), and the switch
//! itself: after FIG delivered up to its watermark, falcon-lake delivers exactly
//! the events above it — none lost, none repeated.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use common::*;
use falcon_lake::config::connector::ConnectorFile;
use falcon_lake::config::embedded::{EmbeddedConfig, SECTIONS};
use falcon_lake::config::secrets::SecretStore;
use falcon_lake::secret::Secret;

const FIG_SECRET: &str = "FigConfigSecretValue-DoNotCopy-0123456789";
const ARN: &str = "arn:aws:cloudtrail:eu-west-1:111122223333:channel/6a0f9e3c-4b1d-4c1e-9a5e-0e1f2a3b4c5d";

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

fn import_fig(args: &[&std::ffi::OsStr]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_falcon-lake"))
        .arg("import-fig")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("import-fig runs")
}

/// The imported text loaded as falcon-lake loads a config (secrets from a map).
fn load(yaml: &str, dir: &Path) -> EmbeddedConfig {
    let store = SecretStore::Map(
        [
            ("FALCON_CLIENT_ID".to_string(), Secret::new("imported-client-id")),
            ("FALCON_CLIENT_SECRET".to_string(), Secret::new("imported-secret")),
        ]
        .into(),
    );
    let file = ConnectorFile::parse(yaml, &dir.join("pipeline.yaml"), &store, &SECTIONS).expect("a valid config file");
    EmbeddedConfig::from_file(file).expect("a valid pipeline config")
}

fn ok(output: &Output) -> (String, String) {
    let (out, err) = (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    );
    assert!(output.status.success(), "import-fig failed: {err}");
    (out, err)
}

fn profile_of(config: &EmbeddedConfig) -> String {
    let with = &config.transforms[0].with;
    format!("{:?}", with.get("profile").expect("profile"))
}

#[test]
fn a_single_feed_config_ini() {
    let dir = tempfile::tempdir().expect("dir");
    let ini = write(
        dir.path(),
        "config.ini",
        &format!(
            "[main]\nbackends = CLOUDTRAIL_LAKE\nworker_threads = 4\n\n[logging]\nlevel = WARNING\n\n[events]\nolder_than_days_threshold = 21\n\n\
             [falcon]\ncloud_region = eu-1\nclient_id = 0123456789abcdef0123456789abcdef\nclient_secret = {FIG_SECRET}\napplication_id = crwd-fig-lake\n\n\
             [cloudtrail_lake]\nchannel_arn = {ARN}\nregion = eu-west-1\n"
        ),
    );
    let (yaml, notes) = ok(&import_fig(&[
        ini.as_os_str(),
        "--fig-offsets".as_ref(),
        "{'0': 42599}".as_ref(),
    ]));
    assert!(
        !yaml.contains(FIG_SECRET) && !notes.contains(FIG_SECRET),
        "the secret is never copied"
    );
    let config = load(&yaml, dir.path());
    assert_eq!(config.falcon.api_base().as_str(), "https://api.eu-1.crowdstrike.com/");
    assert_eq!(
        config.falcon.client_id, "imported-client-id",
        "from ${{{{ secrets.FALCON_CLIENT_ID }}}}"
    );
    assert_eq!(config.falcon.app_id, "crwd-fig-lake");
    assert_eq!(config.falcon.event_types, vec!["AuthActivityAuditEvent".to_string()]);
    assert_eq!(
        config.falcon.initial_offsets,
        [(0, 42_600)].into(),
        "right after FIG's last delivered event"
    );
    assert_eq!(
        config
            .destination
            .cloudtrail()
            .expect("a cloudtrail destination")
            .channel_arn,
        ARN
    );
    assert_eq!(
        config
            .destination
            .cloudtrail()
            .expect("a cloudtrail destination")
            .signing_region()
            .expect("region"),
        "eu-west-1"
    );
    assert!(profile_of(&config).contains("fig"));
    for needle in [
        "worker_threads",
        "older_than_days_threshold",
        "RUST_LOG=warn",
        "not copied",
        "stop FIG",
    ] {
        assert!(notes.contains(needle), "{needle:?} missing from the notes:\n{notes}");
    }
}

#[test]
fn several_feeds_with_offsets_and_other_backends() {
    let dir = tempfile::tempdir().expect("dir");
    let ini = write(
        dir.path(),
        "config.ini",
        &format!(
            "[main]\nbackends = CLOUDTRAIL_LAKE,AWS_SQS,GENERIC\n\n[events]\noffset = 1500\n\n[falcon]\ncloud_region = us-2\n\n\
             [cloudtrail_lake]\nchannel_arn = {ARN}\nregion = eu-west-1\n"
        ),
    );
    let output = import_fig(&[
        ini.as_os_str(),
        "--fig-offsets".as_ref(),
        "{'0': 42599, '1': 1234, '2': 7}".as_ref(),
        "--wasm".as_ref(),
        "/usr/local/share/falcon-lake/falcon_audit_to_cloudtrail.wasm".as_ref(),
    ]);
    let (yaml, notes) = ok(&output);
    let config = load(&yaml, dir.path());
    assert_eq!(config.falcon.api_base().as_str(), "https://api.us-2.crowdstrike.com/");
    assert_eq!(
        config.falcon.initial_offsets,
        [(0, 42_600), (1, 1_501), (2, 1_501)].into(),
        "events.offset is FIG's 'last seen' floor: max(watermark, offset) + 1"
    );
    assert_eq!(config.falcon.app_id, "fig-default-app-id", "FIG's default appId");
    assert_eq!(
        config.transforms[0].uses,
        "/usr/local/share/falcon-lake/falcon_audit_to_cloudtrail.wasm"
    );
    assert!(
        notes.contains("AWS_SQS, GENERIC"),
        "backends it cannot carry are named:\n{notes}"
    );
    assert!(
        yaml.contains("# ") && yaml.contains("AWS_SQS"),
        "and written into the file's header"
    );
}

#[test]
fn an_env_only_configuration() {
    let dir = tempfile::tempdir().expect("dir");
    let ini = write(dir.path(), "config.ini", "");
    let env = write(
        dir.path(),
        "fig.env",
        &format!(
            "# the ECS template's variables\nFIG_BACKENDS=CLOUDTRAIL_LAKE\nFALCON_CLOUD_REGION=us-1\nFALCON_APPLICATION_ID=crwd-fig-lake\n\
             FALCON_CLIENT_ID=\nCREDENTIALS_STORE=ssm\nSSM_REGION=eu-west-1\nSSM_CLIENT_ID=/falcon/client_id\nSSM_CLIENT_SECRET=/falcon/client_secret\n\
             CLOUDTRAIL_LAKE_CHANNEL_ARN={ARN}\nCLOUDTRAIL_LAKE_REGION=eu-west-1\nEVENTS_START_FROM_NEWEST=true\n"
        ),
    );
    let (yaml, notes) = ok(&import_fig(&[ini.as_os_str(), "--env-file".as_ref(), env.as_os_str()]));
    let config = load(&yaml, dir.path());
    assert_eq!(config.falcon.app_id, "crwd-fig-lake");
    assert_eq!(
        config
            .destination
            .cloudtrail()
            .expect("a cloudtrail destination")
            .channel_arn,
        ARN
    );
    assert!(config.falcon.initial_offsets.is_empty());
    for needle in [
        "/falcon/client_id",
        "/falcon/client_secret",
        "valueFrom",
        "External Secrets",
        "no --fig-offsets",
    ] {
        assert!(notes.contains(needle), "{needle:?} missing from the notes:\n{notes}");
    }

    // What FIG itself refuses, refused here with the key named.
    let bad = write(
        dir.path(),
        "bad.env",
        &format!("FIG_BACKENDS=CLOUDTRAIL_LAKE\nCLOUDTRAIL_LAKE_CHANNEL_ARN={ARN}\nCLOUDTRAIL_LAKE_REGION=us-east-1\n"),
    );
    let refused = import_fig(&[ini.as_os_str(), "--env-file".as_ref(), bad.as_os_str()]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("cloudtrail_lake.region"));
    let no_lake = write(dir.path(), "sqs.env", "FIG_BACKENDS=AWS_SQS\n");
    let refused = import_fig(&[ini.as_os_str(), "--env-file".as_ref(), no_lake.as_os_str()]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("CLOUDTRAIL_LAKE backend is not enabled"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_switch_neither_loses_nor_repeats_an_event() {
    let mut falcon = falcon_emulator_config();
    falcon.events = 1_500;
    falcon.partitions = 2;
    let h = Harness::start(falcon, cloudtrail_emulator_config(), "").await;
    // FIG delivered every Lake event of partition 0 up to offset 1600, and of partition 1 up to 1400.
    let watermark = [(0u32, 1_600u64), (1, 1_400)];
    let ini = write(
        h.dir.path(),
        "fig.ini",
        &format!("[main]\nbackends = CLOUDTRAIL_LAKE\n[falcon]\napplication_id = fig-app\n[cloudtrail_lake]\nchannel_arn = {CHANNEL_ARN}\nregion = us-east-1\n"),
    );
    let wasm = module_wasm();
    let (yaml, _) = ok(&import_fig(&[
        ini.as_os_str(),
        "--fig-offsets".as_ref(),
        "{'0': 1600, '1': 1400}".as_ref(),
        "--wasm".as_ref(),
        wasm.as_os_str(),
    ]));
    // Point the imported config at the emulators, as `base_url`/`endpoint_url` would a proxy.
    let yaml = yaml
        .replace("  cloud: us-1\n", &format!("  base_url: {}\n", h.falcon.url()))
        .replace(
            "  region: us-east-1\n",
            &format!(
                "  region: us-east-1\n  endpoint_url: {}\n  linger: 20ms\n",
                h.cloudtrail.url()
            ),
        )
        .replace("path: falcon-lake.db", "path: imported.db")
        .replace("address: 127.0.0.1:9464", "address: 127.0.0.1:0");
    std::fs::write(&h.config, yaml).expect("config");
    std::fs::write(
        &h.secrets,
        format!("FALCON_CLIENT_ID={CLIENT_ID}\nFALCON_CLIENT_SECRET={CLIENT_SECRET}\n"),
    )
    .expect("secrets");

    // What FIG's profile forwards, and which of it FIG already delivered.
    let params = falcon_lake::audit::MappingParams::from_map(&[("profile".to_string(), "fig".to_string())].into())
        .expect("fig profile");
    let mapper = falcon_lake::audit::Mapper::new(params);
    let (mut after, mut before) = (Vec::new(), Vec::new());
    for (partition, delivered) in watermark {
        for (offset, line) in h.falcon_control.falcon_events(partition).await {
            let key = falcon_lake::audit::SourceKey::new(partition, offset).encode();
            let ctx = falcon_lake::audit::RecordContext {
                key: Some(&key),
                timestamp_ms: 0,
            };
            if let falcon_lake::audit::Outcome::Emit(audit) = mapper.map(&ctx, line.as_bytes()) {
                if offset > delivered {
                    after.push(audit.id);
                } else {
                    before.push(audit.id);
                }
            }
        }
    }
    assert!(
        !after.is_empty() && !before.is_empty(),
        "{} after, {} before",
        after.len(),
        before.len()
    );

    let pipeline = h.pipeline().await;
    let cancel = CancellationToken::new();
    let run = tokio::spawn(pipeline.run(cancel.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let stored = h.stored().await;
        if after.iter().all(|id| stored.contains_key(id)) {
            break;
        }
        assert!(!run.is_finished(), "the pipeline stopped");
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {} delivered",
            stored.len(),
            after.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let the sink catch up with whatever else it read, then stop.
    tokio::time::sleep(Duration::from_millis(500)).await;
    cancel.cancel();
    run.await.expect("task").expect("clean stop");
    let stored = h.stored().await;
    assert!(
        before.iter().all(|id| !stored.contains_key(id)),
        "nothing FIG delivered is sent again"
    );
    let mut ids: Vec<&String> = stored.keys().collect();
    ids.sort();
    let mut want: Vec<&String> = after.iter().collect();
    want.sort();
    assert_eq!(ids, want, "exactly the events above FIG's watermark");
    assert!(stored.values().all(|n| *n == 1));
}
