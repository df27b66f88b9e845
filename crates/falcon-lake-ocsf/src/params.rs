//! Parameters of the OCSF mapping, as set from a transform's `with:` block (all strings).

use std::collections::BTreeMap;

use falcon_lake_audit::params::{
    bad, parse_bool, parse_services, parse_types, DEFAULT_EVENT_TYPES, DEFAULT_EXCLUDE_SERVICES,
};
use falcon_lake_audit::select::Selector;
use falcon_lake_audit::{ParamError, Profile};

/// `metadata.version` written by default: AWS's OCSF tooling (CloudWatch
/// pipelines, `parseToOCSF`) pins 1.5.
pub const DEFAULT_OCSF_VERSION: &str = "1.5.0";

/// Versions `ocsf_version` may name: every attribute written exists, with the
/// same meaning, from 1.5.0 to 1.8.0.
pub const OCSF_VERSIONS: [&str; 4] = ["1.5.0", "1.6.0", "1.7.0", "1.8.0"];

/// Every parameter name the module understands.
pub const PARAM_NAMES: [&str; 5] = [
    "event_types",
    "include_services",
    "exclude_services",
    "ocsf_version",
    "carry_raw",
];

/// The parsed, validated parameters of the OCSF mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OcsfParams {
    /// `metadata.eventType` values that pass; `None` means every type (types
    /// without a class of their own become OCSF Base Events).
    pub event_types: Option<Vec<String>>,
    /// Services that pass (normalised); empty means every service.
    pub include_services: Vec<String>,
    /// Services that never pass (normalised).
    pub exclude_services: Vec<String>,
    /// `metadata.version` to write.
    pub ocsf_version: String,
    /// Put the raw event into `raw_data`.
    pub carry_raw: bool,
}

impl Default for OcsfParams {
    fn default() -> Self {
        Self {
            event_types: parse_types(DEFAULT_EVENT_TYPES),
            include_services: Vec::new(),
            exclude_services: parse_services(Profile::Default, DEFAULT_EXCLUDE_SERVICES),
            ocsf_version: DEFAULT_OCSF_VERSION.to_string(),
            carry_raw: false,
        }
    }
}

impl OcsfParams {
    /// Parses parameters; unknown names and bad values are errors naming the key.
    pub fn from_map(params: &BTreeMap<String, String>) -> Result<Self, ParamError> {
        if let Some(unknown) = params.keys().find(|k| !PARAM_NAMES.contains(&k.as_str())) {
            return Err(bad(
                unknown,
                format!("unknown parameter; known: {}", PARAM_NAMES.join(", ")),
            ));
        }
        let mut out = Self::default();
        if let Some(types) = params.get("event_types") {
            out.event_types = parse_types(types);
        }
        if let Some(list) = params.get("include_services") {
            out.include_services = parse_services(Profile::Default, list);
        }
        if let Some(list) = params.get("exclude_services") {
            out.exclude_services = parse_services(Profile::Default, list);
        }
        if let Some(version) = params.get("ocsf_version").map(|v| v.trim()) {
            if !OCSF_VERSIONS.contains(&version) {
                return Err(bad(
                    "ocsf_version",
                    format!("{version:?} is not one of {}", OCSF_VERSIONS.join(", ")),
                ));
            }
            out.ocsf_version = version.to_string();
        }
        if let Some(flag) = params.get("carry_raw") {
            out.carry_raw = parse_bool("carry_raw", flag)?;
        }
        Ok(out)
    }

    /// The selector of these parameters (service names compared as the
    /// CloudTrail module's default profile compares them).
    pub fn selector(&self) -> Selector {
        Selector::new(
            Profile::Default,
            self.event_types.clone(),
            self.include_services.clone(),
            self.exclude_services.clone(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_select_user_activity_and_remote_response() {
        let selector = OcsfParams::default().selector();
        assert!(selector.passes("AuthActivityAuditEvent", Some("CrowdstrikeAuthentication")));
        assert!(selector.passes("UserActivityAuditEvent", Some("detections")));
        assert!(selector.passes("RemoteResponseSessionStartEvent", None));
        assert!(selector.passes("RemoteResponseSessionEndEvent", None));
        assert!(!selector.passes("APIActivityAuditEvent", Some("api_request")), "opt-in");
        assert!(!selector.passes("AuthActivityAuditEvent", Some("Crowdstrike Streaming API")));
        assert_eq!(OcsfParams::default().ocsf_version, "1.5.0");
        assert!(!OcsfParams::default().carry_raw);
    }

    #[test]
    fn overrides_apply() {
        let p = OcsfParams::from_map(&map(&[
            ("event_types", "APIActivityAuditEvent"),
            ("ocsf_version", "1.8.0"),
            ("carry_raw", "true"),
            ("exclude_services", ""),
        ]))
        .expect("params");
        assert!(p.selector().passes("APIActivityAuditEvent", Some("api_request")));
        assert!(!p.selector().passes("AuthActivityAuditEvent", None));
        assert_eq!(p.ocsf_version, "1.8.0");
        assert!(p.carry_raw);
    }

    #[test]
    fn bad_values_name_the_key() {
        for (pairs, key) in [
            (vec![("profile", "fig")], "profile"),
            (vec![("ocsf_version", "1.1.0")], "ocsf_version"),
            (vec![("ocsf_version", "2")], "ocsf_version"),
            (vec![("carry_raw", "maybe")], "carry_raw"),
        ] {
            let err = OcsfParams::from_map(&map(&pairs)).expect_err("must fail");
            assert_eq!(err.name, key);
            assert!(err.to_string().contains(key), "{err}");
        }
    }
}
