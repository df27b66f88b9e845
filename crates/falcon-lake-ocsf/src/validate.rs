//! A validator of the OCSF events the mapping emits, written from the schema
//! (tags 1.5.0 and 1.8.0 of `ocsf/ocsf-schema`), not from the mapping:
//!
//! - the base event's required attributes (`activity_id`, `category_uid`,
//!   `class_uid`, `metadata`, `severity_id`, `time`, `type_uid`), their types
//!   and enumerations, `type_uid = class_uid * 100 + activity_id`, and the
//!   caption siblings (`class_name`, `activity_name`…) when present;
//! - `metadata` (`product`, `version`) and `product` (`name` or `uid`);
//! - each class's required attributes and `at_least_one` constraints;
//! - the objects' required attributes and `at_least_one` constraints (`user`,
//!   `actor`, `network_endpoint`, `api`, `request`, `service`, `url`,
//!   `http_response`);
//! - that every attribute is one both 1.5.0 and 1.8.0 define for its object
//!   (only `unmapped` is free-form), so `metadata.version` may name either.

use std::fmt;

use serde_json::{Map, Value};

use crate::class::{severity, status, user_type, Class};
use crate::mapping::is_email;
use crate::params::OCSF_VERSIONS;

/// One way an event breaks the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OcsfViolation {
    /// The offending attribute, as a dotted path.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for OcsfViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for OcsfViolation {}

type Checked = Result<(), OcsfViolation>;

fn violation(path: &str, message: impl Into<String>) -> OcsfViolation {
    OcsfViolation {
        path: path.to_string(),
        message: message.into(),
    }
}

/// Validates an event given as JSON text.
pub fn validate_ocsf(text: &str) -> Checked {
    let value: Value = serde_json::from_str(text).map_err(|e| violation("", format!("not JSON: {e}")))?;
    validate_ocsf_value(&value)
}

/// Attributes of the base event (both versions).
const BASE: &[&str] = &[
    "activity_id",
    "activity_name",
    "category_name",
    "category_uid",
    "class_name",
    "class_uid",
    "count",
    "duration",
    "end_time",
    "enrichments",
    "message",
    "metadata",
    "observables",
    "raw_data",
    "raw_data_size",
    "severity",
    "severity_id",
    "start_time",
    "status",
    "status_code",
    "status_detail",
    "status_id",
    "time",
    "timezone_offset",
    "type_name",
    "type_uid",
    "unmapped",
];
/// Attributes the IAM category adds.
const IAM: &[&str] = &["actor", "http_request", "http_response", "src_endpoint"];
const AUTHENTICATION: &[&str] = &[
    "auth_factors",
    "auth_protocol",
    "auth_protocol_id",
    "authentication_token",
    "certificate",
    "dst_endpoint",
    "is_cleartext",
    "is_mfa",
    "is_new_logon",
    "is_remote",
    "logon_process",
    "logon_type",
    "logon_type_id",
    "service",
    "session",
    "user",
];
const ACCOUNT_CHANGE: &[&str] = &["policies", "policy", "user", "user_result"];
const USER_ACCESS: &[&str] = &["privileges", "resource", "resources", "user"];
const API_ACTIVITY: &[&str] = &[
    "actor",
    "api",
    "dst_endpoint",
    "http_request",
    "http_response",
    "resources",
    "src_endpoint",
];
const METADATA: &[&str] = &[
    "correlation_uid",
    "data_classification",
    "data_classifications",
    "debug",
    "event_code",
    "extension",
    "extensions",
    "labels",
    "log_level",
    "log_name",
    "log_provider",
    "log_version",
    "logged_time",
    "loggers",
    "modified_time",
    "original_time",
    "processed_time",
    "product",
    "profiles",
    "sequence",
    "tags",
    "tenant_uid",
    "transformation_info_list",
    "uid",
    "version",
];
const PRODUCT: &[&str] = &[
    "cpe_name",
    "data_classification",
    "data_classifications",
    "feature",
    "lang",
    "name",
    "path",
    "uid",
    "url_string",
    "vendor_name",
    "version",
];
const USER: &[&str] = &[
    "account",
    "credential_uid",
    "display_name",
    "domain",
    "email_addr",
    "forward_addr",
    "full_name",
    "groups",
    "has_mfa",
    "ldap_person",
    "name",
    "org",
    "phone_number",
    "risk_level",
    "risk_level_id",
    "risk_score",
    "type",
    "type_id",
    "uid",
    "uid_alt",
];
const ACTOR: &[&str] = &[
    "app_name",
    "app_uid",
    "authorizations",
    "idp",
    "invoked_by",
    "process",
    "session",
    "user",
];
const NETWORK_ENDPOINT: &[&str] = &[
    "agent_list",
    "autonomous_system",
    "container",
    "domain",
    "hostname",
    "hw_info",
    "instance_uid",
    "interface_name",
    "interface_uid",
    "intermediate_ips",
    "ip",
    "isp",
    "isp_org",
    "location",
    "mac",
    "name",
    "namespace_pid",
    "os",
    "owner",
    "port",
    "proxy_endpoint",
    "subnet_uid",
    "svc_name",
    "type",
    "type_id",
    "uid",
    "vlan_uid",
    "vpc_uid",
    "zone",
];
const SERVICE: &[&str] = &["labels", "name", "tags", "uid", "version"];
const API: &[&str] = &["group", "operation", "request", "response", "service", "version"];
const REQUEST: &[&str] = &["containers", "data", "flags", "uid"];
const HTTP_REQUEST: &[&str] = &[
    "args",
    "body_length",
    "http_headers",
    "http_method",
    "length",
    "referrer",
    "uid",
    "url",
    "user_agent",
    "version",
    "x_forwarded_for",
];
const URL: &[&str] = &[
    "categories",
    "category_ids",
    "domain",
    "hostname",
    "path",
    "port",
    "query_string",
    "resource_type",
    "scheme",
    "subdomain",
    "url_string",
];
const HTTP_RESPONSE: &[&str] = &[
    "body_length",
    "code",
    "content_type",
    "http_headers",
    "latency",
    "length",
    "message",
    "status",
];
const SESSION: &[&str] = &[
    "count",
    "created_time",
    "credential_uid",
    "expiration_reason",
    "expiration_time",
    "is_mfa",
    "is_remote",
    "is_vpn",
    "issuer",
    "terminal",
    "uid",
    "uid_alt",
    "uuid",
];
const RESOURCE_DETAILS: &[&str] = &[
    "agent_list",
    "cloud_partition",
    "created_time",
    "criticality",
    "data",
    "data_classification",
    "data_classifications",
    "group",
    "hostname",
    "ip",
    "is_backed_up",
    "labels",
    "modified_time",
    "name",
    "namespace",
    "owner",
    "region",
    "resource_relationship",
    "tags",
    "type",
    "uid",
    "uid_alt",
    "version",
    "zone",
];

/// Validates an event given as a JSON value.
pub fn validate_ocsf_value(value: &Value) -> Checked {
    let event = object(value, "")?;
    for name in [
        "activity_id",
        "category_uid",
        "class_uid",
        "metadata",
        "severity_id",
        "time",
        "type_uid",
    ] {
        require(event, "", name)?;
    }
    let class_uid = integer(event, "", "class_uid")?.unwrap_or(u64::MAX);
    let class = Class::from_uid(class_uid)
        .ok_or_else(|| violation("class_uid", format!("{class_uid} is not a known class")))?;
    let activity = integer(event, "", "activity_id")?.unwrap_or(u64::MAX);
    let activity_name = u32::try_from(activity)
        .ok()
        .and_then(|a| class.activity_name(a))
        .ok_or_else(|| {
            violation(
                "activity_id",
                format!("{activity} is not an activity of {}", class.name()),
            )
        })?;
    if integer(event, "", "category_uid")? != Some(u64::from(class.category_uid())) {
        return Err(violation(
            "category_uid",
            format!("{} has category {}", class.name(), class.category_uid()),
        ));
    }
    if integer(event, "", "type_uid")? != Some(u64::from(class.uid()) * 100 + activity) {
        return Err(violation("type_uid", "must be class_uid * 100 + activity_id"));
    }
    let severity_id = integer(event, "", "severity_id")?.unwrap_or(u64::MAX);
    let severity_name = u32::try_from(severity_id)
        .ok()
        .and_then(severity::name)
        .ok_or_else(|| violation("severity_id", format!("{severity_id} is not a severity")))?;
    integer(event, "", "time")?;
    let status_name = match integer(event, "", "status_id")? {
        Some(id) => Some(
            u32::try_from(id)
                .ok()
                .and_then(status::name)
                .ok_or_else(|| violation("status_id", format!("{id} is not a status")))?,
        ),
        None => None,
    };
    let type_name = format!("{}: {activity_name}", class.name());
    for (name, expected) in [
        ("class_name", Some(class.name())),
        ("category_name", class.category_name()),
        ("activity_name", Some(activity_name)),
        ("severity", Some(severity_name)),
        ("status", status_name),
        ("type_name", Some(type_name.as_str())),
    ] {
        if let Some(found) = event.get(name) {
            if found.as_str() != expected {
                return Err(violation(name, format!("{found} does not caption {expected:?}")));
            }
        }
    }
    for name in ["message", "status_code", "status_detail", "raw_data"] {
        string(event, "", name)?;
    }
    for name in ["duration", "raw_data_size", "count", "start_time", "end_time"] {
        integer(event, "", name)?;
    }
    if let Some(unmapped) = event.get("unmapped") {
        object(unmapped, "unmapped")?;
    }
    validate_metadata(event)?;
    validate_class(event, class)
}

fn validate_metadata(event: &Map<String, Value>) -> Checked {
    let metadata = object(&event["metadata"], "metadata")?;
    known(metadata, "metadata", METADATA)?;
    require(metadata, "metadata", "product")?;
    require(metadata, "metadata", "version")?;
    let version = string(metadata, "metadata", "version")?.unwrap_or("");
    if !OCSF_VERSIONS.contains(&version) {
        return Err(violation(
            "metadata.version",
            format!("{version:?} is not a version from 1.5.0 to 1.8.0"),
        ));
    }
    let product = object(&metadata["product"], "metadata.product")?;
    known(product, "metadata.product", PRODUCT)?;
    at_least_one(product, "metadata.product", &["name", "uid"])?;
    for name in [
        "uid",
        "tenant_uid",
        "log_name",
        "log_provider",
        "event_code",
        "original_time",
        "correlation_uid",
    ] {
        string(metadata, "metadata", name)?;
    }
    integer(metadata, "metadata", "logged_time")?;
    Ok(())
}

fn validate_class(event: &Map<String, Value>, class: Class) -> Checked {
    let allowed: Vec<&str> = match class {
        Class::Base => BASE.to_vec(),
        Class::AccountChange => [BASE, IAM, ACCOUNT_CHANGE].concat(),
        Class::Authentication => [BASE, IAM, AUTHENTICATION].concat(),
        Class::UserAccess => [BASE, IAM, USER_ACCESS].concat(),
        Class::ApiActivity => [BASE, API_ACTIVITY].concat(),
    };
    known(event, "", &allowed)?;
    match class {
        Class::Base => {}
        Class::AccountChange => require(event, "", "user")?,
        Class::Authentication => {
            require(event, "", "user")?;
            at_least_one(event, "", &["service", "dst_endpoint"])?;
        }
        Class::UserAccess => {
            require(event, "", "privileges")?;
            require(event, "", "user")?;
            let privileges = event["privileges"]
                .as_array()
                .ok_or_else(|| violation("privileges", "must be an array of strings"))?;
            if privileges.iter().any(|p| !p.is_string()) {
                return Err(violation("privileges", "must be an array of strings"));
            }
        }
        Class::ApiActivity => {
            for name in ["actor", "api", "src_endpoint"] {
                require(event, "", name)?;
            }
        }
    }
    validate_objects(event)
}

/// The objects an event may hold, wherever they are.
fn validate_objects(event: &Map<String, Value>) -> Checked {
    if let Some(user) = event.get("user") {
        validate_user(user, "user")?;
    }
    if let Some(actor) = event.get("actor") {
        let actor_map = object(actor, "actor")?;
        known(actor_map, "actor", ACTOR)?;
        at_least_one(
            actor_map,
            "actor",
            &["process", "user", "invoked_by", "session", "app_name", "app_uid"],
        )?;
        if let Some(user) = actor_map.get("user") {
            validate_user(user, "actor.user")?;
        }
        string(actor_map, "actor", "app_uid")?;
    }
    for name in ["src_endpoint", "dst_endpoint"] {
        if let Some(endpoint) = event.get(name) {
            validate_endpoint(endpoint, name)?;
        }
    }
    if let Some(service) = event.get("service") {
        validate_service(service, "service")?;
    }
    if let Some(api) = event.get("api") {
        validate_api(api)?;
    }
    if let Some(session) = event.get("session") {
        let session = object(session, "session")?;
        known(session, "session", SESSION)?;
        boolean(session, "session", "is_remote")?;
    }
    validate_http(event)?;
    if let Some(resources) = event.get("resources") {
        let list = resources
            .as_array()
            .ok_or_else(|| violation("resources", "must be an array"))?;
        for (i, resource) in list.iter().enumerate() {
            let path = format!("resources[{i}]");
            known(object(resource, &path)?, &path, RESOURCE_DETAILS)?;
        }
    }
    for name in ["is_mfa", "is_remote"] {
        boolean(event, "", name)?;
    }
    if let Some(id) = integer(event, "", "logon_type_id")? {
        if !matches!(id, 0..=5 | 7..=13 | 99) {
            return Err(violation("logon_type_id", format!("{id} is not a logon type")));
        }
    }
    if let Some(id) = integer(event, "", "auth_protocol_id")? {
        if !matches!(id, 0..=12 | 99) {
            return Err(violation(
                "auth_protocol_id",
                format!("{id} is not an authentication protocol"),
            ));
        }
    }
    Ok(())
}

fn validate_user(user: &Value, path: &str) -> Checked {
    let user = object(user, path)?;
    known(user, path, USER)?;
    at_least_one(user, path, &["account", "name", "uid"])?;
    for name in ["name", "uid", "type"] {
        string(user, path, name)?;
    }
    if let Some(id) = integer(user, path, "type_id")? {
        if !user_type::is_known(id) {
            return Err(violation(
                &format!("{path}.type_id"),
                format!("{id} is not a user type of 1.5.0"),
            ));
        }
    }
    if let Some(email) = string(user, path, "email_addr")? {
        if !is_email(email) {
            return Err(violation(
                &format!("{path}.email_addr"),
                format!("{email:?} is not an email address"),
            ));
        }
    }
    Ok(())
}

fn validate_endpoint(endpoint: &Value, path: &str) -> Checked {
    let endpoint = object(endpoint, path)?;
    known(endpoint, path, NETWORK_ENDPOINT)?;
    at_least_one(
        endpoint,
        path,
        &[
            "ip",
            "uid",
            "name",
            "hostname",
            "svc_name",
            "instance_uid",
            "interface_uid",
            "interface_name",
            "domain",
        ],
    )?;
    if let Some(ip) = string(endpoint, path, "ip")? {
        if ip.len() > 40 || ip.parse::<std::net::IpAddr>().is_err() {
            return Err(violation(&format!("{path}.ip"), format!("{ip:?} is not an IP address")));
        }
    }
    Ok(())
}

fn validate_service(service: &Value, path: &str) -> Checked {
    let service = object(service, path)?;
    known(service, path, SERVICE)?;
    at_least_one(service, path, &["name", "uid"])
}

fn validate_api(api: &Value) -> Checked {
    let api = object(api, "api")?;
    known(api, "api", API)?;
    require(api, "api", "operation")?;
    string(api, "api", "operation")?;
    if let Some(service) = api.get("service") {
        validate_service(service, "api.service")?;
    }
    if let Some(request) = api.get("request") {
        let request = object(request, "api.request")?;
        known(request, "api.request", REQUEST)?;
        require(request, "api.request", "uid")?;
    }
    Ok(())
}

fn validate_http(event: &Map<String, Value>) -> Checked {
    if let Some(request) = event.get("http_request") {
        let request = object(request, "http_request")?;
        known(request, "http_request", HTTP_REQUEST)?;
        if let Some(url) = request.get("url") {
            let url = object(url, "http_request.url")?;
            known(url, "http_request.url", URL)?;
            at_least_one(url, "http_request.url", &["url_string", "path"])?;
        }
    }
    if let Some(response) = event.get("http_response") {
        let response = object(response, "http_response")?;
        known(response, "http_response", HTTP_RESPONSE)?;
        require(response, "http_response", "code")?;
        integer(response, "http_response", "code")?;
    }
    Ok(())
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

fn object<'v>(value: &'v Value, path: &str) -> Result<&'v Map<String, Value>, OcsfViolation> {
    value.as_object().ok_or_else(|| violation(path, "must be an object"))
}

/// Present and not null.
fn require(map: &Map<String, Value>, path: &str, name: &str) -> Checked {
    match map.get(name) {
        Some(v) if !v.is_null() => Ok(()),
        _ => Err(violation(&join(path, name), "required attribute missing")),
    }
}

fn at_least_one(map: &Map<String, Value>, path: &str, names: &[&str]) -> Checked {
    if names.iter().any(|n| map.get(*n).is_some_and(|v| !v.is_null())) {
        Ok(())
    } else {
        Err(violation(path, format!("needs at least one of {}", names.join(", "))))
    }
}

/// Every attribute is one of `allowed`.
fn known(map: &Map<String, Value>, path: &str, allowed: &[&str]) -> Checked {
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(unknown) => Err(violation(
            &join(path, unknown),
            "not an attribute of both OCSF 1.5.0 and 1.8.0 here",
        )),
        None => Ok(()),
    }
}

/// The value of an integer attribute, if present (non-negative: every one here is).
fn integer(map: &Map<String, Value>, path: &str, name: &str) -> Result<Option<u64>, OcsfViolation> {
    match map.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| violation(&join(path, name), format!("{v} is not a non-negative integer"))),
    }
}

fn string<'v>(map: &'v Map<String, Value>, path: &str, name: &str) -> Result<Option<&'v str>, OcsfViolation> {
    match map.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_str()
            .map(Some)
            .ok_or_else(|| violation(&join(path, name), format!("{v} is not a string"))),
    }
}

fn boolean(map: &Map<String, Value>, path: &str, name: &str) -> Checked {
    match map.get(name) {
        Some(v) if !v.is_boolean() => Err(violation(&join(path, name), format!("{v} is not a boolean"))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn valid() -> Value {
        json!({
            "class_uid": 3002, "class_name": "Authentication", "category_uid": 3,
            "category_name": "Identity & Access Management", "activity_id": 1, "activity_name": "Logon",
            "type_uid": 300201, "type_name": "Authentication: Logon", "severity_id": 1, "severity": "Informational",
            "status_id": 1, "status": "Success", "time": 1_700_000_000_000_u64,
            "metadata": {"version": "1.5.0", "product": {"name": "Falcon", "vendor_name": "CrowdStrike"}, "uid": "x"},
            "user": {"name": "alice@example.com", "email_addr": "alice@example.com", "type_id": 1},
            "service": {"name": "CrowdStrike Authentication"},
            "src_endpoint": {"ip": "192.0.2.1"},
            "unmapped": {"anything": [1, {"goes": true}]}
        })
    }

    #[test]
    fn accepts_a_complete_event() {
        validate_ocsf_value(&valid()).expect("valid");
    }

    #[test]
    fn finds_each_kind_of_fault() {
        type Breaker = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(&str, Breaker)> = vec![
            (
                "time",
                Box::new(|v| {
                    let _ = v.as_object_mut().map(|m| m.remove("time"));
                }),
            ),
            ("type_uid", Box::new(|v| v["type_uid"] = json!(300202))),
            ("category_uid", Box::new(|v| v["category_uid"] = json!(6))),
            ("activity_id", Box::new(|v| v["activity_id"] = json!(7))),
            ("class_uid", Box::new(|v| v["class_uid"] = json!(4001))),
            ("activity_name", Box::new(|v| v["activity_name"] = json!("Logoff"))),
            ("severity_id", Box::new(|v| v["severity_id"] = json!(7))),
            ("status_id", Box::new(|v| v["status_id"] = json!(3))),
            ("time", Box::new(|v| v["time"] = json!("2024-01-01"))),
            (
                "metadata.version",
                Box::new(|v| v["metadata"]["version"] = json!("1.1.0")),
            ),
            (
                "metadata.product",
                Box::new(|v| v["metadata"]["product"] = json!({"vendor_name": "x"})),
            ),
            (
                "metadata.original_event_uid",
                Box::new(|v| v["metadata"]["original_event_uid"] = json!("1.8 only")),
            ),
            ("user", Box::new(|v| v["user"] = json!({"type_id": 1}))),
            ("user.type_id", Box::new(|v| v["user"]["type_id"] = json!(4))),
            (
                "user.email_addr",
                Box::new(|v| v["user"]["email_addr"] = json!("not an email")),
            ),
            (
                "",
                Box::new(|v| {
                    let _ = v.as_object_mut().map(|m| m.remove("service"));
                }),
            ),
            (
                "src_endpoint.ip",
                Box::new(|v| v["src_endpoint"]["ip"] = json!("999.1.1.1")),
            ),
            (
                "account_switch_type_id",
                Box::new(|v| v["account_switch_type_id"] = json!(1)),
            ),
            ("is_mfa", Box::new(|v| v["is_mfa"] = json!("yes"))),
        ];
        for (path, break_it) in cases {
            let mut event = valid();
            break_it(&mut event);
            let err = validate_ocsf_value(&event).expect_err(path);
            assert!(err.path.starts_with(path), "{path}: {err}");
        }
    }

    #[test]
    fn checks_each_class_requirements() {
        let api = json!({
            "class_uid": 6003, "category_uid": 6, "activity_id": 99, "type_uid": 600399, "severity_id": 1,
            "time": 1, "metadata": {"version": "1.8.0", "product": {"uid": "falcon"}},
            "actor": {"app_uid": "c"}, "api": {"operation": "GET /x", "request": {"uid": "t"}},
            "src_endpoint": {"name": "unknown"}
        });
        validate_ocsf_value(&api).expect("valid");
        for (name, fault) in [
            ("api", json!({"service": {"name": "x"}})),
            ("api", json!({"operation": "x", "request": {}})),
            ("actor", json!({"user": {}})),
            ("src_endpoint", json!({})),
        ] {
            let mut broken = api.clone();
            broken[name] = fault;
            assert!(validate_ocsf_value(&broken).is_err(), "{name}");
        }
        let access = json!({
            "class_uid": 3005, "category_uid": 3, "activity_id": 2, "type_uid": 300502, "severity_id": 1,
            "time": 1, "metadata": {"version": "1.5.0", "product": {"name": "Falcon"}},
            "privileges": ["a"], "user": {"uid": "u"}
        });
        validate_ocsf_value(&access).expect("valid");
        let mut no_privileges = access.clone();
        no_privileges["privileges"] = json!("a");
        assert!(validate_ocsf_value(&no_privileges).is_err());
        let base = json!({
            "class_uid": 0, "category_uid": 0, "activity_id": 99, "type_uid": 99, "severity_id": 1,
            "time": 1, "metadata": {"version": "1.5.0", "product": {"name": "Falcon"}}, "raw_data": "{}"
        });
        validate_ocsf_value(&base).expect("valid");
        let mut base_with_user = base.clone();
        base_with_user["user"] = json!({"name": "x"});
        assert!(
            validate_ocsf_value(&base_with_user).is_err(),
            "not an attribute of the base event"
        );
    }
}
