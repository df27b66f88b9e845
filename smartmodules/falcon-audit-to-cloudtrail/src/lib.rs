//! Fluvio SmartModule (`filter_map`): keeps Falcon user-activity audit events and
//! turns each into a CloudTrail Open Audit Event.
//!
//! Input: a raw Falcon event as received (record value), keyed `<partition>_<offset>`.
//! Output: key = the `AuditEvent.id`, value = the `eventData` JSON.
//! The mapping lives in `falcon-lake-audit`, shared with the native pipeline;
//! the `filter_map` glue in `falcon-lake-glue`, shared with the OCSF module.

use std::sync::OnceLock;

use falcon_lake_audit::params::PARAM_NAMES;
use falcon_lake_audit::{AuditRecord, Mapper, MappingParams, RecordContext};
use fluvio_smartmodule::dataplane::smartmodule::SmartModuleExtraParams;
use fluvio_smartmodule::{eyre, smartmodule, RecordData, Result};

static MAPPER: OnceLock<Mapper> = OnceLock::new();

#[smartmodule(init)]
fn init(params: SmartModuleExtraParams) -> Result<()> {
    let parsed =
        MappingParams::from_map(&falcon_lake_glue::param_map(&params, &PARAM_NAMES)).map_err(|e| eyre!("{e}"))?;
    // A second init in the same instance keeps the first parameters; the engine
    // never does this, and failing here would only stop a healthy chain.
    let _ = MAPPER.set(Mapper::new(parsed));
    Ok(())
}

/// Maps one record with the module's parameters (the defaults before `init`).
pub fn map(ctx: &RecordContext<'_>, value: &[u8], out: &mut AuditRecord) -> bool {
    let mapper = MAPPER.get_or_init(|| Mapper::new(MappingParams::default()));
    mapper.map_into(ctx, value, out).is_ok()
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
        "event":{"UserId":"a@b.c","OperationName":"userAuthenticate","ServiceName":"CrowdStrike Authentication"}}"#;

    #[test]
    fn unknown_parameters_are_rejected_by_name() {
        let mut given = BTreeMap::new();
        given.insert("typo".to_string(), "x".to_string());
        let params = SmartModuleExtraParams::from(given);
        let err =
            MappingParams::from_map(&falcon_lake_glue::param_map(&params, &PARAM_NAMES)).expect_err("typo rejected");
        assert_eq!(err.name, "typo");
    }

    #[test]
    fn emits_id_key_and_event_data() {
        let (key, value) = transform(Some(b"0_7"), EVENT, 0).expect("emitted");
        assert_eq!(key.expect("key").as_ref(), b"abc_0_7");
        assert!(value.as_ref().starts_with(b"{\"version\""));
        assert!(transform(Some(b"0_8"), b"not json", 0).is_none());
    }
}
