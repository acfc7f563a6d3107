//! `cvmbuild-client`: the CernVM-FS client alone, for the μCernVM initrd.
//!
//! It reaches only `cli::mount`, `cli::update` and `ext4` (and through them `client`, `cli::client`'s
//! shared options and the FUSE layer): the solver, builders and image code
//! are never called, so the linker drops them. Built for size with
//! `cargo build --profile client --bin cvmbuild-client` (see `[profile.client]`
//! in Cargo.toml); `docs/cvmfs.md` gives its size and what it contains.

use clap::{Parser, Subcommand};
use cvmbuild::cli::mount::{mount_cmd, MountArgs};
use cvmbuild::cli::update::{os_update_cmd, OsUpdateCommand};
use cvmbuild::ext4::Outcome;

/// Mounts CernVM-FS repositories over HTTP, verified end to end.
#[derive(Parser, Debug)]
#[command(name = "cvmbuild-client", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Mount a repository read-only on an empty directory (foreground, until umount or SIGTERM).
    Mount(Box<MountArgs>),
    /// On a machine the boot loader pinned: is its tag at a newer release (check), release the pin (apply).
    #[command(subcommand)]
    OsUpdate(OsUpdateCommand),
    /// Turn the clean ext2 file system busybox's mke2fs just made on DEVICE into ext4 (a journal, extents), as tune2fs -j -O extent would.
    MakeExt4 {
        /// The block device (or image file) holding the file system.
        device: std::path::PathBuf,
    },
}

fn make_ext4(device: &std::path::Path) -> miette::Result<i32> {
    match cvmbuild::ext4::make_ext4(device)? {
        Outcome::Journaled { blocks, extents } => eprintln!(
            "cvmbuild-client: {}: now ext4, journal of {blocks} blocks in {extents} extent(s)",
            device.display()
        ),
        Outcome::AlreadyJournaled => eprintln!(
            "cvmbuild-client: {}: has a journal already, left as it is",
            device.display()
        ),
    }
    Ok(0)
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            std::process::exit(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let result = match cli.command {
        Command::Mount(a) => mount_cmd(*a),
        Command::OsUpdate(c) => os_update_cmd(c),
        Command::MakeExt4 { device } => make_ext4(&device),
    };
    std::process::exit(match result {
        Ok(code) => code,
        Err(report) => {
            eprintln!("{report:?}");
            1
        }
    });
}
