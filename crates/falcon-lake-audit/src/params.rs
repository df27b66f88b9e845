//! Parameters of the mapping, as set from a transform's `with:` block (all strings).

use std::collections::BTreeMap;
use std::fmt;

/// Default event types forwarded: the user-activity audit events, and the Real
/// Time Response sessions (who opened a remote shell on which host). The API
/// request log (`APIActivityAuditEvent`) is opt-in: one event per API call,
/// the collector's own included, it would outnumber everything else.
pub const DEFAULT_EVENT_TYPES: &str =
    "AuthActivityAuditEvent,UserActivityAuditEvent,RemoteResponseSessionStartEvent,RemoteResponseSessionEndEvent";
/// The API request log's event type (opt-in).
pub const API_ACTIVITY_EVENT_TYPE: &str = "APIActivityAuditEvent";
/// Default excluded service: the stream's own `streamStarted`/`streamStopped` audit.
pub const DEFAULT_EXCLUDE_SERVICES: &str = "Crowdstrike Streaming API";
/// Default `eventSource`, the value the existing gateway used.
pub const DEFAULT_EVENT_SOURCE: &str = "crowdstrike";

/// Every parameter name the module understands.
pub const PARAM_NAMES: [&str; 7] = [
    "profile",
    "event_types",
    "include_services",
    "exclude_services",
    "carry_raw",
    "recipient_account_id",
    "event_source",
];

/// Which mapping to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// falcon-lake's mapping: every field the event can fill (see the module README).
    Default,
    /// The Falcon Integration Gateway's filter and field values, for migrating users.
    Fig,
}

/// A parameter value that cannot be used, named so the user can fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    /// The parameter at fault.
    pub name: String,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "parameter `{}`: {}", self.name, self.message)
    }
}

impl std::error::Error for ParamError {}

/// The parsed, validated parameters of the mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingParams {
    /// Mapping profile.
    pub profile: Profile,
    /// `metadata.eventType` values that pass; `None` means every type.
    pub event_types: Option<Vec<String>>,
    /// Services that pass (normalised); empty means every service.
    pub include_services: Vec<String>,
    /// Services that never pass (normalised).
    pub exclude_services: Vec<String>,
    /// Put the raw event into `additionalEventData.raw`.
    pub carry_raw: bool,
    /// `recipientAccountId` to emit; `None` leaves it to the sink (channel owner).
    pub recipient_account_id: Option<String>,
    /// `eventSource` to emit.
    pub event_source: String,
}

impl Default for MappingParams {
    fn default() -> Self {
        Self::for_profile(Profile::Default)
    }
}

impl MappingParams {
    /// The defaults of one profile.
    pub fn for_profile(profile: Profile) -> Self {
        let (types, include, exclude) = match profile {
            Profile::Default => (DEFAULT_EVENT_TYPES, "", DEFAULT_EXCLUDE_SERVICES),
            Profile::Fig => ("AuthActivityAuditEvent", "CrowdStrike Authentication", ""),
        };
        Self {
            profile,
            event_types: parse_types(types),
            include_services: parse_services(profile, include),
            exclude_services: parse_services(profile, exclude),
            carry_raw: true,
            recipient_account_id: None,
            event_source: DEFAULT_EVENT_SOURCE.to_string(),
        }
    }

    /// Parses parameters; unknown names and bad values are errors naming the key.
    pub fn from_map(params: &BTreeMap<String, String>) -> Result<Self, ParamError> {
        if let Some(unknown) = params.keys().find(|k| !PARAM_NAMES.contains(&k.as_str())) {
            return Err(ParamError {
                name: unknown.clone(),
                message: format!("unknown parameter; known: {}", PARAM_NAMES.join(", ")),
            });
        }
        let profile = match params.get("profile").map(|p| p.trim()) {
            None | Some("") | Some("default") => Profile::Default,
            Some("fig") => Profile::Fig,
            Some(other) => return Err(bad("profile", format!("{other:?} is not `default` or `fig`"))),
        };
        let mut out = Self::for_profile(profile);
        if let Some(types) = params.get("event_types") {
            out.event_types = parse_types(types);
        }
        if let Some(list) = params.get("include_services") {
            out.include_services = parse_services(profile, list);
        }
        if let Some(list) = params.get("exclude_services") {
            out.exclude_services = parse_services(profile, list);
        }
        if let Some(flag) = params.get("carry_raw") {
            out.carry_raw = parse_bool("carry_raw", flag)?;
        }
        if let Some(account) = params.get("recipient_account_id").map(|a| a.trim()) {
            if !account.is_empty() {
                if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad(
                        "recipient_account_id",
                        format!("{account:?} is not a 12-digit AWS account ID"),
                    ));
                }
                out.recipient_account_id = Some(account.to_string());
            }
        }
        if let Some(source) = params.get("event_source").map(|s| s.trim()) {
            if source.is_empty() || source.len() > 1024 {
                return Err(bad("event_source", "must be 1 to 1024 characters".to_string()));
            }
            out.event_source = source.to_string();
        }
        Ok(out)
    }

    /// True when an event of this type and service passes the filter.
    pub fn passes(&self, event_type: &str, service: Option<&str>) -> bool {
        passes_filter(
            self.profile,
            self.event_types.as_deref(),
            &self.include_services,
            &self.exclude_services,
            event_type,
            service,
        )
    }

    /// The selector of these parameters.
    pub fn selector(&self) -> crate::select::Selector {
        crate::select::Selector::new(
            self.profile,
            self.event_types.clone(),
            self.include_services.clone(),
            self.exclude_services.clone(),
        )
    }
}

/// True when an event of `event_type` from `service` passes: its type is one of
/// `event_types` (`None`: any), its service one of `include_services` (empty:
/// any) and none of `exclude_services`, all normalised for `profile`.
pub fn passes_filter(
    profile: Profile,
    event_types: Option<&[String]>,
    include_services: &[String],
    exclude_services: &[String],
    event_type: &str,
    service: Option<&str>,
) -> bool {
    if !event_types.is_none_or(|types| types.iter().any(|t| t == event_type)) {
        return false;
    }
    let matches = |list: &[String]| service.is_some_and(|s| list.iter().any(|n| same_service(profile, s, n)));
    (include_services.is_empty() || matches(include_services)) && !matches(exclude_services)
}

/// The error for parameter `name`.
pub fn bad(name: &str, message: String) -> ParamError {
    ParamError {
        name: name.to_string(),
        message,
    }
}

/// A boolean parameter: `true`/`yes`/`1` or `false`/`no`/`0`.
pub fn parse_bool(name: &str, value: &str) -> Result<bool, ParamError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" => Ok(true),
        "false" | "no" | "0" => Ok(false),
        other => Err(bad(name, format!("{other:?} is not true or false"))),
    }
}

/// Comma-separated type list; `*`, `all` or empty means every type.
pub fn parse_types(list: &str) -> Option<Vec<String>> {
    let types: Vec<String> = split_list(list).map(str::to_string).collect();
    let all = types.is_empty() || types.iter().any(|t| t == "*" || t.eq_ignore_ascii_case("all"));
    (!all).then_some(types)
}

/// Comma-separated service list, normalised for `profile`.
pub fn parse_services(profile: Profile, list: &str) -> Vec<String> {
    split_list(list).map(|s| normalise_service(profile, s)).collect()
}

fn split_list(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// True when `service` equals the already normalised `normalised`, compared as
/// [`normalise_service`] would, without allocating.
fn same_service(profile: Profile, service: &str, normalised: &str) -> bool {
    let keep = |c: char| profile == Profile::Fig || !c.is_whitespace();
    if service.is_ascii() {
        // The common case, without Unicode case mapping.
        let mut given = service
            .bytes()
            .filter(|&b| keep(char::from(b)))
            .map(|b| b.to_ascii_lowercase());
        let mut expected = normalised.bytes();
        return loop {
            match (given.next(), expected.next()) {
                (None, None) => break true,
                (Some(a), Some(b)) if a == b => {}
                _ => break false,
            }
        };
    }
    let mut expected = normalised.chars();
    let mut given = service.chars().filter(|c| keep(*c)).flat_map(char::to_lowercase);
    loop {
        match (given.next(), expected.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

/// Service names are compared lower-cased with all whitespace removed, because the
/// real data spells "CrowdStrike Authentication" three ways. The `fig` profile
/// keeps the gateway's plain lower-cased comparison.
pub fn normalise_service(profile: Profile, service: &str) -> String {
    match profile {
        Profile::Default => service
            .chars()
            .filter(|c| !c.is_whitespace())
            .flat_map(char::to_lowercase)
            .collect(),
        Profile::Fig => service.to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_pass_user_activity_but_not_stream_audit() {
        let p = MappingParams::default();
        assert!(p.passes("AuthActivityAuditEvent", Some("CrowdStrike Authentication")));
        assert!(p.passes("AuthActivityAuditEvent", Some("CrowdstrikeAuthentication")));
        assert!(p.passes("UserActivityAuditEvent", Some("detections")));
        assert!(p.passes("UserActivityAuditEvent", None));
        assert!(!p.passes("AuthActivityAuditEvent", Some("Crowdstrike Streaming API")));
        assert!(!p.passes("AuthActivityAuditEvent", Some("crowdstrike  streaming\tapi")));
        assert!(p.passes("RemoteResponseSessionStartEvent", None));
        assert!(p.passes("RemoteResponseSessionEndEvent", None));
        assert!(!p.passes("APIActivityAuditEvent", Some("api_request")), "opt-in");
        assert!(!p.passes("DetectionSummaryEvent", None));
    }

    #[test]
    fn fig_profile_matches_exactly_lowercased() {
        let p = MappingParams::from_map(&map(&[("profile", "fig")])).expect("fig");
        assert!(p.passes("AuthActivityAuditEvent", Some("CrowdStrike Authentication")));
        assert!(p.passes("AuthActivityAuditEvent", Some("Crowdstrike Authentication")));
        assert!(!p.passes("AuthActivityAuditEvent", Some("CrowdstrikeAuthentication")));
        assert!(!p.passes("AuthActivityAuditEvent", None));
        assert!(!p.passes("UserActivityAuditEvent", Some("CrowdStrike Authentication")));
    }

    #[test]
    fn services_compare_as_normalised() {
        for profile in [Profile::Default, Profile::Fig] {
            for (service, listed) in [
                ("CrowdStrike Authentication", "crowdstrike authentication"),
                ("Crowdstrike\tStreaming  API", "Crowdstrike Streaming API"),
                ("ÄPI Dienst", "äpi dienst"),
                ("api", "apis"),
            ] {
                let normalised = normalise_service(profile, listed);
                assert_eq!(
                    same_service(profile, service, &normalised),
                    normalise_service(profile, service) == normalised,
                    "{profile:?} {service:?} {listed:?}"
                );
            }
        }
    }

    #[test]
    fn overrides_apply() {
        let p = MappingParams::from_map(&map(&[
            ("event_types", "*"),
            ("include_services", "detections, groups"),
            ("exclude_services", ""),
            ("carry_raw", "false"),
            ("recipient_account_id", "111122223333"),
        ]))
        .expect("params");
        assert!(p.passes("AnythingAtAll", Some("Detections")));
        assert!(!p.passes("AnythingAtAll", Some("other")));
        assert!(!p.passes("AnythingAtAll", None));
        assert!(!p.carry_raw);
        assert_eq!(p.recipient_account_id.as_deref(), Some("111122223333"));
    }

    #[test]
    fn bad_values_name_the_key() {
        for (pairs, key) in [
            (vec![("profil", "fig")], "profil"),
            (vec![("profile", "fog")], "profile"),
            (vec![("carry_raw", "maybe")], "carry_raw"),
            (vec![("recipient_account_id", "12345")], "recipient_account_id"),
            (vec![("event_source", " ")], "event_source"),
        ] {
            let err = MappingParams::from_map(&map(&pairs)).expect_err("must fail");
            assert_eq!(err.name, key);
            assert!(err.to_string().contains(key));
        }
    }
}
