//! A mounted repository: one pinned root catalog, presented through
//! [`vfs::ReadOnlyFs`]. Catalogs, nested catalogs and objects are loaded
//! when a lookup or read first needs them, each verified by its name
//! before it reaches the cache or a reader.
//!
//! Inodes are handed out on first sight of an entry: one per path, or one
//! per hardlink group of a catalog (all its names share it).

use super::cache::Cache;
use super::catalog::{self, Catalog, Chunk, Entry};
use super::fetch::{self, Digest, Network};
use super::trust::{self, History};
use super::vfs::{self, Attr, FsError, Ino, Kind, ReadOnlyFs};
use super::{Config, Error, Pin};
use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

/// Largest catalog accepted when no size is recorded for it.
const MAX_CATALOG: u64 = 1 << 30;

struct Node {
    path: Vec<u8>,
    /// The catalog holding this entry's row.
    catalog: usize,
    entry: Entry,
    attr: Attr,
    /// For a directory: the catalog holding its children (a nested one
    /// for a mountpoint), loaded on first use.
    children: OnceLock<usize>,
    chunks: OnceLock<Vec<Chunk>>,
}

#[derive(Hash, PartialEq, Eq)]
enum Key {
    Path(Vec<u8>),
    Hardlink(usize, u64),
}

#[derive(Default)]
struct Inodes {
    nodes: Vec<Arc<Node>>,
    index: HashMap<Key, Ino>,
}

/// What a pin resolved to, before any catalog is read.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// The root catalog the pin names.
    pub root_hash: String,
    /// Its uncompressed size, where the manifest or history says it.
    pub size: Option<u64>,
    /// The history entry (a tag or date pin).
    pub tag: Option<trust::Tag>,
    /// The other tags naming the same root catalog (a branch's release
    /// tag, for example), by name.
    pub aliases: Vec<String>,
}

/// An open repository at one pinned revision.
pub struct Repository {
    fqrn: String,
    net: Network,
    cache: Cache,
    root_hash: String,
    revision: u64,
    /// The history entry the pin resolved to (none for the head or a root hash).
    tag: Option<trust::Tag>,
    catalogs: Mutex<Vec<Arc<Catalog>>>,
    inodes: Mutex<Inodes>,
    /// Objects being downloaded, each with a gate later readers wait on.
    inflight: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl Repository {
    pub(super) fn open(cfg: &Config) -> Result<Repository, Error> {
        let mut repo = Repository::unopened(cfg)?;
        let Resolved {
            root_hash,
            size,
            tag,
            ..
        } = match &cfg.pin {
            Pin::RootHash(h) => Resolved {
                root_hash: h.clone(),
                size: None,
                tag: None,
                aliases: Vec::new(),
            },
            pin => repo.resolve(cfg, pin)?,
        };
        fetch::parse_hash(&root_hash).map_err(Error::Config)?;
        repo.root_hash = root_hash.clone();
        repo.tag = tag;
        let id = repo.load_catalog(&root_hash, b"", size)?;
        let root_cat = repo.catalog(id);
        repo.revision = root_cat.revision;
        let entry = root_cat
            .lookup(b"")?
            .ok_or_else(|| Error::Corrupt(format!("{}: no root entry", root_cat.what)))?;
        let node = repo.node_for(Vec::new(), id, entry);
        node.children.set(id).expect("fresh node");
        Ok(repo)
    }

    /// Verifies the head and resolves the pin without loading any
    /// catalog: what an update check needs.
    pub(super) fn resolve_only(cfg: &Config) -> Result<Resolved, Error> {
        if let Pin::RootHash(h) = &cfg.pin {
            return Err(Error::Config(format!(
                "root hash {h} is its own pin: there is nothing to resolve"
            )));
        }
        Repository::unopened(cfg)?.resolve(cfg, &cfg.pin)
    }

    /// The network and cache, nothing fetched yet.
    fn unopened(cfg: &Config) -> Result<Repository, Error> {
        Ok(Repository {
            fqrn: cfg.fqrn.clone(),
            net: Network::new(&cfg.servers, &cfg.proxies, cfg.timeouts.clone())?,
            cache: Cache::open(&cfg.cache, cfg.quota)?,
            root_hash: String::new(),
            revision: 0,
            tag: None,
            catalogs: Mutex::new(Vec::new()),
            inodes: Mutex::new(Inodes::default()),
            inflight: Mutex::new(HashMap::new()),
        })
    }

    /// Verifies the head and resolves a pin.
    fn resolve(&self, cfg: &Config, pin: &Pin) -> Result<Resolved, Error> {
        let keys = trust::load_keys(&cfg.keys)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let cached = self
            .cache
            .manifest(&self.fqrn)
            .and_then(|b| trust::parse_manifest(&b, "cached manifest").ok());
        let cert_cache = |d: &Digest| -> Option<Vec<u8>> {
            std::fs::read(self.cache.path(&cache_name(d, "X"))).ok()
        };
        let head = trust::fetch_head(
            &self.net,
            &self.fqrn,
            &keys,
            cached.as_ref(),
            &cert_cache,
            now,
        )?;
        let m = &head.manifest;
        let from_history = |tag: &trust::Tag, h: &History, size: Option<u64>| Resolved {
            root_hash: tag.hash.clone(),
            size,
            tag: Some(tag.clone()),
            aliases: h
                .tags
                .iter()
                .filter(|o| o.hash == tag.hash && o.name != tag.name)
                .map(|o| o.name.clone())
                .collect(),
        };
        let resolved = match pin {
            Pin::Head => Resolved {
                root_hash: m.catalog.clone(),
                size: m.catalog_size,
                tag: None,
                aliases: Vec::new(),
            },
            Pin::Tag(t) => {
                let (h, pending) = self.history(m.history.as_deref())?;
                let tag = h.by_tag(t)?;
                pending.commit()?;
                from_history(tag, &h, Some(tag.size))
            }
            Pin::Date(when) => {
                let (h, pending) = self.history(m.history.as_deref())?;
                let tag = h.by_date(*when)?;
                pending.commit()?;
                from_history(tag, &h, None)
            }
            Pin::RootHash(_) => unreachable!("handled by the caller"),
        };
        // Only now, with the chain verified, does anything reach the cache.
        let (cert, stored) = &head.certificate;
        if let Some(stored) = stored {
            self.cache.insert(&cache_name(cert, "X"), |f| {
                fetch::inflate_into(stored, 1 << 20, f).map_err(Error::Corrupt)
            })?;
        }
        self.cache.set_manifest(&self.fqrn, &head.manifest_bytes)?;
        Ok(resolved)
    }

    /// Reads the history database named by the manifest, from the cache
    /// or verified from the network; a fetched one reaches the cache only
    /// when the caller [`Pending::commit`]s it (after the pin resolved).
    fn history(&self, hash: Option<&str>) -> Result<(History, Pending<'_>), Error> {
        let hash = hash.ok_or_else(|| Error::NoSnapshot {
            what: format!(
                "repository {} has no history database (no `H` in its manifest)",
                self.fqrn
            ),
            help: "mount the head or pass --root-hash".into(),
        })?;
        let d = fetch::parse_hash(hash).map_err(Error::Untrusted)?;
        let name = cache_name(&d, "H");
        let what = self.net.describe(&fetch::object_path(&d, "H"));
        if self.cache.open_object(&name).is_some() {
            let h = History::read(&self.cache.path(&name), &what)?;
            return Ok((
                h,
                Pending {
                    cache: &self.cache,
                    file: None,
                },
            ));
        }
        let stored = self.net.get_object(&d, "H", trust::MAX_HISTORY)?;
        let pending = Pending {
            cache: &self.cache,
            file: Some((name, self.cache.scratch())),
        };
        let tmp = &pending.file.as_ref().expect("just set").1;
        let mut f = std::fs::File::create(tmp).map_err(|e| Error::io(tmp, e))?;
        fetch::inflate_into(&stored, trust::MAX_HISTORY, &mut f)
            .map_err(|e| Error::Corrupt(format!("{what}: {e}")))?;
        drop(f);
        let h = History::read(tmp, &what)?;
        Ok((h, pending))
    }

    /// The cached, verified, inflated object `d`: fetched if absent.
    /// `exact` is the size it must inflate to (file contents, chunks);
    /// else at most `limit` bytes.
    fn object(
        &self,
        d: &Digest,
        suffix: &str,
        exact: Option<u64>,
        limit: u64,
        compressed: bool,
    ) -> Result<std::fs::File, Error> {
        let name = cache_name(d, suffix);
        if let Some(f) = self.cache.open_object(&name) {
            if exact.is_none_or(|n| f.metadata().is_ok_and(|m| m.len() == n)) {
                return Ok(f);
            }
        }
        // One download per object: concurrent readers of the same object
        // (FUSE worker threads) wait for the first and then find it cached.
        let gate = self
            .inflight
            .lock()
            .expect("inflight")
            .entry(name.clone())
            .or_default()
            .clone();
        let _turn = gate.lock().expect("object gate");
        if let Some(f) = self.cache.open_object(&name) {
            if exact.is_none_or(|n| f.metadata().is_ok_and(|m| m.len() == n)) {
                return Ok(f);
            }
        }
        let r = self.download(d, suffix, &name, exact, limit, compressed);
        self.inflight.lock().expect("inflight").remove(&name);
        r
    }

    fn download(
        &self,
        d: &Digest,
        suffix: &str,
        name: &str,
        exact: Option<u64>,
        limit: u64,
        compressed: bool,
    ) -> Result<std::fs::File, Error> {
        let limit = exact.unwrap_or(limit);
        let rel = fetch::object_path(d, suffix);
        let wire_limit = if compressed {
            limit + limit / 64 + 4096
        } else {
            limit
        };
        let stored = self.net.get_object(d, suffix, wire_limit)?;
        let url = self.net.describe(&rel);
        self.cache.insert(name, |f| {
            let n = if compressed {
                fetch::inflate_into(&stored, limit, f)
                    .map_err(|e| Error::Corrupt(format!("{url}: {e}")))?
            } else {
                use std::io::Write;
                f.write_all(&stored).map_err(|e| Error::io(&url, e))?;
                stored.len() as u64
            };
            match exact {
                Some(want) if want != n => Err(Error::Corrupt(format!(
                    "{url}: inflates to {n} bytes, the catalog says {want}"
                ))),
                _ => Ok(n),
            }
        })?;
        // Removed by a concurrent cleanup in between: fetch once more.
        match self.cache.open_object(name) {
            Some(f) => Ok(f),
            None => self.download(d, suffix, name, exact, limit, compressed),
        }
    }

    fn catalog(&self, id: usize) -> Arc<Catalog> {
        self.catalogs.lock().expect("catalogs")[id].clone()
    }

    /// Loads (once) the catalog `hash` mounted at `prefix`.
    fn load_catalog(&self, hash: &str, prefix: &[u8], size: Option<u64>) -> Result<usize, Error> {
        let d = fetch::parse_hash(hash).map_err(Error::Untrusted)?;
        {
            let cats = self.catalogs.lock().expect("catalogs");
            if let Some(i) = cats
                .iter()
                .position(|c| c.what.ends_with(hash) && c.prefix == prefix)
            {
                return Ok(i);
            }
        }
        let exact = size.filter(|s| *s > 0 && *s <= MAX_CATALOG);
        let f = self.object(&d, "C", exact, MAX_CATALOG, true)?;
        drop(f);
        let name = cache_name(&d, "C");
        self.cache.pin(&name);
        let cat = Catalog::open(&self.cache.path(&name), prefix, format!("catalog {hash}"))?;
        let mut cats = self.catalogs.lock().expect("catalogs");
        cats.push(Arc::new(cat));
        Ok(cats.len() - 1)
    }

    fn node(&self, ino: Ino) -> Result<Arc<Node>, FsError> {
        let inodes = self.inodes.lock().expect("inodes");
        ino.checked_sub(1)
            .and_then(|i| inodes.nodes.get(i as usize))
            .cloned()
            .ok_or(FsError::NotFound)
    }

    /// The node of an entry, created on first sight; every name of one
    /// hardlink group maps to the first name's node.
    fn node_for(&self, path: Vec<u8>, catalog: usize, entry: Entry) -> Arc<Node> {
        let group = entry.hardlinks >> 32;
        let key = if group != 0 && !entry.is_dir() {
            Key::Hardlink(catalog, group)
        } else {
            Key::Path(path.clone())
        };
        let mut inodes = self.inodes.lock().expect("inodes");
        if let Some(ino) = inodes.index.get(&key) {
            return inodes.nodes[*ino as usize - 1].clone();
        }
        let ino = inodes.nodes.len() as Ino + 1;
        let attr = attr_of(ino, &entry);
        let node = Arc::new(Node {
            path,
            catalog,
            entry,
            attr,
            children: OnceLock::new(),
            chunks: OnceLock::new(),
        });
        inodes.nodes.push(node.clone());
        inodes.index.insert(key, ino);
        node
    }

    /// The catalog holding directory `n`'s children.
    fn children_catalog(&self, n: &Node) -> Result<usize, Error> {
        if let Some(c) = n.children.get() {
            return Ok(*c);
        }
        let id = if n.entry.is_mountpoint() {
            let parent = self.catalog(n.catalog);
            let nested = parent
                .nested()?
                .into_iter()
                .find(|x| x.path == n.path)
                .ok_or_else(|| {
                    Error::Corrupt(format!(
                        "{}: {:?} is a nested catalog mountpoint without a nested catalog",
                        parent.what,
                        String::from_utf8_lossy(&n.path)
                    ))
                })?;
            self.load_catalog(&nested.hash, &n.path, Some(nested.size))?
        } else {
            n.catalog
        };
        Ok(*n.children.get_or_init(|| id))
    }

    fn dir(&self, ino: Ino) -> Result<(Arc<Node>, usize), FsError> {
        let n = self.node(ino)?;
        if n.attr.kind != Kind::Directory {
            return Err(FsError::NotDirectory);
        }
        let c = self.children_catalog(&n)?;
        Ok((n, c))
    }

    /// The root catalog's hash.
    pub fn root_hash(&self) -> &str {
        &self.root_hash
    }

    /// The snapshot a tag or date pin resolved to.
    pub fn tag(&self) -> Option<&trust::Tag> {
        self.tag.as_ref()
    }

    /// The root catalog's revision.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Lets go of the cache directory: later fetches are kept in `spool`
    /// (see [`Cache::release`]); returns once no write to the cache
    /// directory is in flight.
    pub fn release_cache(&self, spool: &Path) -> Result<(), Error> {
        self.cache.release(spool)
    }

    /// Requests made and bytes received from servers since the open.
    pub fn fetched(&self) -> (u64, u64) {
        self.net.counts()
    }

    /// Resolves an absolute path (`/`, `/usr/bin`) to its attributes,
    /// following no symlinks.
    pub fn resolve_path(&self, path: &str) -> Result<Attr, FsError> {
        let mut attr = self.getattr(vfs::ROOT_INO)?;
        for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
            attr = self.lookup(attr.ino, part.as_bytes())?;
        }
        Ok(attr)
    }

    /// Writes the whole content of file `ino` to `out`, piece by piece.
    pub fn copy_to(&self, ino: Ino, out: &mut dyn std::io::Write) -> Result<u64, FsError> {
        let size = self.getattr(ino)?.size;
        let mut off = 0;
        while off < size {
            let piece = self.read(ino, off, 1 << 20)?;
            if piece.is_empty() {
                return Err(FsError::Io("short read".into()));
            }
            out.write_all(&piece)
                .map_err(|e| FsError::Io(format!("writing: {e}")))?;
            off += piece.len() as u64;
        }
        Ok(off)
    }

    fn magic_xattrs(&self) -> Vec<(&'static str, Vec<u8>)> {
        let mut v = vec![
            ("user.fqrn", self.fqrn.as_bytes().to_vec()),
            ("user.revision", self.revision.to_string().into_bytes()),
            ("user.root_hash", self.root_hash.as_bytes().to_vec()),
        ];
        if let Some(t) = &self.tag {
            v.push(("user.tag", t.name.as_bytes().to_vec()));
        }
        v
    }

    fn own_xattrs(&self, n: &Node) -> Result<Vec<catalog::Xattr>, FsError> {
        match &n.entry.xattr {
            None => Ok(Vec::new()),
            Some(blob) => catalog::parse_xattrs(blob).map_err(|e| {
                FsError::Io(format!(
                    "{}: {:?}: {e}",
                    self.catalog(n.catalog).what,
                    String::from_utf8_lossy(&n.path)
                ))
            }),
        }
    }
}

/// A verified history database in a scratch file, not yet in the cache;
/// removed unless committed.
struct Pending<'a> {
    cache: &'a Cache,
    file: Option<(String, std::path::PathBuf)>,
}

impl Pending<'_> {
    fn commit(mut self) -> Result<(), Error> {
        match self.file.take() {
            Some((name, tmp)) => self.cache.adopt(&name, &tmp),
            None => Ok(()),
        }
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Some((_, tmp)) = &self.file {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

/// The cache name of an object: `XX/REST<suffix>`.
fn cache_name(d: &Digest, suffix: &str) -> String {
    fetch::object_path(d, suffix)["data/".len()..].to_string()
}

fn attr_of(ino: Ino, e: &Entry) -> Attr {
    let kind = match e.mode & libc::S_IFMT {
        libc::S_IFDIR => Kind::Directory,
        libc::S_IFLNK => Kind::Symlink,
        libc::S_IFIFO => Kind::Fifo,
        libc::S_IFSOCK => Kind::Socket,
        libc::S_IFCHR => Kind::CharDevice,
        libc::S_IFBLK => Kind::BlockDevice,
        _ => Kind::File,
    };
    let (size, rdev) = match kind {
        Kind::Symlink => (e.symlink.len() as u64, 0),
        Kind::CharDevice | Kind::BlockDevice => (0, e.size),
        _ => (e.size, 0),
    };
    Attr {
        ino,
        kind,
        mode: e.mode,
        size,
        mtime: e.mtime,
        mtime_ns: e.mtime_ns,
        uid: e.uid,
        gid: e.gid,
        nlink: ((e.hardlinks & 0xffff_ffff) as u32).max(1),
        rdev,
    }
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(dir.len() + 1 + name.len());
    p.extend_from_slice(dir);
    p.push(b'/');
    p.extend_from_slice(name);
    p
}

impl vfs::ReadOnlyFs for Repository {
    fn getattr(&self, ino: Ino) -> Result<Attr, FsError> {
        Ok(self.node(ino)?.attr.clone())
    }

    fn lookup(&self, parent: Ino, name: &[u8]) -> Result<Attr, FsError> {
        let (dir, cat) = self.dir(parent)?;
        if name.is_empty() || name.contains(&b'/') || name == b"." || name == b".." {
            return Err(FsError::NotFound);
        }
        let path = join(&dir.path, name);
        if path.len() > catalog::MAX_PATH {
            return Err(FsError::NotFound);
        }
        let entry = self.catalog(cat).lookup(&path)?.ok_or(FsError::NotFound)?;
        Ok(self.node_for(path, cat, entry).attr.clone())
    }

    fn readdir(&self, dir: Ino) -> Result<Vec<(Vec<u8>, Attr)>, FsError> {
        let (d, cat) = self.dir(dir)?;
        let entries = self.catalog(cat).list(&d.path)?;
        Ok(entries
            .into_iter()
            .map(|e| {
                let name = e.name.clone();
                let n = self.node_for(join(&d.path, &name), cat, e);
                (name, n.attr.clone())
            })
            .collect())
    }

    fn readlink(&self, ino: Ino) -> Result<Vec<u8>, FsError> {
        let n = self.node(ino)?;
        if n.attr.kind != Kind::Symlink {
            return Err(FsError::NotSymlink);
        }
        Ok(n.entry.symlink.clone())
    }

    fn read(&self, ino: Ino, offset: u64, size: u32) -> Result<Vec<u8>, FsError> {
        let n = self.node(ino)?;
        match n.attr.kind {
            Kind::File => {}
            Kind::Directory => return Err(FsError::IsDirectory),
            _ => return Err(FsError::Io("not a regular file".into())),
        }
        let total = n.attr.size;
        if offset >= total {
            return Ok(Vec::new());
        }
        let end = total.min(offset + u64::from(size));
        let mut out = vec![0u8; (end - offset) as usize];
        let what = |e: std::io::Error| {
            FsError::Io(format!(
                "{:?}: reading the cached object: {e}",
                String::from_utf8_lossy(&n.path)
            ))
        };
        if n.entry.is_chunked() {
            let chunks = match n.chunks.get() {
                Some(c) => c,
                None => {
                    let c = self.catalog(n.catalog).chunks(&n.path, total)?;
                    n.chunks.get_or_init(|| c)
                }
            };
            let first = chunks.partition_point(|c| c.offset + c.size <= offset);
            for c in &chunks[first..] {
                if c.offset >= end {
                    break;
                }
                let f = self.object(&c.hash, "P", Some(c.size), c.size, n.entry.compressed())?;
                let from = offset.max(c.offset);
                let to = end.min(c.offset + c.size);
                let dst = &mut out[(from - offset) as usize..(to - offset) as usize];
                f.read_exact_at(dst, from - c.offset).map_err(what)?;
            }
        } else {
            let hash = n
                .entry
                .hash
                .ok_or_else(|| FsError::Io("no content hash".into()))?;
            let f = self.object(&hash, "", Some(total), total, n.entry.compressed())?;
            f.read_exact_at(&mut out, offset).map_err(what)?;
        }
        Ok(out)
    }

    fn listxattr(&self, ino: Ino) -> Result<Vec<Vec<u8>>, FsError> {
        let n = self.node(ino)?;
        let mut names: Vec<Vec<u8>> = self.own_xattrs(&n)?.into_iter().map(|(k, _)| k).collect();
        names.extend(
            self.magic_xattrs()
                .into_iter()
                .map(|(k, _)| k.as_bytes().to_vec()),
        );
        Ok(names)
    }

    fn getxattr(&self, ino: Ino, name: &[u8]) -> Result<Vec<u8>, FsError> {
        let n = self.node(ino)?;
        if let Some((_, v)) = self.own_xattrs(&n)?.into_iter().find(|(k, _)| k == name) {
            return Ok(v);
        }
        self.magic_xattrs()
            .into_iter()
            .find(|(k, _)| k.as_bytes() == name)
            .map(|(_, v)| v)
            .ok_or(FsError::NoAttribute)
    }
}
