//! Falcon audit event → CloudTrail Open Audit Event (`eventData`).
//!
//! The function never fails: input that is not a Falcon event is skipped with a
//! reason, and a selected event with missing or odd fields is mapped with the
//! documented fallbacks. Every emitted field stays within its schema limit.

use std::borrow::Cow;

use crate::event::{EventBody, FalconEvent};
use crate::id::write_event_id;
use crate::json::{escaped_len, truncate_escaped, truncate_to, Mark, ObjectWriter};
use crate::params::{MappingParams, Profile, API_ACTIVITY_EVENT_TYPE};
use crate::schema::limits;
use crate::select::Selector;
use crate::time::{epoch_seconds_from_any_unit, EventTime};

/// `version` used when the event carries none (old events lack `metadata.version`).
pub const FALLBACK_VERSION: &str = "1.0";
/// `userAgent` of the existing gateway, kept by the `fig` profile.
pub const FIG_USER_AGENT: &str = "falcon-integration-gateway";
/// Budget for `additionalEventData`, below the 28 kB limit so that CloudTrail's
/// own re-serialisation (number spelling) cannot push it over.
const ADDITIONAL_BUDGET: usize = limits::ADDITIONAL_EVENT_DATA - 500;
/// Budget for `requestParameters` and `userIdentity.details`.
const OBJECT_BUDGET: usize = limits::REQUEST_PARAMETERS - 1_000;
/// Longest single audit value kept when `details` would exceed its budget.
const SHORT_VALUE: usize = 1024;

/// What the source knows about a record beyond its value.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordContext<'a> {
    /// The record key (the [`SourceKey`] contract), if any.
    pub key: Option<&'a [u8]>,
    /// The record's timestamp in epoch milliseconds: last resort for `eventTime`.
    pub timestamp_ms: i64,
}

/// One Open Audit Event ready for `PutAuditEvents`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditRecord {
    /// `AuditEvent.id` (also the record key of the SmartModule's output).
    pub id: String,
    /// `eventData`, a JSON object as text.
    pub event_data: String,
}

/// Why a record produced no audit event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// The value is not a JSON object.
    NotJsonObject,
    /// A JSON object without `metadata.eventType`.
    NotFalconEvent,
    /// A Falcon event the filter does not select.
    NotSelected,
}

/// Result of mapping one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The record maps to this audit event.
    Emit(AuditRecord),
    /// The record is filtered out.
    Skip(Skip),
}

/// Maps one raw record (the Falcon event bytes as received). Builds a
/// [`Mapper`] for the call; hold a `Mapper` to map many records.
pub fn map_record(params: &MappingParams, ctx: &RecordContext<'_>, value: &[u8]) -> Outcome {
    Mapper::new(params.clone()).map(ctx, value)
}

/// The mapping with its parameters and precomputed searches, for mapping many records.
#[derive(Debug, Clone)]
pub struct Mapper {
    params: MappingParams,
    selector: Selector,
}

impl Mapper {
    /// A mapper for `params`.
    pub fn new(params: MappingParams) -> Self {
        let selector = params.selector();
        Self { params, selector }
    }

    /// The parameters.
    pub fn params(&self) -> &MappingParams {
        &self.params
    }

    /// Maps one raw record.
    pub fn map(&self, ctx: &RecordContext<'_>, value: &[u8]) -> Outcome {
        let mut record = AuditRecord::default();
        match self.map_into(ctx, value, &mut record) {
            Ok(()) => Outcome::Emit(record),
            Err(skip) => Outcome::Skip(skip),
        }
    }

    /// Maps one raw record into `out`, reusing its buffers, so that mapping a
    /// stream allocates nothing per event for the output. On `Err`, `out`
    /// holds nothing meaningful.
    pub fn map_into(&self, ctx: &RecordContext<'_>, value: &[u8], out: &mut AuditRecord) -> Result<(), Skip> {
        let params = &self.params;
        self.selector.select(ctx, value, |selected| {
            let facts = Facts {
                event: selected.event,
                event_type: selected.event_type,
                partition: selected.partition,
                raw: selected.raw,
                ctx,
            };
            out.id.clear();
            facts.write_id(params.profile, &mut out.id);
            let w = ObjectWriter::reusing(std::mem::take(&mut out.event_data), facts.raw.len() * 2 + 512);
            out.event_data = match params.profile {
                Profile::Default => default_event_data(w, params, &facts, &out.id),
                Profile::Fig => fig_event_data(w, params, &facts, &out.id),
            };
        })
    }
}

/// Everything known about one selected event.
struct Facts<'e, 'a> {
    event: &'e FalconEvent<'a>,
    event_type: &'e str,
    partition: Option<u32>,
    raw: &'e str,
    ctx: &'e RecordContext<'e>,
}

impl Facts<'_, '_> {
    fn body(&self) -> &EventBody<'_> {
        &self.event.event
    }

    fn cid(&self) -> Option<&str> {
        self.event.metadata.customer_id.as_deref().filter(|c| !c.is_empty())
    }

    fn write_id(&self, profile: Profile, out: &mut String) {
        let qualified = profile == Profile::Default;
        write_event_id(
            out,
            qualified,
            self.cid(),
            self.partition,
            self.event.metadata.offset,
            self.raw.as_bytes(),
        );
    }

    fn version(&self) -> &str {
        let version = self.event.metadata.version.as_deref().filter(|v| !v.trim().is_empty());
        truncate_to(version.unwrap_or(FALLBACK_VERSION), limits::VERSION)
    }

    fn principal(&self) -> &str {
        let user = self.body().user_id.as_deref().filter(|u| !u.trim().is_empty());
        truncate_to(user.unwrap_or("unknown"), limits::PRINCIPAL_ID)
    }

    fn event_name(&self) -> &str {
        let op = self.body().operation_name.as_deref().filter(|o| !o.trim().is_empty());
        truncate_to(op.unwrap_or(self.event_type), limits::EVENT_NAME)
    }

    /// Who acted, and what kind of identity that is (default profile): `UserId`,
    /// else a Real Time Response session's `UserName`, else an API request's
    /// `Attributes.APIClientID`.
    fn actor(&self) -> (&str, &'static str) {
        let body = self.body();
        let (principal, kind) = if let Some(user) = non_blank(body.user_id.as_deref()) {
            (user, identity_type(Some(user)))
        } else if let Some(user) = non_blank(body.user_name.as_deref()) {
            (user, "User")
        } else if let Some(client) = non_blank(body.attribute("APIClientID")) {
            (client, "APIClient")
        } else {
            ("unknown", "Unknown")
        };
        (truncate_to(principal, limits::PRINCIPAL_ID), kind)
    }

    /// `eventName` of the default profile: an API request is named by its
    /// method and path (its `OperationName` is always `logged`).
    fn default_event_name(&self) -> Cow<'_, str> {
        let body = self.body();
        if self.event_type == API_ACTIVITY_EVENT_TYPE {
            if let (Some(method), Some(path)) = (body.attribute("request_method"), body.attribute("request_path")) {
                let name = format!("{} {}", method.trim(), path.trim());
                return Cow::Owned(truncate_to(&name, limits::EVENT_NAME).to_string());
            }
        }
        Cow::Borrowed(self.event_name())
    }

    /// `sourceIPAddress` of the default profile: `UserIp`, else an API request's `SourceIp`.
    fn default_source_ip(&self) -> Option<&str> {
        valid_ip(self.body().user_ip.as_deref()).or_else(|| valid_ip(self.body().source_ip.as_deref()))
    }

    /// Picks the first usable timestamp among `candidates`, then the record's.
    fn event_time<const N: usize>(&self, candidates: [(&'static str, Option<i64>); N]) -> (EventTime, &'static str) {
        let found = candidates
            .into_iter()
            .find_map(|(name, v)| v.and_then(epoch_seconds_from_any_unit).map(|s| (s, name)));
        let (seconds, source) = found.unwrap_or_else(|| {
            let record = epoch_seconds_from_any_unit(self.ctx.timestamp_ms).unwrap_or(0);
            (record, "recordTimestamp")
        });
        (EventTime::new(seconds), source)
    }

    fn source_ip(&self) -> Option<&str> {
        let ip = self.body().user_ip.as_deref()?.trim();
        ip.parse::<std::net::IpAddr>().is_ok().then_some(ip)
    }
}

fn non_blank(value: Option<&str>) -> Option<&str> {
    value.filter(|v| !v.trim().is_empty())
}

fn valid_ip(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|ip| ip.parse::<std::net::IpAddr>().is_ok())
}

fn default_event_data(mut w: ObjectWriter, params: &MappingParams, f: &Facts<'_, '_>, id: &str) -> String {
    let body = f.body();
    let (event_time, time_source) = f.event_time([
        ("UTCTimestamp", body.utc_timestamp),
        ("StartTimestamp", body.start_timestamp),
        ("EndTimestamp", body.end_timestamp),
        ("eventCreationTime", f.event.metadata.event_creation_time),
    ]);
    w.string("version", f.version());
    write_default_identity(&mut w, f);
    if let Some(agent) = body.attribute("user_agent") {
        let agent = agent.trim();
        if !agent.is_empty() {
            w.string("userAgent", truncate_to(agent, limits::USER_AGENT));
        }
    }
    w.string("eventSource", &params.event_source);
    w.string("eventName", &f.default_event_name());
    w.string("eventTime", event_time.as_str());
    w.string("UID", id);
    write_request_parameters(&mut w, body);
    if let Some(success) = body.success {
        w.begin("responseElements").bool("success", success).end();
    }
    if body.success == Some(false) {
        w.string("errorCode", "OperationFailed");
        w.string("errorMessage", &failure_message(f));
    }
    if let Some(ip) = f.default_source_ip() {
        w.string("sourceIPAddress", ip);
    }
    if let Some(account) = &params.recipient_account_id {
        w.string("recipientAccountId", account);
    }
    w.begin("additionalEventData");
    let inside = w.mark();
    w.string("eventType", f.event_type);
    if let Some(cid) = f.cid() {
        w.string("customerId", truncate_to(cid, 256));
    }
    if let Some(partition) = f.partition {
        w.int("falconPartition", i128::from(partition));
    }
    if let Some(offset) = f.event.metadata.offset {
        w.int("falconOffset", i128::from(offset));
    }
    if let Some(created) = f.event.metadata.event_creation_time {
        w.int("eventCreationTime", i128::from(created));
    }
    for (name, value) in [
        ("utcTimestamp", body.utc_timestamp),
        ("startTimestamp", body.start_timestamp),
        ("endTimestamp", body.end_timestamp),
    ] {
        if let Some(value) = value {
            w.int(name, i128::from(value));
        }
    }
    w.string("eventTimeSource", time_source);
    write_raw(&mut w, &inside, params.carry_raw, f.raw);
    w.end();
    w.finish()
}

fn fig_event_data(mut w: ObjectWriter, params: &MappingParams, f: &Facts<'_, '_>, id: &str) -> String {
    let body = f.body();
    let (event_time, _) = f.event_time([
        ("eventCreationTime", f.event.metadata.event_creation_time),
        ("UTCTimestamp", body.utc_timestamp),
    ]);
    w.string("version", f.version());
    w.begin("userIdentity");
    w.string("type", truncate_to(f.event_type, limits::USER_IDENTITY_TYPE));
    w.string("principalId", f.principal());
    w.begin("details");
    match body.audit_key_values {
        Some(list) if list.len() <= OBJECT_BUDGET => w.raw("AuditKeyValues", list),
        Some(list) => w.string("AuditKeyValues", &format!("omitted: {} bytes", list.len())),
        None => w.string("AuditKeyValues", "n/a"),
    };
    w.end().end();
    w.string("userAgent", FIG_USER_AGENT);
    w.string("eventSource", &params.event_source);
    w.string("eventName", f.event_name());
    w.string("eventTime", event_time.as_str());
    w.string("UID", id);
    if let Some(ip) = f.source_ip() {
        w.string("sourceIPAddress", ip);
    }
    if let Some(account) = &params.recipient_account_id {
        w.string("recipientAccountId", account);
    }
    w.begin("additionalEventData");
    let inside = w.mark();
    write_raw(&mut w, &inside, params.carry_raw, f.raw);
    w.end();
    w.finish()
}

/// `userIdentity` of the default profile; `details` shrinks to stay within budget.
fn write_default_identity(w: &mut ObjectWriter, f: &Facts<'_, '_>) {
    let (principal, kind) = f.actor();
    w.begin("userIdentity");
    w.string("type", kind);
    w.string("principalId", principal);
    let pairs = f.body().audit_pairs();
    if f.cid().is_some() || !pairs.is_empty() {
        let mark = w.mark();
        write_details(w, f.cid(), pairs, usize::MAX, None);
        if w.written_since(&mark) > OBJECT_BUDGET {
            w.rollback(mark);
            write_details(w, f.cid(), pairs, SHORT_VALUE, Some("auditKeyValuesTruncated"));
            if w.written_since(&mark) > OBJECT_BUDGET {
                w.rollback(mark);
                write_details(w, f.cid(), &[], 0, Some("auditKeyValuesOmitted"));
            }
        }
    }
    w.end();
}

fn write_details(
    w: &mut ObjectWriter,
    cid: Option<&str>,
    pairs: &[(Cow<'_, str>, Cow<'_, str>)],
    max_value: usize,
    marker: Option<&str>,
) {
    w.begin("details");
    if let Some(cid) = cid {
        w.string("customerId", truncate_to(cid, 256));
    }
    if !pairs.is_empty() {
        w.begin("auditKeyValues");
        write_audit_pairs(w, pairs, max_value);
        w.end();
    }
    if let Some(marker) = marker {
        w.bool(marker, true);
    }
    w.end();
}

/// `AuditKeyValues` as object fields; a repeated key gets `#2`, `#3`… so nothing
/// is lost. Values are cut to `max_value` bytes.
pub fn write_audit_pairs(w: &mut ObjectWriter, pairs: &[(Cow<'_, str>, Cow<'_, str>)], max_value: usize) {
    let mut repeats: Vec<(&str, usize)> = Vec::new();
    for (index, (key, value)) in pairs.iter().enumerate() {
        let value = truncate_to(value, max_value);
        let seen_before = pairs[..index].iter().any(|(k, _)| k == key);
        if !seen_before {
            w.string(key, value);
            continue;
        }
        let count = match repeats.iter_mut().find(|(k, _)| k == key) {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                repeats.push((key.as_ref(), 2));
                2
            }
        };
        w.string(&format!("{key}#{count}"), value);
    }
}

/// Who acted, from the spelling of `UserId`.
fn identity_type(user_id: Option<&str>) -> &'static str {
    let Some(user) = user_id.map(str::trim).filter(|u| !u.is_empty()) else {
        return "Unknown";
    };
    let starts = |prefix: &str| user.get(..prefix.len()).is_some_and(|p| p.eq_ignore_ascii_case(prefix));
    if starts("api:") || starts("api-client-id:") {
        "APIClient"
    } else if user.eq_ignore_ascii_case("crowdstrike") {
        "System"
    } else {
        "User"
    }
}

fn write_request_parameters(w: &mut ObjectWriter, body: &EventBody<'_>) {
    let texts = [
        ("serviceName", body.service_name.as_deref()),
        ("operationName", body.operation_name.as_deref()),
        ("sessionId", body.session_id.as_deref()),
        ("hostname", body.hostname.as_deref()),
        ("agentId", body.agent_id.as_deref()),
    ];
    let raws = [("attributes", body.attributes), ("commands", body.commands)];
    if texts.iter().all(|(_, v)| v.is_none()) && raws.iter().all(|(_, v)| v.is_none()) {
        return;
    }
    let start = w.mark();
    w.begin("requestParameters");
    for (name, value) in texts {
        if let Some(value) = value {
            w.string(name, truncate_to(value, 1024));
        }
    }
    for (name, raw) in raws {
        let Some(raw) = raw else { continue };
        if w.written_since(&start) + raw.len() + 16 <= OBJECT_BUDGET {
            w.raw(name, raw);
        } else {
            w.int(&format!("{name}OmittedBytes"), raw.len() as i128);
        }
    }
    w.end();
}

fn failure_message(f: &Facts<'_, '_>) -> String {
    let message = match f.body().message.as_deref().filter(|m| !m.trim().is_empty()) {
        Some(message) => message.to_string(),
        None => format!("{} did not succeed", f.event_name()),
    };
    truncate_to(&message, limits::ERROR_MESSAGE).to_string()
}

/// Adds the raw event to the open `additionalEventData` object, whole if the
/// object stays within budget, otherwise truncated as a string with its
/// original size as a marker. `inside` was taken just after the object's `{`.
fn write_raw(w: &mut ObjectWriter, inside: &Mark, carry_raw: bool, raw: &str) {
    if !carry_raw {
        return;
    }
    // Braces included, key excluded: what CloudTrail measures.
    let object_len = |w: &ObjectWriter| w.written_since(inside) + 2;
    let field = |w: &ObjectWriter, name: &str| usize::from(!w.is_empty()) + escaped_len(name) + 1;
    let whole = object_len(w) + field(w, "raw") + raw.len();
    if whole <= ADDITIONAL_BUDGET {
        w.raw("raw", raw);
        return;
    }
    w.int("rawBytes", raw.len() as i128);
    let overhead = object_len(w) + field(w, "rawTruncated");
    if let Some(budget) = ADDITIONAL_BUDGET.checked_sub(overhead).filter(|b| *b > 2) {
        w.string("rawTruncated", truncate_escaped(raw, budget));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{validate_event_data, ValidationOptions};
    use serde_json::{json, Value};

    const KEY: &[u8] = b"0_1001";

    fn auth_event() -> Value {
        json!({
            "metadata": {"customerIDString": "0123456789abcdef0123456789abcdef", "offset": 1001,
                "eventType": "AuthActivityAuditEvent", "eventCreationTime": 1_700_000_000_123_i64, "version": "1.0"},
            "event": {"UserId": "alice@example.com", "UserIp": "192.0.2.10", "OperationName": "userAuthenticate",
                "ServiceName": "CrowdStrike Authentication", "Success": true, "UTCTimestamp": 1_700_000_001,
                "AuditKeyValues": [{"Key": "target_name", "ValueString": "bob"}]}
        })
    }

    fn emit(params: &MappingParams, event: &Value) -> (String, Value) {
        let ctx = RecordContext {
            key: Some(KEY),
            timestamp_ms: 1_600_000_000_000,
        };
        match map_record(params, &ctx, event.to_string().as_bytes()) {
            Outcome::Emit(record) => {
                validate_event_data(&record.event_data, ValidationOptions::AS_EMITTED)
                    .unwrap_or_else(|v| panic!("{v}: {}", record.event_data));
                let data = serde_json::from_str(&record.event_data).expect("json");
                (record.id, data)
            }
            Outcome::Skip(reason) => panic!("skipped: {reason:?}"),
        }
    }

    #[test]
    fn maps_every_field_the_event_fills() {
        let (id, data) = emit(&MappingParams::default(), &auth_event());
        assert_eq!(id, "0123456789abcdef0123456789abcdef_0_1001");
        assert_eq!(data["UID"], id.as_str());
        assert_eq!(data["version"], "1.0");
        assert_eq!(data["userIdentity"]["type"], "User");
        assert_eq!(data["userIdentity"]["principalId"], "alice@example.com");
        assert_eq!(
            data["userIdentity"]["details"]["customerId"],
            "0123456789abcdef0123456789abcdef"
        );
        assert_eq!(data["userIdentity"]["details"]["auditKeyValues"]["target_name"], "bob");
        assert_eq!(data["eventSource"], "crowdstrike");
        assert_eq!(data["eventName"], "userAuthenticate");
        assert_eq!(data["eventTime"], "2023-11-14T22:13:21Z");
        assert_eq!(data["sourceIPAddress"], "192.0.2.10");
        assert_eq!(data["requestParameters"]["serviceName"], "CrowdStrike Authentication");
        assert_eq!(data["responseElements"]["success"], true);
        assert!(data.get("errorCode").is_none());
        assert!(data.get("recipientAccountId").is_none());
        assert_eq!(data["additionalEventData"]["falconOffset"], 1001);
        assert_eq!(data["additionalEventData"]["raw"], auth_event());
    }

    #[test]
    fn failures_carry_error_fields() {
        let mut event = auth_event();
        event["event"]["Success"] = json!(false);
        let (_, data) = emit(&MappingParams::default(), &event);
        assert_eq!(data["errorCode"], "OperationFailed");
        assert_eq!(data["errorMessage"], "userAuthenticate did not succeed");
    }

    #[test]
    fn missing_fields_fall_back_instead_of_dropping() {
        let event = json!({"metadata": {"eventType": "UserActivityAuditEvent"}, "event": {}});
        let (id, data) = emit(&MappingParams::default(), &event);
        assert!(id.starts_with("nocid_c"), "{id}");
        assert_eq!(data["version"], FALLBACK_VERSION);
        assert_eq!(data["userIdentity"]["type"], "Unknown");
        assert_eq!(data["userIdentity"]["principalId"], "unknown");
        assert_eq!(data["eventName"], "UserActivityAuditEvent");
        assert_eq!(data["eventTime"], "2020-09-13T12:26:40Z");
        assert_eq!(data["additionalEventData"]["eventTimeSource"], "recordTimestamp");
    }

    #[test]
    fn seconds_and_milliseconds_give_the_same_time() {
        let mut seconds = auth_event();
        seconds["event"]["UTCTimestamp"] = json!(1_700_000_000);
        let mut millis = auth_event();
        millis["event"]["UTCTimestamp"] = json!(1_700_000_000_999_i64);
        let t = |e: &Value| emit(&MappingParams::default(), e).1["eventTime"].clone();
        assert_eq!(t(&seconds), t(&millis));
    }

    #[test]
    fn bad_ips_are_omitted() {
        for ip in [json!(""), json!("not-an-ip"), json!(null), json!(7)] {
            let mut event = auth_event();
            event["event"]["UserIp"] = ip;
            let (_, data) = emit(&MappingParams::default(), &event);
            assert!(data.get("sourceIPAddress").is_none());
        }
        let mut v6 = auth_event();
        v6["event"]["UserIp"] = json!("2001:db8::1");
        assert_eq!(emit(&MappingParams::default(), &v6).1["sourceIPAddress"], "2001:db8::1");
    }

    #[test]
    fn oversized_raw_is_truncated_with_a_marker() {
        let mut event = auth_event();
        event["event"]["AuditKeyValues"] = json!([{"Key": "saml_assertion", "ValueString": "\"q\"".repeat(20_000)}]);
        let (_, data) = emit(&MappingParams::default(), &event);
        let extra = &data["additionalEventData"];
        assert!(extra.get("raw").is_none());
        assert!(extra["rawBytes"].as_u64().expect("bytes") > 28_000);
        let prefix = extra["rawTruncated"].as_str().expect("prefix");
        assert!(prefix.starts_with("{\"") && prefix.len() > 10_000, "{}", prefix.len());
    }

    #[test]
    fn huge_audit_values_keep_details_within_budget() {
        let mut event = auth_event();
        let pairs = |n: usize| -> Value {
            (0..n)
                .map(|i| json!({"Key": format!("k{i}"), "ValueString": "v".repeat(2_000)}))
                .collect()
        };
        event["event"]["AuditKeyValues"] = pairs(60);
        let (_, data) = emit(&MappingParams::default(), &event);
        assert_eq!(data["userIdentity"]["details"]["auditKeyValuesTruncated"], true);
        assert_eq!(
            data["userIdentity"]["details"]["auditKeyValues"]["k0"]
                .as_str()
                .map(str::len),
            Some(1024)
        );
        event["event"]["AuditKeyValues"] = pairs(200);
        let (_, data) = emit(&MappingParams::default(), &event);
        assert_eq!(data["userIdentity"]["details"]["auditKeyValuesOmitted"], true);
        assert!(data["userIdentity"]["details"].get("auditKeyValues").is_none());
    }

    #[test]
    fn repeated_audit_keys_are_kept() {
        let mut event = auth_event();
        event["event"]["AuditKeyValues"] = json!([{"Key": "k", "ValueString": "a"}, {"Key": "k", "ValueString": "b"}]);
        let (_, data) = emit(&MappingParams::default(), &event);
        assert_eq!(
            data["userIdentity"]["details"]["auditKeyValues"],
            json!({"k": "a", "k#2": "b"})
        );
    }

    #[test]
    fn fig_profile_reproduces_the_gateway() {
        let params = MappingParams::for_profile(Profile::Fig);
        let (id, data) = emit(&params, &auth_event());
        assert_eq!(id, "0_1001");
        let expected = json!({
            "version": "1.0",
            "userIdentity": {"type": "AuthActivityAuditEvent", "principalId": "alice@example.com",
                "details": {"AuditKeyValues": [{"Key": "target_name", "ValueString": "bob"}]}},
            "userAgent": "falcon-integration-gateway",
            "eventSource": "crowdstrike",
            "eventName": "userAuthenticate",
            "eventTime": "2023-11-14T22:13:20Z",
            "UID": "0_1001",
            "sourceIPAddress": "192.0.2.10",
            "additionalEventData": {"raw": auth_event()}
        });
        assert_eq!(data, expected);
        let mut no_kv = auth_event();
        no_kv["event"].as_object_mut().expect("object").remove("AuditKeyValues");
        assert_eq!(
            emit(&params, &no_kv).1["userIdentity"]["details"]["AuditKeyValues"],
            "n/a"
        );
    }

    #[test]
    fn filters_what_is_not_selected() {
        let ctx = RecordContext::default();
        let params = MappingParams::default();
        let skip = |v: &[u8]| match map_record(&params, &ctx, v) {
            Outcome::Skip(s) => Some(s),
            Outcome::Emit(_) => None,
        };
        assert_eq!(
            skip(b"400"),
            Some(Skip::NotSelected),
            "the pre-filter sees no selected type"
        );
        let any_type = MappingParams {
            event_types: None,
            ..MappingParams::default()
        };
        let skip_any = |v: &[u8]| match map_record(&any_type, &ctx, v) {
            Outcome::Skip(s) => Some(s),
            Outcome::Emit(_) => None,
        };
        assert_eq!(skip_any(b"400"), Some(Skip::NotJsonObject));
        assert_eq!(skip_any(b"\xff\xfe"), Some(Skip::NotJsonObject));
        assert_eq!(skip_any(br#"{"a":1}"#), Some(Skip::NotFalconEvent));
        let escaped = br#"{"metadata":{"eventType":"AuthActivity\u0041uditEvent"},"event":{"ServiceName":"x"}}"#;
        assert_eq!(skip(escaped), None, "an escape forces the full parse, which selects it");
        let escaped_selected = br#"{"metadata":{"eventType":"AuthActivity\u0041uditEvent","offset":1},"event":{}}"#;
        let ctx = RecordContext {
            key: Some(b"0_1"),
            timestamp_ms: 0,
        };
        assert!(
            matches!(map_record(&params, &ctx, escaped_selected), Outcome::Emit(_)),
            "an escaped type name still passes"
        );
        let detection = json!({"metadata": {"eventType": "DetectionSummaryEvent"}, "event": {}});
        assert_eq!(skip(detection.to_string().as_bytes()), Some(Skip::NotSelected));
        let stream = json!({"metadata": {"eventType": "AuthActivityAuditEvent"},
            "event": {"ServiceName": "Crowdstrike Streaming API", "OperationName": "streamStarted"}});
        assert_eq!(skip(stream.to_string().as_bytes()), Some(Skip::NotSelected));
    }

    #[test]
    fn recipient_parameter_is_emitted() {
        let params = MappingParams {
            recipient_account_id: Some("111122223333".into()),
            ..Default::default()
        };
        let (_, data) = emit(&params, &auth_event());
        assert_eq!(data["recipientAccountId"], "111122223333");
        let text = data.to_string();
        assert!(validate_event_data(&text, ValidationOptions::AS_SENT).is_ok());
    }
}
