//! Issue 8 must-show: the sink loads its SmartModule from the cluster's
//! registry by the plain name and by the README's `group/name@version`, and a
//! module swapped by editing `uses:` (a new `@version` with other `with:`
//! parameters) shows in what CloudTrail stores once the sink restarts.

use std::time::Duration;

use fluvio::metadata::smartmodule::{
    FluvioSemVersion, SmartModuleMetadata, SmartModulePackage, SmartModuleSpec, SmartModuleWasm,
};

use crate::common;
use crate::deployment::*;

/// The module's package as `smdk load` registers it (SmartModule.toml).
const GROUP: &str = "falcon-lake";
const NAME: &str = "falcon-audit-to-cloudtrail";

/// The built CloudTrail module, as `fluvio sm create` (no package) or
/// `smdk load` (`package: (version)`) registers it.
fn module_spec(version: Option<&str>) -> SmartModuleSpec {
    let wasm = std::fs::read(common::module_wasm()).expect("the built SmartModule");
    let meta = version.map(|version| SmartModuleMetadata {
        package: SmartModulePackage {
            name: NAME.to_string(),
            group: GROUP.to_string(),
            version: FluvioSemVersion::parse(version).expect("version"),
            api_version: FluvioSemVersion::parse("0.1.0").expect("api version"),
            ..Default::default()
        },
        ..Default::default()
    });
    SmartModuleSpec {
        meta,
        wasm: SmartModuleWasm::from_raw_wasm_bytes(&wasm).expect("wasm"),
        ..Default::default()
    }
}

/// Registers the module through the real client's admin API.
async fn register(d: &Deployment, create_name: &str, version: Option<&str>) {
    let fluvio = d.client().await;
    fluvio
        .admin()
        .await
        .create(create_name.to_string(), false, module_spec(version))
        .await
        .unwrap_or_else(|e| panic!("registering {create_name}: {e}"));
}

/// `eventSource` of each stored event, in store order.
async fn stored_event_sources(d: &Deployment) -> Vec<String> {
    let listed = d.cloudtrail_control.get("_emulator/events").await;
    listed["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            // Stored as CloudTrail Lake returns it: eventData parsed, or as sent.
            let data = &e["record"]["eventData"];
            let parsed: serde_json::Value = match data.as_str() {
                Some(text) => serde_json::from_str(text).expect("eventData json"),
                None => data.clone(),
            };
            parsed["eventSource"]
                .as_str()
                .unwrap_or_else(|| panic!("no eventSource in {}", e["record"]))
                .to_string()
        })
        .collect()
}

/// Runs the sink with `transforms` until every event the emulator holds is
/// stored, then stops it (SIGTERM, exit 0).
async fn deliver_with(d: &mut Deployment, transforms: &str) {
    d.write_sink_config(Some(transforms), "");
    let mut sink = d.spawn(Role::Sink);
    let expected = d.expected().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let stored = d.stored().await;
        if expected.keys().all(|id| stored.contains_key(id)) {
            break;
        }
        assert!(
            sink.exited().is_none() && std::time::Instant::now() < deadline,
            "the sink with {transforms:?} did not deliver (exited: {:?}):\n{}",
            sink.exited(),
            tail(&d.log(Role::Sink), 10)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        sink.terminate(Duration::from_secs(30)),
        Some(0),
        "sink exit ({transforms})"
    );
}

/// More events from Falcon, waited for in the raw topic.
async fn more_events(d: &Deployment, count: u64) {
    let before = d.topic_keys(1).len();
    d.falcon_control
        .post(&format!("_emulator/events/generate?count={count}"), "")
        .await;
    d.wait_topic_keys(1, before + count as usize, Duration::from_secs(60))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_smartmodule_by_name_then_swapped() {
    let mut d = Deployment::start(Setup::new(400, 1, TopicSpec::partitions(1))).await;
    // As `fluvio sm create falcon-audit-to-cloudtrail --wasm-file …` and `smdk load`.
    register(&d, NAME, None).await;
    register(&d, "ignored-when-packaged", Some("0.1.0")).await;
    let mut keys = d.cluster.smartmodules();
    keys.sort();
    assert_eq!(keys, [NAME.to_string(), format!("{NAME}-{GROUP}-0.1.0")]);
    let source = d.spawn(Role::Source);
    d.wait_topic_keys(1, 400, Duration::from_secs(60)).await;

    // The plain name: the module registered under exactly that name.
    deliver_with(&mut d, &format!("  - uses: {NAME}\n")).await;
    // The README's full name, with the README's parameters.
    more_events(&d, 200).await;
    let full = format!("{GROUP}/{NAME}@0.1.0");
    deliver_with(
        &mut d,
        &format!(
            "  - uses: {full}\n    with:\n      profile: default\n      event_types: \
             AuthActivityAuditEvent,UserActivityAuditEvent,RemoteResponseSessionStartEvent,RemoteResponseSessionEndEvent\n"
        ),
    )
    .await;
    let before_swap = stored_event_sources(&d).await;
    assert!(!before_swap.is_empty());
    assert!(
        before_swap.iter().all(|s| s == "crowdstrike"),
        "the default eventSource before the swap"
    );

    // A name nobody registered stops the sink at start, naming it.
    d.write_sink_config(Some(&format!("  - uses: {GROUP}/{NAME}@0.3.0\n")), "");
    let mut refused = d.spawn(Role::Sink);
    let mut exit = None;
    eventually(
        "the sink with an unknown module to exit",
        Duration::from_secs(60),
        || {
            exit = refused.exited();
            std::future::ready(exit.is_some())
        },
    )
    .await;
    assert_eq!(exit, Some(Some(1)), "exit code with an unregistered module");
    assert!(
        d.log(Role::Sink)
            .contains(&format!("no SmartModule named {GROUP}/{NAME}@0.3.0")),
        "the error names the module:\n{}",
        tail(&d.log(Role::Sink), 10)
    );

    // The swap: version 0.2.0 registered, `uses:` and `with:` edited, the sink
    // restarted. The plain name still means the plain module, not a version.
    register(&d, "ignored-when-packaged-2", Some("0.2.0")).await;
    more_events(&d, 200).await;
    let expected_before = d.stored().await.len();
    deliver_with(
        &mut d,
        &format!("  - uses: {GROUP}/{NAME}@0.2.0\n    with:\n      event_source: falcon-lake-swapped\n"),
    )
    .await;
    let after = stored_event_sources(&d).await;
    let (old, new) = after.split_at(before_swap.len());
    assert!(old.iter().all(|s| s == "crowdstrike"), "stored events stay as they are");
    assert!(
        d.stored().await.len() > expected_before && !new.is_empty(),
        "the new events are delivered"
    );
    assert!(
        new.iter().all(|s| s == "falcon-lake-swapped"),
        "every event after the swap comes from the swapped module: {:?}",
        new.iter().collect::<std::collections::BTreeSet<_>>()
    );
    eprintln!(
        "smartmodule by name: {} events by the plain name and {full}, {} after the swap to @0.2.0",
        old.len(),
        new.len()
    );
    assert_eq!(source.terminate(Duration::from_secs(30)), Some(0), "source exit");
}
