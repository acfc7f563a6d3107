//! The on-disk store (store-layout.md section 2.4).
//!
//! Crash safety rests on two rules. First, an object's final name only ever
//! points at complete bytes: small objects are written to an anonymous
//! `O_TMPFILE` file in their shard directory and linked to their final name
//! once complete; large ones (and all objects on file systems without
//! `O_TMPFILE`) go to a temporary file in this process's session directory
//! under `tmp/` and are then hardlinked (or, where hardlinks are
//! unsupported, renamed) to their final name. A `kill -9` at any point
//! leaves at worst a stray temporary file, which a later open removes. Second, an output is registered only after every
//! object written so far is durable: [`FsStore::make_durable`] flushes the
//! file system once (`syncfs`) before the index row is written. Objects are
//! not fsynced one by one: on this project's disks that cost 7-70 ms per
//! object, minutes for an OS tree, where one `syncfs` per output costs one
//! flush. After a power loss an unregistered object may have lost its
//! bytes; `install` replaces an existing object whose size is wrong (the
//! usual symptom, a zero-length file), and `store verify` finds the rest.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension};

use super::{
    check_children, missing_children, validate_id, BlobRef, Damage, Error, Hash, ObjectKind,
    Output, Result, Root, Store, Tree, VerifyReport, VerifyingReader,
};

/// How long a store operation waits for another process's hold on the
/// index before it fails.
const INDEX_BUSY: Duration = Duration::from_secs(60);

/// Puts the index in WAL mode. While another process opens or closes the
/// same index, SQLite answers this pragma "database is locked" at once,
/// without waiting on the busy handler (two realizes started together hit
/// it one time in three), so it is retried for as long as the busy timeout.
fn set_wal(conn: &Connection) -> rusqlite::Result<()> {
    let deadline = std::time::Instant::now() + INDEX_BUSY;
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            done => return done,
        }
    }
}

/// Temporary files and session directories younger than this are never
/// swept, which closes the window between another process creating its
/// session lock file and taking the lock on it.
const SWEEP_MIN_AGE: Duration = Duration::from_secs(60);

/// Object files are read-only for everyone: nothing may edit them in place.
const OBJECT_MODE: u32 = 0o444;

/// Blobs up to this size are read and hashed in memory first, so an object
/// already present costs one `stat` and a new one is written once, straight
/// under its final name; larger ones stream through a temporary file.
const SMALL_OBJECT: usize = 1 << 20;

/// Shard directories per store handle: 256 for blobs, then 256 for trees.
const SHARDS: usize = 512;

thread_local! {
    /// Reused for small blobs, so extracting thousands of files does not
    /// allocate (and fault in) a fresh buffer for each.
    static SMALL_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

const INDEX_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS outputs (
    drv_id TEXT PRIMARY KEY NOT NULL,
    kind   TEXT NOT NULL CHECK (kind IN ('tree', 'blob')),
    hash   TEXT NOT NULL,
    size   INTEGER,
    meta   TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS drvs (
    id   TEXT PRIMARY KEY NOT NULL,
    json BLOB NOT NULL
) STRICT;
";

/// Distinguishes several `FsStore`s opened by one process.
static SESSION_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A store in a directory, safe to share between threads and processes.
pub struct FsStore {
    root: PathBuf,
    index: Mutex<Connection>,
    session_dir: PathBuf,
    session_lock_path: PathBuf,
    /// Held (flocked) for the life of the store so sweepers in other
    /// processes know the session directory is live.
    _session_lock: File,
    next_temp: AtomicU64,
    /// Bumped after each object's bytes are in the page cache.
    written: AtomicU64,
    /// The `written` value the last completed `syncfs` covered; the mutex
    /// serialises flushes so no caller returns before its objects are
    /// durable.
    synced: Mutex<u64>,
    /// Shard directories known to exist (see [`FsStore::ensure_shard`]).
    shards: [std::sync::atomic::AtomicBool; SHARDS],
    /// Cleared when the file system refuses `O_TMPFILE`.
    anonymous_files: std::sync::atomic::AtomicBool,
}

/// An exclusive, advisory lock on one derivation (`locks/<drv_id>.lock`);
/// released when dropped.
#[derive(Debug)]
pub struct DrvLock {
    _file: File,
}

pub(super) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |e| Error::io(path, e)
}

pub(super) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Creates `dir` if missing and makes its entry durable in `parent`.
fn ensure_dir(dir: &Path, parent: &Path) -> Result<()> {
    match fs::create_dir(dir) {
        Ok(()) => sync_dir(parent),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::io(dir, e)),
    }
}

fn older_than(meta: &fs::Metadata, age: Duration) -> bool {
    meta.modified()
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .is_some_and(|d| d >= age)
}

/// Removes a temporary file on drop unless it was installed.
pub(super) struct TempGuard(pub(super) PathBuf);

impl Drop for TempGuard {
    fn drop(&mut self) {
        // Best effort: a file left behind is swept by a later open.
        let _ = fs::remove_file(&self.0);
    }
}

impl FsStore {
    /// Opens (creating if needed) the store at `root`, and removes temporary
    /// files left behind by dead processes.
    pub fn open(root: &Path) -> Result<FsStore> {
        fs::create_dir_all(root).map_err(io_err(root))?;
        for sub in ["blobs", "trees", "tmp", "locks", "roots", "logs", "drvs"] {
            ensure_dir(&root.join(sub), root)?;
        }
        let tmp = root.join("tmp");
        sweep_tmp(&tmp)?;

        let sid = format!(
            "s-{}-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
            SESSION_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let session_lock_path = tmp.join(format!("{sid}.lock"));
        let session_lock = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&session_lock_path)
            .map_err(io_err(&session_lock_path))?;
        session_lock.lock().map_err(io_err(&session_lock_path))?;
        let session_dir = tmp.join(&sid);
        fs::create_dir(&session_dir).map_err(io_err(&session_dir))?;

        let index_path = root.join("index.sqlite");
        let conn = Connection::open(&index_path)?;
        conn.busy_timeout(INDEX_BUSY)?;
        // WAL lets readers in other processes proceed during a write;
        // synchronous=FULL makes a returned registration durable.
        set_wal(&conn)?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(INDEX_SCHEMA)?;

        let store = FsStore {
            root: root.to_path_buf(),
            index: Mutex::new(conn),
            session_dir,
            session_lock_path,
            _session_lock: session_lock,
            next_temp: AtomicU64::new(0),
            written: AtomicU64::new(0),
            synced: Mutex::new(0),
            shards: std::array::from_fn(|_| Default::default()),
            anonymous_files: true.into(),
        };
        store.import_file_records()?;
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The index of a blob's (`tree == false`) or tree's shard in `shards`.
    fn shard_index(tree: bool, hash: &Hash) -> usize {
        usize::from(tree) * 256 + usize::from(hash.0[0])
    }

    fn object_path(&self, dir: &str, hash: &Hash) -> PathBuf {
        let hex = hash.to_hex();
        self.root.join(dir).join(&hex[..2]).join(hex)
    }

    /// Where a blob's bytes live, whether or not it is present.
    pub fn blob_path(&self, hash: &Hash) -> PathBuf {
        self.object_path("blobs", hash)
    }

    /// Where a tree's canonical encoding lives, whether or not it is present.
    pub fn tree_path(&self, hash: &Hash) -> PathBuf {
        self.object_path("trees", hash)
    }

    /// The build log location for a derivation (`logs/<drv_id>.log`).
    pub fn log_path(&self, drv_id: &str) -> Result<PathBuf> {
        validate_id(drv_id)?;
        Ok(self.root.join("logs").join(format!("{drv_id}.log")))
    }

    /// Blocks until this process holds the derivation's build lock. Lock
    /// files are never deleted: removing one while another process waits on
    /// it would let two builders in.
    pub fn lock_derivation(&self, drv_id: &str) -> Result<DrvLock> {
        let file = self.lock_file(drv_id)?;
        file.lock()
            .map_err(io_err(&self.root.join("locks").join(drv_id)))?;
        Ok(DrvLock { _file: file })
    }

    /// Like [`FsStore::lock_derivation`] but returns `None` instead of
    /// waiting when another holder has the lock.
    pub fn try_lock_derivation(&self, drv_id: &str) -> Result<Option<DrvLock>> {
        let file = self.lock_file(drv_id)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(DrvLock { _file: file })),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => {
                Err(Error::io(self.root.join("locks").join(drv_id), e))
            }
        }
    }

    fn lock_file(&self, drv_id: &str) -> Result<File> {
        validate_id(drv_id)?;
        let path = self.root.join("locks").join(format!("{drv_id}.lock"));
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))
    }

    /// Records a GC root `roots/<name>` pointing at `root`, replacing any
    /// previous root of that name atomically.
    pub fn add_root(&self, name: &str, root: &Root) -> Result<()> {
        self.add_gc_root(
            name,
            &match root {
                Root::Tree { hash } => super::GcRoot::Tree(*hash),
                Root::Blob { hash, .. } => super::GcRoot::Blob(*hash),
            },
        )
    }

    /// Removes a derivation's output from the index (only the garbage
    /// collector does this, under its exclusive lock, before deleting the
    /// output's objects).
    pub(super) fn unregister_output(&self, drv_id: &str) -> Result<()> {
        self.index()
            .execute("DELETE FROM outputs WHERE drv_id = ?1", params![drv_id])?;
        Ok(())
    }

    pub(super) fn temp_file(&self) -> Result<(PathBuf, File)> {
        let n = self.next_temp.fetch_add(1, Ordering::Relaxed);
        let path = self.session_dir.join(format!("{n}.tmp"));
        let f = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        Ok((path, f))
    }

    /// Makes every object this store handle has written durable, with one
    /// file-system flush shared by all threads waiting at the same time.
    pub fn make_durable(&self) -> Result<()> {
        let target = self.written.load(Ordering::Acquire);
        let mut synced = self.synced.lock().unwrap_or_else(|e| e.into_inner());
        if *synced >= target {
            return Ok(());
        }
        let now = self.written.load(Ordering::Acquire);
        let dir = File::open(&self.root).map_err(io_err(&self.root))?;
        // SAFETY: syncfs takes a file descriptor we own for the duration.
        if unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&dir)) } != 0 {
            return Err(Error::io(&self.root, io::Error::last_os_error()));
        }
        *synced = now;
        Ok(())
    }

    /// Moves a complete temporary file to its final object name. An object
    /// already present with the right size is left untouched (never
    /// rewritten); one with the wrong size lost its bytes in a power
    /// failure before it was flushed, and is replaced.
    fn install(&self, temp: TempGuard, dest: &Path, shard: usize) -> Result<()> {
        let want = fs::metadata(&temp.0).map_err(io_err(&temp.0))?.len();
        if present_with_size(dest, want)? {
            return Ok(());
        }
        self.ensure_shard(dest, shard)?;
        match fs::hard_link(&temp.0, dest) {
            Ok(()) => {}
            // Someone else installed the same object meanwhile: same bytes.
            Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(()),
            // File systems without hardlinks: rename is atomic too, and at
            // worst replaces a concurrently installed identical object.
            Err(_) => fs::rename(&temp.0, dest).map_err(io_err(dest))?,
        }
        self.written.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// Creates the shard directory of `dest` once per store handle; the
    /// cache spares one `mkdir` per object (shards are never removed).
    fn ensure_shard(&self, dest: &Path, shard: usize) -> Result<()> {
        if self.shards[shard].load(Ordering::Relaxed) {
            return Ok(());
        }
        let dir = dest.parent().expect("object paths have a shard directory");
        let kind_dir = dir.parent().expect("shards live in an object directory");
        ensure_dir(dir, kind_dir)?;
        self.shards[shard].store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Stores `bytes` under `dest` unless an object of that size is already
    /// there. The bytes go into an anonymous file (`O_TMPFILE`) in the
    /// shard directory that is linked to its final name only once complete:
    /// the name never points at partial bytes, a crash leaves nothing
    /// behind, and it costs one directory update instead of the three
    /// (create, link, unlink) of a named temporary file, which is the bulk
    /// of extracting many small files. File systems without `O_TMPFILE`
    /// get the named temporary file.
    fn write_object(&self, dest: &Path, shard: usize, bytes: &[u8]) -> Result<()> {
        if present_with_size(dest, bytes.len() as u64)? {
            return Ok(());
        }
        self.ensure_shard(dest, shard)?;
        if self.anonymous_files.load(Ordering::Relaxed) {
            match self.link_anonymous(dest, bytes) {
                Ok(()) => return Ok(()),
                Err(e) if is_unsupported(&e) => {
                    self.anonymous_files.store(false, Ordering::Relaxed)
                }
                Err(e) => return Err(Error::io(dest, e)),
            }
        }
        let (tmp, mut f) = self.temp_file()?;
        let guard = TempGuard(tmp);
        f.write_all(bytes)
            .and_then(|()| f.set_permissions(fs::Permissions::from_mode(OBJECT_MODE)))
            .map_err(io_err(&guard.0))?;
        drop(f);
        self.install(guard, dest, shard)
    }

    fn link_anonymous(&self, dest: &Path, bytes: &[u8]) -> io::Result<()> {
        let dir = dest.parent().expect("object paths have a shard directory");
        let mut f = OpenOptions::new()
            .write(true)
            .mode(OBJECT_MODE)
            .custom_flags(libc::O_TMPFILE)
            .open(dir)?;
        f.write_all(bytes)?;
        // linkat(AT_EMPTY_PATH) needs CAP_DAC_READ_SEARCH; the /proc name
        // of the descriptor works for every user.
        let proc =
            CString::new(format!("/proc/self/fd/{}", f.as_raw_fd())).expect("no NUL in a number");
        let to = CString::new(dest.as_os_str().as_bytes())
            .map_err(|e| io::Error::new(ErrorKind::InvalidInput, e))?;
        // SAFETY: both paths are NUL-terminated and outlive the call.
        let rc = unsafe {
            libc::linkat(
                libc::AT_FDCWD,
                proc.as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
                libc::AT_SYMLINK_FOLLOW,
            )
        };
        if rc != 0 {
            let e = io::Error::last_os_error();
            // Someone else installed the same object meanwhile: same bytes.
            return if e.kind() == ErrorKind::AlreadyExists {
                Ok(())
            } else {
                Err(e)
            };
        }
        self.written.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// Streams a blob too large for memory through a temporary file; `head`
    /// is what was already read from `r`.
    fn put_large_blob(&self, head: &[u8], r: &mut dyn Read) -> Result<BlobRef> {
        let (tmp, mut f) = self.temp_file()?;
        let guard = TempGuard(tmp);
        let mut hasher = blake3::Hasher::new();
        hasher.update(head);
        f.write_all(head).map_err(io_err(&guard.0))?;
        let mut size = head.len() as u64;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::Read(e)),
            };
            hasher.update(&buf[..n]);
            f.write_all(&buf[..n]).map_err(io_err(&guard.0))?;
            size += n as u64;
        }
        f.set_permissions(fs::Permissions::from_mode(OBJECT_MODE))
            .map_err(io_err(&guard.0))?;
        drop(f);
        let hash = Hash::from(hasher.finalize());
        self.install(
            guard,
            &self.blob_path(&hash),
            Self::shard_index(false, &hash),
        )?;
        Ok(BlobRef { hash, size })
    }

    pub(super) fn index(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the guard cannot leave SQLite inconsistent:
        // every statement is atomic on its own.
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Derivations whose registered output (tree or blob) has a hash
    /// starting with the hex `prefix`, sorted: lets a user name a build by
    /// what it produced, as Nix users name store paths.
    pub fn drvs_by_output_prefix(&self, prefix: &str) -> Result<Vec<String>> {
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(Vec::new());
        }
        let conn = self.index();
        let mut stmt = conn.prepare(
            "SELECT drv_id FROM outputs WHERE substr(hash, 1, length(?1)) = ?1 ORDER BY drv_id",
        )?;
        let ids = stmt
            .query_map(params![prefix.to_ascii_lowercase()], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(ids)
    }

    pub(super) fn all_outputs(&self) -> Result<Vec<(String, Result<Output>)>> {
        let conn = self.index();
        let mut stmt = conn.prepare("SELECT drv_id, kind, hash, size, meta FROM outputs")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<i64>>(3)?,
                r.get::<_, String>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (drv_id, kind, hash, size, meta) = row?;
            let parsed = parse_row(&drv_id, &kind, &hash, size, &meta);
            out.push((drv_id, parsed));
        }
        Ok(out)
    }
}

impl Drop for FsStore {
    fn drop(&mut self) {
        // Best effort; a leftover session directory is swept later.
        let _ = fs::remove_dir_all(&self.session_dir);
        let _ = fs::remove_file(&self.session_lock_path);
    }
}

/// Whether an object is already installed at `dest` with `size` bytes; one
/// of another size lost its bytes in a power failure before it was flushed,
/// and is removed so the caller replaces it.
fn present_with_size(dest: &Path, size: u64) -> Result<bool> {
    match dest.symlink_metadata() {
        Ok(m) if m.len() == size => Ok(true),
        Ok(_) => match fs::remove_file(dest) {
            Ok(()) => Ok(false),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io(dest, e)),
        },
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(dest, e)),
    }
}

/// Errors meaning "this file system (or kernel) cannot do `O_TMPFILE` plus
/// `linkat` through /proc", as opposed to a real failure to write.
fn is_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL | libc::ENOENT | libc::EXDEV)
    )
}

/// Removes what dead processes left in `tmp/`: session directories whose
/// lock file is not held, and anything else, once older than
/// [`SWEEP_MIN_AGE`].
fn sweep_tmp(tmp: &Path) -> Result<()> {
    let entries = fs::read_dir(tmp).map_err(io_err(tmp))?;
    for entry in entries {
        let entry = entry.map_err(io_err(tmp))?;
        let path = entry.path();
        let Ok(meta) = path.symlink_metadata() else {
            continue; // removed concurrently
        };
        if !older_than(&meta, SWEEP_MIN_AGE) {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let lock_path = if let Some(sid) = name.strip_suffix(".lock") {
            Some((path.clone(), tmp.join(sid)))
        } else if meta.is_dir() {
            let lock = tmp.join(format!("{name}.lock"));
            if lock.exists() {
                continue; // handled through its lock file
            }
            None
        } else {
            None
        };
        match lock_path {
            Some((lock, dir)) => {
                let Ok(f) = File::open(&lock) else { continue };
                if f.try_lock().is_ok() {
                    let _ = fs::remove_dir_all(&dir);
                    let _ = fs::remove_file(&lock);
                }
            }
            None if meta.is_dir() => {
                let _ = fs::remove_dir_all(&path);
            }
            None => {
                let _ = fs::remove_file(&path);
            }
        }
    }
    Ok(())
}

/// The raw `outputs` row of `drv_id`: kind, hash, size, meta.
type OutputRow = (String, String, Option<i64>, String);

fn output_row(conn: &rusqlite::Connection, drv_id: &str) -> Result<Option<OutputRow>> {
    Ok(conn
        .query_row(
            "SELECT kind, hash, size, meta FROM outputs WHERE drv_id = ?1",
            params![drv_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?)
}

fn parse_row(
    drv_id: &str,
    kind: &str,
    hash: &str,
    size: Option<i64>,
    meta: &str,
) -> Result<Output> {
    let bad = |reason: &str| Error::BadIndexRow {
        drv_id: drv_id.to_owned(),
        reason: reason.to_owned(),
    };
    let hash = Hash::from_hex(hash).ok_or_else(|| bad("hash is not 64 hex digits"))?;
    let root = match (kind, size) {
        ("tree", None) => Root::Tree { hash },
        ("blob", Some(size)) if size >= 0 => Root::Blob {
            hash,
            size: size as u64,
        },
        _ => return Err(bad("kind and size disagree")),
    };
    let meta: BTreeMap<String, String> =
        serde_json::from_str(meta).map_err(|e| bad(&format!("meta: {e}")))?;
    Ok(Output { root, meta })
}

impl Store for FsStore {
    fn put_blob(&self, r: &mut dyn Read) -> Result<BlobRef> {
        SMALL_BUF.with(|cell| {
            let mut buf = cell.borrow_mut();
            buf.clear();
            let limit = SMALL_OBJECT as u64 + 1;
            r.take(limit).read_to_end(&mut buf).map_err(Error::Read)?;
            if buf.len() <= SMALL_OBJECT {
                let hash = Hash::of(&buf);
                let dest = self.blob_path(&hash);
                self.write_object(&dest, Self::shard_index(false, &hash), &buf)?;
                return Ok(BlobRef {
                    hash,
                    size: buf.len() as u64,
                });
            }
            self.put_large_blob(&buf, r)
        })
    }

    fn open_blob(&self, hash: &Hash) -> Result<Box<dyn Read + Send>> {
        let path = self.blob_path(hash);
        match File::open(&path) {
            Ok(f) => Ok(Box::new(VerifyingReader::new(BufReader::new(f), *hash))),
            Err(e) if e.kind() == ErrorKind::NotFound => Err(Error::Missing {
                kind: "blob",
                hash: *hash,
            }),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    fn blob_size(&self, hash: &Hash) -> Result<Option<u64>> {
        let path = self.blob_path(hash);
        match path.symlink_metadata() {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    fn put_tree(&self, tree: &Tree) -> Result<Hash> {
        check_children(self, tree)?;
        let bytes = tree.encode();
        let hash = Hash::of(&bytes);
        self.write_object(
            &self.tree_path(&hash),
            Self::shard_index(true, &hash),
            &bytes,
        )?;
        Ok(hash)
    }

    fn get_tree(&self, hash: &Hash) -> Result<Tree> {
        let path = self.tree_path(hash);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(Error::Missing {
                    kind: "tree",
                    hash: *hash,
                })
            }
            Err(e) => return Err(Error::io(path, e)),
        };
        let actual = Hash::of(&bytes);
        if actual != *hash {
            return Err(Error::Corrupt {
                kind: "tree",
                hash: *hash,
                reason: format!("content hashes to {actual}"),
            });
        }
        Tree::decode(&bytes).map_err(|e| Error::Corrupt {
            kind: "tree",
            hash: *hash,
            reason: e.to_string(),
        })
    }

    fn has_tree(&self, hash: &Hash) -> Result<bool> {
        let path = self.tree_path(hash);
        match path.symlink_metadata() {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    fn register_output(&self, drv_id: &str, out: &Output) -> Result<()> {
        validate_id(drv_id)?;
        let (kind, hash, size) = match out.root {
            Root::Tree { hash } => ("tree", hash, None),
            Root::Blob { hash, size } => ("blob", hash, Some(size as i64)),
        };
        let present = match out.root {
            Root::Tree { hash } => self.has_tree(&hash)?,
            Root::Blob { hash, .. } => self.has_blob(&hash)?,
        };
        if !present {
            return Err(Error::Missing { kind, hash });
        }
        self.make_durable()?;
        let meta = serde_json::to_string(&out.meta).expect("a string map always serialises");
        let mut conn = self.index();
        // IMMEDIATE takes the write lock up front, so the read-compare-insert
        // below cannot interleave with another process's registration.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let existing = output_row(&tx, drv_id)?;
        match existing {
            Some((k, h, s, m)) => {
                if parse_row(drv_id, &k, &h, s, &m).ok().as_ref() != Some(out) {
                    return Err(Error::OutputConflict {
                        drv_id: drv_id.to_owned(),
                    });
                }
            }
            None => {
                tx.execute(
                    "INSERT INTO outputs (drv_id, kind, hash, size, meta) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![drv_id, kind, hash.to_hex(), size, meta],
                )?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn lookup_output(&self, drv_id: &str) -> Result<Option<Output>> {
        let conn = self.index();
        let row = output_row(&conn, drv_id)?;
        drop(conn);
        row.map(|(k, h, s, m)| parse_row(drv_id, &k, &h, s, &m))
            .transpose()
    }

    fn verify(&self) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        for (dir, kind) in [("blobs", ObjectKind::Blob), ("trees", ObjectKind::Tree)] {
            for (path, hash) in list_objects(&self.root.join(dir), &mut report)? {
                let problems = match kind {
                    ObjectKind::Blob => {
                        report.blobs += 1;
                        verify_blob(&path, &hash)
                    }
                    _ => {
                        report.trees += 1;
                        verify_tree(self, &path, &hash)?
                    }
                };
                report
                    .damage
                    .extend(problems.into_iter().map(|problem| Damage {
                        kind,
                        id: hash.to_hex(),
                        problem,
                    }));
            }
        }
        for (drv_id, parsed) in self.all_outputs()? {
            report.outputs += 1;
            let problem = match parsed {
                Err(e) => Some(e.to_string()),
                Ok(out) => {
                    let present = match out.root {
                        Root::Tree { hash } => self.has_tree(&hash)?,
                        Root::Blob { hash, .. } => self.has_blob(&hash)?,
                    };
                    (!present).then(|| "root object missing".to_owned())
                }
            };
            if let Some(problem) = problem {
                report.damage.push(Damage {
                    kind: ObjectKind::Output,
                    id: drv_id,
                    problem,
                });
            }
        }
        report.damage.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(report)
    }

    fn local_blob_path(&self, hash: &Hash) -> Option<PathBuf> {
        Some(self.blob_path(hash))
    }
}

/// Lists `dir/xx/<hex>` objects; anything else found there is reported as
/// stray.
fn list_objects(dir: &Path, report: &mut VerifyReport) -> Result<Vec<(PathBuf, Hash)>> {
    let mut out = Vec::new();
    let mut stray = |path: &Path| {
        report.damage.push(Damage {
            kind: ObjectKind::Stray,
            id: path.display().to_string(),
            problem: "not an object name".into(),
        })
    };
    for shard in fs::read_dir(dir).map_err(io_err(dir))? {
        let shard = shard.map_err(io_err(dir))?.path();
        let shard_name = shard.file_name().map(|n| n.to_string_lossy().into_owned());
        if !shard.is_dir() {
            stray(&shard);
            continue;
        }
        for obj in fs::read_dir(&shard).map_err(io_err(&shard))? {
            let obj = obj.map_err(io_err(&shard))?.path();
            let hash = obj
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(Hash::from_hex)
                .filter(|h| Some(&h.to_hex()[..2]) == shard_name.as_deref());
            match hash {
                Some(h) => out.push((obj, h)),
                None => stray(&obj),
            }
        }
    }
    out.sort_by_key(|a| a.1);
    Ok(out)
}

fn verify_blob(path: &Path, hash: &Hash) -> Vec<String> {
    let mut hasher = blake3::Hasher::new();
    let result = File::open(path).and_then(|mut f| io::copy(&mut f, &mut hasher));
    match result {
        Err(e) => vec![format!("unreadable: {e}")],
        Ok(_) => {
            let actual = Hash::from(hasher.finalize());
            if actual == *hash {
                Vec::new()
            } else {
                vec![format!("content hashes to {actual}")]
            }
        }
    }
}

fn verify_tree(store: &FsStore, path: &Path, hash: &Hash) -> Result<Vec<String>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) => return Ok(vec![format!("unreadable: {e}")]),
    };
    let actual = Hash::of(&bytes);
    if actual != *hash {
        return Ok(vec![format!("content hashes to {actual}")]);
    }
    match Tree::decode(&bytes) {
        Ok(tree) => missing_children(store, &tree),
        Err(e) => Ok(vec![e.to_string()]),
    }
}
