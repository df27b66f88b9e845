//! Test fixture SmartModule (`filter_map`): passes every record through
//! unchanged, except that it returns an error for records containing `fail_on`
//! and panics (traps) on records containing `trap_on`. It exercises how the
//! pipeline handles a swapped-in module that misbehaves.

use std::sync::OnceLock;

use fluvio_smartmodule::dataplane::smartmodule::SmartModuleExtraParams;
use fluvio_smartmodule::{eyre, smartmodule, RecordData, Result, SmartModuleRecord};

static MARKERS: OnceLock<(Option<String>, Option<String>)> = OnceLock::new();

#[smartmodule(init)]
fn init(params: SmartModuleExtraParams) -> Result<()> {
    let _ = MARKERS.set((params.get("fail_on").cloned(), params.get("trap_on").cloned()));
    Ok(())
}

#[smartmodule(filter_map)]
fn filter_map(record: &SmartModuleRecord) -> Result<Option<(Option<RecordData>, RecordData)>> {
    let value = String::from_utf8_lossy(record.value.as_ref());
    let (fail_on, trap_on) = MARKERS.get_or_init(|| (None, None));
    if let Some(marker) = trap_on.as_deref().filter(|m| value.contains(m)) {
        panic!("trap requested by marker {marker}");
    }
    if let Some(marker) = fail_on.as_deref().filter(|m| value.contains(m)) {
        return Err(eyre!("failure requested by marker {marker}"));
    }
    Ok(Some((record.key.clone(), record.value.clone())))
}
