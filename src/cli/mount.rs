//! `mount FQRN MOUNTPOINT`: a CernVM-FS repository as a read-only file
//! system, in the foreground until `umount` or SIGTERM/SIGINT/SIGHUP.
//! Shared by `cvmbuild` and the initrd's small `cvmbuild-client`.
//!
//! SIGUSR1 tells the client to let go of its cache: it waits for cache
//! writes in flight, then writes nothing more there (later objects go to
//! `--spool`) and says so on stderr, while it goes on serving. The boot
//! loader sends it at power-off, before it makes the scratch disk that
//! holds the cache read-only.

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
    /// Where objects fetched after SIGUSR1 (let go of the cache) are kept
    /// [default: cvmbuild-spool.PID in the temporary directory].
    #[arg(long, value_name = "DIR")]
    pub spool: Option<PathBuf>,
}

/// The signals that end a mount cleanly.
const STOP_SIGNALS: [libc::c_int; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];
/// The signal that makes the client let go of its cache.
const RELEASE_SIGNAL: libc::c_int = libc::SIGUSR1;

/// What the signal thread acts on once mounted.
struct Live {
    unmounter: fuse::Unmounter,
    repo: Arc<client::Repository>,
}

/// Mounts, serves until unmounted, unmounts on a stop signal.
pub fn mount_cmd(a: MountArgs) -> Result<i32> {
    // Before any thread starts, so that every thread inherits the mask and
    // only the waiter below ever takes these signals.
    let signals = block_handled_signals();
    // Refuse a bad mount point before touching the network.
    fuse::check_mountpoint(&a.mountpoint)?;
    let cfg = a.client.to_config(&a.fqrn)?;
    let spool = a.spool.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("cvmbuild-spool.{}", std::process::id()))
    });

    // A stop signal while still opening ends the process at once: nothing
    // is mounted yet, and cache writes are atomic renames.
    let mounted: Arc<Mutex<Option<Live>>> = Arc::new(Mutex::new(None));
    let waiter = mounted.clone();
    std::thread::spawn(move || loop {
        let sig = wait_signal(&signals);
        let guard = waiter.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_ref() {
            None if sig == RELEASE_SIGNAL => {
                eprintln!("cvmbuild mount: signal {sig}: nothing mounted yet, nothing to let go of")
            }
            None => std::process::exit(128 + sig),
            Some(live) if sig == RELEASE_SIGNAL => match live.repo.release_cache(&spool) {
                Ok(()) => eprintln!(
                    "cvmbuild mount: signal {sig}: let go of the cache; later objects go to {}",
                    spool.display()
                ),
                Err(e) => eprintln!("cvmbuild mount: cannot let go of the cache: {e}"),
            },
            Some(Live { unmounter: u, .. }) => {
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

    let repo = Arc::new(client::open(&cfg)?);
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
        let mount = fuse::mount(repo.clone(), &a.mountpoint, &options, log)?;
        *guard = Some(Live {
            unmounter: mount.unmounter(),
            repo,
        });
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
        for s in STOP_SIGNALS.into_iter().chain([RELEASE_SIGNAL]) {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

fn block_handled_signals() -> libc::sigset_t {
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
