//! Property tests of the OCSF mapping: it never panics, whatever the input, and
//! every event it emits passes the validator, keyed by its `metadata.uid`.

use falcon_lake_ocsf::{validate_ocsf, Mapper, OcsfParams, Outcome, RecordContext};
use proptest::prelude::*;

fn every_type() -> Mapper {
    Mapper::new(OcsfParams {
        event_types: None,
        exclude_services: Vec::new(),
        carry_raw: true,
        ..OcsfParams::default()
    })
}

fn check(mapper: &Mapper, key: Option<&[u8]>, value: &[u8], timestamp_ms: i64) {
    let ctx = RecordContext { key, timestamp_ms };
    if let Outcome::Emit(record) = mapper.map(&ctx, value) {
        assert!(
            falcon_lake_audit::id::is_valid_id(&record.id),
            "bad uid {:?}",
            record.id
        );
        if let Err(v) = validate_ocsf(&record.event_data) {
            panic!("{v}: {}", record.event_data);
        }
        let event: serde_json::Value = serde_json::from_str(&record.event_data).expect("json");
        assert_eq!(event["metadata"]["uid"].as_str(), Some(record.id.as_str()));
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
        Just(r#""GET""#.to_string()),
        Just(r#""401""#.to_string()),
        Just(r#""a@b.c""#.to_string()),
        Just(r#""a,b, ,c""#.to_string()),
        any::<i64>().prop_map(|t| t.to_string()),
        "[a-zA-Z0-9 @:._/-]{0,40}".prop_map(|s| format!("\"{s}\"")),
        "[\\u{0}-\\u{ffff}]{0,20}".prop_map(|s| serde_json::Value::from(s).to_string()),
    ]
}

fn event_type() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("AuthActivityAuditEvent".to_string()),
        Just("UserActivityAuditEvent".to_string()),
        Just("APIActivityAuditEvent".to_string()),
        Just("RemoteResponseSessionStartEvent".to_string()),
        Just("RemoteResponseSessionEndEvent".to_string()),
        "[A-Za-z]{0,10}",
    ]
}

fn operation() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(r#""userAuthenticate""#.to_string()),
        Just(r#""twoFactorAuthenticate""#.to_string()),
        Just(r#""saml2Assert""#.to_string()),
        Just(r#""streamStarted""#.to_string()),
        Just(r#""createUser""#.to_string()),
        Just(r#""changePassword""#.to_string()),
        Just(r#""grantUserRoles""#.to_string()),
        Just(r#""revokeCustomerSubscriptions""#.to_string()),
        Just(r#""CreateAPIClient""#.to_string()),
        Just(r#""detection_update""#.to_string()),
        any_field(),
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
        check(&every_type(), key.as_deref(), &value, ts);
    }

    #[test]
    fn any_falcon_like_event(
        event_type in event_type(),
        op in operation(),
        user in any_field(),
        ip in any_field(),
        time in any_field(),
        offset in any_field(),
        kv in prop_oneof![
            Just("[]".to_string()),
            Just(r#""n/a""#.to_string()),
            Just(r#"[{"Key":1},{"ValueString":null},5,{"Key":"k","ValueString":"v"}]"#.to_string()),
            Just(r#"[{"Key":"roles","ValueString":"a,b"},{"Key":"target_name","ValueString":"x@y.z"},{"Key":"detection_id","ValueString":"d"}]"#.to_string()),
            any_field(),
        ],
        success in any_field(),
        attributes in prop_oneof![
            Just(r#"{"request_method":"POST","request_path":"/x","status_code":"200","elapsed_microseconds":"-5","APIClientID":"c"}"#.to_string()),
            any_field(),
        ],
        ts in any::<i64>(),
    ) {
        let text = format!(
            r#"{{"event":{{"UserId":{user},"UserIp":{ip},"UTCTimestamp":{time},"AuditKeyValues":{kv},"Success":{success},"Attributes":{attributes},"OperationName":{op},"ServiceName":{user},"Message":{user},"SourceIp":{ip},"SessionId":{user},"HostnameField":{user},"UserName":{user},"AgentIdString":{user},"StartTimestamp":{time},"EndTimestamp":{time},"Commands":{attributes}}},"metadata":{{"eventType":"{event_type}","offset":{offset},"eventCreationTime":{time},"customerIDString":{user},"version":{user}}}}}"#
        );
        check(&every_type(), Some(b"1_2"), text.as_bytes(), ts);
    }
}
