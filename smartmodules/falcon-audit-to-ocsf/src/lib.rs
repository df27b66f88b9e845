//! Fluvio SmartModule (`filter_map`): keeps Falcon user-activity audit events and
//! turns each into one OCSF event (Authentication, Account Change, User Access
//! Management, API Activity).
//!
//! Input: a raw Falcon event as received (record value), keyed `<partition>_<offset>`.
//! Output: key = `metadata.uid` (`<cid>_<partition>_<offset>`, the id the
//! CloudTrail module gives the same event), value = the OCSF event as JSON.
//! The mapping lives in `falcon-lake-ocsf`, the glue in `falcon-lake-glue`.

use std::sync::OnceLock;

use falcon_lake_audit::{AuditRecord, RecordContext};
use falcon_lake_ocsf::params::PARAM_NAMES;
use falcon_lake_ocsf::{Mapper, OcsfParams};
use fluvio_smartmodule::dataplane::smartmodule::SmartModuleExtraParams;
use fluvio_smartmodule::{eyre, smartmodule, RecordData, Result};

static MAPPER: OnceLock<Mapper> = OnceLock::new();

#[smartmodule(init)]
fn init(params: SmartModuleExtraParams) -> Result<()> {
    let parsed = OcsfParams::from_map(&falcon_lake_glue::param_map(&params, &PARAM_NAMES)).map_err(|e| eyre!("{e}"))?;
    // A second init in the same instance keeps the first parameters; the engine
    // never does this, and failing here would only stop a healthy chain.
    let _ = MAPPER.set(Mapper::new(parsed));
    Ok(())
}

/// Maps one record with the module's parameters (the defaults before `init`).
pub fn map(ctx: &RecordContext<'_>, value: &[u8], out: &mut AuditRecord) -> bool {
    MAPPER.get_or_init(Mapper::default).map_into(ctx, value, out).is_ok()
}

/// The module's behaviour for one record, as `#[smartmodule(filter_map)]` would call it.
pub fn transform(key: Option<&[u8]>, value: &[u8], timestamp_ms: i64) -> Option<(Option<RecordData>, RecordData)> {
    falcon_lake_glue::transform(&map, key, value, timestamp_ms)
}

falcon_lake_glue::filter_map_export!(&crate::map);

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const EVENT: &[u8] = br#"{"metadata":{"customerIDString":"abc","offset":7,"eventType":"AuthActivityAuditEvent"},
        "event":{"UserId":"a@b.c","OperationName":"userAuthenticate","ServiceName":"CrowdStrike Authentication","Success":false}}"#;

    #[test]
    fn unknown_parameters_are_rejected_by_name() {
        let given = BTreeMap::from([("profile".to_string(), "fig".to_string())]);
        let params = SmartModuleExtraParams::from(given);
        let err = OcsfParams::from_map(&falcon_lake_glue::param_map(&params, &PARAM_NAMES)).expect_err("rejected");
        assert_eq!(err.name, "profile");
    }

    #[test]
    fn emits_uid_key_and_an_ocsf_event() {
        let (key, value) = transform(Some(b"0_7"), EVENT, 0).expect("emitted");
        assert_eq!(key.expect("key").as_ref(), b"abc_0_7");
        let text = std::str::from_utf8(value.as_ref()).expect("utf8");
        falcon_lake_ocsf::validate_ocsf(text).expect("valid OCSF");
        assert!(
            text.contains(r#""class_uid":3002"#) && text.contains(r#""status_id":2"#),
            "{text}"
        );
        assert!(transform(Some(b"0_8"), b"not json", 0).is_none());
    }
}
