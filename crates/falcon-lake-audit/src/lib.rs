//! The contract between falcon-lake's stages, free of heavy dependencies so that
//! the SmartModule (wasm) and the native pipeline share one implementation:
//!
//! - [`key`]: the record key the source writes (`<partition>_<offset>`);
//! - [`id`]: deterministic `AuditEvent.id` values;
//! - [`mapping`]: Falcon audit event → CloudTrail Open Audit Event;
//! - [`params`]: the mapping's parameters (a transform's `with:`);
//! - [`select`]: the pre-filter and the selection of events, shared with the OCSF mapping;
//! - [`schema`]: the Open Audit Events validator and limits.

pub mod event;
pub mod id;
pub mod json;
pub mod key;
pub mod mapping;
pub mod params;
pub mod schema;
pub mod select;
pub mod time;

pub use key::SourceKey;
pub use mapping::{map_record, AuditRecord, Mapper, Outcome, RecordContext, Skip};
pub use params::{MappingParams, ParamError, Profile};
pub use schema::{validate_event_data, SchemaErrorCode, ValidationOptions, Violation};
