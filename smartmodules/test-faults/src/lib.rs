//! Test fixture SmartModule (`filter_map`): passes every record through
//! unchanged, except that it returns an error for records containing `fail_on`,
//! panics (traps) on records containing `trap_on`, and leaks `leak_bytes` bytes
//! per record. It exercises how the pipeline handles a swapped-in module that
//! misbehaves, and proves that the tests watching for such modules can fail.

use std::sync::OnceLock;

use fluvio_smartmodule::dataplane::smartmodule::SmartModuleExtraParams;
use fluvio_smartmodule::{eyre, smartmodule, RecordData, Result, SmartModuleRecord};

struct Faults {
    fail_on: Option<String>,
    trap_on: Option<String>,
    leak_bytes: usize,
}

static FAULTS: OnceLock<Faults> = OnceLock::new();

#[smartmodule(init)]
fn init(params: SmartModuleExtraParams) -> Result<()> {
    let leak_bytes = match params.get("leak_bytes") {
        Some(n) => n
            .trim()
            .parse()
            .map_err(|_| eyre!("parameter `leak_bytes`: {n:?} is not a number"))?,
        None => 0,
    };
    let _ = FAULTS.set(Faults {
        fail_on: params.get("fail_on").cloned(),
        trap_on: params.get("trap_on").cloned(),
        leak_bytes,
    });
    Ok(())
}

#[smartmodule(filter_map)]
fn filter_map(record: &SmartModuleRecord) -> Result<Option<(Option<RecordData>, RecordData)>> {
    let value = String::from_utf8_lossy(record.value.as_ref());
    let faults = FAULTS.get_or_init(|| Faults {
        fail_on: None,
        trap_on: None,
        leak_bytes: 0,
    });
    if faults.leak_bytes > 0 {
        // black_box: an allocation nothing reads is one the optimiser may drop.
        std::hint::black_box(Vec::leak(vec![1u8; faults.leak_bytes]));
    }
    let (fail_on, trap_on) = (&faults.fail_on, &faults.trap_on);
    if let Some(marker) = trap_on.as_deref().filter(|m| value.contains(m)) {
        panic!("trap requested by marker {marker}");
    }
    if let Some(marker) = fail_on.as_deref().filter(|m| value.contains(m)) {
        return Err(eyre!("failure requested by marker {marker}"));
    }
    Ok(Some((record.key.clone(), record.value.clone())))
}
