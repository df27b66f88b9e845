//! The SmartModule registry: store keys, the `[group/]name[@version]` filter
//! rules, payloads kept exactly as received.

use fluvio_controlplane_metadata::message::Message;
use fluvio_controlplane_metadata::smartmodule::{SmartModulePackageKey, SmartModuleStatus};
use fluvio_protocol::link::ErrorCode;
use fluvio_sc_schema::objects::Metadata;
use fluvio_sc_schema::smartmodule::SmartModuleSpec;

use super::State;

impl State {
    /// Registers a module; returns its store key: `name-group-version` with
    /// package metadata, else the create name. A module already under that
    /// key is replaced.
    pub(crate) fn create_smartmodule(
        &mut self,
        name: &str,
        spec: SmartModuleSpec,
        dry_run: bool,
    ) -> Result<String, (ErrorCode, String)> {
        let key = match &spec.meta {
            Some(meta) if !meta.package.is_valid() => {
                return Err((ErrorCode::SmartModuleError, "invalid SmartModule package".to_owned()))
            }
            Some(meta) => meta.store_id(),
            None => name.to_owned(),
        };
        if dry_run {
            return Ok(key);
        }
        if self.smartmodules.insert(key.clone(), spec).is_some() {
            tracing::debug!(key, "SmartModule replaced");
        }
        if let Some(meta) = self.smartmodule_metadata(&key) {
            self.next_epoch();
            self.watchers.smartmodule.publish(Message::update(meta));
        }
        Ok(key)
    }

    /// Deletes a module by store key.
    pub(crate) fn delete_smartmodule(&mut self, key: &str) -> Result<(), ErrorCode> {
        let Some(meta) = self.smartmodule_metadata(key) else {
            return Err(ErrorCode::SmartModuleNotFound { name: key.to_owned() });
        };
        self.smartmodules.remove(key);
        self.next_epoch();
        self.watchers.smartmodule.publish(Message::delete(meta));
        Ok(())
    }

    fn smartmodule_metadata(&self, key: &str) -> Option<Metadata<SmartModuleSpec>> {
        self.smartmodules.get(key).map(|spec| Metadata {
            name: key.to_owned(),
            spec: spec.clone(),
            status: SmartModuleStatus,
        })
    }

    /// Modules matching any filter (all without filters), full specs.
    pub(crate) fn smartmodule_list(&self, filters: &[String]) -> Vec<Metadata<SmartModuleSpec>> {
        self.smartmodules
            .iter()
            .filter(|(key, spec)| filters.is_empty() || filters.iter().any(|f| module_matches(f, key, spec)))
            .filter_map(|(key, _)| self.smartmodule_metadata(key))
            .collect()
    }

    /// Whether a module named like a list filter is registered.
    pub(super) fn smartmodule_loaded(&self, name: &str) -> bool {
        self.smartmodules
            .iter()
            .any(|(key, spec)| module_matches(name, key, spec))
    }

    /// Store keys of every module.
    pub(crate) fn smartmodule_keys(&self) -> Vec<String> {
        self.smartmodules.keys().cloned().collect()
    }
}

/// A filter `[group/]name[@version]` matches a module with a package on its
/// name (and group and version when given), one without on its store key.
fn module_matches(filter: &str, key: &str, spec: &SmartModuleSpec) -> bool {
    match SmartModulePackageKey::from_qualified_name(filter) {
        Ok(wanted) => wanted.is_match(key, spec.meta.as_ref().map(|m| &m.package)),
        Err(e) => {
            tracing::debug!(filter, error = %e, "SmartModule filter does not parse; it matches nothing");
            false
        }
    }
}
