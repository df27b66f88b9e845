//! Seeded generator of realistic Falcon events, quirks included (see the spec's
//! §12–§14): seconds or milliseconds, missing `version` and `UserIp`, every
//! `ServiceName` spelling, int-or-string fields, `event` before `metadata`,
//! FILETIME-like times, unknown types, and the occasional event of tens of KB.
//!
//! An event is a pure function of (seed, sequence number, offset), so a test can
//! regenerate exactly what the emulator served.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::json::ObjectWriter;

/// 2026-01-01T00:00:00Z: by default, generated events are spread after it, 4 per second.
pub const BASE_EPOCH_SECONDS: i64 = 1_767_225_600;

/// Which event types to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mix {
    /// Every event type in the proportions of a busy tenant.
    Realistic,
    /// Only user-activity audit events (`AuthActivityAuditEvent`, `UserActivityAuditEvent`).
    Audit,
}

/// Generates events for one tenant.
#[derive(Debug, Clone)]
pub struct Generator {
    seed: u64,
    cid: String,
    mix: Mix,
    min_bytes: usize,
    base_time: i64,
}

/// One generated event.
#[derive(Debug, Clone)]
pub struct Generated {
    /// `metadata.eventType`.
    pub event_type: &'static str,
    /// The event as one compact JSON line (no newline).
    pub line: String,
}

const USERS: [&str; 8] = [
    "alice@example.com",
    "bob@example.com",
    "carol.admin@example.org",
    "dave@example.net",
    "erin@example.com",
    "frank.soc@example.org",
    "grace@example.com",
    "heidi@example.net",
];

const AUTH_OPS: [&str; 17] = [
    "userAuthenticate",
    "twoFactorAuthenticate",
    "saml2Assert",
    "requestResetPassword",
    "confirmResetPassword",
    "changePassword",
    "selfAcceptEula",
    "activateUser",
    "deactivateUser",
    "createUser",
    "deleteUser",
    "updateUser",
    "updateUserRoles",
    "grantUserRoles",
    "revokeUserRoles",
    "grantCustomerSubscriptions",
    "revokeCustomerSubscriptions",
];

const AUTH_SERVICES: [&str; 3] = [
    "CrowdStrike Authentication",
    "Crowdstrike Authentication",
    "CrowdstrikeAuthentication",
];

impl Generator {
    /// A generator for tenant `cid`.
    pub fn new(seed: u64, cid: impl Into<String>, mix: Mix) -> Self {
        Self {
            seed,
            cid: cid.into(),
            mix,
            min_bytes: 0,
            base_time: BASE_EPOCH_SECONDS,
        }
    }

    /// Starts the events' times at `epoch_seconds` instead of [`BASE_EPOCH_SECONDS`].
    pub fn with_base_time(mut self, epoch_seconds: i64) -> Self {
        self.base_time = epoch_seconds;
        self
    }

    /// Pads events shorter than `min_bytes` (0: no padding).
    pub fn with_min_bytes(mut self, min_bytes: usize) -> Self {
        self.min_bytes = min_bytes;
        self
    }

    /// The tenant's customer ID.
    pub fn cid(&self) -> &str {
        &self.cid
    }

    /// Event number `seq`, carrying `offset`.
    pub fn event(&self, seq: u64, offset: u64) -> Generated {
        let mut rng = StdRng::seed_from_u64(self.seed ^ seq.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let time = self.base_time + (seq / 4) as i64;
        let kind = self.pick_kind(&mut rng);
        let (event_type, body) = match kind {
            Kind::Auth => ("AuthActivityAuditEvent", auth_event(&mut rng, time)),
            Kind::UserActivity => ("UserActivityAuditEvent", user_activity_event(&mut rng, time)),
            Kind::ApiActivity => ("APIActivityAuditEvent", api_activity_event(&mut rng, time, &self.cid)),
            Kind::Detection(name) => (name, detection_event(&mut rng, time)),
            Kind::Incident => ("IncidentSummaryEvent", incident_event(&mut rng, time)),
            Kind::RemoteResponse(name) => (name, remote_response_event(&mut rng, time, name)),
            Kind::Firewall => ("FirewallMatchEvent", firewall_event(&mut rng, time)),
            Kind::Idp => ("IdpDetectionSummaryEvent", idp_event(&mut rng, time)),
            Kind::Other(name) => (name, other_event(&mut rng, time)),
        };
        let cid = if rng.random_bool(0.03) {
            child_cid(&self.cid)
        } else {
            self.cid.clone()
        };
        let metadata = metadata(&mut rng, &cid, offset, event_type, time);
        let mut body = body;
        pad(&mut rng, &mut body, self.min_bytes.saturating_sub(metadata.len() + 24));
        let line = envelope(&mut rng, metadata, body);
        Generated { event_type, line }
    }

    fn pick_kind(&self, rng: &mut StdRng) -> Kind {
        let roll = rng.random_range(0..100);
        match self.mix {
            Mix::Audit if roll < 60 => Kind::Auth,
            Mix::Audit => Kind::UserActivity,
            Mix::Realistic => match roll {
                0..=19 => Kind::Auth,
                20..=34 => Kind::UserActivity,
                35..=46 => Kind::ApiActivity,
                47..=58 => Kind::Detection("EppDetectionSummaryEvent"),
                59..=62 => Kind::Detection("DetectionSummaryEvent"),
                63..=66 => Kind::Incident,
                67..=69 => Kind::RemoteResponse("RemoteResponseSessionStartEvent"),
                70..=72 => Kind::RemoteResponse("RemoteResponseSessionEndEvent"),
                73..=79 => Kind::Firewall,
                80..=83 => Kind::Idp,
                84..=86 => Kind::Other("CustomerIOCEvent"),
                87..=89 => Kind::Other("IdentityProtectionEvent"),
                90..=92 => Kind::Other("ScheduledReportNotificationEvent"),
                93..=95 => Kind::Other("XdrDetectionSummaryEvent"),
                96..=97 => Kind::Other("MobileDetectionSummaryEvent"),
                _ => Kind::Other("FutureTelemetrySummaryEvent"),
            },
        }
    }
}

enum Kind {
    Auth,
    UserActivity,
    ApiActivity,
    Detection(&'static str),
    Incident,
    RemoteResponse(&'static str),
    Firewall,
    Idp,
    Other(&'static str),
}

fn metadata(rng: &mut StdRng, cid: &str, offset: u64, event_type: &str, time: i64) -> ObjectWriter {
    let mut m = ObjectWriter::new();
    m.string("customerIDString", cid);
    m.int("offset", i128::from(offset));
    m.string("eventType", event_type);
    // Old-era events carry eventCreationTime in seconds and no version.
    if rng.random_bool(0.12) {
        m.int("eventCreationTime", i128::from(time));
    } else {
        m.int("eventCreationTime", i128::from(time) * 1000 + rng.random_range(0..1000));
    }
    if !rng.random_bool(0.08) {
        m.string("version", "1.0");
    }
    m
}

fn envelope(rng: &mut StdRng, metadata: ObjectWriter, body: ObjectWriter) -> String {
    let mut e = ObjectWriter::new();
    if rng.random_bool(0.3) {
        e.object("event", body).object("metadata", metadata);
    } else {
        e.object("metadata", metadata).object("event", body);
    }
    e.finish()
}

/// Adds about `bytes` bytes to `body` as an object of short string fields, so the
/// padding costs a parser what real fields of that size would (not one long string).
fn pad(rng: &mut StdRng, body: &mut ObjectWriter, bytes: usize) {
    const ENTRY: usize = 31; // `"pNNN":"<22 hex>",`
    let wanted = bytes.saturating_sub(body.len() + 20);
    if wanted < ENTRY {
        return;
    }
    let mut padding = ObjectWriter::new();
    for i in 0..wanted / ENTRY {
        padding.string(&format!("p{i:03}"), &hex(rng, 22));
    }
    body.object("EmulatorPadding", padding);
}

fn child_cid(cid: &str) -> String {
    let mut child: Vec<char> = cid.chars().collect();
    child.reverse();
    child.into_iter().collect()
}

fn hex(rng: &mut StdRng, len: usize) -> String {
    (0..len)
        .map(|_| char::from_digit(rng.random_range(0..16), 16).unwrap_or('0'))
        .collect()
}

fn ip(rng: &mut StdRng) -> String {
    if rng.random_bool(0.15) {
        format!("2001:db8::{:x}", rng.random_range(1..0xffff_u32))
    } else {
        format!("198.51.100.{}", rng.random_range(1..255))
    }
}

fn user(rng: &mut StdRng) -> String {
    match rng.random_range(0..10) {
        0 => format!("API:{}", hex(rng, 8)),
        1 => format!("api-client-id:{}", hex(rng, 32)),
        _ => USERS[rng.random_range(0..USERS.len())].to_string(),
    }
}

fn utc_timestamp(rng: &mut StdRng, w: &mut ObjectWriter, time: i64, ms_share: f64) {
    if rng.random_bool(ms_share) {
        w.int("UTCTimestamp", i128::from(time) * 1000 + rng.random_range(0..1000));
    } else {
        w.int("UTCTimestamp", i128::from(time));
    }
}

fn user_ip(rng: &mut StdRng, w: &mut ObjectWriter) {
    match rng.random_range(0..100) {
        0..=7 => {
            w.string("UserIp", "");
        }
        8..=12 => {}
        _ => {
            w.string("UserIp", &ip(rng));
        }
    }
}

fn key_values(pairs: &[(&str, String)]) -> String {
    let items: Vec<String> = pairs
        .iter()
        .map(|(k, v)| {
            let mut o = ObjectWriter::new();
            o.string("Key", k).string("ValueString", v);
            o.finish()
        })
        .collect();
    format!("[{}]", items.join(","))
}

fn auth_event(rng: &mut StdRng, time: i64) -> ObjectWriter {
    let op = AUTH_OPS[rng.random_range(0..AUTH_OPS.len())];
    let actor = user(rng);
    let target = USERS[rng.random_range(0..USERS.len())].to_string();
    let mut w = ObjectWriter::new();
    w.string("UserId", &actor);
    user_ip(rng, &mut w);
    w.string("OperationName", op);
    w.string("ServiceName", AUTH_SERVICES[rng.random_range(0..AUTH_SERVICES.len())]);
    w.bool("Success", !rng.random_bool(0.15));
    utc_timestamp(rng, &mut w, time, 0.3);
    if !rng.random_bool(0.1) {
        let mut pairs = vec![
            ("target_name", target.clone()),
            ("actor_user", actor.clone()),
            (
                "actor_user_uuid",
                format!("{}-{}-{}", hex(rng, 8), hex(rng, 4), hex(rng, 12)),
            ),
            ("trace_id", format!("{}-{}", hex(rng, 8), hex(rng, 12))),
        ];
        if op.contains("Role") {
            pairs.push(("target_user", target));
        }
        if op == "saml2Assert" {
            let envelope_len = rng.random_range(1_500..4_000);
            pairs.push(("saml_assertion", "PHNhbWw6QXNzZXJ0aW9u".repeat(envelope_len / 20)));
        }
        w.raw("AuditKeyValues", &key_values(&pairs));
    }
    if rng.random_bool(0.25) {
        let mut attributes = ObjectWriter::new();
        attributes
            .string("target_name", "differs-from-audit-key-values")
            .string("scopes", "");
        w.object("Attributes", attributes);
    }
    w
}

fn user_activity_event(rng: &mut StdRng, time: i64) -> ObjectWriter {
    let (service, op, pairs): (&str, &str, Vec<(&str, String)>) = match rng.random_range(0..6) {
        0 => (
            "detections",
            "detection_update",
            vec![
                (
                    "detection_id",
                    format!("ldt:{}:{}", hex(rng, 32), rng.random_range(1_000_000..9_999_999u64)),
                ),
                (
                    "new_state",
                    ["in_progress", "true_positive", "false_positive", "closed"][rng.random_range(0..4)].to_string(),
                ),
                ("assigned_to", "SOC Analyst".to_string()),
                ("assigned_to_uid", USERS[rng.random_range(0..USERS.len())].to_string()),
            ],
        ),
        1 => (
            "groups",
            "update_group",
            vec![
                ("group_id", hex(rng, 32)),
                ("action_name", "add_group_member".to_string()),
            ],
        ),
        2 => (
            "quarantined_files",
            "quarantined_file_update",
            vec![
                ("quarantined_file_id", hex(rng, 64)),
                ("action_taken", "release".to_string()),
            ],
        ),
        3 => (
            "sensor_update_policy",
            "reveal_token",
            vec![
                ("device_id", hex(rng, 32)),
                ("seedID", rng.random_range(1..99_999).to_string()),
                ("message", "Uninstall token revealed".to_string()),
            ],
        ),
        4 => (
            "prevention_policy",
            "update_policy",
            vec![("policy_id", hex(rng, 32)), ("policy_name", "Workstations".to_string())],
        ),
        _ => ("hosts", "hide_host", vec![("device_id", hex(rng, 32))]),
    };
    let mut w = ObjectWriter::new();
    let actor = if rng.random_bool(0.1) {
        "Crowdstrike".to_string()
    } else {
        USERS[rng.random_range(0..USERS.len())].to_string()
    };
    w.string("UserId", &actor);
    user_ip(rng, &mut w);
    w.string("OperationName", op);
    w.string("ServiceName", service);
    utc_timestamp(rng, &mut w, time, 0.05);
    w.raw("AuditKeyValues", &key_values(&pairs));
    w
}

fn api_activity_event(rng: &mut StdRng, time: i64, cid: &str) -> ObjectWriter {
    let client = hex(rng, 32);
    let path = [
        "/devices/queries/devices/v1",
        "/detects/entities/summaries/GET/v1",
        "/oauth2/token",
    ][rng.random_range(0..3)];
    let mut w = ObjectWriter::new();
    w.string("UserId", if rng.random_bool(0.3) { "" } else { "api-client" });
    if rng.random_bool(0.7) {
        w.string("UserIp", &ip(rng));
    }
    w.string("OperationName", "logged")
        .string("ServiceName", "api_request")
        .bool("Success", true);
    w.int("UTCTimestamp", i128::from(time));
    w.string("Message", "API request")
        .string("Source", "api")
        .string("SourceIp", &ip(rng));
    w.raw("AuditKeyValues", "[]");
    let mut a = ObjectWriter::new();
    a.string("APIClientID", &client)
        .string("cid", cid)
        .string("request_method", "GET")
        .string("request_path", path)
        .string("request_host", "api.crowdstrike.com")
        .string("status_code", "200")
        .string("user_agent", "falconpy/1.4.0 python/3.12")
        .string("trace_id", &hex(rng, 32))
        .string("elapsed_microseconds", &rng.random_range(1_000..90_000).to_string())
        .string("received_time", &time.to_string())
        .string("sub_component_1", "api")
        .string("sub_component_2", "gateway")
        .string("sub_component_3", "us-1");
    w.object("Attributes", a);
    w
}

fn detection_event(rng: &mut StdRng, time: i64) -> ObjectWriter {
    let severity = rng.random_range(1..=5);
    let mut w = ObjectWriter::new();
    w.string("ComputerName", &format!("WKS-{:04}", rng.random_range(0..9999)))
        .string("UserName", USERS[rng.random_range(0..USERS.len())])
        .string(
            "DetectId",
            &format!("ldt:{}:{}", hex(rng, 32), rng.random_range(1..u32::MAX)),
        )
        .string(
            "CompositeId",
            &format!(
                "{}:ind:{}:{}",
                hex(rng, 32),
                hex(rng, 32),
                rng.random_range(1..u32::MAX)
            ),
        )
        .string("AgentIdString", &hex(rng, 32))
        .int("Severity", severity)
        .string(
            "SeverityName",
            ["Informational", "Low", "Medium", "High", "Critical"][(severity - 1) as usize],
        )
        .string("FileName", "powershell.exe")
        .string(
            "FilePath",
            "\\Device\\HarddiskVolume3\\Windows\\System32\\WindowsPowerShell\\v1.0",
        )
        .string(
            "CommandLine",
            &format!(
                "powershell.exe -NoProfile -EncodedCommand {}",
                "SQBFAFgA".repeat(rng.random_range(10..60))
            ),
        )
        .string("SHA256String", &hex(rng, 64))
        .string("MD5String", &hex(rng, 32))
        .string("Tactic", "Execution")
        .string("Technique", "PowerShell")
        .string("Name", "SuspiciousPowerShell")
        .string(
            "Description",
            "A process launched PowerShell with an encoded command line.",
        )
        .raw("HostGroups", &format!("[\"{}\",\"{}\"]", hex(rng, 32), hex(rng, 32)))
        .int("ProcessStartTime", i128::from(time));
    if rng.random_bool(0.5) {
        w.int("ProcessId", rng.random_range(1_000..9_999_999));
    } else {
        w.string("ProcessId", &rng.random_range(1_000..9_999_999).to_string());
    }
    if rng.random_bool(0.01) {
        let tree: Vec<String> = (0..rng.random_range(150..400))
            .map(|i| format!("{{\"ProcessId\":{i},\"CommandLine\":\"C:\\\\Windows\\\\System32\\\\svchost.exe -k netsvcs -p -s Schedule {}\"}}", hex(rng, 16)))
            .collect();
        w.raw("ProcessTree", &format!("[{}]", tree.join(",")));
    }
    w
}

fn incident_event(rng: &mut StdRng, time: i64) -> ObjectWriter {
    let mut w = ObjectWriter::new();
    w.string("IncidentId", &format!("inc:{}:{}", hex(rng, 32), hex(rng, 32)))
        .int("IncidentStartTime", i128::from(time))
        .int("IncidentEndTime", i128::from(time + 600))
        .int("FineScore", rng.random_range(10..100))
        .int("IncidentType", rng.random_range(1..5))
        .string("State", "open")
        .string("LateralMovement", "0");
    w
}

fn remote_response_event(rng: &mut StdRng, time: i64, name: &str) -> ObjectWriter {
    let mut w = ObjectWriter::new();
    w.string("SessionId", &format!("{}-{}", hex(rng, 8), hex(rng, 12)))
        .string("HostnameField", &format!("SRV-{:03}", rng.random_range(0..999)))
        .string("UserName", USERS[rng.random_range(0..USERS.len())])
        .string("AgentIdString", &hex(rng, 32));
    if name.ends_with("StartEvent") {
        w.int("StartTimestamp", i128::from(time));
    } else {
        w.int("EndTimestamp", i128::from(time));
        w.raw("Commands", "[\"ls\",\"ps\",\"get C:\\\\Temp\\\\evidence.zip\"]");
    }
    w
}

fn firewall_event(rng: &mut StdRng, time: i64) -> ObjectWriter {
    let mut w = ObjectWriter::new();
    w.string("DeviceId", &hex(rng, 32))
        .string("Platform", "Windows")
        .string("RuleName", "Block SMB outbound")
        .string("LocalAddress", &ip(rng))
        .string("LocalPort", &rng.random_range(1024..65535).to_string())
        .string("RemoteAddress", &ip(rng))
        .string("RemotePort", "445")
        .string("Protocol", "6")
        .string("ConnectionDirection", "1")
        .string("ProcessId", &rng.random_range(100..99_999).to_string())
        .int("Timestamp", i128::from(time) * 1000);
    w
}

fn idp_event(rng: &mut StdRng, time: i64) -> ObjectWriter {
    // FILETIME-like: 100 ns ticks since 1601-01-01.
    let filetime = (i128::from(time) + 11_644_473_600) * 10_000_000;
    let mut w = ObjectWriter::new();
    w.string("DetectId", &hex(rng, 32))
        .int("StartTime", filetime)
        .int("EndTime", filetime + 600 * 10_000_000)
        .int("ContextTimeStamp", filetime)
        .string("SeverityName", "Medium")
        .string("SourceAccountName", USERS[rng.random_range(0..USERS.len())]);
    w
}

fn other_event(rng: &mut StdRng, time: i64) -> ObjectWriter {
    let mut w = ObjectWriter::new();
    w.int("StartTime", i128::from(time) * 1000)
        .string("Name", "event")
        .string("IncidentType", &rng.random_range(1..9).to_string())
        .string(
            "Description",
            "An event of a type this product passes through unchanged.",
        );
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `metadata.offset` of an event line, read as any JSON parser would.
    fn probe_offset(line: &[u8]) -> Result<Option<u64>, String> {
        let value: serde_json::Value = serde_json::from_slice(line).map_err(|e| e.to_string())?;
        Ok(value["metadata"]["offset"].as_u64())
    }

    #[test]
    fn deterministic_valid_and_about_a_kilobyte() {
        let g = Generator::new(7, "0123456789abcdef0123456789abcdef", Mix::Realistic);
        let mut total = 0;
        for seq in 0..2_000 {
            let a = g.event(seq, 100 + seq);
            assert_eq!(a.line, g.event(seq, 100 + seq).line);
            assert_eq!(probe_offset(a.line.as_bytes()), Ok(Some(100 + seq)), "{}", a.line);
            total += a.line.len();
        }
        let average = total / 2_000;
        assert!((500..2_000).contains(&average), "average {average} bytes");
    }

    #[test]
    fn padding_reaches_the_minimum_size_and_keeps_events_valid() {
        let g = Generator::new(7, "0123456789abcdef0123456789abcdef", Mix::Realistic).with_min_bytes(1_024);
        for seq in 0..500 {
            let line = g.event(seq, seq).line;
            assert!(line.len() >= 1_024 - 32, "{} bytes", line.len());
            assert_eq!(probe_offset(line.as_bytes()), Ok(Some(seq)));
            let value: serde_json::Value = serde_json::from_str(&line).expect("json");
            assert!(value["event"].is_object());
        }
    }

    #[test]
    fn audit_mix_is_only_user_activity() {
        let g = Generator::new(1, "c", Mix::Audit);
        for seq in 0..500 {
            let t = g.event(seq, seq).event_type;
            assert!(t == "AuthActivityAuditEvent" || t == "UserActivityAuditEvent", "{t}");
        }
    }
}
