//! falcon-lake: CrowdStrike Falcon audit events into AWS CloudTrail Lake.
//!
//! The stages (Falcon source, SmartModule transform, CloudTrail sink) are library
//! code shared by the Fluvio connectors and the embedded single-binary pipeline;
//! only the topic backend differs. Emulators of both APIs live in [`emulate`].

pub mod backoff;
pub mod cli;
pub mod cloudtrail;
pub mod cloudwatch;
pub mod config;
pub mod connector;
pub mod emulate;
pub mod falcon;
pub mod fig;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod net;
pub mod ops;
pub mod pipeline;
pub mod publish;
pub mod secret;
pub mod topic;
pub mod transform;

/// The shared, dependency-light contract: record keys, ids, mapping, schema.
pub use falcon_lake_audit as audit;
/// The OCSF mapping and its validator (the `falcon-audit-to-ocsf` module's).
pub use falcon_lake_ocsf as ocsf;
