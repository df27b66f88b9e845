//! The Fluvio profile file (`FLV_PROFILE_PATH`) pointing clients at the SC.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, Result};

/// Name of the profile and of its cluster entry.
pub const PROFILE_NAME: &str = "fluvio-testbed";

/// The profile TOML for an SC at `sc`, plain TCP.
pub fn profile_toml(sc: SocketAddr) -> String {
    format!(
        "version = \"2.0\"\n\
         current_profile = \"{PROFILE_NAME}\"\n\
         \n\
         [profile.{PROFILE_NAME}]\n\
         cluster = \"{PROFILE_NAME}\"\n\
         \n\
         [cluster.{PROFILE_NAME}]\n\
         endpoint = \"{sc}\"\n\
         use_spu_local_address = false\n\
         \n\
         [cluster.{PROFILE_NAME}.tls]\n\
         tls_policy = \"disabled\"\n"
    )
}

/// Writes the profile for `sc` to `path`.
pub(crate) fn write(path: &Path, sc: SocketAddr) -> Result<()> {
    std::fs::write(path, profile_toml(sc)).with_context(|| format!("writing the Fluvio profile {}", path.display()))
}
