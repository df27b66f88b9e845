//! The stages, shared by the connectors and the embedded runner: the source
//! (Falcon into the raw topic), the sink (topic through the SmartModule chain to
//! CloudTrail), and what they need: offset tracking, dead letters, cursor
//! recovery, metrics and shutdown.

pub mod commits;
pub mod deadletter;
pub mod embedded;
pub mod metrics;
pub mod offsets;
pub mod progress;
pub mod recovery;
pub mod shutdown;
pub mod sink;
pub mod source;
