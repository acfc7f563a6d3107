//! `os-update check|apply`: CernVM's update path for a machine booted by
//! the μCernVM boot loader (examples/boot/init.sh), in the small
//! `cvmbuild-client` as in `cvmbuild`.
//!
//! The boot loader pins the release it mounted on the first boot in
//! `aux/cvmfs_snapshot` on the scratch disk (`<root hash>\n<tag>`), so a
//! promote never changes a running machine behind its back. `check` asks
//! the repository, verified as a mount would, where the pinned tag points
//! now and says whether that is a newer release (and in the motd, as
//! CernVM does); `apply` releases the pin, keeping it as
//! `cvmfs_snapshot.previous`, so that the next boot mounts the tag's
//! current release and rebases the writable layer on it.

use super::client::ClientArgs;
use crate::client::{self, Pin};
use clap::{Args, Subcommand};
use miette::{miette, IntoDiagnostic, Result};
use std::path::{Path, PathBuf};

#[derive(Subcommand, Debug)]
pub enum OsUpdateCommand {
    /// Does the pinned tag now point at another release? Exit 0: up to
    /// date; 100: an update is available (as `dnf check-update`).
    Check(Box<CheckArgs>),
    /// Release the pin: the next boot mounts the tag's current release and
    /// rebases the writable layer on it.
    Apply(ApplyArgs),
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Repository name, e.g. cernvm-prod.cern.ch.
    pub fqrn: String,
    /// The boot loader's pin (`<root hash>` and `<tag>` lines).
    #[arg(long, value_name = "FILE")]
    pub snapshot: PathBuf,
    /// Also say it in this message-of-the-day file (its earlier update
    /// line replaced, the rest kept).
    #[arg(long, value_name = "FILE")]
    pub motd: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// `--tag` follows that tag instead of the pin's.
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// The boot loader's pin (`<root hash>` and `<tag>` lines).
    #[arg(long, value_name = "FILE")]
    pub snapshot: PathBuf,
}

/// Exit status of `check` when an update is available.
const UPDATE_AVAILABLE: i32 = 100;
/// The motd line `check` owns starts so.
const MOTD_PREFIX: &str = "CernVM update: ";
/// A pin file is two short lines; anything longer is not one.
const MAX_PIN: u64 = 4096;

pub fn os_update_cmd(c: OsUpdateCommand) -> Result<i32> {
    match c {
        OsUpdateCommand::Check(a) => check(*a),
        OsUpdateCommand::Apply(a) => apply(a),
    }
}

/// The pin the boot loader wrote: root hash and tag.
struct PinFile {
    hash: String,
    tag: String,
}

fn read_pin(path: &Path) -> Result<PinFile> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_PIN + 1).read_to_string(&mut text))
        .map_err(|e| {
            miette!(
                code = "os_update::pin",
                help = "the boot loader writes it on the first boot (aux/cvmfs_snapshot on the scratch disk)",
                "{}: {e}",
                path.display()
            )
        })?;
    let bad = |why: &str| {
        miette!(
            code = "os_update::pin",
            "{}: not a boot loader pin: {why}",
            path.display()
        )
    };
    if text.len() as u64 > MAX_PIN {
        return Err(bad("longer than two lines"));
    }
    let mut lines = text.lines();
    let hash = lines.next().unwrap_or_default().trim().to_string();
    if hash.len() < 40 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad(&format!("first line {hash:?} is no root hash")));
    }
    let tag = lines.next().unwrap_or_default().trim().to_string();
    Ok(PinFile { hash, tag })
}

fn check(a: CheckArgs) -> Result<i32> {
    let pin = read_pin(&a.snapshot)?;
    if a.client.date.is_some() || a.client.root_hash.is_some() {
        return Err(miette!(
            code = "cli::usage",
            "os-update check follows a tag: --date and --root-hash do not apply"
        ));
    }
    let tag = a.client.tag.clone().unwrap_or_else(|| pin.tag.clone());
    if tag.is_empty() {
        return Err(miette!(
            code = "os_update::no_tag",
            help = "pass --tag NAME to follow a branch",
            "{}: pinned to root hash {} without a tag: there is no branch to follow",
            a.snapshot.display(),
            pin.hash
        ));
    }
    let mut cfg = a.client.to_config(&a.fqrn)?;
    cfg.pin = Pin::Tag(tag.clone());
    let now = client::resolve(&cfg)?;
    let t = now.tag.as_ref().expect("a tag pin resolves to a tag");
    let current = now.root_hash != pin.hash;
    let release = if now.aliases.is_empty() {
        String::new()
    } else {
        format!(" ({})", now.aliases.join(", "))
    };
    let message = if current {
        format!(
            "{} {tag} now points at revision {}{release}, root {}; this machine runs {}. \
             Apply with `os-update apply` and reboot.",
            a.fqrn, t.revision, now.root_hash, pin.hash
        )
    } else {
        format!(
            "{} {tag} still points at revision {}{release}, root {}: up to date.",
            a.fqrn, t.revision, now.root_hash
        )
    };
    if let Some(motd) = &a.motd {
        write_motd(motd, current.then_some(message.as_str()))?;
    }
    if a.json {
        let v = serde_json::json!({
            "repository": a.fqrn,
            "tag": tag,
            "pinned": pin.hash,
            "current": now.root_hash,
            "revision": t.revision,
            "releases": now.aliases,
            "update": current,
        });
        outln!("{}", serde_json::to_string_pretty(&v).into_diagnostic()?);
    } else {
        outln!(
            "{}{message}",
            if current { "update available: " } else { "" }
        );
    }
    Ok(if current { UPDATE_AVAILABLE } else { 0 })
}

/// Replaces the motd's update line (or removes it, `None`), atomically.
fn write_motd(path: &Path, line: Option<&str>) -> Result<()> {
    let old = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(miette!(code = "os_update::motd", "{}: {e}", path.display())),
    };
    let mut text: String = old
        .lines()
        .filter(|l| !l.starts_with(MOTD_PREFIX))
        .flat_map(|l| [l, "\n"])
        .collect();
    if let Some(l) = line {
        text.push_str(&format!("{MOTD_PREFIX}{l}\n"));
    }
    if text == old {
        return Ok(());
    }
    let tmp = path.with_extension("cvmbuild-tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| miette!(code = "os_update::motd", "{}: {e}", path.display()))
}

fn apply(a: ApplyArgs) -> Result<i32> {
    let previous = PathBuf::from(format!("{}.previous", a.snapshot.display()));
    if !a.snapshot.exists() {
        if previous.exists() {
            outln!(
                "already applied: {} is released; the next boot takes the tag's current release",
                a.snapshot.display()
            );
            return Ok(0);
        }
        return Err(miette!(
            code = "os_update::pin",
            "{}: no pin to release (is this machine booted by the boot loader?)",
            a.snapshot.display()
        ));
    }
    let pin = read_pin(&a.snapshot)?;
    std::fs::rename(&a.snapshot, &previous)
        .map_err(|e| miette!(code = "os_update::pin", "{}: {e}", a.snapshot.display()))?;
    // SAFETY: sync has no preconditions; the rename must reach the disk
    // before a power-off.
    unsafe { libc::sync() };
    outln!(
        "released the pin on {} (tag {}): the next boot mounts the tag's current release \
         and rebases the writable layer on it",
        pin.hash,
        if pin.tag.is_empty() { "none" } else { &pin.tag }
    );
    Ok(0)
}
