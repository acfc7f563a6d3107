//! `mount FQRN MOUNTPOINT`: a CernVM-FS repository as a read-only file
//! system, in the foreground until `umount` or SIGTERM/SIGINT/SIGHUP.
//! Shared by `cvmbuild` and the initrd's small `cvmbuild-client`.

use super::client::ClientArgs;
use crate::client::{self, fuse};
use clap::Args;
use miette::Result;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

#[derive(Args, Debug)]
pub struct MountArgs {
    /// Repository name, e.g. cernvm-prod.cern.ch.
    pub fqrn: String,
    /// An empty directory that nothing is mounted on.
    pub mountpoint: PathBuf,
    #[command(flatten)]
    pub client: ClientArgs,
    /// Honour setuid bits and device nodes (suid,dev), as a root file
    /// system needs; the default is nosuid,nodev, like upstream.
    #[arg(long)]
    pub suid: bool,
    /// FUSE worker threads.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub threads: usize,
}

/// The signals that end a mount cleanly.
const STOP_SIGNALS: [libc::c_int; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

/// Mounts, serves until unmounted, unmounts on a stop signal.
pub fn mount_cmd(a: MountArgs) -> Result<i32> {
    // Before any thread starts, so that every thread inherits the mask and
    // only the waiter below ever takes these signals.
    let signals = block_stop_signals();
    // Refuse a bad mount point before touching the network.
    fuse::check_mountpoint(&a.mountpoint)?;
    let cfg = a.client.to_config(&a.fqrn)?;

    // A stop signal while still opening ends the process at once: nothing
    // is mounted yet, and cache writes are atomic renames.
    let mounted: Arc<Mutex<Option<fuse::Unmounter>>> = Arc::new(Mutex::new(None));
    let waiter = mounted.clone();
    std::thread::spawn(move || loop {
        let sig = wait_signal(&signals);
        let guard = waiter.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_ref() {
            None => std::process::exit(128 + sig),
            Some(u) => {
                eprintln!("cvmbuild mount: signal {sig}: unmounting");
                match u.unmount() {
                    Ok(fuse::Unmounted::Lazily) => eprintln!(
                        "cvmbuild mount: still in use: detached, served until the last file is closed"
                    ),
                    Ok(_) => {}
                    Err(e) => eprintln!("cvmbuild mount: {e}"),
                }
            }
        }
    });

    let repo = client::open(&cfg)?;
    let what = format!(
        "{} revision {} (root catalog {})",
        cfg.fqrn,
        repo.revision(),
        repo.root_hash()
    );
    let options = fuse::Options {
        suid: a.suid,
        threads: a.threads,
        ..fuse::Options::default()
    };
    let log: fuse::Log = Arc::new(|m: &str| eprintln!("cvmbuild mount: {m}"));
    let mount = {
        // Held while mounting: a signal now waits, then finds the mount.
        let mut guard = mounted.lock().unwrap_or_else(|p| p.into_inner());
        let mount = fuse::mount(Arc::new(repo), &a.mountpoint, &options, log)?;
        *guard = Some(mount.unmounter());
        mount
    };
    let at = mount.mountpoint().display().to_string();
    eprintln!("cvmbuild mount: {what} mounted on {at}");
    mount.wait()?;
    eprintln!("cvmbuild mount: {at} unmounted");
    Ok(0)
}

fn signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset only write the set they are given.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in STOP_SIGNALS {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

fn block_stop_signals() -> libc::sigset_t {
    let set = signal_set();
    // SAFETY: set is initialised; the old mask is not wanted.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    set
}

fn wait_signal(set: &libc::sigset_t) -> i32 {
    let mut sig = 0;
    // SAFETY: set is initialised and sig is a valid out pointer; sigwait
    // only fails for an invalid set.
    unsafe { libc::sigwait(set, &mut sig) };
    sig
}
