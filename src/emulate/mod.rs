//! The emulators (crate `falcon-lake-emulators`, independent of this one), and
//! the embedded pipeline's config for a run against them.

pub use falcon_lake_emulators::{cloudtrail, cloudwatch, falcon, lock, Server, TlsArgs};

pub mod pipeline_config;
