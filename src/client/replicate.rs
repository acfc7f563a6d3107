//! Stratum-1 replication, as `cvmfs_server snapshot` does it: every object
//! reachable from the manifest and from every tag of every revision of
//! the history is downloaded, verified by its name and stored as served;
//! the whitelist and the manifest come last, each through a temporary
//! file and a rename, so a client of the replica never sees a manifest
//! whose objects are missing.
//!
//! A catalog object is written only after everything it references
//! (objects and nested catalogs), and a history object after the catalogs
//! of its tags: a present catalog or history therefore stands for its
//! whole subtree, and a second run after a new publish copies only the
//! new objects without walking what it already has.

use super::cache::write_atomic;
use super::catalog::Catalog;
use super::fetch::{self, Digest, Network};
use super::trust::{self, History};
use super::Error;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Largest catalog or history accepted.
const MAX_DB: u64 = 1 << 30;
/// Largest content object accepted (chunks are at most 16 MiB upstream;
/// unchunked files can be larger).
const MAX_OBJECT: u64 = 4 << 30;
/// Parallel downloads of content objects.
const WORKERS: usize = 4;

/// What a replication run needs.
#[derive(Clone, Debug)]
pub struct Options {
    /// Base URL of the source repository (`http://host/cvmfs/FQRN`); its
    /// last path component is the repository name.
    pub source: String,
    pub proxies: String,
    pub keys: Vec<PathBuf>,
    pub timeouts: super::Timeouts,
}

/// What a run copied.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    pub fqrn: String,
    pub revision: u64,
    pub objects_copied: u64,
    pub bytes_copied: u64,
    pub objects_present: u64,
}

struct Run<'a> {
    net: Network,
    dir: &'a Path,
    txn: PathBuf,
    copied: AtomicU64,
    bytes: AtomicU64,
    present: AtomicU64,
}

/// Replicates the source into `dir`.
pub fn replicate(opts: &Options, dir: &Path) -> Result<Report, Error> {
    let source = opts.source.trim_end_matches('/');
    let fqrn = source
        .rsplit('/')
        .next()
        .filter(|f| !f.is_empty() && !f.contains(':'))
        .ok_or_else(|| {
            Error::Config(format!(
                "{source}: the source URL must end with the repository name (http://HOST/cvmfs/FQRN)"
            ))
        })?
        .to_string();
    let net = Network::new(&[source.to_string()], &opts.proxies, opts.timeouts.clone())?;
    let keys = trust::load_keys(&opts.keys)?;
    net.get(".cvmfs_master_replica", 4096, &|_| Ok(()))
        .map_err(|e| {
            Error::Untrusted(format!(
                "{source} does not allow replication (no .cvmfs_master_replica, which upstream requires): {e}"
            ))
        })?;
    let data = dir.join("data");
    let txn = data.join("txn");
    std::fs::create_dir_all(&txn).map_err(|e| Error::io(&txn, e))?;
    for i in 0..=255u8 {
        let d = data.join(format!("{i:02x}"));
        std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
    }
    let cached = std::fs::read(dir.join(".cvmfspublished"))
        .ok()
        .and_then(|b| trust::parse_manifest(&b, "the replica's manifest").ok());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let head = trust::fetch_head(&net, &fqrn, &keys, cached.as_ref(), &|_| None, now)?;
    let run = Run {
        net,
        dir,
        txn,
        copied: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        present: AtomicU64::new(0),
    };
    let m = &head.manifest;
    let (cert, stored) = &head.certificate;
    if let Some(stored) = stored.as_ref().filter(|_| !run.has(cert, "X")) {
        run.store(cert, "X", stored)?;
    }
    // The history chain, newest first, down to the first one present.
    let mut histories = Vec::new();
    let mut roots: BTreeSet<String> = BTreeSet::from([m.catalog.clone()]);
    let mut next = m.history.clone();
    while let Some(h) = next.take() {
        let d = fetch::parse_hash(&h).map_err(Error::Untrusted)?;
        if run.has(&d, "H") {
            break;
        }
        let stored = run.net.get_object(&d, "H", MAX_DB)?;
        let what = run.net.describe(&fetch::object_path(&d, "H"));
        let hist = run.with_inflated(&stored, &what, |p| History::read(p, &what))?;
        roots.extend(hist.tags.iter().map(|t| t.hash.clone()));
        next = hist.previous.clone();
        histories.push((d, stored));
    }
    for r in &roots {
        run.catalog(r, b"")?;
    }
    for (d, stored) in histories.iter().rev() {
        run.store(d, "H", stored)?;
    }
    if let Some(meta) = &m.meta_info {
        let d = fetch::parse_hash(meta).map_err(Error::Untrusted)?;
        run.copy(&d, "M", MAX_DB)?;
    }
    sync_fs(dir)?;
    for (name, bytes) in [
        (".cvmfswhitelist", &head.whitelist_bytes),
        (".cvmfspublished", &head.manifest_bytes),
    ] {
        let dest = dir.join(name);
        write_atomic(&run.txn, &dest, |f| {
            f.write_all(bytes).map_err(|e| Error::io(&dest, e))?;
            f.sync_all().map_err(|e| Error::io(&dest, e))?;
            Ok(bytes.len() as u64)
        })?;
    }
    Ok(Report {
        fqrn,
        revision: m.revision,
        objects_copied: run.copied.load(Ordering::Relaxed),
        bytes_copied: run.bytes.load(Ordering::Relaxed),
        objects_present: run.present.load(Ordering::Relaxed),
    })
}

impl Run<'_> {
    fn path(&self, d: &Digest, suffix: &str) -> PathBuf {
        self.dir.join(fetch::object_path(d, suffix))
    }

    fn has(&self, d: &Digest, suffix: &str) -> bool {
        let there = self.path(d, suffix).exists();
        if there {
            self.present.fetch_add(1, Ordering::Relaxed);
        }
        there
    }

    fn store(&self, d: &Digest, suffix: &str, stored: &[u8]) -> Result<(), Error> {
        let dest = self.path(d, suffix);
        write_atomic(&self.txn, &dest, |f| {
            f.write_all(stored).map_err(|e| Error::io(&dest, e))?;
            Ok(stored.len() as u64)
        })?;
        self.copied.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(stored.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Downloads and stores one object unless present.
    fn copy(&self, d: &Digest, suffix: &str, limit: u64) -> Result<(), Error> {
        if self.has(d, suffix) {
            return Ok(());
        }
        let stored = self.net.get_object(d, suffix, limit)?;
        self.store(d, suffix, &stored)
    }

    /// Runs `f` on the inflated object in a scratch file.
    fn with_inflated<T>(
        &self,
        stored: &[u8],
        what: &str,
        f: impl FnOnce(&Path) -> Result<T, Error>,
    ) -> Result<T, Error> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let tmp = self.txn.join(format!(
            "db.{}.{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let r = (|| {
            let mut file = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
            fetch::inflate_into(stored, MAX_DB, &mut file)
                .map_err(|e| Error::Corrupt(format!("{what}: {e}")))?;
            drop(file);
            f(&tmp)
        })();
        let _ = std::fs::remove_file(&tmp);
        r
    }

    /// Replicates catalog `hash` (mounted at `prefix`) with everything it
    /// references, the catalog object itself last.
    fn catalog(&self, hash: &str, prefix: &[u8]) -> Result<(), Error> {
        let d = fetch::parse_hash(hash).map_err(Error::Untrusted)?;
        if self.has(&d, "C") {
            return Ok(());
        }
        let stored = self.net.get_object(&d, "C", MAX_DB)?;
        let what = self.net.describe(&fetch::object_path(&d, "C"));
        let (objects, nested) = self.with_inflated(&stored, &what, |p| {
            let c = Catalog::open(p, prefix, format!("catalog {hash} ({what})"))?;
            Ok((c.objects()?, c.nested()?))
        })?;
        self.copy_all(&objects)?;
        for n in &nested {
            self.catalog(&n.hash, &n.path)?;
        }
        self.store(&d, "C", &stored)
    }

    /// Copies content objects with a few parallel downloads.
    fn copy_all(&self, objects: &[(Digest, &'static str)]) -> Result<(), Error> {
        let next = AtomicUsize::new(0);
        let first_error = std::sync::Mutex::new(None);
        std::thread::scope(|s| {
            for _ in 0..WORKERS.min(objects.len()) {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((d, suffix)) = objects.get(i) else {
                        break;
                    };
                    if let Err(e) = self.copy(d, suffix, MAX_OBJECT) {
                        first_error.lock().expect("errors").get_or_insert(e);
                        next.store(objects.len(), Ordering::Relaxed);
                        break;
                    }
                });
            }
        });
        match first_error.into_inner().expect("errors") {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Flushes the replica's file system: objects must be durable before the
/// manifest that names them.
fn sync_fs(dir: &Path) -> Result<(), Error> {
    let f = std::fs::File::open(dir).map_err(|e| Error::io(dir, e))?;
    // SAFETY: syncfs only reads the descriptor, which `f` keeps open.
    let rc = unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&f)) };
    if rc != 0 {
        return Err(Error::io(dir, std::io::Error::last_os_error()));
    }
    Ok(())
}
