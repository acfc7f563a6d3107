//! Content-addressed objects of a Stratum-0: zlib streams named by the
//! SHA-1 of the bytes as stored (cvmfs-format.md section 2).
//!
//! The deflate backend (flate2's default, miniz_oxide) and level (6, zlib's
//! `Z_DEFAULT_COMPRESSION`) are pinned: object names depend on the exact
//! compressed bytes, so changing either renames every object.

use super::{Error, Result};
use flate2::write::ZlibEncoder;
use flate2::Compression;
use sha1::{Digest, Sha1};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The zlib level every object is written with (see the module doc).
const LEVEL: u32 = 6;

/// A raw SHA-1 content digest.
pub type Digest20 = [u8; 20];

/// One piece of a chunked file.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Chunk {
    pub offset: u64,
    pub size: u64,
    pub digest: Digest20,
}

/// Where a file's content went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Stored {
    Whole(Digest20),
    Chunks(Vec<Chunk>),
}

/// What an object is, spelled as the suffix letter of its file name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Whole-file content: no suffix.
    File,
    /// One chunk of a chunked file.
    Partial,
    Catalog,
    History,
    Certificate,
}

impl Kind {
    fn suffix(self) -> &'static str {
        match self {
            Kind::File => "",
            Kind::Partial => "P",
            Kind::Catalog => "C",
            Kind::History => "H",
            Kind::Certificate => "X",
        }
    }
}

/// Text form of a SHA-1 digest: lowercase hex, no algorithm id.
pub fn hex(d: &Digest20) -> String {
    hex::encode(d)
}

/// Parses the text form written by [`hex`].
pub fn from_hex(s: &str) -> Option<Digest20> {
    let mut out = [0u8; 20];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// Compresses `plain` exactly as every object is stored.
pub fn compress(plain: &[u8]) -> Vec<u8> {
    let mut z = ZlibEncoder::new(
        Vec::with_capacity(plain.len() / 2 + 64),
        Compression::new(LEVEL),
    );
    z.write_all(plain).expect("writing to a Vec cannot fail");
    z.finish().expect("writing to a Vec cannot fail")
}

/// Inflates a stored zlib object.
pub fn inflate(stored: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(stored).read_to_end(&mut out)?;
    Ok(out)
}

/// Counts of what a publish wrote, for the build log and the benchmark.
#[derive(Debug, Default)]
pub struct Counts {
    pub written: AtomicU64,
    pub reused: AtomicU64,
    pub bytes_written: AtomicU64,
}

/// The `data/` directory of a repository.
pub struct Objects {
    data: PathBuf,
    pub counts: Counts,
}

impl Objects {
    /// Opens (creating if needed) `data/00`..`data/ff` and `data/txn`.
    pub fn open(repo: &Path) -> Result<Objects> {
        let data = repo.join("data");
        for i in 0..=255u8 {
            let d = data.join(format!("{i:02x}"));
            fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
        }
        let txn = data.join("txn");
        fs::create_dir_all(&txn).map_err(|e| Error::io(&txn, e))?;
        Ok(Objects {
            data,
            counts: Counts::default(),
        })
    }

    /// The file of an object, relative names as served: `data/XX/REST<suffix>`.
    pub fn path(&self, digest: &Digest20, kind: Kind) -> PathBuf {
        let h = hex(digest);
        self.data
            .join(&h[..2])
            .join(format!("{}{}", &h[2..], kind.suffix()))
    }

    /// Scratch directory for files not yet named (same file system as the
    /// objects, so a rename publishes them atomically).
    pub fn txn(&self) -> PathBuf {
        self.data.join("txn")
    }

    /// The stored bytes of an object, re-hashed: `None` if it is absent, an
    /// error if its bytes do not match its name (a tampered object must
    /// fail rather than be referenced or read again).
    fn read_checked(&self, digest: &Digest20, kind: Kind) -> Result<Option<Vec<u8>>> {
        let path = self.path(digest, kind);
        let stored = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let actual: Digest20 = Sha1::digest(&stored).into();
        if &actual != digest {
            return Err(Error::Tampered {
                path,
                actual: hex(&actual),
            });
        }
        Ok(Some(stored))
    }

    /// Compresses and stores `plain`; returns the digest of the stored bytes.
    /// An object that is already present is not rewritten, but its bytes are
    /// re-hashed ([`Objects::read_checked`]).
    pub fn put(&self, plain: &[u8], kind: Kind) -> Result<Digest20> {
        let stored = compress(plain);
        let digest: Digest20 = Sha1::digest(&stored).into();
        if self.read_checked(&digest, kind)?.is_some() {
            self.counts.reused.fetch_add(1, Ordering::Relaxed);
        } else {
            write_new(&self.txn(), &self.path(&digest, kind), &stored)?;
            self.counts.written.fetch_add(1, Ordering::Relaxed);
            self.counts
                .bytes_written
                .fetch_add(stored.len() as u64, Ordering::Relaxed);
        }
        Ok(digest)
    }

    /// Whether every object of `stored` (a memo's answer) is present with
    /// the right SHA-1; counted as reused when so. A present object whose
    /// bytes do not match its name fails, as in [`Objects::put`].
    pub(crate) fn reuse(&self, stored: &Stored) -> Result<bool> {
        let digests: Vec<(Digest20, Kind)> = match stored {
            Stored::Whole(d) => vec![(*d, Kind::File)],
            Stored::Chunks(cs) => cs.iter().map(|c| (c.digest, Kind::Partial)).collect(),
        };
        for (digest, kind) in &digests {
            if self.read_checked(digest, *kind)?.is_none() {
                return Ok(false);
            }
        }
        self.counts
            .reused
            .fetch_add(digests.len() as u64, Ordering::Relaxed);
        Ok(true)
    }

    /// Reads and inflates an object, checking its name first.
    pub fn get(&self, digest: &Digest20, kind: Kind) -> Result<Vec<u8>> {
        let path = self.path(digest, kind);
        let stored = self
            .read_checked(digest, kind)?
            .ok_or_else(|| Error::io(&path, std::io::Error::from(std::io::ErrorKind::NotFound)))?;
        inflate(&stored).map_err(|e| Error::io(&path, e))
    }
}

/// Writes `bytes` to a fresh file in `txn` and renames it to `dest`, so a
/// reader (or a killed publish) never sees a partial object under its name.
pub fn write_new(txn: &Path, dest: &Path, bytes: &[u8]) -> Result<()> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let tmp = txn.join(format!(
        "tmp.{}.{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let r = fs::write(&tmp, bytes)
        .map_err(|e| Error::io(&tmp, e))
        .and_then(|()| fs::rename(&tmp, dest).map_err(|e| Error::io(dest, e)));
    if r.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    r
}

/// Flushes everything written to the file system holding `dir` to disk:
/// objects must be durable before the manifest that names them is.
pub fn sync_fs(dir: &Path) -> Result<()> {
    let f = fs::File::open(dir).map_err(|e| Error::io(dir, e))?;
    // SAFETY: syncfs only reads the descriptor, which `f` keeps open.
    let rc = unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&f)) };
    if rc != 0 {
        return Err(Error::io(dir, std::io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_object_matches_upstream_vector() {
        let z = compress(b"");
        assert_eq!(z, [0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
        let d: Digest20 = Sha1::digest(&z).into();
        assert_eq!(hex(&d), "e8ec3d88b62ebf526e4e5a4ff6162a3aa48a6b78");
    }

    #[test]
    fn tampered_object_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let o = Objects::open(dir.path()).unwrap();
        let d = o.put(b"hello", Kind::File).unwrap();
        fs::write(o.path(&d, Kind::File), b"evil").unwrap();
        let e = o.put(b"hello", Kind::File).unwrap_err().to_string();
        assert!(e.contains("tampered"), "{e}");
        assert!(o.get(&d, Kind::File).is_err());
    }
}
