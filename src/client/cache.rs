//! The local object cache (upstream's `cache_posix.cc` and
//! `quota_posix.cc`, simplified): verified objects stored decompressed
//! under their content name, written through a temporary file and an
//! atomic rename so that a killed client never leaves a partial object
//! under a valid name, kept across opens. With a quota, the least recently
//! used objects are removed down to half the quota; catalogs in use are
//! pinned.
//!
//! Only verified bytes reach [`Cache::insert`]: callers check the name
//! first. The cache trusts its own directory (as upstream does).
//!
//! A cache can be *released* ([`Cache::release`]): from then on nothing
//! is written or removed in its directory, and objects fetched later go
//! to a spool directory instead. μCernVM's boot loader releases the cache
//! on the scratch disk at power-off, so that the disk can go read-only
//! while the client still serves the root file system.

use super::Error;
use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

/// The directory of one cache.
pub struct Cache {
    dir: PathBuf,
    quota: Option<u64>,
    lru: Mutex<Lru>,
    /// Where objects are written once released; held for reading by every
    /// write, so that [`Cache::release`] waits for writes in flight.
    spool: RwLock<Option<PathBuf>>,
}

#[derive(Default)]
struct Lru {
    /// Object name -> (last use, size).
    entries: HashMap<String, (u64, u64)>,
    clock: u64,
    total: u64,
    pinned: HashSet<String>,
}

impl Cache {
    /// Opens (creating) the cache in `dir`; leftovers of killed writers
    /// are removed, and the sizes of present objects counted (their
    /// modification time gives the initial LRU order).
    pub fn open(dir: &Path, quota: Option<u64>) -> Result<Cache, Error> {
        let txn = dir.join("txn");
        fs::create_dir_all(&txn).map_err(|e| Error::io(&txn, e))?;
        fs::create_dir_all(dir.join("data")).map_err(|e| Error::io(dir.join("data"), e))?;
        fs::create_dir_all(dir.join("manifests"))
            .map_err(|e| Error::io(dir.join("manifests"), e))?;
        for e in fs::read_dir(&txn)
            .map_err(|e| Error::io(&txn, e))?
            .flatten()
        {
            let _ = fs::remove_file(e.path());
        }
        let mut found = Vec::new();
        if quota.is_some() {
            let data = dir.join("data");
            for sub in fs::read_dir(&data)
                .map_err(|e| Error::io(&data, e))?
                .flatten()
            {
                let Ok(files) = fs::read_dir(sub.path()) else {
                    continue;
                };
                for f in files.flatten() {
                    let Ok(md) = f.metadata() else { continue };
                    let name = format!(
                        "{}/{}",
                        sub.file_name().to_string_lossy(),
                        f.file_name().to_string_lossy()
                    );
                    found.push((md.modified().ok(), name, md.len()));
                }
            }
            found.sort();
        }
        let mut lru = Lru::default();
        for (_, name, size) in found {
            lru.clock += 1;
            lru.total += size;
            lru.entries.insert(name, (lru.clock, size));
        }
        Ok(Cache {
            dir: dir.to_path_buf(),
            quota,
            lru: Mutex::new(lru),
            spool: RwLock::new(None),
        })
    }

    /// Releases the cache's directory: waits for the writes in flight,
    /// then sends every later write to `spool` (made if missing; the
    /// cache's own layout) and stops removing objects. Objects already
    /// cached are still read from the directory.
    pub fn release(&self, spool: &Path) -> Result<(), Error> {
        let mut guard = self.spool.write().unwrap_or_else(|p| p.into_inner());
        for d in ["txn", "data", "manifests"] {
            let d = spool.join(d);
            fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
        }
        *guard = Some(spool.to_path_buf());
        Ok(())
    }

    /// The file of object `name` (`XX/REST<suffix>`): in the spool if it
    /// was written there after the release, else in the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        if let Some(spool) = self
            .spool
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            let p = spool.join("data").join(name);
            if p.exists() {
                return p;
            }
        }
        self.dir.join("data").join(name)
    }

    /// The directory writes go to while `guard` is held.
    fn write_dir<'a>(&'a self, guard: &'a Option<PathBuf>) -> &'a Path {
        guard.as_deref().unwrap_or(&self.dir)
    }

    /// Opens a cached object, marking it used; `None` if absent.
    pub fn open_object(&self, name: &str) -> Option<fs::File> {
        let f = fs::File::open(self.path(name)).ok()?;
        if self.quota.is_some() {
            let mut lru = self.lru.lock().expect("cache lock");
            lru.clock += 1;
            let clock = lru.clock;
            if let Some(e) = lru.entries.get_mut(name) {
                e.0 = clock;
            }
        }
        Some(f)
    }

    /// Stores object `name`, its plain bytes written by `write` into a
    /// temporary file that is renamed into place only when complete.
    /// Returns the stored size.
    pub fn insert(
        &self,
        name: &str,
        write: impl FnOnce(&mut fs::File) -> Result<u64, Error>,
    ) -> Result<u64, Error> {
        let guard = self.spool.read().unwrap_or_else(|p| p.into_inner());
        let dir = self.write_dir(&guard);
        let dest = dir.join("data").join(name);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let size = write_atomic(&dir.join("txn"), &dest, write)?;
        drop(guard);
        self.account(name, size);
        Ok(size)
    }

    /// Records a new object and cleans up if over the quota.
    fn account(&self, name: &str, size: u64) {
        if self.quota.is_some() {
            let mut lru = self.lru.lock().expect("cache lock");
            lru.clock += 1;
            let clock = lru.clock;
            if let Some((_, old)) = lru.entries.insert(name.to_string(), (clock, size)) {
                lru.total -= old;
            }
            lru.total += size;
            self.cleanup(&mut lru, name);
        }
    }

    /// Moves the complete file `tmp` (from [`Cache::scratch`]) into place
    /// as object `name`. A scratch file begun before a release is copied
    /// into the spool rather than renamed into the released directory.
    pub fn adopt(&self, name: &str, tmp: &Path) -> Result<(), Error> {
        let guard = self.spool.read().unwrap_or_else(|p| p.into_inner());
        let dir = self.write_dir(&guard);
        let dest = dir.join("data").join(name);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let size = fs::metadata(tmp).map_err(|e| Error::io(tmp, e))?.len();
        if tmp.starts_with(dir) {
            fs::rename(tmp, &dest).map_err(|e| Error::io(&dest, e))?;
        } else {
            write_atomic(&dir.join("txn"), &dest, |f| {
                let mut from = fs::File::open(tmp).map_err(|e| Error::io(tmp, e))?;
                std::io::copy(&mut from, f).map_err(|e| Error::io(tmp, e))
            })?;
        }
        drop(guard);
        self.account(name, size);
        Ok(())
    }

    /// Keeps `name` (an open catalog) from being removed by the cleanup.
    pub fn pin(&self, name: &str) {
        self.lru
            .lock()
            .expect("cache lock")
            .pinned
            .insert(name.to_string());
    }

    /// Bytes currently accounted (only tracked with a quota).
    pub fn used(&self) -> u64 {
        self.lru.lock().expect("cache lock").total
    }

    /// Over the quota: removes least recently used, unpinned objects
    /// (never `keep`, the one just stored for a reader) down to half.
    fn cleanup(&self, lru: &mut Lru, keep: &str) {
        let Some(quota) = self.quota else { return };
        let released = self
            .spool
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_some();
        if released || lru.total <= quota {
            return;
        }
        let mut victims: Vec<(u64, String, u64)> = lru
            .entries
            .iter()
            .filter(|(n, _)| n.as_str() != keep && !lru.pinned.contains(*n))
            .map(|(n, (t, s))| (*t, n.clone(), *s))
            .collect();
        victims.sort();
        for (_, name, size) in victims {
            if lru.total <= quota / 2 {
                break;
            }
            if fs::remove_file(self.path(&name)).is_ok() || !self.path(&name).exists() {
                lru.entries.remove(&name);
                lru.total -= size;
            }
        }
    }

    /// The last verified manifest of `fqrn`, as received.
    pub fn manifest(&self, fqrn: &str) -> Option<Vec<u8>> {
        let spooled = self
            .spool
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .and_then(|s| fs::read(s.join("manifests").join(fqrn)).ok());
        spooled.or_else(|| fs::read(self.dir.join("manifests").join(fqrn)).ok())
    }

    /// Records the verified manifest of `fqrn`.
    pub fn set_manifest(&self, fqrn: &str, bytes: &[u8]) -> Result<(), Error> {
        let guard = self.spool.read().unwrap_or_else(|p| p.into_inner());
        let dir = self.write_dir(&guard);
        let dest = dir.join("manifests").join(fqrn);
        write_atomic(&dir.join("txn"), &dest, |f| {
            f.write_all(bytes).map_err(|e| Error::io(&dest, e))?;
            Ok(bytes.len() as u64)
        })
        .map(|_| ())
    }

    /// A scratch file path in the file system writes go to.
    pub fn scratch(&self) -> PathBuf {
        let guard = self.spool.read().unwrap_or_else(|p| p.into_inner());
        temp_name(&self.write_dir(&guard).join("txn"))
    }
}

fn temp_name(txn: &Path) -> PathBuf {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    txn.join(format!(
        "tmp.{}.{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Writes through a fresh temporary file in `txn` and renames it to
/// `dest`; on any failure the temporary file is removed and `dest` is
/// untouched.
pub fn write_atomic(
    txn: &Path,
    dest: &Path,
    write: impl FnOnce(&mut fs::File) -> Result<u64, Error>,
) -> Result<u64, Error> {
    let tmp = temp_name(txn);
    let r = (|| {
        let mut f = fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let n = write(&mut f)?;
        f.flush().map_err(|e| Error::io(&tmp, e))?;
        drop(f);
        fs::rename(&tmp, dest).map_err(|e| Error::io(dest, e))?;
        Ok(n)
    })();
    if r.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_cleans_down_to_half_and_keeps_pinned() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::open(dir.path(), Some(1000)).unwrap();
        let put = |name: &str| {
            c.insert(name, |f| {
                f.write_all(&[7u8; 300]).unwrap();
                Ok(300)
            })
            .unwrap()
        };
        put("aa/pinnedC");
        c.pin("aa/pinnedC");
        put("bb/one");
        put("cc/two");
        assert_eq!(c.used(), 900);
        put("dd/three");
        // 1200 > 1000: down to <= 500, the pinned and the new one stay.
        assert!(c.used() <= 600, "{}", c.used());
        assert!(c.path("aa/pinnedC").exists());
        assert!(c.path("dd/three").exists());
        assert!(!c.path("bb/one").exists());
    }
}
