//! The repository handle of a publish: the directory, its lock, the
//! existing revision verified before anything is built on it, and the
//! ordered writes of a new one.

use super::catalog::{self};
use super::history::History;
use super::keys::{self, Keys};
use super::manifest::{self, Manifest};
use super::object::{self, Digest20, Kind, Objects};
use super::publish::Options;
use super::signed;
use super::{Error, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// An open repository directory.
pub(super) struct Repo {
    pub(super) dir: PathBuf,
    pub(super) objects: Objects,
}

/// Holds the repository's publish lock until dropped.
pub(super) struct Lock(std::fs::File);

impl Drop for Lock {
    fn drop(&mut self) {
        // SAFETY: the descriptor is open for the lifetime of `self.0`.
        unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&self.0), libc::LOCK_UN) };
    }
}

impl Repo {
    pub(super) fn open(dir: &Path) -> Result<Repo> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        Ok(Repo {
            dir: dir.to_path_buf(),
            objects: Objects::open(dir)?,
        })
    }

    pub(super) fn open_existing(dir: &Path) -> Result<Repo> {
        if !dir.join(".cvmfspublished").exists() {
            return Err(Error::Repo(format!(
                "{}: no repository here (no .cvmfspublished)",
                dir.display()
            )));
        }
        Repo::open(dir)
    }

    /// Serialises publishers of one repository (across processes).
    pub(super) fn lock(&self) -> Result<Lock> {
        let path = self.objects.txn().join("publish.lock");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        // SAFETY: flock on a descriptor `f` owns.
        if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&f), libc::LOCK_EX) } != 0 {
            return Err(Error::io(&path, std::io::Error::last_os_error()));
        }
        Ok(Lock(f))
    }

    pub(super) fn manifest(&self) -> Result<Option<Manifest>> {
        let path = self.dir.join(".cvmfspublished");
        match std::fs::read(&path) {
            Ok(b) => Manifest::parse(&b, &path).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    /// Refuses a directory without a manifest that was published before:
    /// one with history objects, which only a commit writes. Starting over
    /// at revision 1 there would silently drop every earlier revision and
    /// tag. (Content objects alone are what a first publish killed before
    /// its commit leaves; they are reused.)
    pub(super) fn check_unpublished(&self) -> Result<()> {
        let data = self.dir.join("data");
        let history = walkdir::WalkDir::new(&data)
            .min_depth(2)
            .max_depth(2)
            .into_iter()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_file() && e.file_name().to_string_lossy().ends_with('H'))
            .count();
        if history > 0 {
            return Err(Error::Damaged(format!(
                "{} has no .cvmfspublished, but {} holds {history} history object(s): it was published before, and publishing would restart it at revision 1",
                self.dir.display(),
                data.display()
            )));
        }
        Ok(())
    }

    /// Checks an existing repository before building on it: the manifest's
    /// hash and signature (with the repository key), the whitelist's hash,
    /// signature (with the master key), name and listed certificate, and
    /// the certificate, root catalog and history objects against their
    /// names, the certificate being the keys' own and the root catalog a
    /// root catalog of the manifest's size.
    pub(super) fn verify(&self, m: &Manifest, keys: &Keys) -> Result<()> {
        let damaged = |what: String| Error::Damaged(format!("{}: {what}", self.dir.display()));
        let path = self.dir.join(".cvmfspublished");
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let published = signed::split(&bytes)
            .map_err(|_| damaged(".cvmfspublished has no `--` and hash line".into()))?;
        if !published.hash_matches() {
            return Err(damaged(format!(
                ".cvmfspublished: its hash line {} is not the SHA-1 of its body (edited after signing)",
                String::from_utf8_lossy(published.hash)
            )));
        }
        if !published.signed_by_certificate(&keys.repository.to_public_key()) {
            return Err(damaged(
                ".cvmfspublished: the signature does not verify with the repository key".into(),
            ));
        }
        let wl_path = self.dir.join(".cvmfswhitelist");
        let wl = std::fs::read(&wl_path).map_err(|e| damaged(format!(".cvmfswhitelist: {e}")))?;
        let whitelist = signed::split(&wl)
            .map_err(|_| damaged(".cvmfswhitelist has no `--` and hash line".into()))?;
        if !whitelist.hash_matches() {
            return Err(damaged(format!(
                ".cvmfswhitelist: its hash line {} is not the SHA-1 of its body",
                String::from_utf8_lossy(whitelist.hash)
            )));
        }
        if !whitelist.signed_by_master(&keys.master.to_public_key()) {
            return Err(damaged(
                ".cvmfswhitelist: the signature does not verify with the master key".into(),
            ));
        }
        let wl_text = String::from_utf8_lossy(whitelist.body);
        if !wl_text.lines().any(|l| l == format!("N{}", m.fqrn)) {
            return Err(damaged(format!(".cvmfswhitelist is not for {}", m.fqrn)));
        }
        let fp = keys::fingerprint_text(&keys.fingerprint);
        if !wl_text
            .lines()
            .any(|l| l.split_whitespace().next() == Some(fp.as_str()))
        {
            return Err(damaged(format!(
                ".cvmfswhitelist does not list the repository certificate {fp}"
            )));
        }
        let object = |hash: &str, kind: Kind, what: &str| -> Result<Vec<u8>> {
            self.digest(hash)
                .and_then(|d| self.objects.get(&d, kind))
                .map_err(|e| damaged(format!("the {what} {hash} named by .cvmfspublished: {e}")))
        };
        let cert = object(&m.certificate, Kind::Certificate, "certificate")?;
        if cert != keys.certificate_pem.as_bytes() {
            return Err(damaged(format!(
                "the certificate {} named by .cvmfspublished is not the repository key's certificate",
                m.certificate
            )));
        }
        let root = object(&m.catalog, Kind::Catalog, "root catalog")?;
        if root.len() as u64 != m.catalog_size {
            return Err(damaged(format!(
                "the root catalog {} has {} bytes, .cvmfspublished says {}",
                m.catalog,
                root.len(),
                m.catalog_size
            )));
        }
        let existing = catalog::read(&root, &self.scratch("catalog-verify"))
            .map_err(|e| damaged(format!("the root catalog {}: {e}", m.catalog)))?;
        if let Some(prefix) = existing.root_prefix {
            return Err(damaged(format!(
                "the catalog {} named as root by .cvmfspublished is the nested catalog of {prefix}",
                m.catalog
            )));
        }
        if let Some(h) = &m.history {
            let bytes = object(h, Kind::History, "history")?;
            History::read(&bytes, &self.scratch("history-verify"))
                .map_err(|e| damaged(format!("the history {h}: {e}")))?;
        }
        Ok(())
    }

    pub(super) fn digest(&self, text: &str) -> Result<Digest20> {
        object::from_hex(text).ok_or_else(|| {
            Error::Repo(format!(
                "{}: {text:?} is not a SHA-1 object name",
                self.dir.display()
            ))
        })
    }

    pub(super) fn history(&self, hash: &str) -> Result<History> {
        let bytes = self.objects.get(&self.digest(hash)?, Kind::History)?;
        History::read(&bytes, &self.scratch("history-read"))
    }

    pub(super) fn scratch(&self, what: &str) -> PathBuf {
        self.objects
            .txn()
            .join(format!("{what}.{}", std::process::id()))
    }

    /// Every catalog reachable from the root catalog `hash`, by mountpoint.
    pub(super) fn catalog_tree(&self, hash: &str) -> Result<BTreeMap<String, OldCatalog>> {
        let mut out = BTreeMap::new();
        let mut todo = vec![(String::new(), hash.to_string())];
        while let Some((path, hash)) = todo.pop() {
            let bytes = self.objects.get(&self.digest(&hash)?, Kind::Catalog)?;
            let existing = catalog::read(&bytes, &self.scratch("catalog-read"))?;
            todo.extend(
                existing
                    .nested
                    .iter()
                    .map(|n| (n.path.clone(), n.hash.clone())),
            );
            out.insert(
                path,
                OldCatalog {
                    hash,
                    size: bytes.len() as u64,
                    existing,
                },
            );
        }
        Ok(out)
    }

    /// Writes history and certificate, then (after everything is durable)
    /// the whitelist and the manifest. Returns the manifest written.
    pub(super) fn commit(
        &self,
        keys: &Keys,
        mut manifest: Manifest,
        history: &History,
        prev: Option<&Manifest>,
        opts: &Options,
    ) -> Result<Manifest> {
        let h = history.write(
            &manifest.fqrn,
            prev.and_then(|p| p.history.as_deref()),
            &self.scratch("history"),
        )?;
        manifest.history = Some(object::hex(&self.objects.put(&h, Kind::History)?));
        manifest.certificate = object::hex(
            &self
                .objects
                .put(keys.certificate_pem.as_bytes(), Kind::Certificate)?,
        );
        object::sync_fs(&self.dir)?;
        let txn = self.objects.txn();
        // Upstream's marker that this Stratum-0 may be replicated
        // (`cvmfs_server add-replica` refuses a source without it).
        let replica = self.dir.join(".cvmfs_master_replica");
        if !replica.exists() {
            object::write_new(&txn, &replica, b"")?;
        }
        let wl = manifest::whitelist(&manifest.fqrn, keys, opts.now, opts.whitelist_days)?;
        object::write_new(&txn, &self.dir.join(".cvmfswhitelist"), &wl)?;
        object::write_new(
            &txn,
            &self.dir.join(".cvmfspublished"),
            &manifest.signed(keys),
        )?;
        object::sync_fs(&self.dir)?;
        Ok(manifest)
    }
}

/// A catalog of the previous revision.
pub(super) struct OldCatalog {
    pub(super) hash: String,
    pub(super) size: u64,
    pub(super) existing: catalog::Existing,
}
