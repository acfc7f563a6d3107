//! What the test modules share: the one runner of the real binary, the
//! bundled-example fixture, RPM repository and solver fixtures.
//!
//! Every helper is here once; test modules use the subset they need.
#![allow(dead_code)]

pub mod cli;
pub mod fixture;
pub mod moto;
pub mod nginx;
pub mod rpm_fixture;
pub mod rpmrepo;
pub mod solve;
pub mod squid;

use std::path::Path;
use std::process::Command;

/// The built `cvmbuild` binary.
pub const BIN: &str = env!("CARGO_BIN_EXE_cvmbuild");

/// A `cvmbuild` command isolated in `sandbox`: its default store is
/// `sandbox/store`, and HOME and the XDG directories point inside
/// `sandbox/home`, so neither the user's store nor their caches are read or
/// written. Publish and keys directories and SOURCE_DATE_EPOCH are not
/// inherited; no colours. A test may still pass `--store` or set any of
/// these itself.
pub fn cvmbuild(sandbox: &Path) -> Command {
    let home = sandbox.join("home");
    let mut cmd = Command::new(BIN);
    cmd.env("NO_COLOR", "1")
        .env("CVMBUILD_STORE", sandbox.join("store"))
        .env("HOME", &home)
        .env("XDG_CACHE_HOME", home.join(".cache"))
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .env_remove("CVMBUILD_PUBLISH_DIR")
        .env_remove("CVMBUILD_KEYS_DIR")
        .env_remove("SOURCE_DATE_EPOCH");
    cmd
}
