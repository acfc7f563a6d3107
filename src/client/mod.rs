//! The CernVM-FS client: reads any published release back over HTTP,
//! verified end to end (`../shared/cvmfs-format.md` sections 3–5), cached
//! on local disk, through a ring of servers and a chain of proxies.
//!
//! This is the other half of [`crate::cvmfs`] (the publisher): the
//! publisher writes a Stratum-0, the client mounts any revision of it.
//! It is kept free of the solver, builders and image code so that a small
//! binary built from it fits in the μCernVM initrd.
//!
//! [`vfs`] is the read-only file-system interface the FUSE layer and the
//! FUSE-less commands (`ls`, `cat`) are written against.

pub mod fuse;
pub mod vfs;
