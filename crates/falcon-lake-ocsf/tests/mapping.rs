//! The OCSF mapping on the event shapes of the Falcon specification (§12, and
//! the public samples of the OCSF specification §2.4): class, activity and the
//! attributes of each, every emitted event checked by the validator.

use std::collections::BTreeMap;

use falcon_lake_ocsf::{validate_ocsf, Mapper, OcsfParams, Outcome, RecordContext, Skip};
use serde_json::{json, Value};

const CID: &str = "0123456789abcdef0123456789abcdef";

fn auth(op: &str, extra: Value) -> Value {
    let mut event = json!({
        "metadata": {"customerIDString": CID, "offset": 1001, "eventType": "AuthActivityAuditEvent",
            "eventCreationTime": 1_700_000_000_123_i64, "version": "1.0"},
        "event": {"UserId": "alice@example.com", "UserIp": "192.0.2.10", "OperationName": op,
            "ServiceName": "CrowdStrike Authentication", "Success": true, "UTCTimestamp": 1_700_000_001,
            "AuditKeyValues": [{"Key": "trace_id", "ValueString": "t-1"}]}
    });
    if let (Some(body), Some(extra)) = (event["event"].as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            body.insert(k.clone(), v.clone());
        }
    }
    event
}

fn mapper(params: &[(&str, &str)]) -> Mapper {
    let map: BTreeMap<String, String> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Mapper::new(OcsfParams::from_map(&map).expect("params"))
}

fn emit_with(mapper: &Mapper, event: &Value) -> (String, Value) {
    let ctx = RecordContext {
        key: Some(b"2_1001"),
        timestamp_ms: 1_600_000_000_000,
    };
    match mapper.map(&ctx, event.to_string().as_bytes()) {
        Outcome::Emit(record) => {
            validate_ocsf(&record.event_data).unwrap_or_else(|v| panic!("{v}: {}", record.event_data));
            (record.id, serde_json::from_str(&record.event_data).expect("json"))
        }
        Outcome::Skip(why) => panic!("skipped: {why:?}"),
    }
}

fn emit(event: &Value) -> Value {
    emit_with(&mapper(&[("event_types", "*")]), event).1
}

#[test]
fn a_login_is_an_authentication_logon() {
    let (uid, o) = emit_with(&Mapper::default(), &auth("userAuthenticate", json!({})));
    assert_eq!(uid, format!("{CID}_2_1001"), "the CloudTrail module's id");
    assert_eq!(o["metadata"]["uid"], uid.as_str());
    assert_eq!(o["class_uid"], 3002);
    assert_eq!(o["category_uid"], 3);
    assert_eq!(o["activity_id"], 1);
    assert_eq!(o["type_uid"], 300201);
    assert_eq!(o["type_name"], "Authentication: Logon");
    assert_eq!(o["severity_id"], 1);
    assert_eq!(o["status_id"], 1);
    assert_eq!(o["time"], 1_700_000_001_000_i64, "seconds become milliseconds");
    assert_eq!(o["message"], "CrowdStrike Authentication userAuthenticate");
    assert_eq!(o["metadata"]["version"], "1.5.0");
    assert_eq!(
        o["metadata"]["product"],
        json!({"name": "Falcon", "vendor_name": "CrowdStrike"})
    );
    assert_eq!(o["metadata"]["tenant_uid"], CID);
    assert_eq!(o["metadata"]["log_name"], "AuthActivityAuditEvent");
    assert_eq!(o["metadata"]["event_code"], "userAuthenticate");
    assert_eq!(o["metadata"]["logged_time"], 1_700_000_000_123_i64);
    assert_eq!(o["metadata"]["original_time"], "1700000001");
    assert_eq!(o["metadata"]["correlation_uid"], "t-1");
    assert_eq!(o["user"]["name"], "alice@example.com");
    assert_eq!(o["user"]["email_addr"], "alice@example.com");
    assert_eq!(o["user"]["type_id"], 1);
    assert_eq!(o["service"]["name"], "CrowdStrike Authentication");
    assert_eq!(o["is_mfa"], false);
    assert_eq!(o["src_endpoint"]["ip"], "192.0.2.10");
    assert_eq!(o["unmapped"]["audit_key_values"]["trace_id"], "t-1");
    assert!(o.get("raw_data").is_none(), "off by default");
}

#[test]
fn mfa_and_saml_logons_say_so() {
    let mfa = emit(&auth("twoFactorAuthenticate", json!({})));
    assert_eq!(
        (mfa["class_uid"].clone(), mfa["is_mfa"].clone()),
        (json!(3002), json!(true))
    );
    let saml = emit(&auth("saml2Assert", json!({})));
    assert_eq!(saml["auth_protocol_id"], 5);
    assert_eq!(saml["auth_protocol"], "SAML");
}

#[test]
fn a_failure_is_status_2_with_the_reason() {
    let o = emit(&auth(
        "userAuthenticate",
        json!({"Success": false, "Message": "invalid password"}),
    ));
    assert_eq!(o["status_id"], 2);
    assert_eq!(o["status"], "Failure");
    assert_eq!(o["status_detail"], "invalid password");
    let o = emit(&auth("changePassword", json!({"Success": false})));
    assert_eq!(o["status_detail"], "changePassword did not succeed");
    let mut unknown = auth("userAuthenticate", json!({}));
    unknown["event"].as_object_mut().expect("object").remove("Success");
    assert_eq!(emit(&unknown)["status_id"], 0);
}

#[test]
fn account_changes_name_target_and_actor() {
    let pairs = json!([{"Key": "target_name", "ValueString": "bob@example.com"},
        {"Key": "target_user_uuid", "ValueString": "uuid-bob"},
        {"Key": "actor_user_uuid", "ValueString": "uuid-alice"}]);
    for (op, activity) in [
        ("createUser", 1),
        ("activateUser", 2),
        ("changePassword", 3),
        ("requestResetPassword", 4),
        ("confirmResetPassword", 4),
        ("deactivateUser", 5),
        ("deleteUser", 6),
        ("updateUser", 99),
    ] {
        let o = emit(&auth(op, json!({"AuditKeyValues": pairs})));
        assert_eq!(o["class_uid"], 3001, "{op}");
        assert_eq!(o["activity_id"], activity, "{op}");
        assert_eq!(o["user"]["name"], "bob@example.com");
        assert_eq!(o["user"]["uid"], "uuid-bob");
        assert_eq!(o["actor"]["user"]["name"], "alice@example.com");
        assert_eq!(o["actor"]["user"]["uid"], "uuid-alice");
    }
    let own = emit(&auth("changePassword", json!({"AuditKeyValues": []})));
    assert_eq!(
        own["user"]["name"], "alice@example.com",
        "no target: the user changed their own"
    );
}

#[test]
fn role_changes_list_the_privileges() {
    let roles = json!([{"Key": "target_name", "ValueString": "bob@example.com"},
        {"Key": "roles", "ValueString": "custom_non_admin_role, billing_dashboard_admin,falconhost_admin"}]);
    let o = emit(&auth("grantUserRoles", json!({"AuditKeyValues": roles})));
    assert_eq!(o["class_uid"], 3005);
    assert_eq!(o["activity_id"], 1);
    assert_eq!(
        o["privileges"],
        json!(["custom_non_admin_role", "billing_dashboard_admin", "falconhost_admin"])
    );
    assert_eq!(emit(&auth("revokeUserRoles", json!({})))["activity_id"], 2);
    let update = emit(&auth("updateUserRoles", json!({})));
    assert_eq!(update["activity_id"], 99);
    assert_eq!(
        update["privileges"],
        json!([]),
        "required, even when the event names none"
    );
    let subs = json!([{"Key": "subscriptions", "ValueString": "falcon_insight,falcon_prevent"}]);
    let o = emit(&auth("grantCustomerSubscriptions", json!({"AuditKeyValues": subs})));
    assert_eq!(o["privileges"], json!(["falcon_insight", "falcon_prevent"]));
}

#[test]
fn api_clients_and_stream_sessions() {
    let created = json!([{"Key": "id", "ValueString": "client-1"}, {"Key": "name", "ValueString": "SIEM"}]);
    let o = emit(&auth(
        "CreateAPIClient",
        json!({"ServiceName": "Crowdstrike API Client", "AuditKeyValues": created}),
    ));
    assert_eq!(
        (o["class_uid"].clone(), o["activity_id"].clone()),
        (json!(6003), json!(1))
    );
    assert_eq!(
        o["resources"],
        json!([{"uid": "client-1", "name": "SIEM", "type": "API Client"}])
    );
    assert_eq!(o["api"]["operation"], "CreateAPIClient");
    assert_eq!(emit(&auth("DeleteAPIClients", json!({})))["activity_id"], 4);
    let stream = auth(
        "streamStarted",
        json!({"UserId": "API:USERID", "ServiceName": "Crowdstrike Streaming API",
            "AuditKeyValues": [{"Key": "APIClientID", "ValueString": "APICLIENTID"}]}),
    );
    let o = emit_with(&mapper(&[("exclude_services", "")]), &stream).1;
    assert_eq!(
        (o["class_uid"].clone(), o["activity_id"].clone()),
        (json!(3002), json!(1))
    );
    assert_eq!(o["user"]["uid"], "APICLIENTID");
    assert_eq!(o["user"]["type_id"], 99);
    assert_eq!(o["user"]["type"], "API Client");
    let ctx = RecordContext::default();
    assert_eq!(
        Mapper::default().map(&ctx, stream.to_string().as_bytes()),
        Outcome::Skip(Skip::NotSelected),
        "the stream's own events are excluded by default"
    );
}

#[test]
fn an_unknown_operation_is_kept_as_other() {
    let o = emit(&auth("someFutureOperation", json!({})));
    assert_eq!(
        (o["class_uid"].clone(), o["activity_id"].clone()),
        (json!(6003), json!(99))
    );
    assert_eq!(o["activity_name"], "Other");
    assert_eq!(o["api"]["operation"], "someFutureOperation");
    let no_op = emit(&auth("", json!({})));
    assert_eq!(no_op["api"]["operation"], "AuthActivityAuditEvent");
}

#[test]
fn user_activity_is_api_activity_with_resources() {
    let event = json!({
        "metadata": {"customerIDString": CID, "offset": 5, "eventType": "UserActivityAuditEvent", "eventCreationTime": 1_686_839_378_000_i64},
        "event": {"UserId": "TESTUSERID", "UserIp": "", "OperationName": "detection_update", "ServiceName": "detections",
            "UTCTimestamp": 1_686_839_378,
            "AuditKeyValues": [{"Key": "detection_id", "ValueString": "ldt:abc:1"}, {"Key": "new_state", "ValueString": "closed"}]}
    });
    let o = emit(&event);
    assert_eq!(o["class_uid"], 6003);
    assert_eq!(o["category_uid"], 6);
    assert_eq!(o["activity_id"], 3, "update");
    assert_eq!(o["actor"]["user"]["name"], "TESTUSERID");
    assert_eq!(o["api"]["operation"], "detection_update");
    assert_eq!(o["api"]["service"]["name"], "detections");
    assert_eq!(o["resources"], json!([{"uid": "ldt:abc:1", "type": "detection"}]));
    assert_eq!(
        o["src_endpoint"],
        json!({"name": "unknown"}),
        "required, and UserIp is empty"
    );
    assert_eq!(o["status_id"], 0, "user activity carries no Success");
    let mut system = event.clone();
    system["event"]["UserId"] = json!("Crowdstrike");
    system["event"]["OperationName"] = json!("reveal_token");
    let o = emit(&system);
    assert_eq!(o["actor"]["user"]["type_id"], 3);
    assert_eq!(o["activity_id"], 2);
}

#[test]
fn api_requests_carry_http_details() {
    let event = json!({
        "metadata": {"customerIDString": CID, "offset": 9, "eventType": "APIActivityAuditEvent"},
        "event": {"UserId": "api.user@example.com", "OperationName": "logged", "ServiceName": "api_request",
            "Success": false, "UTCTimestamp": 1_784_698_103, "Message": "access denied",
            "Attributes": {"APIClientID": "ccc", "request_method": "GET", "request_path": "/devices/queries/devices/v1",
                "status_code": "401", "user_agent": "curl/8.0.0", "elapsed_microseconds": "1200",
                "request_host": "api.us-2.crowdstrike.com", "trace_id": "tr-9"},
            "SourceIp": "198.51.100.20"}
    });
    assert!(
        matches!(
            Mapper::default().map(&RecordContext::default(), event.to_string().as_bytes()),
            Outcome::Skip(Skip::NotSelected)
        ),
        "the API request log is opt-in"
    );
    let (_, o) = emit_with(&mapper(&[("event_types", "APIActivityAuditEvent")]), &event);
    assert_eq!(
        (o["class_uid"].clone(), o["activity_id"].clone()),
        (json!(6003), json!(2))
    );
    assert_eq!(o["actor"]["app_uid"], "ccc");
    assert_eq!(o["actor"]["user"]["name"], "api.user@example.com");
    assert_eq!(o["api"]["operation"], "GET /devices/queries/devices/v1");
    assert_eq!(o["api"]["request"]["uid"], "tr-9");
    assert_eq!(o["http_request"]["http_method"], "GET");
    assert_eq!(o["http_request"]["url"]["path"], "/devices/queries/devices/v1");
    assert_eq!(o["http_request"]["url"]["hostname"], "api.us-2.crowdstrike.com");
    assert_eq!(o["http_request"]["user_agent"], "curl/8.0.0");
    assert_eq!(o["http_response"]["code"], 401);
    assert_eq!(o["duration"], 1);
    assert_eq!(o["src_endpoint"]["ip"], "198.51.100.20");
    assert_eq!(o["status_id"], 2);
    assert_eq!(o["status_detail"], "access denied");
    assert_eq!(o["status_code"], "401");
    assert_eq!(o["unmapped"]["attributes"]["elapsed_microseconds"], "1200");
    for (method, activity) in [("POST", 1), ("PUT", 3), ("PATCH", 3), ("DELETE", 4), ("OPTIONS", 99)] {
        let mut e = event.clone();
        e["event"]["Attributes"]["request_method"] = json!(method);
        assert_eq!(emit(&e)["activity_id"], activity, "{method}");
    }
    let mut anonymous = event.clone();
    anonymous["event"]["UserId"] = json!("");
    anonymous["event"]["Attributes"] = json!({});
    anonymous["event"].as_object_mut().expect("object").remove("SourceIp");
    let o = emit(&anonymous);
    assert_eq!(o["actor"]["user"]["name"], "unknown");
    assert_eq!(o["api"]["operation"], "logged");
}

#[test]
fn remote_response_sessions_are_remote_logons() {
    let start = json!({
        "metadata": {"customerIDString": CID, "offset": 3, "eventType": "RemoteResponseSessionStartEvent",
            "eventCreationTime": 1_582_830_734_000_i64, "version": "1.0"},
        "event": {"SessionId": "12345a1bc2d34fghi56jk7890lmno12p", "HostnameField": "hostnameofmachine",
            "UserName": "first.last@company.com", "StartTimestamp": 1_582_830_734, "AgentIdString": "agent-1"}
    });
    let (_, o) = emit_with(&Mapper::default(), &start);
    assert_eq!(
        (o["class_uid"].clone(), o["activity_id"].clone()),
        (json!(3002), json!(1))
    );
    assert_eq!(o["user"]["name"], "first.last@company.com");
    assert_eq!(
        o["dst_endpoint"],
        json!({"hostname": "hostnameofmachine", "uid": "agent-1"})
    );
    assert_eq!(o["session"]["uid"], "12345a1bc2d34fghi56jk7890lmno12p");
    assert_eq!(o["is_remote"], true);
    assert_eq!(o["logon_type_id"], 10);
    assert_eq!(o["service"]["name"], "Real Time Response");
    assert_eq!(o["time"], 1_582_830_734_000_i64);
    assert_eq!(o["message"], "Real Time Response session started on hostnameofmachine");
    let mut end = start.clone();
    end["metadata"]["eventType"] = json!("RemoteResponseSessionEndEvent");
    let body = end["event"].as_object_mut().expect("object");
    body.remove("StartTimestamp");
    body.insert("EndTimestamp".into(), json!(1_582_831_000));
    body.insert("Commands".into(), json!(["ls", "get C:\\evidence.zip"]));
    let (_, o) = emit_with(&Mapper::default(), &end);
    assert_eq!(o["activity_id"], 2);
    assert_eq!(o["time"], 1_582_831_000_000_i64);
    assert_eq!(o["unmapped"]["commands"], json!(["ls", "get C:\\evidence.zip"]));
}

#[test]
fn other_types_are_base_events_with_their_raw_text() {
    let event = json!({"metadata": {"eventType": "EppDetectionSummaryEvent", "offset": 8}, "event": {"Name": "x"}});
    let o = emit(&event);
    assert_eq!(
        (o["class_uid"].clone(), o["activity_id"].clone(), o["type_uid"].clone()),
        (json!(0), json!(99), json!(99))
    );
    assert_eq!(o["raw_data"], event.to_string());
    assert_eq!(
        o["time"], 1_600_000_000_000_i64,
        "the record's timestamp when the event has none"
    );
    assert!(matches!(
        Mapper::default().map(&RecordContext::default(), event.to_string().as_bytes()),
        Outcome::Skip(Skip::NotSelected)
    ));
}

#[test]
fn parameters_change_version_and_raw_data() {
    let event = auth("userAuthenticate", json!({}));
    let (_, o) = emit_with(&mapper(&[("ocsf_version", "1.8.0"), ("carry_raw", "true")]), &event);
    assert_eq!(o["metadata"]["version"], "1.8.0");
    assert_eq!(o["raw_data"], event.to_string());
    assert_eq!(o["raw_data_size"], event.to_string().len());
}

#[test]
fn missing_fields_fall_back_without_breaking_the_class() {
    let bare =
        json!({"metadata": {"eventType": "AuthActivityAuditEvent"}, "event": {"OperationName": "grantUserRoles"}});
    let (uid, o) = emit_with(&Mapper::default(), &bare);
    assert!(uid.starts_with("nocid_c"), "{uid}");
    assert_eq!(o["user"]["name"], "unknown");
    assert_eq!(o["user"]["type_id"], 0);
    assert_eq!(o["privileges"], json!([]));
    let login =
        json!({"metadata": {"eventType": "AuthActivityAuditEvent"}, "event": {"OperationName": "userAuthenticate"}});
    assert_eq!(
        emit(&login)["service"]["name"],
        "Falcon",
        "service is needed when there is no dst_endpoint"
    );
}

#[test]
fn huge_values_are_bounded() {
    let pairs: Value = (0..200)
        .map(|i| json!({"Key": format!("k{i}"), "ValueString": "v".repeat(2_000)}))
        .collect();
    let event = auth(
        "userAuthenticate",
        json!({"AuditKeyValues": pairs, "UserId": "x".repeat(10_000)}),
    );
    let (_, o) = emit_with(&mapper(&[("carry_raw", "true")]), &event);
    assert!(o["unmapped"]["audit_key_values_omitted_bytes"].as_u64().expect("size") > 128_000);
    assert_eq!(o["user"]["name"].as_str().map(str::len), Some(4_096));
    assert!(o.to_string().len() < 1_000_000, "below CloudWatch's event size");
    let raw = o["raw_data"].as_str().expect("raw");
    assert!(raw.len() < event.to_string().len() && raw.len() > 200_000);
}
