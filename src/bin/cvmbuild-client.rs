//! `cvmbuild-client`: the CernVM-FS client alone, for the μCernVM initrd.
//!
//! It reaches only `cli::mount` and `cli::update` (and through it `client`, `cli::client`'s
//! shared options and the FUSE layer): the solver, builders and image code
//! are never called, so the linker drops them. Built for size with
//! `cargo build --profile client --bin cvmbuild-client` (see `[profile.client]`
//! in Cargo.toml); `docs/cvmfs.md` gives its size and what it contains.

use clap::{Parser, Subcommand};
use cvmbuild::cli::mount::{mount_cmd, MountArgs};
use cvmbuild::cli::update::{os_update_cmd, OsUpdateCommand};

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
    };
    std::process::exit(match result {
        Ok(code) => code,
        Err(report) => {
            eprintln!("{report:?}");
            1
        }
    });
}
