//! cvmbuild: a declarative, reproducible build engine for CernVM-style
//! operating systems.
//!
//! Data flows one way through the modules:
//!
//! ```text
//! lang  (.cvm text -> values with source spans)
//!  -> eval (values -> typed releases -> derivation graph, pinned by solve + lock)
//!      -> repo  (yum repodata -> package pool, RPM version/dependency semantics)
//!      -> solve (pool + shopping list -> optimal closed package set)
//!  -> build (scheduler) -> builders (registry: fetch, extract, assemble, ...) -> store
//!  -> cvmfs / image (published outputs)
//!  -> diff (compares two releases)
//! client (reads a published repository back over HTTP: mount, ls, cat, replicate)
//! ext4 (the μCernVM scratch disk: busybox mke2fs's ext2 turned into ext4 at boot)
//! ```
//!
//! `drv` (derivations and their ids) and `store` are what everything else
//! stands on. `cli` is the only module that prints; everything else returns
//! values or typed errors, which `cli` maps to exit codes and diagnostics.

pub mod build;
pub mod builders;
pub mod cli;
pub mod client;
pub mod cvmfs;
pub mod diff;
pub mod drv;
pub mod eval;
pub mod ext4;
#[doc(hidden)]
pub mod fuzzing;
pub mod gpg;
pub mod image;
pub mod lang;
pub mod lock;
pub mod repo;
pub mod rpmdb;
pub mod solve;
pub mod store;
