//! Binary cache of parsed repositories, like libsolv's `.solv` files.
//!
//! A repository's parsed packages are stored under the blake3 of its
//! `repomd.xml`: repomd names every other metadata file by checksum, so an
//! unchanged repomd means unchanged packages, and a load can skip fetching
//! and parsing primary entirely. Entries are written only after every
//! checksum was verified, and atomically (temporary file + rename), so a
//! reader sees a whole entry or none; they are not fsynced, because a
//! crash can at worst leave an entry that fails its hash (below), which
//! costs one parse.
//!
//! File layout: magic, format number, blake3 of the payload, payload
//! (postcard of a one-repository [`Pool`]). A truncated or corrupt entry
//! fails the payload hash and is treated as absent.

use super::error::RepoError;
use super::model::Pool;
use std::io::Write;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"CVMREPO\0";
/// Bump whenever `Pool`/`Package` (or their parts) change shape, so entries
/// written by an older build are ignored rather than misread.
const FORMAT: u32 = 2;
const HEADER: usize = MAGIC.len() + 4 + 32;

fn entry_path(dir: &Path, metadata_hash: &str) -> PathBuf {
    dir.join(format!("{metadata_hash}.v{FORMAT}.pool"))
}

/// The cached packages of the repository whose repomd.xml hashes to
/// `metadata_hash`, if a valid entry exists. Its interner can look names
/// up (deserialising rebuilds its map, so more can be merged into it); the
/// pool is not indexed.
pub fn read(dir: &Path, metadata_hash: &str) -> Option<Pool> {
    let file = std::fs::File::open(entry_path(dir, metadata_hash)).ok()?;
    let data = Mapped::new(&file)?;
    let data = data.bytes();
    if data.len() < HEADER || &data[..8] != MAGIC || data[8..12] != FORMAT.to_le_bytes() {
        return None;
    }
    let payload = &data[HEADER..];
    if blake3::hash(payload).as_bytes() != &data[12..HEADER] {
        return None;
    }
    let pool = postcard::from_bytes(payload).ok()?;
    // The modification time records the last use, for [`prune`]; failing
    // to set it (a cache owned by someone else) only makes the entry look
    // older.
    let _ = file.set_modified(std::time::SystemTime::now());
    Some(pool)
}

/// A whole, non-empty file mapped read-only, unmapped on drop.
///
/// Mapped rather than read: a read copies the entry (megabytes) into fresh
/// anonymous memory that the kernel must zero first, which was a tenth of
/// a warm eval. Entries are only ever replaced by rename or removed, never
/// rewritten or truncated in place, so the mapping's pages cannot change
/// or vanish under the decoder.
struct Mapped {
    ptr: *mut libc::c_void,
    len: usize,
}

impl Mapped {
    fn new(file: &std::fs::File) -> Option<Mapped> {
        use std::os::fd::AsRawFd;
        // An empty file cannot be mapped, and is no entry either.
        let len = usize::try_from(file.metadata().ok()?.len())
            .ok()
            .filter(|&l| l > 0)?;
        // SAFETY: a fresh private read-only mapping of `len` bytes of an
        // open file; checked for failure, unmapped once in `drop`.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        (ptr != libc::MAP_FAILED).then_some(Mapped { ptr, len })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` maps `len` readable bytes for as long as `self`
        // lives (see the type's comment on why they do not change).
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `new` made.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

/// What [`prune`] removed (or would remove).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub entries: u64,
    pub bytes: u64,
}

/// Removes entries not used for `keep` (by modification time, which
/// [`read`] refreshes), entries of other cache formats (unreadable to this
/// build anyway), and temporary files of interrupted writes older than an
/// hour. A missing cache directory is an empty one. With `dry_run`, only
/// counts.
pub fn prune(dir: &Path, keep: std::time::Duration, dry_run: bool) -> std::io::Result<Pruned> {
    let mut out = Pruned::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    let now = std::time::SystemTime::now();
    let current = format!(".v{FORMAT}.pool");
    for e in entries {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let meta = e.metadata()?;
        let age = now.duration_since(meta.modified()?).unwrap_or_default();
        let stale = if name.starts_with('.') && name.ends_with(".tmp") {
            age > std::time::Duration::from_secs(3600)
        } else if name.ends_with(".pool") {
            !name.ends_with(&current) || age > keep
        } else {
            false // not ours
        };
        if stale && meta.is_file() {
            if !dry_run {
                std::fs::remove_file(e.path())?;
            }
            out.entries += 1;
            out.bytes += meta.len();
        }
    }
    Ok(out)
}

/// Stores `pool` (one repository's packages) under `metadata_hash`.
pub fn write(dir: &Path, metadata_hash: &str, pool: &Pool) -> Result<(), RepoError> {
    let path = entry_path(dir, metadata_hash);
    let fail = |reason: String| RepoError::Cache {
        path: path.clone(),
        reason,
    };
    // Grown from empty, the buffer is copied a dozen times on its way to
    // the tens of megabytes of a large universe; the strings alone are a
    // fair lower bound.
    let guess = pool.names.bytes() + pool.packages.len() * 256;
    let payload = postcard::to_extend(pool, Vec::with_capacity(guess))
        .map_err(|e| fail(format!("cannot encode: {e}")))?;
    std::fs::create_dir_all(dir).map_err(|e| fail(format!("cannot create directory: {e}")))?;
    // Unique per process and thread, so concurrent loads never share a
    // temporary file; the rename makes the last complete writer win.
    let tmp = dir.join(format!(
        ".{metadata_hash}.{}.{:?}.tmp",
        std::process::id(),
        std::thread::current().id()
    ));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(MAGIC)?;
        f.write_all(&FORMAT.to_le_bytes())?;
        f.write_all(blake3::hash(&payload).as_bytes())?;
        f.write_all(&payload)?;
        // No fsync: a crash may leave a renamed entry with lost or partial
        // content, but [`read`] checks the payload hash and treats it as
        // absent, so the entry is only ever lost, never misread; a flush
        // would cost a cold `eval` tens of milliseconds for nothing.
        drop(f);
        std::fs::rename(&tmp, &path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        fail(e.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let mut pool = Pool::default();
        pool.intern("bash");
        write(dir.path(), "abc", &pool).unwrap();
        let back = read(dir.path(), "abc").unwrap();
        assert_eq!(back.names.resolve(crate::repo::NameId(0)), "bash");
        assert_eq!(back.names.get("bash"), Some(crate::repo::NameId(0)));
        assert!(read(dir.path(), "other").is_none());
        // Flip one payload byte: the entry is ignored, not misread.
        let p = entry_path(dir.path(), "abc");
        let mut data = std::fs::read(&p).unwrap();
        let last = data.len() - 1;
        data[last] ^= 1;
        std::fs::write(&p, &data).unwrap();
        assert!(read(dir.path(), "abc").is_none());
        // No temporary files are left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn prune_removes_unused_old_and_foreign_format_entries() {
        use std::time::{Duration, SystemTime};
        let dir = tempfile::tempdir().unwrap();
        let pool = Pool::default();
        for h in ["used", "unused", "fresh"] {
            write(dir.path(), h, &pool).unwrap();
        }
        let age = |name: &str, days: u64| {
            let f = std::fs::File::options()
                .append(true)
                .open(dir.path().join(name))
                .unwrap();
            f.set_modified(SystemTime::now() - Duration::from_secs(days * 86400))
                .unwrap();
        };
        age(&format!("used.v{FORMAT}.pool"), 40);
        age(&format!("unused.v{FORMAT}.pool"), 40);
        std::fs::write(dir.path().join("old.v0.pool"), b"x").unwrap();
        std::fs::write(dir.path().join(".x.1.ThreadId(1).tmp"), b"x").unwrap();
        age(".x.1.ThreadId(1).tmp", 1);
        std::fs::write(dir.path().join("README"), b"not ours").unwrap();
        // Reading refreshes the last use.
        assert!(read(dir.path(), "used").is_some());

        let keep = Duration::from_secs(30 * 86400);
        let dry = prune(dir.path(), keep, true).unwrap();
        assert_eq!(dry.entries, 3);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 6);
        let done = prune(dir.path(), keep, false).unwrap();
        assert_eq!(done, dry);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "README",
                &format!("fresh.v{FORMAT}.pool"),
                &format!("used.v{FORMAT}.pool")
            ]
        );
        assert!(read(dir.path(), "fresh").is_some());
        assert_eq!(
            prune(&dir.path().join("none"), keep, false).unwrap(),
            Pruned::default()
        );
    }
}
