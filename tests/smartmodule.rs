//! The SmartModule built for wasm, run by `fluvio-smartengine`, against the
//! native mapping on the same inputs; property tests; `falcon-lake sm test`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use fluvio_smartengine::SmartEngine;
use proptest::prelude::*;

use falcon_lake::audit::{
    map_record, validate_event_data, MappingParams, Outcome, RecordContext, SourceKey, ValidationOptions,
};
use falcon_lake::emulate::falcon::{Generator, Mix};
use falcon_lake::transform::{InputRecord, ModuleSpec, OutputRecord, TransformChain};

const TIMESTAMP: i64 = 1_767_225_600_000;

fn wasm_path(module: &str, file: &str, target: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("smartmodules")
        .join(module)
        .join("target")
        .join(target)
        .join("release")
        .join(file);
    assert!(
        path.exists(),
        "{} is missing: build it with `make wasm` (the test command does)",
        path.display()
    );
    path
}

fn audit_wasm(target: &str) -> Vec<u8> {
    std::fs::read(wasm_path(
        "falcon-audit-to-cloudtrail",
        "falcon_audit_to_cloudtrail.wasm",
        target,
    ))
    .expect("wasm")
}

fn chain(target: &str, params: &[(&str, &str)]) -> anyhow::Result<TransformChain> {
    let params: BTreeMap<String, String> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let spec = ModuleSpec {
        name: "falcon-lake/falcon-audit-to-cloudtrail@0.1.0".into(),
        params,
        wasm: audit_wasm(target),
    };
    TransformChain::new(&SmartEngine::new(), vec![spec])
}

/// Generated events of every type, keyed as the source keys them.
fn corpus(count: u64, mix: Mix) -> Vec<(Vec<u8>, Vec<u8>)> {
    let generator = Generator::new(11, "0123456789abcdef0123456789abcdef", mix);
    (0..count)
        .map(|seq| {
            let offset = 5_000 + seq * 2;
            let key = SourceKey::new((seq % 3) as u32, offset).encode();
            (key, generator.event(seq, offset).line.into_bytes())
        })
        .collect()
}

fn native(params: &MappingParams, records: &[(Vec<u8>, Vec<u8>)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    records
        .iter()
        .filter_map(|(key, value)| {
            let ctx = RecordContext {
                key: Some(key),
                timestamp_ms: TIMESTAMP,
            };
            match map_record(params, &ctx, value) {
                Outcome::Emit(audit) => Some((audit.id.into_bytes(), audit.event_data.into_bytes())),
                Outcome::Skip(_) => None,
            }
        })
        .collect()
}

/// Runs records through the chain in batches of 500; each output comes with the
/// index of its source record in `records`.
fn through_wasm(chain: &mut TransformChain, records: &[(Vec<u8>, Vec<u8>)]) -> Vec<(usize, OutputRecord)> {
    let mut outputs = Vec::new();
    for (n, batch) in records.chunks(500).enumerate() {
        let input: Vec<InputRecord<'_>> = batch
            .iter()
            .map(|(k, v)| InputRecord {
                key: Some(k),
                value: v,
                timestamp_ms: TIMESTAMP,
            })
            .collect();
        let out = chain.process(&input).expect("engine");
        assert!(out.failures.is_empty(), "the module failed: {:?}", out.failures);
        for output in out.outputs {
            let hint = output.source_hint.expect("filter_map keeps the source");
            outputs.push((n * 500 + hint, output));
        }
    }
    outputs
}

fn assert_same(params: &[(&str, &str)], mix: Mix) {
    let records = corpus(3_000, mix);
    let map: BTreeMap<String, String> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let expected = native(&MappingParams::from_map(&map).expect("params"), &records);
    assert!(!expected.is_empty());
    for target in ["wasm32-wasip1", "wasm32-unknown-unknown"] {
        let mut chain = chain(target, params).expect("chain");
        let got = through_wasm(&mut chain, &records);
        assert_eq!(got.len(), expected.len(), "{target}: number of emitted records");
        for ((source, g), (key, value)) in got.iter().zip(&expected) {
            assert_eq!(g.key.as_deref(), Some(key.as_slice()), "{target}: key");
            assert_eq!(&g.value, value, "{target}: value of {}", String::from_utf8_lossy(key));
            let text = std::str::from_utf8(&g.value).expect("utf8");
            validate_event_data(text, ValidationOptions::AS_EMITTED).unwrap_or_else(|v| panic!("{v}: {text}"));
            // The id is `[<cid>_]<partition>_<offset>` of the record it came from.
            assert!(
                key.ends_with(&records[*source].0),
                "{target}: output traced to the wrong record"
            );
        }
    }
}

#[test]
fn wasm_equals_native_with_default_parameters() {
    assert_same(&[], Mix::Realistic);
}

#[test]
fn wasm_equals_native_with_fig_profile() {
    assert_same(&[("profile", "fig")], Mix::Realistic);
}

#[test]
fn wasm_equals_native_with_every_parameter_set() {
    assert_same(
        &[
            ("event_types", "*"),
            ("exclude_services", "api_request, detections"),
            ("carry_raw", "false"),
            ("recipient_account_id", "111122223333"),
            ("event_source", "crowdstrike.falcon"),
        ],
        Mix::Realistic,
    );
    assert_same(&[("include_services", "CrowdStrike Authentication")], Mix::Audit);
}

#[test]
fn default_filter_keeps_exactly_the_user_activity_events() {
    let records = corpus(2_000, Mix::Realistic);
    let mut chain = chain("wasm32-wasip1", &[]).expect("chain");
    let out = through_wasm(&mut chain, &records);
    let user_activity = records
        .iter()
        .filter(|(_, v)| {
            let text = String::from_utf8_lossy(v);
            text.contains("\"eventType\":\"AuthActivityAuditEvent\"")
                || text.contains("\"eventType\":\"UserActivityAuditEvent\"")
        })
        .count();
    assert_eq!(out.len(), user_activity);
    assert!(out.len() > 500 && out.len() < 1_000, "{} of 2,000", out.len());
}

#[test]
fn bad_parameters_fail_at_start_naming_the_key() {
    for (params, key) in [
        (vec![("profil", "fig")], "profil"),
        (vec![("carry_raw", "perhaps")], "carry_raw"),
        (vec![("recipient_account_id", "123")], "recipient_account_id"),
    ] {
        let err = chain("wasm32-wasip1", &params).expect_err("must fail");
        assert!(format!("{err:#}").contains(key), "{err:#}");
    }
}

#[test]
fn a_failing_or_trapping_record_is_isolated() {
    let wasm = std::fs::read(wasm_path("test-faults", "test_faults.wasm", "wasm32-wasip1")).expect("wasm");
    let params = BTreeMap::from([
        ("fail_on".to_string(), "FAIL".to_string()),
        ("trap_on".to_string(), "TRAP".to_string()),
    ]);
    let spec = ModuleSpec {
        name: "test-faults".into(),
        params,
        wasm,
    };
    let mut chain = TransformChain::new(&SmartEngine::new(), vec![spec]).expect("chain");
    let values = [&b"a"[..], b"FAIL", b"b", b"TRAP", b"c"];
    let input: Vec<InputRecord<'_>> = values
        .iter()
        .map(|v| InputRecord {
            key: None,
            value: v,
            timestamp_ms: 0,
        })
        .collect();
    let out = chain.process(&input).expect("engine");
    let passed: Vec<&[u8]> = out.outputs.iter().map(|o| o.value.as_slice()).collect();
    assert_eq!(passed, vec![&b"a"[..], b"b", b"c"]);
    assert_eq!(out.failures.iter().map(|f| f.index).collect::<Vec<_>>(), vec![1, 3]);
    assert!(
        out.failures[0].reason.contains("failure requested by marker FAIL"),
        "{}",
        out.failures[0].reason
    );
    assert!(out.failures[1].reason.contains("trapped"), "{}", out.failures[1].reason);
    let again = chain.process(&input[..1]).expect("usable after a trap");
    assert_eq!(again.outputs.len(), 1);
}

/// The module works in a small, steady amount of memory: 64 MB of output pass
/// through a chain allowed 4 MiB, in batches of 1,000 events (a module with
/// the stock macro glue needs more than that per call).
#[test]
fn long_runs_do_not_grow_module_memory() {
    let records = corpus(1_000, Mix::Audit);
    let spec = ModuleSpec {
        name: "falcon-audit-to-cloudtrail".into(),
        params: BTreeMap::new(),
        wasm: audit_wasm("wasm32-wasip1"),
    };
    let mut chain = TransformChain::with_memory_limit(&SmartEngine::new(), vec![spec], 4 * 1024 * 1024).expect("chain");
    let mut emitted_bytes = 0;
    while emitted_bytes < 64 * 1024 * 1024 {
        let input: Vec<InputRecord<'_>> = records
            .iter()
            .map(|(k, v)| InputRecord {
                key: Some(k),
                value: v,
                timestamp_ms: TIMESTAMP,
            })
            .collect();
        let out = chain.process(&input).expect("engine keeps working");
        assert!(out.failures.is_empty(), "{:?}", out.failures.first());
        emitted_bytes += out.outputs.iter().map(|o| o.value.len()).sum::<usize>();
    }
}

fn shared_chain() -> &'static Mutex<TransformChain> {
    static CHAIN: std::sync::OnceLock<Mutex<TransformChain>> = std::sync::OnceLock::new();
    CHAIN.get_or_init(|| {
        Mutex::new(chain("wasm32-wasip1", &[("event_types", "*"), ("exclude_services", "")]).expect("chain"))
    })
}

/// Runs inputs through the wasm module: it must neither trap nor error, and
/// everything it emits must pass the schema validator.
fn never_fails(values: &[Vec<u8>], key: Option<&[u8]>) {
    let input: Vec<InputRecord<'_>> = values
        .iter()
        .map(|v| InputRecord {
            key,
            value: v,
            timestamp_ms: TIMESTAMP,
        })
        .collect();
    let out = shared_chain().lock().expect("lock").process(&input).expect("engine");
    assert!(out.failures.is_empty(), "failures: {:?}", out.failures);
    for o in out.outputs {
        let text = std::str::from_utf8(&o.value).expect("utf8 output");
        validate_event_data(text, ValidationOptions::AS_EMITTED).unwrap_or_else(|v| panic!("{v}: {text}"));
    }
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(serde_json::Value::from),
        ".{0,40}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            prop::collection::btree_map(".{0,12}", inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Falcon-shaped events whose every known field can hold any JSON value.
fn falcon_shaped() -> impl Strategy<Value = serde_json::Value> {
    let field = |name: &'static str| (Just(name), prop::option::of(json_value()));
    let event_fields = (
        field("UserId"),
        field("UserIp"),
        field("OperationName"),
        field("ServiceName"),
        field("Success"),
        field("UTCTimestamp"),
        field("AuditKeyValues"),
        field("Attributes"),
        field("Message"),
    );
    let meta_fields = (
        field("customerIDString"),
        field("offset"),
        field("eventCreationTime"),
        field("version"),
    );
    let types = prop_oneof![
        Just(serde_json::json!("AuthActivityAuditEvent")),
        Just(serde_json::json!("UserActivityAuditEvent")),
        json_value(),
    ];
    (event_fields, meta_fields, types).prop_map(|(e, m, t)| {
        let mut event = serde_json::Map::new();
        for (k, v) in [e.0, e.1, e.2, e.3, e.4, e.5, e.6, e.7, e.8] {
            if let Some(v) = v {
                event.insert(k.to_string(), v);
            }
        }
        let mut metadata = serde_json::Map::new();
        metadata.insert("eventType".into(), t);
        for (k, v) in [m.0, m.1, m.2, m.3] {
            if let Some(v) = v {
                metadata.insert(k.to_string(), v);
            }
        }
        serde_json::json!({"metadata": metadata, "event": event})
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_fail(values in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..8)) {
        never_fails(&values, None);
    }

    #[test]
    fn arbitrary_json_never_fails(values in prop::collection::vec(json_value(), 1..8), key in prop::option::of(".{0,20}")) {
        let values: Vec<Vec<u8>> = values.iter().map(|v| v.to_string().into_bytes()).collect();
        never_fails(&values, key.as_ref().map(|k| k.as_bytes()));
    }

    #[test]
    fn arbitrary_falcon_shaped_events_never_fail(values in prop::collection::vec(falcon_shaped(), 1..8)) {
        let values: Vec<Vec<u8>> = values.iter().map(|v| v.to_string().into_bytes()).collect();
        never_fails(&values, Some(b"3_77"));
    }
}

#[test]
fn sm_test_command_prints_what_the_module_emits() {
    let records = corpus(300, Mix::Realistic);
    let input: Vec<u8> = records
        .iter()
        .flat_map(|(_, v)| v.iter().copied().chain(std::iter::once(b'\n')))
        .collect();
    let wasm = wasm_path(
        "falcon-audit-to-cloudtrail",
        "falcon_audit_to_cloudtrail.wasm",
        "wasm32-wasip1",
    );
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_falcon-lake"))
        .args(["sm", "test", "--wasm"])
        .arg(&wasm)
        .args(["-e", "profile=fig", "--partition", "2"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    {
        use std::io::Write;
        child.stdin.take().expect("stdin").write_all(&input).expect("write");
    }
    let output = child.wait_with_output().expect("run");
    assert!(output.status.success());
    let keyed: Vec<(Vec<u8>, Vec<u8>)> = records
        .iter()
        .map(|(_, v)| {
            let offset = falcon_lake::audit::event::probe_offset(v)
                .expect("event")
                .expect("offset");
            (SourceKey::new(2, offset).encode(), v.clone())
        })
        .collect();
    let expected = native(&MappingParams::for_profile(falcon_lake::audit::Profile::Fig), &keyed);
    let lines: Vec<serde_json::Value> = String::from_utf8(output.stdout)
        .expect("utf8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), expected.len());
    for (line, (key, value)) in lines.iter().zip(&expected) {
        assert_eq!(line["key"].as_str().map(str::as_bytes), Some(key.as_slice()));
        assert_eq!(line["value"].as_str().map(str::as_bytes), Some(value.as_slice()));
    }

    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_falcon-lake"))
        .args(["sm", "test", "--wasm"])
        .arg(&wasm)
        .args(["-e", "profile=fog"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run");
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("parameter `profile`"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}
