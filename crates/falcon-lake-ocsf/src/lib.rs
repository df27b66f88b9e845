//! Falcon Event Streams audit events to [OCSF](https://schema.ocsf.io) events,
//! shared by the `falcon-audit-to-ocsf` SmartModule (wasm), its native tests,
//! the sink's tests and the benchmark, as `falcon-lake-audit` is for the
//! CloudTrail module.
//!
//! - [`params`]: the module's parameters (a transform's `with:`);
//! - [`class`]: the OCSF classes, activities and enumerations used;
//! - [`mapping`]: event → OCSF JSON, keyed by a deterministic `metadata.uid`;
//! - [`validate`]: the required-attribute validator of every class emitted.
//!
//! Only attributes present in both OCSF 1.5.0 and 1.8.0 are written, so
//! `metadata.version` may name either (default 1.5.0, the version AWS's OCSF
//! tooling pins).

pub mod class;
pub mod mapping;
pub mod params;
pub mod validate;

pub use falcon_lake_audit::{AuditRecord, Outcome, RecordContext, Skip};
pub use mapping::Mapper;
pub use params::{OcsfParams, DEFAULT_OCSF_VERSION, OCSF_VERSIONS};
pub use validate::{validate_ocsf, validate_ocsf_value, OcsfViolation};
