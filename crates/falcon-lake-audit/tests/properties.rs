//! Property tests of the native mapping: it never panics, whatever the input,
//! and whatever it emits passes the Open Audit Events validator.

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
