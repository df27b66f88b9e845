//! Property tests of the native mapping: it never panics, whatever the input,
//! and whatever it emits passes the Open Audit Events validator.

use falcon_lake_audit::event::FalconEvent;
use falcon_lake_audit::{
    map_record, validate_event_data, MappingParams, Outcome, Profile, RecordContext, ValidationOptions,
};
use proptest::prelude::*;

fn check(params: &MappingParams, key: Option<&[u8]>, value: &[u8], timestamp_ms: i64) {
    let ctx = RecordContext { key, timestamp_ms };
    if let Outcome::Emit(audit) = map_record(params, &ctx, value) {
        assert!(falcon_lake_audit::id::is_valid_id(&audit.id), "bad id {:?}", audit.id);
        if let Err(v) = validate_event_data(&audit.event_data, ValidationOptions::AS_EMITTED) {
            panic!("{v}: {}", audit.event_data);
        }
    }
}

fn all_types() -> MappingParams {
    MappingParams {
        event_types: None,
        exclude_services: Vec::new(),
        ..MappingParams::default()
    }
}

/// JSON texts of many types, for any field.
fn any_field() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(r#""x""#.to_string()),
        Just("null".to_string()),
        Just("7".to_string()),
        Just("-1".to_string()),
        Just("1.5e300".to_string()),
        Just("[1]".to_string()),
        Just("{}".to_string()),
        Just(r#""""#.to_string()),
        Just(r#""::1""#.to_string()),
        Just(r#""2001:db8::1""#.to_string()),
        any::<i64>().prop_map(|t| t.to_string()),
        "[a-zA-Z0-9 @:._-]{0,40}".prop_map(|s| format!("\"{s}\"")),
        "[\\u{0}-\\u{ffff}]{0,20}".prop_map(|s| serde_json::Value::from(s).to_string()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes(
        value in prop::collection::vec(any::<u8>(), 0..400),
        key in prop::option::of(prop::collection::vec(any::<u8>(), 0..20)),
        ts in any::<i64>(),
    ) {
        check(&all_types(), key.as_deref(), &value, ts);
    }

    #[test]
    fn any_falcon_like_event(
        event_type in prop_oneof![Just("AuthActivityAuditEvent".to_string()), "[A-Za-z]{0,10}"],
        user in any_field(),
        ip in any_field(),
        time in any_field(),
        offset in any_field(),
        kv in prop_oneof![
            Just("[]".to_string()),
            Just(r#""n/a""#.to_string()),
            Just(r#"[{"Key":1},{"ValueString":null},5,{"Key":"k","ValueString":"v"}]"#.to_string()),
            any_field(),
        ],
        success in any_field(),
        attributes in any_field(),
        fig in any::<bool>(),
        ts in any::<i64>(),
    ) {
        let text = format!(
            r#"{{"event":{{"UserId":{user},"UserIp":{ip},"UTCTimestamp":{time},"AuditKeyValues":{kv},"Success":{success},"Attributes":{attributes},"OperationName":{user},"ServiceName":{user},"Message":{user}}},"metadata":{{"eventType":"{event_type}","offset":{offset},"eventCreationTime":{time},"customerIDString":{user},"version":{user}}}}}"#
        );
        let mut params = all_types();
        if fig {
            params.profile = Profile::Fig;
        }
        check(&params, Some(b"1_2"), text.as_bytes(), ts);
    }
}

/// The one-pass scanner and the `serde_json` reader agree on every input: the
/// scanner either gives up or gives exactly the reference's answer.
fn same_reading(text: &str) {
    let reference = FalconEvent::parse_reference(text);
    if let Some(fast) = FalconEvent::parse_fast(text) {
        assert_eq!(Some(&fast), reference.as_ref(), "{text}");
    }
    assert_eq!(FalconEvent::parse(text), reference, "{text}");
}

/// JSON text fragments of every kind, the awkward ones included.
fn json_text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        Just("true".to_string()),
        Just("false".to_string()),
        Just("-0".to_string()),
        Just("0".to_string()),
        Just("1.5e300".to_string()),
        Just("1e400".to_string()),
        Just("12345678901234567890".to_string()),
        Just("123456789012345678".to_string()),
        Just("-42".to_string()),
        Just(r#""\ud83d\ude00""#.to_string()),
        Just(r#""\ud800""#.to_string()),
        Just(r#""a\u0026b\n\"\\\/""#.to_string()),
        Just(r#"" 17 ""#.to_string()),
        Just(r#""TRUE""#.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| f.to_string()),
        "[\\u{0}-\\u{ffff}]{0,12}".prop_map(|s| serde_json::Value::from(s).to_string()),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let key = prop_oneof![
            Just("Key".to_string()),
            Just("ValueString".to_string()),
            Just("user_agent".to_string()),
            Just("UserId".to_string()),
            Just("eventType".to_string()),
            "[a-z]{0,6}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec((key, inner), 0..5).prop_map(|v| {
                let fields: Vec<String> = v.iter().map(|(k, v)| format!("{:?}:{v}", k)).collect();
                format!("{{{}}}", fields.join(","))
            }),
        ]
    })
}

const FIELDS: [&str; 21] = [
    "UserId",
    "UserIp",
    "OperationName",
    "ServiceName",
    "Success",
    "UTCTimestamp",
    "Message",
    "AuditKeyValues",
    "Attributes",
    "SourceIp",
    "SessionId",
    "HostnameField",
    "UserName",
    "AgentIdString",
    "StartTimestamp",
    "EndTimestamp",
    "Commands",
    "customerIDString",
    "offset",
    "eventType",
    "eventCreationTime",
];

/// Falcon-shaped texts: known fields (some twice) holding any JSON, in any order.
fn falcon_text() -> impl Strategy<Value = String> {
    let field = || (prop::sample::select(&FIELDS[..]), json_text());
    (
        prop::collection::vec(field(), 0..10),
        prop::collection::vec(field(), 0..5),
        any::<bool>(),
        prop_oneof![Just(""), Just(" "), Just("\n\t")],
    )
        .prop_map(|(event, metadata, event_first, ws)| {
            let object = |fields: &Vec<(&str, String)>| {
                let inner: Vec<String> = fields.iter().map(|(k, v)| format!("{ws}\"{k}\"{ws}:{ws}{v}")).collect();
                format!("{{{}}}", inner.join(","))
            };
            let (e, m) = (object(&event), object(&metadata));
            if event_first {
                format!(r#"{{"event":{e},"other":[1,{{"a":2.5}}],"metadata":{m}}}"#)
            } else {
                format!(r#"{{"metadata":{m},"event":{e}}}"#)
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3_000, ..ProptestConfig::default() })]

    #[test]
    fn scanner_agrees_on_falcon_shaped_text(text in falcon_text()) {
        same_reading(&text);
    }

    /// Broken texts: cut short, or with a byte replaced or inserted anywhere.
    #[test]
    fn scanner_agrees_on_damaged_text(text in falcon_text(), at in any::<prop::sample::Index>(), byte in prop::sample::select(&b"{}[]\",:\\ 0-.eE\x01a"[..]), how in 0..3u8) {
        let mut bytes = text.into_bytes();
        let at = at.index(bytes.len() + 1);
        match how {
            0 => bytes.truncate(at),
            1 if at < bytes.len() => bytes[at] = byte,
            _ => bytes.insert(at, byte),
        }
        if let Ok(text) = String::from_utf8(bytes) {
            same_reading(&text);
        }
    }

    #[test]
    fn scanner_agrees_on_any_text(text in "\\PC{0,60}") {
        same_reading(&text);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    /// The string writer writes a literal of the size `escaped_len` predicts,
    /// and it reads back as the string: whatever bytes, wherever in the
    /// eight-byte words the escapes fall.
    #[test]
    fn string_literals_round_trip(s in "(?s).{0,40}|[\"\\\\\\x00-\\x1f a-zé]{0,40}") {
        let mut text = String::new();
        falcon_lake_audit::json::write_string(&mut text, &s);
        prop_assert_eq!(text.len(), falcon_lake_audit::json::escaped_len(&s));
        let back: String = serde_json::from_str(&text).expect("a JSON string");
        prop_assert_eq!(back, s);
    }
}
