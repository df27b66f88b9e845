//! Both SmartModules (CloudTrail and OCSF) built for wasm, run by
//! `fluvio-smartengine` through the sink's chain, against their native mappings
//! on the same inputs; every emitted event checked by its schema's validator;
//! property tests; the long-run memory test; `falcon-lake sm test`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use fluvio_smartengine::SmartEngine;
use proptest::prelude::*;

use falcon_lake::audit::{validate_event_data, MappingParams, Outcome, RecordContext, SourceKey, ValidationOptions};
use falcon_lake::emulate::falcon::{Generator, Mix};
use falcon_lake::ocsf::{validate_ocsf, OcsfParams};
use falcon_lake::transform::{ChainStats, InputRecord, ModuleSpec, OutputRecord, TransformChain};

const TIMESTAMP: i64 = 1_767_225_600_000;
const TARGETS: [&str; 2] = ["wasm32-wasip1", "wasm32-unknown-unknown"];

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

/// One of the two bundled modules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Module {
    CloudTrail,
    Ocsf,
}

const MODULES: [Module; 2] = [Module::CloudTrail, Module::Ocsf];

/// Either module's native mapping of one record.
type NativeMapper = dyn Fn(&RecordContext<'_>, &[u8]) -> Outcome;

impl Module {
    fn dir(self) -> &'static str {
        match self {
            Module::CloudTrail => "falcon-audit-to-cloudtrail",
            Module::Ocsf => "falcon-audit-to-ocsf",
        }
    }

    fn wasm(self, target: &str) -> Vec<u8> {
        let file = format!("{}.wasm", self.dir().replace('-', "_"));
        std::fs::read(wasm_path(self.dir(), &file, target)).expect("wasm")
    }

    fn spec(self, target: &str, params: &[(&str, &str)]) -> ModuleSpec {
        ModuleSpec {
            name: format!("falcon-lake/{}@0.1.0", self.dir()),
            params: param_map(params),
            wasm: self.wasm(target),
        }
    }

    fn chain(self, target: &str, params: &[(&str, &str)]) -> anyhow::Result<TransformChain> {
        TransformChain::new(&SmartEngine::new(), vec![self.spec(target, params)])
    }

    /// The native mapping's outputs (key, value), in order.
    fn native(self, params: &[(&str, &str)], records: &[(Vec<u8>, Vec<u8>)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let map = param_map(params);
        let mapper: Box<NativeMapper> = match self {
            Module::CloudTrail => {
                let mapper = falcon_lake::audit::Mapper::new(MappingParams::from_map(&map).expect("params"));
                Box::new(move |ctx, value| mapper.map(ctx, value))
            }
            Module::Ocsf => {
                let mapper = falcon_lake::ocsf::Mapper::new(OcsfParams::from_map(&map).expect("params"));
                Box::new(move |ctx, value| mapper.map(ctx, value))
            }
        };
        records
            .iter()
            .filter_map(|(key, value)| {
                let ctx = RecordContext {
                    key: Some(key),
                    timestamp_ms: TIMESTAMP,
                };
                match mapper(&ctx, value) {
                    Outcome::Emit(out) => Some((out.id.into_bytes(), out.event_data.into_bytes())),
                    Outcome::Skip(_) => None,
                }
            })
            .collect()
    }

    /// Panics unless `value` passes the module's schema validator.
    fn validate(self, value: &[u8]) {
        let text = std::str::from_utf8(value).expect("utf8 output");
        let checked = match self {
            Module::CloudTrail => validate_event_data(text, ValidationOptions::AS_EMITTED).map_err(|v| v.to_string()),
            Module::Ocsf => validate_ocsf(text).map_err(|v| v.to_string()),
        };
        if let Err(violation) = checked {
            panic!("{self:?}: {violation}: {text}");
        }
    }
}

fn param_map(params: &[(&str, &str)]) -> BTreeMap<String, String> {
    params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
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

fn inputs<'a>(records: &'a [(Vec<u8>, Vec<u8>)]) -> Vec<InputRecord<'a>> {
    records
        .iter()
        .map(|(k, v)| InputRecord {
            key: Some(k),
            value: v,
            timestamp_ms: TIMESTAMP,
        })
        .collect()
}

/// Runs records through the chain in batches of 500; each output comes with the
/// index of its source record in `records`.
fn through_wasm(chain: &mut TransformChain, records: &[(Vec<u8>, Vec<u8>)]) -> Vec<(usize, OutputRecord)> {
    let mut outputs = Vec::new();
    for (n, batch) in records.chunks(500).enumerate() {
        let out = chain.process(&inputs(batch)).expect("engine");
        assert!(out.failures.is_empty(), "the module failed: {:?}", out.failures);
        for output in out.outputs {
            let hint = output.source_hint.expect("filter_map keeps the source");
            outputs.push((n * 500 + hint, output));
        }
    }
    outputs
}

/// The wasm module, on both targets, emits exactly what the native mapping
/// does, each event valid, each traced to its record; returns how many.
fn assert_same(module: Module, params: &[(&str, &str)], mix: Mix) -> usize {
    let records = corpus(3_000, mix);
    let expected = module.native(params, &records);
    assert!(!expected.is_empty());
    for target in TARGETS {
        let mut chain = module.chain(target, params).expect("chain");
        let got = through_wasm(&mut chain, &records);
        assert_eq!(
            got.len(),
            expected.len(),
            "{module:?} {target}: number of emitted records"
        );
        for ((source, g), (key, value)) in got.iter().zip(&expected) {
            assert_eq!(g.key.as_deref(), Some(key.as_slice()), "{module:?} {target}: key");
            assert_eq!(
                &g.value,
                value,
                "{module:?} {target}: value of {}",
                String::from_utf8_lossy(key)
            );
            module.validate(&g.value);
            // The id is `[<cid>_]<partition>_<offset>` of the record it came from.
            assert!(
                key.ends_with(&records[*source].0),
                "{module:?} {target}: output traced to the wrong record"
            );
        }
        assert_eq!(chain.stats().fallbacks, 0, "{module:?} {target}: {:?}", chain.stats());
    }
    expected.len()
}

#[test]
fn wasm_equals_native_with_default_parameters() {
    for module in MODULES {
        assert_same(module, &[], Mix::Realistic);
        assert_same(module, &[], Mix::Audit);
    }
}

#[test]
fn wasm_equals_native_with_fig_profile() {
    assert_same(Module::CloudTrail, &[("profile", "fig")], Mix::Realistic);
}

#[test]
fn wasm_equals_native_with_every_parameter_set() {
    assert_same(
        Module::CloudTrail,
        &[
            ("event_types", "*"),
            ("exclude_services", "api_request, detections"),
            ("carry_raw", "false"),
            ("recipient_account_id", "111122223333"),
            ("event_source", "crowdstrike.falcon"),
        ],
        Mix::Realistic,
    );
    assert_same(
        Module::CloudTrail,
        &[("include_services", "CrowdStrike Authentication")],
        Mix::Audit,
    );
    assert_same(
        Module::Ocsf,
        &[
            ("event_types", "*"),
            ("exclude_services", ""),
            ("carry_raw", "true"),
            ("ocsf_version", "1.8.0"),
        ],
        Mix::Realistic,
    );
    assert_same(
        Module::Ocsf,
        &[("include_services", "CrowdStrike Authentication")],
        Mix::Audit,
    );
}

#[test]
fn the_api_request_log_is_opt_in_in_both_modules() {
    let api = [("event_types", "APIActivityAuditEvent")];
    for module in MODULES {
        let mapped = assert_same(module, &api, Mix::Realistic);
        assert!(mapped > 200, "{module:?}: {mapped} API requests of 3,000 events");
    }
    let records = corpus(3_000, Mix::Realistic);
    let ocsf = Module::Ocsf.native(&api, &records);
    for (_, value) in &ocsf {
        let event: serde_json::Value = serde_json::from_slice(value).expect("json");
        assert_eq!(event["class_uid"], 6003);
        assert!(event["http_request"]["url"]["path"].is_string(), "{event}");
    }
    let cloudtrail = Module::CloudTrail.native(&api, &records);
    let first: serde_json::Value = serde_json::from_slice(&cloudtrail[0].1).expect("json");
    assert!(
        first["eventName"].as_str().is_some_and(|n| n.starts_with("GET /")),
        "{first}"
    );
}

/// The default filter of both modules: user activity and Real Time Response
/// sessions, without the stream's own audit events or the API request log.
#[test]
fn default_filter_keeps_exactly_the_user_activity_events() {
    let records = corpus(2_000, Mix::Realistic);
    let selected = records
        .iter()
        .filter(|(_, v)| {
            let text = String::from_utf8_lossy(v);
            [
                "AuthActivityAuditEvent",
                "UserActivityAuditEvent",
                "RemoteResponseSessionStartEvent",
                "RemoteResponseSessionEndEvent",
            ]
            .iter()
            .any(|t| text.contains(&format!("\"eventType\":\"{t}\"")))
        })
        .count();
    for module in MODULES {
        let mut chain = module.chain("wasm32-wasip1", &[]).expect("chain");
        let out = through_wasm(&mut chain, &records);
        assert_eq!(out.len(), selected, "{module:?}");
    }
    assert!(selected > 600 && selected < 1_100, "{selected} of 2,000");
}

#[test]
fn every_ocsf_class_comes_out_of_the_corpus() {
    let records = corpus(3_000, Mix::Realistic);
    let all = [("event_types", "*"), ("exclude_services", "")];
    let mut classes = BTreeMap::new();
    for (_, value) in Module::Ocsf.native(&all, &records) {
        let event: serde_json::Value = serde_json::from_slice(&value).expect("json");
        let class = (event["class_uid"].as_u64(), event["activity_id"].as_u64());
        *classes.entry(class).or_insert(0) += 1;
    }
    for class in [0, 3001, 3002, 3005, 6003] {
        assert!(
            classes.keys().any(|(c, _)| *c == Some(class)),
            "class {class}: {classes:?}"
        );
    }
    assert!(
        classes.contains_key(&(Some(3002), Some(2))),
        "session ends: {classes:?}"
    );
    assert!(
        classes.contains_key(&(Some(6003), Some(99))),
        "unknown operations kept: {classes:?}"
    );
}

/// The mappings' speed rests on the one-pass scanner reading events itself;
/// it does for every generated event, and reads them as `serde_json` does.
#[test]
fn the_scanner_reads_every_generated_event_itself() {
    use falcon_lake::audit::event::FalconEvent;
    for (_, value) in corpus(3_000, Mix::Realistic) {
        let text = std::str::from_utf8(&value).expect("utf8");
        let fast = FalconEvent::parse_fast(text);
        assert!(fast.is_some(), "left to the reference: {text}");
        assert_eq!(fast, FalconEvent::parse_reference(text), "{text}");
    }
}

#[test]
fn bad_parameters_fail_at_start_naming_the_key() {
    for (module, params, key) in [
        (Module::CloudTrail, vec![("profil", "fig")], "profil"),
        (Module::CloudTrail, vec![("carry_raw", "perhaps")], "carry_raw"),
        (
            Module::CloudTrail,
            vec![("recipient_account_id", "123")],
            "recipient_account_id",
        ),
        (Module::Ocsf, vec![("profile", "fig")], "profile"),
        (Module::Ocsf, vec![("ocsf_version", "1.1.0")], "ocsf_version"),
        (Module::Ocsf, vec![("carry_raw", "perhaps")], "carry_raw"),
    ] {
        let err = module.chain("wasm32-wasip1", &params).expect_err("must fail");
        assert!(format!("{err:#}").contains(key), "{module:?}: {err:#}");
    }
}

fn test_faults(params: &[(&str, &str)]) -> ModuleSpec {
    let wasm = std::fs::read(wasm_path("test-faults", "test_faults.wasm", "wasm32-wasip1")).expect("wasm");
    ModuleSpec {
        name: "test-faults".into(),
        params: param_map(params),
        wasm,
    }
}

#[test]
fn a_failing_or_trapping_record_is_isolated_and_counted() {
    let spec = test_faults(&[("fail_on", "FAIL"), ("trap_on", "TRAP")]);
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
    // The batch-level error sent the batch one by one; the trapping record
    // trapped again and the instance was started afresh.
    assert_eq!(
        chain.stats(),
        ChainStats {
            batches: 1,
            records: 5,
            fallbacks: 1,
            reinstantiations: 1,
            traps: 1,
            module_errors: 2,
        }
    );
    let again = chain.process(&input[..1]).expect("usable after a trap");
    assert_eq!(again.outputs.len(), 1);
    assert_eq!(chain.stats().fallbacks, 1, "a healthy batch takes one call");
}

/// Runs batches of 1,000 events through a chain allowed `memory_limit` bytes
/// until 64 MB of output came out; returns what the chain saw. A module that
/// leaks, or traps, shows up in the counts even though the chain recovers from it.
fn long_run(spec: ModuleSpec, records: &[(Vec<u8>, Vec<u8>)], memory_limit: usize) -> ChainStats {
    let mut chain = TransformChain::with_memory_limit(&SmartEngine::new(), vec![spec], memory_limit).expect("chain");
    let mut emitted_bytes = 0;
    while emitted_bytes < 64 * 1024 * 1024 {
        let out = chain.process(&inputs(records)).expect("engine keeps working");
        assert!(out.failures.is_empty(), "{:?}", out.failures.first());
        emitted_bytes += out.outputs.iter().map(|o| o.value.len()).sum::<usize>();
    }
    chain.stats()
}

/// The modules work in a small, steady amount of memory: the glue reuses its
/// output buffer, so a batch of 1,000 events needs its input, its output and
/// the 1 MiB stack. Held to 16 MiB (the sink's default is 256 MiB), a leak of a
/// few hundred bytes per record fills it within the run, and no call may trap:
/// no batch is ever reprocessed and no instance restarted over the whole run.
#[test]
fn long_runs_do_not_grow_module_memory() {
    let records = corpus(1_000, Mix::Audit);
    for module in MODULES {
        let stats = long_run(module.spec("wasm32-wasip1", &[]), &records, 16 * 1024 * 1024);
        assert!(stats.batches >= 30, "{module:?}: {stats:?}");
        assert_eq!(
            (
                stats.fallbacks,
                stats.reinstantiations,
                stats.traps,
                stats.module_errors
            ),
            (0, 0, 0, 0),
            "{module:?}: {stats:?}"
        );
    }
}

/// The long-run test can fail: at the chain's default memory limit, a
/// pass-through module runs the whole way without a trap, and the same module
/// leaking 16 KiB per record runs out of memory after a dozen batches. The
/// chain hides that from the output (each trapped batch is redone one record
/// at a time by a fresh instance), but not from its counts.
#[test]
fn the_long_run_test_sees_a_leaking_module() {
    let records = corpus(1_000, Mix::Audit);
    let limit = falcon_lake::transform::chain::DEFAULT_MEMORY_LIMIT;
    let steady = long_run(test_faults(&[]), &records, limit);
    assert_eq!((steady.fallbacks, steady.traps), (0, 0), "{steady:?}");
    let leaking = long_run(test_faults(&[("leak_bytes", "16384")]), &records, limit);
    assert!(
        leaking.traps > 0 && leaking.reinstantiations > 0 && leaking.fallbacks > 0,
        "{leaking:?}"
    );
}

fn shared_chain(module: Module) -> &'static Mutex<TransformChain> {
    static CHAINS: std::sync::OnceLock<[Mutex<TransformChain>; 2]> = std::sync::OnceLock::new();
    let chains = CHAINS.get_or_init(|| {
        let every_type = [("event_types", "*"), ("exclude_services", ""), ("carry_raw", "true")];
        MODULES.map(|m| Mutex::new(m.chain("wasm32-wasip1", &every_type).expect("chain")))
    });
    &chains[MODULES.iter().position(|m| *m == module).unwrap_or(0)]
}

/// Runs inputs through both wasm modules: neither may trap or error, and
/// everything they emit must pass its validator.
fn never_fails(values: &[Vec<u8>], key: Option<&[u8]>) {
    let input: Vec<InputRecord<'_>> = values
        .iter()
        .map(|v| InputRecord {
            key,
            value: v,
            timestamp_ms: TIMESTAMP,
        })
        .collect();
    for module in MODULES {
        let mut chain = shared_chain(module).lock().expect("lock");
        let out = chain.process(&input).expect("engine");
        assert!(out.failures.is_empty(), "{module:?} failures: {:?}", out.failures);
        assert_eq!(chain.stats().fallbacks, 0, "{module:?} trapped: {:?}", chain.stats());
        for o in out.outputs {
            module.validate(&o.value);
        }
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

/// Falcon-shaped events of every audit type whose every known field can hold any JSON value.
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
    let more_fields = (
        field("SourceIp"),
        field("SessionId"),
        field("HostnameField"),
        field("UserName"),
        field("StartTimestamp"),
        field("EndTimestamp"),
        field("Commands"),
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
        Just(serde_json::json!("APIActivityAuditEvent")),
        Just(serde_json::json!("RemoteResponseSessionStartEvent")),
        Just(serde_json::json!("RemoteResponseSessionEndEvent")),
        json_value(),
    ];
    (event_fields, more_fields, meta_fields, types).prop_map(|(e, x, m, t)| {
        let mut event = serde_json::Map::new();
        for (k, v) in [
            e.0, e.1, e.2, e.3, e.4, e.5, e.6, e.7, e.8, x.0, x.1, x.2, x.3, x.4, x.5, x.6,
        ] {
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

fn sm_test(wasm: &std::path::Path, args: &[&str], input: &[u8]) -> std::process::Output {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_falcon-lake"))
        .args(["sm", "test", "--wasm"])
        .arg(wasm)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    {
        use std::io::Write;
        child.stdin.take().expect("stdin").write_all(input).expect("write");
    }
    child.wait_with_output().expect("run")
}

fn lines_of(records: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    records
        .iter()
        .flat_map(|(_, v)| v.iter().copied().chain(std::iter::once(b'\n')))
        .collect()
}

#[test]
fn sm_test_command_prints_what_the_module_emits() {
    let records = corpus(300, Mix::Realistic);
    let wasm = wasm_path(
        "falcon-audit-to-cloudtrail",
        "falcon_audit_to_cloudtrail.wasm",
        "wasm32-wasip1",
    );
    let output = sm_test(&wasm, &["-e", "profile=fig", "--partition", "2"], &lines_of(&records));
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
    let expected = Module::CloudTrail.native(&[("profile", "fig")], &keyed);
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
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("300 records in, {} out, 0 failed", expected.len())),
        "{stderr}"
    );

    let bad = sm_test(&wasm, &["-e", "profile=fog"], b"");
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("parameter `profile`"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

/// An input the module filters entirely is not met with silence.
#[test]
fn sm_test_command_says_when_nothing_came_out() {
    let records: Vec<(Vec<u8>, Vec<u8>)> = corpus(300, Mix::Realistic)
        .into_iter()
        .filter(|(_, v)| String::from_utf8_lossy(v).contains("DetectionSummaryEvent"))
        .collect();
    assert!(!records.is_empty());
    let wasm = wasm_path("falcon-audit-to-ocsf", "falcon_audit_to_ocsf.wasm", "wasm32-wasip1");
    let output = sm_test(&wasm, &[], &lines_of(&records));
    assert!(output.status.success());
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("{} records in, 0 out, 0 failed", records.len())) && stderr.contains("event_types"),
        "{stderr}"
    );
}

/// `demo --module ocsf` runs the OCSF module into the CloudWatch Logs emulator
/// (the destination its format is for) and ends with the usual summary: every
/// expected event delivered, none twice, none dead-lettered.
#[test]
fn demo_with_the_ocsf_module_delivers_everything() {
    wasm_path("falcon-audit-to-ocsf", "falcon_audit_to_ocsf.wasm", "wasm32-wasip1");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_falcon-lake"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["demo", "--module", "ocsf", "--events", "600", "--timeout", "60s"])
        .output()
        .expect("demo runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.contains("delivered to CloudWatch Logs:"))
        .unwrap_or_else(|| panic!("{stdout}"));
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    assert!(numbers.len() >= 4 && numbers[0] > 0, "{line}");
    assert_eq!(
        (numbers[0], numbers[3]),
        (numbers[1], 0),
        "all expected, none twice: {line}"
    );
    assert!(stdout.contains("dead-lettered:             0"), "{stdout}");
}

/// CloudTrail Lake takes only Open Audit Events: the demo refuses to send it
/// OCSF instead of dead-lettering every event.
#[test]
fn demo_refuses_ocsf_into_cloudtrail_lake() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_falcon-lake"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["demo", "--module", "ocsf", "--sink", "cloudtrail"])
        .output()
        .expect("demo runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--sink cloudwatch"), "{stderr}");
}
