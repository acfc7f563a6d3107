//! The integration test suite: one binary, one module per topic.
//!
//! One binary instead of one per file: the suite links once, which is most
//! of a cold test build. Every test that runs `cvmbuild` does so through
//! [`support::cvmbuild`], which gives the process a private store, HOME and
//! XDG directories, so nothing a test does touches the machine's state.
//! Shared fixtures and runners live in [`support`].

mod support;

mod boot_cvmfs;
mod boot_qemu;
mod cli;
mod client;
mod cvmfs_crash;
mod cvmfs_format;
mod cvmfs_reader;
mod diff_ids;
mod diff_releases;
mod drv_records;
mod eval_ids;
mod ext4_scratch;
mod extract_caps;
mod extract_hostile;
mod extract_rpm;
mod first_use;
mod fuse_mount;
mod fuzz_loop;
mod fuzz_regressions;
mod gpg_signatures;
mod image_cpio;
mod image_errors;
mod image_rootfs;
mod initrd_binaries;
mod lang_errors;
mod lang_eval;
mod meta_rpm;
mod meta_rpm_lock;
mod pinning_cli;
mod realize_bad_input;
mod realize_crash;
mod realize_http;
mod realize_store;
mod remote_s3;
mod remote_store;
mod repo_errors;
mod repo_fixture;
mod repo_http;
mod repo_real;
mod rpmdb_tree;
mod scriptlets_incremental;
mod scriptlets_lua;
mod scriptlets_sandbox;
mod solve_bruteforce;
mod solve_real;
mod solve_semantics;
mod store_fs;
mod store_tree;
mod trust;
mod vercmp_librpm;
