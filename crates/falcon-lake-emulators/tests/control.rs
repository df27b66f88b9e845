//! The emulators' own rules, for every emulator: loopback only unless
//! `--allow-remote`, bounded control counts, and no code shared with the client.

use falcon_lake_emulators::cloudtrail::{CloudTrailEmulator, CloudTrailEmulatorConfig};
use falcon_lake_emulators::cloudwatch::{CloudWatchEmulator, CloudWatchEmulatorConfig};
use falcon_lake_emulators::falcon::{FalconEmulator, FalconEmulatorConfig};

const REMOTE: &str = "0.0.0.0:0";
const CHANNEL: &str = "arn:aws:cloudtrail:us-east-1:111122223333:channel/x";

#[tokio::test]
async fn every_emulator_refuses_a_non_loopback_listen_address() {
    let mut falcon = FalconEmulatorConfig::new("id", "secret");
    falcon.listen = REMOTE.parse().expect("addr");
    let mut cloudtrail = CloudTrailEmulatorConfig::new(CHANNEL, "AKIA", "secret");
    cloudtrail.listen = REMOTE.parse().expect("addr");
    let mut cloudwatch = CloudWatchEmulatorConfig::new("AKIA", "secret");
    cloudwatch.listen = REMOTE.parse().expect("addr");
    let errors = [
        FalconEmulator::start(falcon.clone())
            .await
            .map(|_| ())
            .expect_err("falcon"),
        CloudTrailEmulator::start(cloudtrail.clone())
            .await
            .map(|_| ())
            .expect_err("cloudtrail"),
        CloudWatchEmulator::start(cloudwatch.clone())
            .await
            .map(|_| ())
            .expect_err("cloudwatch"),
    ];
    for err in errors {
        assert!(err.to_string().contains("--allow-remote"), "{err}");
    }
    falcon.allow_remote = true;
    cloudtrail.allow_remote = true;
    cloudwatch.allow_remote = true;
    assert!(falcon.validate().is_ok() && cloudtrail.validate().is_ok() && cloudwatch.validate().is_ok());
}

async fn post(url: url::Url, body: &str) -> (u16, String) {
    let http = reqwest::Client::builder().no_proxy().build().expect("client");
    let answer = http.post(url).body(body.to_string()).send().await.expect("request");
    let status = answer.status().as_u16();
    (status, answer.text().await.unwrap_or_default())
}

#[tokio::test]
async fn control_counts_are_bounded_with_a_clear_message() {
    let falcon = FalconEmulator::start(FalconEmulatorConfig::new("id", "secret"))
        .await
        .expect("falcon");
    let fault = r#"{"fault":"feed_disconnect"}"#;
    let url = |path: &str| falcon.url().join(path).expect("url");
    let (status, text) = post(url("_emulator/faults?count=10001"), fault).await;
    assert_eq!((status, text.contains("10000")), (400, true), "{text}");
    assert_eq!(post(url("_emulator/faults?count=lots"), fault).await.0, 400);
    assert_eq!(post(url("_emulator/faults?count=3"), fault).await.0, 204);
    let (status, text) = post(url("_emulator/events/generate?count=100001"), "").await;
    assert_eq!((status, text.contains("100000")), (400, true), "{text}");
    let before = falcon.state.partitions.iter().map(|p| p.len()).sum::<usize>();
    assert_eq!(post(url("_emulator/events/generate?count=5"), "").await.0, 204);
    let after = falcon.state.partitions.iter().map(|p| p.len()).sum::<usize>();
    assert_eq!(after, before + 5);
}

#[test]
fn the_emulators_share_no_code_with_the_client() {
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).expect("manifest");
    for crate_name in ["falcon-lake-audit", "falcon-lake-wire", "falcon-lake ="] {
        assert!(
            !manifest.contains(crate_name),
            "the emulators must be written from the specifications, not from the client's code ({crate_name})"
        );
    }
}
