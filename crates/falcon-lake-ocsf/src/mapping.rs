//! Falcon audit event → one OCSF event (JSON text), keyed by `metadata.uid`.
//!
//! The function never fails: input that is not a Falcon event is skipped with a
//! reason, a selected event with missing fields is mapped with fallbacks that
//! keep every class's required attributes, an operation without an OCSF
//! activity becomes activity 99 (Other), and a selected type without a class
//! of its own becomes a Base Event. The module README has the table.

use falcon_lake_audit::event::{EventBody, FalconEvent};
use falcon_lake_audit::id::write_event_id;
use falcon_lake_audit::json::{truncate_escaped, truncate_to, ObjectWriter};
use falcon_lake_audit::mapping::write_audit_pairs;
use falcon_lake_audit::params::API_ACTIVITY_EVENT_TYPE;
use falcon_lake_audit::select::{Selected, Selector};
use falcon_lake_audit::time::epoch_millis_from_any_unit;
use falcon_lake_audit::{AuditRecord, Outcome, RecordContext, Skip};

use crate::class::{severity, status, user_type, Class, ACTIVITY_OTHER, AUTH_PROTOCOL_SAML, LOGON_REMOTE_INTERACTIVE};
use crate::params::OcsfParams;

/// `metadata.product`.
pub const PRODUCT_NAME: &str = "Falcon";
/// `metadata.product.vendor_name`.
pub const VENDOR_NAME: &str = "CrowdStrike";
/// `metadata.log_provider`.
pub const LOG_PROVIDER: &str = "Falcon Event Streams";
/// `service.name` of a Real Time Response session.
pub const RTR_SERVICE: &str = "Real Time Response";
/// Longest text copied from the event into a mapped attribute, in bytes.
pub const MAX_TEXT: usize = 4_096;
/// Budget of each part of `unmapped` (audit key values, attributes, commands).
pub const UNMAPPED_BUDGET: usize = 128_000;
/// Budget of `raw_data`, escaped. With the others it keeps an event well below
/// CloudWatch Logs' 1 MB per event.
pub const RAW_BUDGET: usize = 256_000;
/// Most `resources` taken from one event's audit key values.
const MAX_RESOURCES: usize = 32;

/// The OCSF mapping with its parameters, for mapping many records.
#[derive(Debug, Clone)]
pub struct Mapper {
    params: OcsfParams,
    selector: Selector,
}

impl Default for Mapper {
    fn default() -> Self {
        Self::new(OcsfParams::default())
    }
}

impl Mapper {
    /// A mapper for `params`.
    pub fn new(params: OcsfParams) -> Self {
        let selector = params.selector();
        Self { params, selector }
    }

    /// The parameters.
    pub fn params(&self) -> &OcsfParams {
        &self.params
    }

    /// Maps one raw record: key = `metadata.uid`, value = the OCSF event.
    pub fn map(&self, ctx: &RecordContext<'_>, value: &[u8]) -> Outcome {
        let mut record = AuditRecord::default();
        match self.map_into(ctx, value, &mut record) {
            Ok(()) => Outcome::Emit(record),
            Err(skip) => Outcome::Skip(skip),
        }
    }

    /// Maps one raw record into `out` (`id` = `metadata.uid`, `event_data` =
    /// the OCSF JSON), reusing its buffers. On `Err`, `out` holds nothing meaningful.
    pub fn map_into(&self, ctx: &RecordContext<'_>, value: &[u8], out: &mut AuditRecord) -> Result<(), Skip> {
        self.selector.select(ctx, value, |selected| {
            let facts = Facts::new(selected, ctx);
            out.id.clear();
            write_event_id(
                &mut out.id,
                true,
                facts.cid(),
                selected.partition,
                facts.event.metadata.offset,
                selected.raw.as_bytes(),
            );
            let w = ObjectWriter::reusing(std::mem::take(&mut out.event_data), selected.raw.len() + 1_024);
            out.event_data = write_event(w, &self.params, &facts, &out.id);
        })
    }
}

/// The shape of the class-specific part of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// A Falcon console login (Authentication).
    Logon { mfa: bool, saml: bool },
    /// The stream's own `streamStarted`/`streamStopped` (Authentication).
    StreamSession,
    /// A Real Time Response session (Authentication).
    RemoteSession,
    /// A user created, enabled, changed… (Account Change).
    Account,
    /// Roles or subscriptions granted or revoked (User Access Management).
    Access,
    /// A console or system action (API Activity).
    Action,
    /// An API client created or deleted (API Activity).
    ApiClient,
    /// An API request (API Activity).
    Request,
    /// A type with no class of its own (Base Event).
    Other,
}

/// Class, activity and shape of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Classified {
    class: Class,
    activity: u32,
    shape: Shape,
}

fn classified(class: Class, activity: u32, shape: Shape) -> Classified {
    Classified { class, activity, shape }
}

/// Everything known about one selected event.
struct Facts<'e, 'a> {
    event: &'e FalconEvent<'a>,
    event_type: &'e str,
    raw: &'e str,
    ctx: &'e RecordContext<'e>,
    kind: Classified,
}

impl<'e, 'a> Facts<'e, 'a> {
    fn new(selected: Selected<'e, 'a>, ctx: &'e RecordContext<'e>) -> Self {
        let kind = classify(selected.event_type, &selected.event.event);
        Self {
            event: selected.event,
            event_type: selected.event_type,
            raw: selected.raw,
            ctx,
            kind,
        }
    }

    fn body(&self) -> &EventBody<'a> {
        &self.event.event
    }

    fn cid(&self) -> Option<&str> {
        self.event.metadata.customer_id.as_deref().filter(|c| !c.is_empty())
    }

    fn operation(&self) -> Option<&str> {
        non_blank(self.body().operation_name.as_deref())
    }

    fn user_id(&self) -> Option<&str> {
        non_blank(self.body().user_id.as_deref())
    }

    /// A value of `AuditKeyValues`, else of `Attributes` (the audit pairs are
    /// the primary source, Falcon event spec §14).
    fn value(&self, key: &str) -> Option<&str> {
        non_blank(self.body().audit_value(key)).or_else(|| non_blank(self.body().attribute(key)))
    }

    /// The event time in epoch ms and the number it came from: `UTCTimestamp`,
    /// a session's start or end, `eventCreationTime`, else the record's timestamp.
    fn time(&self) -> (i64, Option<i64>) {
        let body = self.body();
        let candidates = [
            body.utc_timestamp,
            body.start_timestamp,
            body.end_timestamp,
            self.event.metadata.event_creation_time,
        ];
        candidates
            .into_iter()
            .flatten()
            .find_map(|v| epoch_millis_from_any_unit(v).map(|ms| (ms, Some(v))))
            .unwrap_or_else(|| (epoch_millis_from_any_unit(self.ctx.timestamp_ms).unwrap_or(0), None))
    }

    /// `status_id` and, for a failure, why.
    fn status(&self) -> (u32, Option<String>) {
        match self.body().success {
            Some(true) => (status::SUCCESS, None),
            Some(false) => {
                let reason = match non_blank(self.body().message.as_deref()) {
                    Some(message) => clip(message).to_string(),
                    None => format!("{} did not succeed", clip(self.operation().unwrap_or(self.event_type))),
                };
                (status::FAILURE, Some(reason))
            }
            // A session event is only sent for a session that was opened.
            None if self.kind.shape == Shape::RemoteSession => (status::SUCCESS, None),
            None => (status::UNKNOWN, None),
        }
    }

    /// The source IP: `UserIp`, and for an API request `SourceIp` first.
    fn source_ip(&self) -> Option<&str> {
        let body = self.body();
        let user_ip = body.user_ip.as_deref().and_then(valid_ip);
        let source_ip = body.source_ip.as_deref().and_then(valid_ip);
        match self.kind.shape {
            Shape::Request => source_ip
                .or(user_ip)
                .or_else(|| self.body().attribute("user_ip").and_then(valid_ip)),
            _ => user_ip.or(source_ip),
        }
    }
}

fn non_blank(value: Option<&str>) -> Option<&str> {
    value.filter(|v| !v.trim().is_empty())
}

fn clip(text: &str) -> &str {
    truncate_to(text.trim(), MAX_TEXT)
}

fn valid_ip(ip: &str) -> Option<&str> {
    let ip = ip.trim();
    (ip.len() <= 40 && ip.parse::<std::net::IpAddr>().is_ok()).then_some(ip)
}

/// Class and activity of an event, from its type and operation.
fn classify(event_type: &str, body: &EventBody<'_>) -> Classified {
    let op = body.operation_name.as_deref().unwrap_or("").trim();
    match event_type {
        "AuthActivityAuditEvent" => classify_auth(op),
        "UserActivityAuditEvent" => classified(Class::ApiActivity, verb_activity(op), Shape::Action),
        API_ACTIVITY_EVENT_TYPE => {
            let method = body.attribute("request_method").unwrap_or("");
            classified(Class::ApiActivity, method_activity(method), Shape::Request)
        }
        "RemoteResponseSessionStartEvent" => classified(Class::Authentication, 1, Shape::RemoteSession),
        "RemoteResponseSessionEndEvent" => classified(Class::Authentication, 2, Shape::RemoteSession),
        _ => classified(Class::Base, ACTIVITY_OTHER, Shape::Other),
    }
}

/// `AuthActivityAuditEvent` operations (Falcon event spec §12.1), compared
/// without regard to case.
fn classify_auth(op: &str) -> Classified {
    const TABLE: [(&str, Class, u32, Shape); 21] = [
        (
            "userAuthenticate",
            Class::Authentication,
            1,
            Shape::Logon {
                mfa: false,
                saml: false,
            },
        ),
        (
            "twoFactorAuthenticate",
            Class::Authentication,
            1,
            Shape::Logon { mfa: true, saml: false },
        ),
        (
            "saml2Assert",
            Class::Authentication,
            1,
            Shape::Logon { mfa: false, saml: true },
        ),
        ("streamStarted", Class::Authentication, 1, Shape::StreamSession),
        ("streamStopped", Class::Authentication, 2, Shape::StreamSession),
        ("createUser", Class::AccountChange, 1, Shape::Account),
        ("activateUser", Class::AccountChange, 2, Shape::Account),
        ("changePassword", Class::AccountChange, 3, Shape::Account),
        ("requestResetPassword", Class::AccountChange, 4, Shape::Account),
        ("confirmResetPassword", Class::AccountChange, 4, Shape::Account),
        ("deactivateUser", Class::AccountChange, 5, Shape::Account),
        ("deleteUser", Class::AccountChange, 6, Shape::Account),
        ("updateUser", Class::AccountChange, ACTIVITY_OTHER, Shape::Account),
        ("grantUserRoles", Class::UserAccess, 1, Shape::Access),
        ("revokeUserRoles", Class::UserAccess, 2, Shape::Access),
        ("updateUserRoles", Class::UserAccess, ACTIVITY_OTHER, Shape::Access),
        ("grantCustomerSubscriptions", Class::UserAccess, 1, Shape::Access),
        ("revokeCustomerSubscriptions", Class::UserAccess, 2, Shape::Access),
        ("CreateAPIClient", Class::ApiActivity, 1, Shape::ApiClient),
        ("DeleteAPIClients", Class::ApiActivity, 4, Shape::ApiClient),
        ("DeleteAPIClient", Class::ApiActivity, 4, Shape::ApiClient),
    ];
    TABLE
        .iter()
        .find(|(name, ..)| name.eq_ignore_ascii_case(op))
        .map(|&(_, class, activity, shape)| classified(class, activity, shape))
        .unwrap_or_else(|| classified(Class::ApiActivity, verb_activity(op), Shape::Action))
}

/// API Activity's `activity_id` from the first verb of an operation name
/// (`detection_update`, `reveal_token`, `updateGroup`): 1 Create, 2 Read,
/// 3 Update, 4 Delete, else 99 Other.
fn verb_activity(op: &str) -> u32 {
    const VERBS: [(&str, u32); 14] = [
        ("create", 1),
        ("add", 1),
        ("get", 2),
        ("read", 2),
        ("list", 2),
        ("query", 2),
        ("reveal", 2),
        ("view", 2),
        ("update", 3),
        ("set", 3),
        ("change", 3),
        ("modify", 3),
        ("delete", 4),
        ("remove", 4),
    ];
    words(op)
        .find_map(|word| VERBS.iter().find(|(verb, _)| verb.eq_ignore_ascii_case(word)))
        .map_or(ACTIVITY_OTHER, |(_, activity)| *activity)
}

/// The words of an identifier: split at `_`, `-`, spaces, `.`, `/` and before
/// an upper-case letter that follows a lower-case one.
fn words(op: &str) -> impl Iterator<Item = &str> {
    op.split(['_', '-', ' ', '.', '/']).flat_map(|part| {
        let bytes = part.as_bytes();
        let mut cuts = vec![0];
        cuts.extend((1..bytes.len()).filter(|&i| bytes[i].is_ascii_uppercase() && bytes[i - 1].is_ascii_lowercase()));
        cuts.push(bytes.len());
        (0..cuts.len() - 1)
            .map(move |i| &part[cuts[i]..cuts[i + 1]])
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
    })
}

/// API Activity's `activity_id` from an HTTP method.
fn method_activity(method: &str) -> u32 {
    match method.trim().to_ascii_uppercase().as_str() {
        "POST" => 1,
        "GET" | "HEAD" => 2,
        "PUT" | "PATCH" => 3,
        "DELETE" => 4,
        _ => ACTIVITY_OTHER,
    }
}

fn write_event(mut w: ObjectWriter, params: &OcsfParams, f: &Facts<'_, '_>, uid: &str) -> String {
    let Classified { class, activity, shape } = f.kind;
    let activity_name = class.activity_name(activity).unwrap_or("Other");
    w.int("class_uid", i128::from(class.uid()));
    w.string("class_name", class.name());
    w.int("category_uid", i128::from(class.category_uid()));
    if let Some(category) = class.category_name() {
        w.string("category_name", category);
    }
    w.int("activity_id", i128::from(activity));
    w.string("activity_name", activity_name);
    w.int("type_uid", i128::from(class.uid()) * 100 + i128::from(activity));
    w.string_concat("type_name", &[class.name(), ": ", activity_name]);
    w.int("severity_id", i128::from(severity::INFORMATIONAL));
    w.string(
        "severity",
        severity::name(severity::INFORMATIONAL).unwrap_or("Informational"),
    );
    let (status_id, detail) = f.status();
    w.int("status_id", i128::from(status_id));
    w.string("status", status::name(status_id).unwrap_or("Unknown"));
    if let Some(detail) = &detail {
        w.string("status_detail", detail);
    }
    if shape == Shape::Request {
        if let Some(code) = non_blank(f.body().attribute("status_code")) {
            w.string("status_code", clip(code));
        }
    }
    let (time, original) = f.time();
    w.int("time", i128::from(time));
    write_message(&mut w, f);
    write_metadata(&mut w, params, f, uid, original);
    match shape {
        Shape::Logon { mfa, saml } => write_logon(&mut w, f, mfa, saml),
        Shape::StreamSession => write_stream_session(&mut w, f),
        Shape::RemoteSession => write_remote_session(&mut w, f),
        Shape::Account => write_account_change(&mut w, f),
        Shape::Access => write_access_change(&mut w, f),
        Shape::Action | Shape::ApiClient => write_action(&mut w, f),
        Shape::Request => write_request(&mut w, f),
        Shape::Other => {}
    }
    write_unmapped(&mut w, f);
    if params.carry_raw || shape == Shape::Other {
        write_raw_data(&mut w, f.raw);
    }
    w.finish()
}

/// `message`: what happened, in a few words.
fn write_message(w: &mut ObjectWriter, f: &Facts<'_, '_>) {
    let body = f.body();
    match f.kind.shape {
        Shape::RemoteSession => {
            let what = if f.kind.activity == 1 {
                " session started"
            } else {
                " session ended"
            };
            match non_blank(body.hostname.as_deref()) {
                Some(host) => w.string_concat("message", &[RTR_SERVICE, what, " on ", clip(host)]),
                None => w.string_concat("message", &[RTR_SERVICE, what]),
            };
        }
        Shape::Request => {
            let method = non_blank(body.attribute("request_method")).map(clip).unwrap_or("");
            let path = non_blank(body.attribute("request_path")).map(clip).unwrap_or("");
            w.string_concat("message", &["API request ", method, " ", path]);
        }
        _ => {
            let service = non_blank(body.service_name.as_deref()).map(clip);
            match (service, f.operation().map(clip)) {
                (Some(service), Some(op)) => w.string_concat("message", &[service, " ", op]),
                (Some(text), None) | (None, Some(text)) => w.string("message", text),
                (None, None) => w.string("message", f.event_type),
            };
        }
    }
}

fn write_metadata(w: &mut ObjectWriter, params: &OcsfParams, f: &Facts<'_, '_>, uid: &str, original: Option<i64>) {
    w.begin("metadata");
    w.string("version", &params.ocsf_version);
    w.begin("product")
        .string("name", PRODUCT_NAME)
        .string("vendor_name", VENDOR_NAME)
        .end();
    w.string("uid", uid);
    if let Some(cid) = f.cid() {
        w.string("tenant_uid", clip(cid));
    }
    w.string("log_name", clip(f.event_type));
    w.string("log_provider", LOG_PROVIDER);
    if let Some(op) = f.operation() {
        w.string("event_code", clip(op));
    }
    if let Some(created) = f
        .event
        .metadata
        .event_creation_time
        .and_then(epoch_millis_from_any_unit)
    {
        w.int("logged_time", i128::from(created));
    }
    if let Some(original) = original {
        w.int_string("original_time", original);
    }
    if let Some(trace) = f.value("trace_id") {
        w.string("correlation_uid", clip(trace));
    }
    w.end();
}

/// A user object: `name` (and `email_addr` when it is one), `uid`, `type_id`
/// with its caption; `name` "unknown" when nothing names the user.
fn write_user(w: &mut ObjectWriter, key: &str, name: Option<&str>, uid: Option<&str>, kind: (u32, &str)) {
    w.begin(key);
    let name = name.map(clip);
    let uid = uid.map(clip);
    match (name, uid) {
        (None, None) => {
            w.string("name", "unknown");
        }
        (name, _) => {
            if let Some(name) = name {
                w.string("name", name);
                if is_email(name) {
                    w.string("email_addr", name);
                }
            }
        }
    }
    if let Some(uid) = uid {
        w.string("uid", uid);
    }
    w.int("type_id", i128::from(kind.0));
    w.string("type", kind.1);
    w.end();
}

/// `type_id` and caption of a Falcon `UserId`.
fn user_kind(user: Option<&str>) -> (u32, &'static str) {
    let Some(user) = user.map(str::trim).filter(|u| !u.is_empty()) else {
        return (user_type::UNKNOWN, "Unknown");
    };
    let starts = |prefix: &str| user.get(..prefix.len()).is_some_and(|p| p.eq_ignore_ascii_case(prefix));
    if starts("api:") || starts("api-client-id:") {
        (user_type::OTHER, "API Client")
    } else if user.eq_ignore_ascii_case("crowdstrike") {
        (user_type::SYSTEM, "System")
    } else {
        (user_type::USER, "User")
    }
}

/// `actor.user`: who did it (`UserId`, `actor_user_uuid`).
fn write_actor(w: &mut ObjectWriter, f: &Facts<'_, '_>) {
    w.begin("actor");
    write_user(
        w,
        "user",
        f.user_id(),
        f.value("actor_user_uuid"),
        user_kind(f.user_id()),
    );
    w.end();
}

fn write_src_endpoint(w: &mut ObjectWriter, f: &Facts<'_, '_>, required: bool) {
    match f.source_ip() {
        Some(ip) => {
            w.begin("src_endpoint").string("ip", ip).end();
        }
        // API Activity requires a source; Falcon does not always say (spec open question 6).
        None if required => {
            w.begin("src_endpoint").string("name", "unknown").end();
        }
        None => {}
    }
}

fn write_service(w: &mut ObjectWriter, name: &str) {
    w.begin("service").string("name", clip(name)).end();
}

fn write_logon(w: &mut ObjectWriter, f: &Facts<'_, '_>, mfa: bool, saml: bool) {
    write_user(w, "user", f.user_id(), None, user_kind(f.user_id()));
    let service = non_blank(f.body().service_name.as_deref()).unwrap_or(PRODUCT_NAME);
    write_service(w, service);
    w.bool("is_mfa", mfa);
    if saml {
        w.int("auth_protocol_id", i128::from(AUTH_PROTOCOL_SAML));
        w.string("auth_protocol", "SAML");
    }
    write_src_endpoint(w, f, false);
}

fn write_stream_session(w: &mut ObjectWriter, f: &Facts<'_, '_>) {
    write_user(
        w,
        "user",
        f.user_id(),
        f.value("APIClientID"),
        (user_type::OTHER, "API Client"),
    );
    let service = non_blank(f.body().service_name.as_deref()).unwrap_or(PRODUCT_NAME);
    write_service(w, service);
    write_src_endpoint(w, f, false);
}

fn write_remote_session(w: &mut ObjectWriter, f: &Facts<'_, '_>) {
    let body = f.body();
    let user = non_blank(body.user_name.as_deref()).or(f.user_id());
    write_user(w, "user", user, None, user_kind(user));
    let host = non_blank(body.hostname.as_deref());
    let agent = non_blank(body.agent_id.as_deref());
    if host.is_some() || agent.is_some() {
        w.begin("dst_endpoint");
        if let Some(host) = host {
            w.string("hostname", clip(host));
        }
        if let Some(agent) = agent {
            w.string("uid", clip(agent));
        }
        w.end();
    }
    write_service(w, RTR_SERVICE);
    if let Some(session) = non_blank(body.session_id.as_deref()) {
        w.begin("session")
            .string("uid", clip(session))
            .bool("is_remote", true)
            .end();
    }
    w.bool("is_remote", true);
    w.int("logon_type_id", i128::from(LOGON_REMOTE_INTERACTIVE));
    w.string("logon_type", "Remote Interactive");
    write_src_endpoint(w, f, false);
}

/// The user acted upon: `target_name` (else `target_user`, else the actor) and
/// `target_user_uuid` / `target_uuid`.
fn write_target_user(w: &mut ObjectWriter, f: &Facts<'_, '_>) {
    let target = f.value("target_name").or_else(|| f.value("target_user"));
    let uid = f.value("target_user_uuid").or_else(|| f.value("target_uuid"));
    let name = target.or(if uid.is_none() { f.user_id() } else { None });
    write_user(w, "user", name, uid, user_kind(name.or(uid)));
}

fn write_account_change(w: &mut ObjectWriter, f: &Facts<'_, '_>) {
    write_target_user(w, f);
    write_actor(w, f);
    write_src_endpoint(w, f, false);
}

fn write_access_change(w: &mut ObjectWriter, f: &Facts<'_, '_>) {
    w.begin_array("privileges");
    for privilege in privileges(f) {
        w.string("", clip(privilege));
    }
    w.end();
    write_target_user(w, f);
    write_actor(w, f);
    write_src_endpoint(w, f, false);
}

/// Roles (`roles`, comma-separated) or, for subscriptions, every value of a key
/// that names them; empty when the event names none.
fn privileges<'f>(f: &'f Facts<'_, '_>) -> Vec<&'f str> {
    let split = |list: &'f str| list.split(',').map(str::trim).filter(|p| !p.is_empty());
    if let Some(roles) = f.value("roles") {
        return split(roles).collect();
    }
    f.body()
        .audit_pairs()
        .iter()
        .filter(|(key, _)| key.to_ascii_lowercase().contains("subscription"))
        .flat_map(|(_, value)| split(value))
        .collect()
}

fn write_action(w: &mut ObjectWriter, f: &Facts<'_, '_>) {
    write_actor(w, f);
    w.begin("api");
    w.string("operation", clip(f.operation().unwrap_or(f.event_type)));
    if let Some(service) = non_blank(f.body().service_name.as_deref()) {
        w.begin("service").string("name", clip(service)).end();
    }
    if let Some(trace) = f.value("trace_id") {
        w.begin("request").string("uid", clip(trace)).end();
    }
    w.end();
    write_resources(w, f);
    write_src_endpoint(w, f, true);
}

/// `resources`: an API client created or deleted, or the ids an action names
/// (`detection_id`, `device_id`… become `{uid, type: "detection"}`).
fn write_resources(w: &mut ObjectWriter, f: &Facts<'_, '_>) {
    if f.kind.shape == Shape::ApiClient {
        let uid = f.value("id").or_else(|| f.value("APIClientID"));
        let name = f.value("name");
        if uid.is_some() || name.is_some() {
            w.begin_array("resources").begin("");
            if let Some(uid) = uid {
                w.string("uid", clip(uid));
            }
            if let Some(name) = name {
                w.string("name", clip(name));
            }
            w.string("type", "API Client").end().end();
        }
        return;
    }
    let ids = f
        .body()
        .audit_pairs()
        .iter()
        .filter_map(|(key, value)| {
            let kind = key.strip_suffix("_id").filter(|k| !k.is_empty() && *k != "trace")?;
            non_blank(Some(value)).map(|value| (kind, value))
        })
        .take(MAX_RESOURCES);
    let mut open = false;
    for (kind, uid) in ids {
        if !open {
            w.begin_array("resources");
            open = true;
        }
        w.begin("").string("uid", clip(uid)).string("type", clip(kind)).end();
    }
    if open {
        w.end();
    }
}

fn write_request(w: &mut ObjectWriter, f: &Facts<'_, '_>) {
    let body = f.body();
    let method = non_blank(body.attribute("request_method")).map(clip);
    let path = non_blank(body.attribute("request_path")).map(clip);
    let host = non_blank(body.attribute("request_host")).map(clip);
    w.begin("actor");
    let client = f.value("APIClientID");
    if let Some(client) = client {
        w.string("app_uid", clip(client));
    }
    if f.user_id().is_some() || client.is_none() {
        write_user(w, "user", f.user_id(), None, user_kind(f.user_id()));
    }
    w.end();
    w.begin("api");
    match (method, path) {
        (Some(method), Some(path)) => w.string_concat("operation", &[method, " ", path]),
        _ => w.string("operation", clip(f.operation().unwrap_or(f.event_type))),
    };
    if let Some(service) = non_blank(body.service_name.as_deref()) {
        w.begin("service").string("name", clip(service)).end();
    }
    if let Some(trace) = f.value("trace_id") {
        w.begin("request").string("uid", clip(trace)).end();
    }
    w.end();
    let agent = non_blank(body.attribute("user_agent")).map(clip);
    if method.is_some() || path.is_some() || agent.is_some() {
        w.begin("http_request");
        if let Some(method) = method {
            w.string("http_method", method);
        }
        if let Some(path) = path {
            w.begin("url").string("path", path);
            if let Some(host) = host {
                w.string("hostname", host);
            }
            w.end();
        }
        if let Some(agent) = agent {
            w.string("user_agent", agent);
        }
        w.end();
    }
    if let Some(code) = body.attribute("status_code").and_then(|c| c.trim().parse::<u16>().ok()) {
        w.begin("http_response").int("code", i128::from(code)).end();
    }
    if let Some(micros) = body
        .attribute("elapsed_microseconds")
        .and_then(|m| m.trim().parse::<i64>().ok())
    {
        if micros >= 0 {
            w.int("duration", i128::from(micros / 1_000));
        }
    }
    write_src_endpoint(w, f, true);
}

/// `unmapped`: the audit key values as an object, `Attributes` and
/// `Commands` as received; each part that would exceed its budget is
/// replaced by its size.
fn write_unmapped(w: &mut ObjectWriter, f: &Facts<'_, '_>) {
    let body = f.body();
    let pairs = body.audit_pairs();
    if pairs.is_empty() && body.attributes.is_none() && body.commands.is_none() {
        return;
    }
    w.begin("unmapped");
    if !pairs.is_empty() {
        let mark = w.mark();
        w.begin("audit_key_values");
        write_audit_pairs(w, pairs, usize::MAX);
        w.end();
        let written = w.written_since(&mark);
        if written > UNMAPPED_BUDGET {
            w.rollback(mark);
            w.int("audit_key_values_omitted_bytes", written as i128);
        }
    }
    for (name, omitted, raw) in [
        ("attributes", "attributes_omitted_bytes", body.attributes),
        ("commands", "commands_omitted_bytes", body.commands),
    ] {
        match raw {
            Some(raw) if raw.len() <= UNMAPPED_BUDGET => {
                w.raw(name, raw);
            }
            Some(raw) => {
                w.int(omitted, raw.len() as i128);
            }
            None => {}
        }
    }
    w.end();
}

/// `raw_data` (the event as text, cut at [`RAW_BUDGET`]) and `raw_data_size`.
fn write_raw_data(w: &mut ObjectWriter, raw: &str) {
    // Escaping makes at most 6 bytes of one: an event that short fits whole,
    // without a walk through its characters for the cut.
    let kept = if raw.len().saturating_mul(6) + 2 <= RAW_BUDGET {
        raw
    } else {
        truncate_escaped(raw, RAW_BUDGET)
    };
    w.string("raw_data", kept);
    w.int("raw_data_size", raw.len() as i128);
}

/// True when `text` matches OCSF's `email_t` pattern
/// (`^[a-zA-Z0-9!#$%&'*+-/=?^_`{|}~.]+@[a-zA-Z0-9-]+\.[a-zA-Z0-9-.]+$`).
pub fn is_email(text: &str) -> bool {
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+,-./=?^_`{|}~".contains(&b));
    let Some((first, rest)) = domain.split_once('.') else {
        return false;
    };
    let label = |s: &str, dot: bool| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || (dot && b == b'.'))
    };
    local_ok && label(first, false) && label(rest, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_and_methods_pick_activities() {
        assert_eq!(verb_activity("detection_update"), 3);
        assert_eq!(verb_activity("reveal_token"), 2);
        assert_eq!(verb_activity("updateGroup"), 3);
        assert_eq!(verb_activity("CreateAPIClient"), 1);
        assert_eq!(verb_activity("hide_host"), ACTIVITY_OTHER);
        assert_eq!(verb_activity("selfAcceptEula"), ACTIVITY_OTHER);
        assert_eq!(verb_activity(""), ACTIVITY_OTHER);
        assert_eq!(method_activity("post"), 1);
        assert_eq!(method_activity("HEAD"), 2);
        assert_eq!(method_activity("PATCH"), 3);
        assert_eq!(method_activity("DELETE"), 4);
        assert_eq!(method_activity("OPTIONS"), ACTIVITY_OTHER);
    }

    #[test]
    fn emails_follow_the_ocsf_pattern() {
        assert!(is_email("alice@example.com"));
        assert!(is_email("first.last+tag@sub.example.org"));
        for not in [
            "API:abc",
            "a@b",
            "@b.c",
            "a@.c",
            "a b@c.d",
            "a@b.c@d",
            "Crowdstrike",
            "a@b_c.d",
        ] {
            assert!(!is_email(not), "{not}");
        }
    }
}
