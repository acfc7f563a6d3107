//! The publisher: one store tree -> one new revision of a repository.
//!
//! Order of writes, so a reader (or a publish killed midway) never sees a
//! manifest naming a missing object: file contents, nested catalogs bottom
//! up, root catalog, history, certificate; then `syncfs`; then the
//! whitelist and finally the manifest, each by rename. Until the manifest
//! rename the previous revision is what is served.

use super::catalog::{self, Catalog, Chunk, Counters, NestedRef, Row};
use super::hints::{Hints, Stored};
use super::history::{History, Tag, TRUNK, TRUNK_PREVIOUS};
use super::keys::{self, Keys};
use super::manifest::{self, Manifest};
use super::object::{self, Digest20, Kind, Objects};
use super::{chunk, Error, Result};
use crate::store::{Hardlink, Hash, Node, Store};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

/// Numeric id for owners the tree's `/etc/passwd` or `/etc/group` does not
/// name (accounts created by scriptlets, which cvmbuild does not run).
pub const UNKNOWN_ID: u32 = 65534;
/// Directory, relative to the repository root, holding cvmbuild's own files
/// (the release's meta RPM).
pub const CVMBUILD_DIR: &str = ".cvmbuild";
/// Marker file upstream puts in every nested catalog's mountpoint.
const MARKER: &str = ".cvmfscatalog";
/// Longest full path accepted (PATH_MAX less the terminating NUL).
const MAX_PATH: usize = 4095;

/// Where the repository and its keys live, and the clock for the whitelist.
#[derive(Clone, Debug)]
pub struct Options {
    /// The repository's Stratum-0 directory (served as `/cvmfs/<fqrn>/`).
    pub repo_dir: PathBuf,
    /// Directory of `<fqrn>.masterkey`, `.pub`, `.key`, `.crt`.
    pub keys_dir: PathBuf,
    /// Wall-clock time, Unix seconds: only the whitelist's validity starts
    /// here (a whitelist dated from the release epoch would be expired).
    pub now: u64,
    /// Whitelist validity in days (upstream's default is 30).
    pub whitelist_days: u64,
}

/// What to publish.
#[derive(Clone, Debug)]
pub struct Request {
    pub fqrn: String,
    /// Nested catalog mountpoints (absolute paths); those that are not
    /// directories in the tree are reported in [`Published::skipped_nested`].
    pub nested: Vec<String>,
    /// Immutable release tag (`NAME-VERSION`).
    pub tag: String,
    /// Branch whose movable tag moves to this release.
    pub branch: String,
    /// SOURCE_DATE_EPOCH of the release: every mtime, and the lower bound of
    /// the publish time `T`.
    pub epoch: u64,
    /// Extra files published under `/.cvmbuild/` (name, bytes).
    pub extra: Vec<(String, Vec<u8>)>,
}

/// What a publish did.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Published {
    pub fqrn: String,
    pub revision: u64,
    pub root_catalog: String,
    pub history: String,
    pub tag: String,
    pub branch: String,
    /// Manifest time `T`.
    pub timestamp: u64,
    /// False when the tag already named this exact tree (nothing written).
    pub new_revision: bool,
    pub entries: u64,
    pub objects_written: u64,
    pub objects_reused: u64,
    pub bytes_written: u64,
    pub catalogs_written: u64,
    pub skipped_nested: Vec<String>,
    /// Owner or group names mapped to [`UNKNOWN_ID`].
    pub unknown_owners: Vec<String>,
}

/// Publishes `tree` as a new revision tagged `req.tag`, moving the branch tag
/// and `trunk`. Publishing a tag that already names the same tree writes
/// nothing and returns that revision; a tag naming another tree is an error
/// (release tags are immutable).
pub fn publish(store: &dyn Store, tree: &Hash, req: &Request, opts: &Options) -> Result<Published> {
    check_label("tag", &req.tag)?;
    check_label("branch", &req.branch)?;
    if req.tag == req.branch {
        return Err(Error::Input(format!(
            "tag `{}` equals the branch name; they share the tag namespace",
            req.tag
        )));
    }
    let repo = Repo::open(&opts.repo_dir)?;
    let _lock = repo.lock()?;
    let prev = repo.manifest()?;
    if let Some(p) = &prev {
        if p.fqrn != req.fqrn {
            return Err(Error::Repo(format!(
                "{} holds repository {}, not {}",
                opts.repo_dir.display(),
                p.fqrn,
                req.fqrn
            )));
        }
    } else {
        repo.check_unpublished()?;
    }
    let keys = keys::load(&opts.keys_dir, &req.fqrn, prev.is_none())?;
    // Everything the new revision builds on (previous revision, history,
    // tags, catalogs to reuse) must be what this repository's keys signed.
    if let Some(p) = &prev {
        repo.verify(p, &keys)?;
    }
    let mut history = match prev.as_ref().and_then(|p| p.history.as_deref()) {
        Some(h) => repo.history(h)?,
        None => History::default(),
    };

    let owners = Owners::from_tree(store, tree)?;
    let nested_wanted: BTreeSet<String> = req
        .nested
        .iter()
        .map(|n| n.trim_end_matches('/').to_string())
        .collect();
    let mut walk = Walk {
        store,
        owners: &owners,
        nested_wanted: &nested_wanted,
        epoch: req.epoch as i64,
        items: Vec::new(),
        nested: Vec::new(),
        unknown: BTreeSet::new(),
    };
    walk.root(tree, &req.extra)?;
    let Walk {
        items,
        nested,
        unknown,
        ..
    } = walk;
    let skipped_nested: Vec<String> = nested_wanted
        .iter()
        .filter(|n| !nested.contains(n))
        .cloned()
        .collect();

    // File contents, in parallel.
    let mut blobs: Vec<(Hash, u64)> = items
        .iter()
        .filter_map(|i| match i.content {
            Content::Blob(h, size) => Some((h, size)),
            _ => None,
        })
        .collect();
    blobs.sort();
    blobs.dedup();
    let extra: BTreeMap<&str, &[u8]> = req
        .extra
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    let hints_path = Hints::path(&opts.keys_dir, &req.fqrn);
    let mut hints = Hints::load(&hints_path);
    let stored: HashMap<Hash, Stored> = blobs
        .par_iter()
        .map(|(h, _)| {
            if let Some(s) = hints.get(h) {
                if repo.objects.reuse(s)? {
                    return Ok((*h, s.clone()));
                }
            }
            let mut bytes = Vec::new();
            store
                .open_blob(h)?
                .read_to_end(&mut bytes)
                .map_err(|e| Error::Input(format!("reading blob {h} from the store: {e}")))?;
            Ok((*h, put_content(&repo.objects, &bytes)?))
        })
        .collect::<Result<_>>()?;
    let empty = repo.objects.put(b"", Kind::File)?;
    for (h, s) in &stored {
        hints.insert(*h, s.clone());
    }
    // Only a memo: if it cannot be written, the next publish compresses
    // the files again to learn their names, and is otherwise the same.
    let _ = hints.save(&hints_path);

    // Catalogs, deepest first.
    let previous = match &prev {
        Some(p) => repo.catalog_tree(&p.catalog)?,
        None => BTreeMap::new(),
    };
    let revision = prev.as_ref().map_or(1, |p| p.revision + 1);
    let timestamp = prev
        .as_ref()
        .map_or(req.epoch, |p| req.epoch.max(p.timestamp + 1));
    let mut rows_by_catalog: BTreeMap<&str, Vec<Row>> = BTreeMap::new();
    // Hardlink group numbers, per catalog (the client maps a catalog's
    // group to one inode) and in row order, so a catalog's rows depend
    // only on its own part of the tree and an unchanged one is reused.
    let mut link_ids: BTreeMap<&str, BTreeMap<(&str, u32), u64>> = BTreeMap::new();
    for item in &items {
        let owner = catalog_of(&nested, &item.path, false);
        let content = match &item.content {
            Content::Blob(h, _) => Some(stored[h].clone()),
            Content::Extra(name) => Some(put_content(&repo.objects, extra[name.as_str()])?),
            Content::Empty => Some(Stored::Whole(empty)),
            Content::None => None,
        };
        let mut row = item.row(content);
        if let Some(h) = item.hardlink {
            let ids = link_ids.entry(owner).or_default();
            let next = ids.len() as u64 + 1;
            let id = *ids
                .entry((catalog::parent(&item.path), h.group))
                .or_insert(next);
            row.hardlinks = (id << 32) | h.names;
        }
        if nested.contains(&item.path) {
            let parent = catalog_of(&nested, &item.path, true);
            let mut mount = row.clone();
            mount.flags = catalog::FLAG_DIR | catalog::FLAG_NESTED_MOUNTPOINT;
            rows_by_catalog.entry(parent).or_default().push(mount);
            let mut root = row;
            root.flags = catalog::FLAG_DIR | catalog::FLAG_NESTED_ROOT;
            rows_by_catalog.entry(owner).or_default().push(root);
        } else {
            rows_by_catalog.entry(owner).or_default().push(row);
        }
    }
    let mut order: Vec<&str> = nested.iter().map(String::as_str).collect();
    order.sort_by_key(|p| std::cmp::Reverse(p.matches('/').count()));
    order.push("");
    let mut done: BTreeMap<&str, Done> = BTreeMap::new();
    let mut catalogs_written = 0;
    let scratch = repo
        .objects
        .txn()
        .join(format!("catalog.{}", std::process::id()));
    let no_rows = Vec::new();
    for path in &order {
        let rows = rows_by_catalog.get(path).unwrap_or(&no_rows);
        let children: Vec<&str> = nested
            .iter()
            .map(String::as_str)
            .filter(|c| catalog_of(&nested, c, true) == *path)
            .collect();
        let mut subtree = Counters::default();
        let mut refs = Vec::new();
        let mut fingerprint = blake3::Hasher::new();
        fingerprint.update(format!("{path:?}\n").as_bytes());
        for r in rows {
            fingerprint.update(format!("{r:?}\n").as_bytes());
        }
        for c in &children {
            let d = &done[c];
            subtree.add(&d.own);
            subtree.add(&d.subtree);
            refs.push(d.reference.clone());
            fingerprint.update(format!("{c:?} {}\n", d.content).as_bytes());
        }
        let content = fingerprint.finalize().to_hex().to_string();
        let old = previous.get(*path);
        if let Some(old) =
            old.filter(|o| !path.is_empty() && o.existing.content.as_deref() == Some(&content))
        {
            done.insert(
                path,
                Done {
                    reference: NestedRef {
                        path: path.to_string(),
                        hash: old.hash.clone(),
                        size: old.size,
                    },
                    own: old.existing.own,
                    subtree: old.existing.subtree,
                    content,
                },
            );
            continue;
        }
        let written = Catalog {
            prefix: path,
            rows,
            nested: &refs,
            subtree,
            revision,
            last_modified: timestamp,
            previous_revision: old.map(|o| o.hash.as_str()),
            content: &content,
        }
        .write(&scratch)?;
        let digest = repo.objects.put(&written.bytes, Kind::Catalog)?;
        catalogs_written += 1;
        done.insert(
            path,
            Done {
                reference: NestedRef {
                    path: path.to_string(),
                    hash: object::hex(&digest),
                    size: written.bytes.len() as u64,
                },
                own: written.own,
                subtree,
                content,
            },
        );
    }
    let root = &done[""];
    // The report, whichever way the publish ends (counts read at the end).
    let report = |revision, root_catalog, history, timestamp, new_revision| Published {
        fqrn: req.fqrn.clone(),
        revision,
        root_catalog,
        history,
        tag: req.tag.clone(),
        branch: req.branch.clone(),
        timestamp,
        new_revision,
        entries: items.len() as u64,
        objects_written: repo.objects.counts.written.load(Ordering::Relaxed),
        objects_reused: repo.objects.counts.reused.load(Ordering::Relaxed),
        bytes_written: repo.objects.counts.bytes_written.load(Ordering::Relaxed),
        catalogs_written,
        skipped_nested,
        unknown_owners: unknown.into_iter().collect(),
    };

    // An existing release tag: same tree is a no-op, another tree an error.
    if let Some(t) = history.tag(&req.tag) {
        let existing = repo.catalog_tree(&t.hash)?;
        if existing.get("").and_then(|c| c.existing.content.as_deref()) == Some(&root.content) {
            let history = prev.and_then(|p| p.history).unwrap_or_default();
            return Ok(report(
                t.revision,
                t.hash.clone(),
                history,
                t.timestamp,
                false,
            ));
        }
        return Err(Error::Repo(format!(
            "tag `{}` already names revision {} with a different tree; release tags are immutable (bump the release version)",
            req.tag, t.revision
        )));
    }

    let head = Tag {
        name: req.tag.clone(),
        hash: root.reference.hash.clone(),
        revision,
        timestamp,
        description: format!("release {} on branch {}", req.tag, req.branch),
        size: root.reference.size,
        branch: req.branch.clone(),
    };
    if let Some(old) = history.tag(TRUNK).cloned() {
        history.set(Tag {
            name: TRUNK_PREVIOUS.into(),
            ..old
        });
    }
    history.set(Tag {
        name: TRUNK.into(),
        branch: String::new(),
        description: "current head".into(),
        ..head.clone()
    });
    history.set(Tag {
        name: req.branch.clone(),
        description: format!("branch {} (release {})", req.branch, req.tag),
        ..head.clone()
    });
    history.set(head);
    let manifest = Manifest {
        catalog: root.reference.hash.clone(),
        catalog_size: root.reference.size,
        ttl: catalog::TTL,
        revision,
        fqrn: req.fqrn.clone(),
        certificate: String::new(),
        history: None,
        timestamp,
    };
    let m = repo.commit(&keys, manifest, &history, prev.as_ref(), opts)?;
    let history = m.history.unwrap_or_default();
    Ok(report(revision, m.catalog, history, timestamp, true))
}

/// Moves the tag `branch` to the snapshot tagged `release` (the lifecycle's
/// "endorse" step): a new history object and manifest, same catalogs and
/// revision. Returns the moved tag.
///
/// Only branch tags move: `release` must be a release tag, `branch` must
/// not be `trunk`, `trunk-previous` or a release tag (docs/cvmfs.md: they
/// are immutable), and a branch the history does not have yet is created
/// only with `new_branch`, so a typo cannot start one.
pub fn promote(
    fqrn: &str,
    release: &str,
    branch: &str,
    new_branch: bool,
    opts: &Options,
) -> Result<Tag> {
    check_label("branch", branch)?;
    let repo = Repo::open(&opts.repo_dir)?;
    let _lock = repo.lock()?;
    let prev = repo.manifest()?.ok_or_else(|| {
        Error::Repo(format!(
            "{}: nothing published yet",
            opts.repo_dir.display()
        ))
    })?;
    let keys = keys::load(&opts.keys_dir, fqrn, false)?;
    repo.verify(&prev, &keys)?;
    let mut history = match prev.history.as_deref() {
        Some(h) => repo.history(h)?,
        None => History::default(),
    };
    let target = history.tag(release).cloned().ok_or_else(|| {
        let names: Vec<&str> = history.tags.iter().map(|t| t.name.as_str()).collect();
        Error::Input(format!(
            "no tag `{release}` in {fqrn}; tags: {}",
            names.join(", ")
        ))
    })?;
    if target.name == TRUNK || target.name == TRUNK_PREVIOUS || is_branch_tag(&target) {
        return Err(Error::Input(format!(
            "`{release}` is a movable tag; promote a release tag"
        )));
    }
    check_promote_target(fqrn, &history, branch, new_branch)?;
    let moved = Tag {
        name: branch.to_string(),
        description: format!("branch {branch} (release {release}, promoted)"),
        branch: branch.to_string(),
        ..target
    };
    history.set(moved.clone());
    let manifest = Manifest {
        timestamp: prev.timestamp + 1,
        ..prev.clone()
    };
    repo.commit(&keys, manifest, &history, Some(&prev), opts)?;
    Ok(moved)
}

/// A branch head: the tag named after the history branch it is on (a
/// release tag names the branch it was published on, trunk is on `""`).
fn is_branch_tag(t: &Tag) -> bool {
    !t.branch.is_empty() && t.name == t.branch
}

/// Whether promote may move (or, with `new_branch`, create) the tag
/// `branch`.
fn check_promote_target(
    fqrn: &str,
    history: &History,
    branch: &str,
    new_branch: bool,
) -> Result<()> {
    let refuse = |reason: String, help: Option<String>| {
        Err(Error::Promote {
            target: branch.to_string(),
            reason,
            help,
        })
    };
    if branch == TRUNK || branch == TRUNK_PREVIOUS {
        return refuse(
            format!("`{branch}` follows the publishes of {fqrn}; it moves only by publishing"),
            Some("promote to a branch, e.g. `--to production`".into()),
        );
    }
    match history.tag(branch) {
        Some(t) if is_branch_tag(t) => return Ok(()),
        Some(t) => {
            return refuse(
                format!(
                    "`{branch}` is a release tag (revision {}); release tags never move",
                    t.revision
                ),
                Some("publish a new release, or promote to a branch".into()),
            )
        }
        None => {}
    }
    if new_branch || history.branches.iter().any(|b| b.name == branch) {
        return Ok(());
    }
    let branches: Vec<&str> = history
        .tags
        .iter()
        .filter(|t| is_branch_tag(t))
        .map(|t| t.name.as_str())
        .collect();
    let near = crate::lang::suggest::nearest(branch, branches.iter().copied());
    let help = match near {
        Some(n) => format!("did you mean `{n}`? To start a new branch `{branch}`, pass --create"),
        None => format!("to start a new branch `{branch}`, pass --create"),
    };
    refuse(
        format!(
            "{fqrn} has no branch `{branch}` (branches: {})",
            if branches.is_empty() {
                "none".to_string()
            } else {
                branches.join(", ")
            }
        ),
        Some(help),
    )
}

/// The tags of a published repository, sorted by name.
pub fn tags(repo_dir: &Path) -> Result<Vec<Tag>> {
    let repo = Repo::open_existing(repo_dir)?;
    let m = repo
        .manifest()?
        .ok_or_else(|| Error::Repo(format!("{}: nothing published yet", repo_dir.display())))?;
    Ok(match m.history.as_deref() {
        Some(h) => repo.history(h)?.tags,
        None => Vec::new(),
    })
}

/// The files cvmbuild published under [`CVMBUILD_DIR`] in the revision whose
/// root catalog is `root_catalog` (name, content): the release's meta RPM,
/// which says what a tag holds without the store that published it.
pub fn release_files(repo_dir: &Path, root_catalog: &str) -> Result<Vec<(String, Vec<u8>)>> {
    let repo = Repo::open_existing(repo_dir)?;
    let bytes = repo
        .objects
        .get(&repo.digest(root_catalog)?, Kind::Catalog)?;
    let dir = format!("/{CVMBUILD_DIR}");
    catalog::files_in(&bytes, &repo.scratch("catalog-files"), &dir)?
        .into_iter()
        .map(|(name, hash)| {
            let digest: Digest20 = hash
                .as_slice()
                .try_into()
                .map_err(|_| Error::Repo(format!("{dir}/{name}: content hash is not a SHA-1")))?;
            Ok((name, repo.objects.get(&digest, Kind::File)?))
        })
        .collect()
}

/// A catalog finished in this publish (or reused from the last one).
struct Done {
    reference: NestedRef,
    own: Counters,
    subtree: Counters,
    content: String,
}

fn sha1_hex(bytes: &[u8]) -> String {
    use sha1::Digest as _;
    hex::encode(sha1::Sha1::digest(bytes))
}

/// Body (through its last newline), hash line and signature of a signed
/// file (`.cvmfspublished`, `.cvmfswhitelist`): the body ends at the first
/// `--` line.
fn split_signed(bytes: &[u8]) -> Option<(&[u8], &str, &[u8])> {
    let at = if bytes.starts_with(b"--\n") {
        0
    } else {
        bytes.windows(4).position(|w| w == b"\n--\n")? + 1
    };
    let rest = &bytes[at + 3..];
    let nl = rest.iter().position(|&b| b == b'\n')?;
    let hash = std::str::from_utf8(&rest[..nl]).ok()?;
    Some((&bytes[..at], hash, &rest[nl + 1..]))
}

/// A catalog of the previous revision.
struct OldCatalog {
    hash: String,
    size: u64,
    existing: catalog::Existing,
}

fn put_content(objects: &Objects, bytes: &[u8]) -> Result<Stored> {
    if !chunk::is_chunked(bytes.len() as u64) {
        return Ok(Stored::Whole(objects.put(bytes, Kind::File)?));
    }
    chunk::cuts(bytes)
        .into_iter()
        .map(|r| {
            Ok(Chunk {
                offset: r.start as u64,
                size: r.len() as u64,
                digest: objects.put(&bytes[r], Kind::Partial)?,
            })
        })
        .collect::<Result<_>>()
        .map(Stored::Chunks)
}

/// The catalog holding `path`: its longest nested mountpoint (a mountpoint
/// itself belongs to its own catalog unless `parent_side`).
fn catalog_of<'a>(nested: &'a [String], path: &str, parent_side: bool) -> &'a str {
    nested
        .iter()
        .filter(|n| {
            (path == n.as_str() && !parent_side)
                || (path.len() > n.len()
                    && path.starts_with(n.as_str())
                    && path.as_bytes()[n.len()] == b'/')
        })
        .max_by_key(|n| n.len())
        .map_or("", String::as_str)
}

/// Tags and branch names: non-empty, printable, no spaces.
fn check_label(what: &str, s: &str) -> Result<()> {
    if s.is_empty() || s.len() > 255 || s.bytes().any(|b| !b.is_ascii_graphic()) {
        return Err(Error::Input(format!(
            "{what} {s:?}: use 1-255 printable characters without spaces"
        )));
    }
    Ok(())
}

/// A name the catalog can hold as a path component: the store's own name
/// rules ([`crate::store::validate_name`]) and the path length limit.
fn check_name(dir: &str, name: &str) -> Result<()> {
    let shown = if dir.is_empty() { "/" } else { dir };
    if let Err(e) = crate::store::validate_name(name) {
        return Err(Error::Input(format!("cannot publish in {shown:?}: {e}")));
    }
    if dir.len() + 1 + name.len() > MAX_PATH {
        return Err(Error::Input(format!(
            "cannot publish {name:?} in {shown:?}: the name makes a path longer than {MAX_PATH} bytes"
        )));
    }
    Ok(())
}

/// What a row's content is.
enum Content {
    None,
    Empty,
    Blob(Hash, u64),
    Extra(String),
}

/// One entry of the tree in publish order.
struct Item {
    path: String,
    mode: u32,
    flags: u32,
    size: u64,
    symlink: String,
    uid: u32,
    gid: u32,
    /// Link count: 1, or 2 + subdirectories for directories.
    links: u64,
    mtime: i64,
    content: Content,
    /// The `xattr` column ([`catalog::xattr_blob`]).
    xattr: Option<Vec<u8>>,
    /// For names of a hardlinked file: which one of its directory.
    hardlink: Option<Hardlink>,
}

impl Item {
    fn row(&self, content: Option<Stored>) -> Row {
        let (digest, chunks, flags) = match content {
            Some(Stored::Whole(d)) => (Some(d), Vec::new(), self.flags),
            Some(Stored::Chunks(c)) => (None, c, self.flags | catalog::FLAG_CHUNKED),
            None => (None, Vec::new(), self.flags),
        };
        Row {
            path: self.path.clone(),
            digest,
            size: self.size,
            mode: self.mode,
            mtime: self.mtime,
            flags,
            symlink: self.symlink.clone(),
            uid: self.uid,
            gid: self.gid,
            hardlinks: self.links,
            chunks,
            xattr: self.xattr.clone(),
        }
    }
}

struct Walk<'a> {
    store: &'a dyn Store,
    owners: &'a Owners,
    nested_wanted: &'a BTreeSet<String>,
    epoch: i64,
    items: Vec<Item>,
    /// Mountpoints found (directories named in `nested_wanted`).
    nested: Vec<String>,
    unknown: BTreeSet<String>,
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;
const S_IFBLK: u32 = 0o060000;
const S_IFIFO: u32 = 0o010000;
const S_IFSOCK: u32 = 0o140000;

impl Walk<'_> {
    fn root(&mut self, tree: &Hash, extra: &[(String, Vec<u8>)]) -> Result<()> {
        let t = self.store.get_tree(tree)?;
        let subdirs = t
            .entries()
            .iter()
            .filter(|e| matches!(e.node, Node::Directory { .. }))
            .count() as u64;
        self.items.push(self.dir_item(
            String::new(),
            0o755,
            0,
            0,
            subdirs + u64::from(!extra.is_empty()),
        ));
        if !extra.is_empty() && t.entries().iter().any(|e| e.name == CVMBUILD_DIR) {
            return Err(Error::Input(format!(
                "the tree already has /{CVMBUILD_DIR}, where cvmbuild publishes the meta RPM"
            )));
        }
        // `.cvmbuild` sorts before letters but after `-`, so merge it into
        // the sorted walk rather than appending it.
        let mut done_extra = extra.is_empty();
        for (e, link) in t.entries().iter().zip(t.hardlinks()) {
            if !done_extra && e.name.as_str() > CVMBUILD_DIR {
                self.extra(extra)?;
                done_extra = true;
            }
            self.entry("", e, link)?;
        }
        if !done_extra {
            self.extra(extra)?;
        }
        Ok(())
    }

    fn extra(&mut self, extra: &[(String, Vec<u8>)]) -> Result<()> {
        let dir = format!("/{CVMBUILD_DIR}");
        self.items.push(self.dir_item(dir.clone(), 0o755, 0, 0, 0));
        let mut files: Vec<&(String, Vec<u8>)> = extra.iter().collect();
        files.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, bytes) in files {
            check_name(&dir, name)?;
            self.items.push(Item {
                path: format!("{dir}/{name}"),
                mode: S_IFREG | 0o644,
                flags: catalog::FLAG_FILE,
                size: bytes.len() as u64,
                symlink: String::new(),
                uid: 0,
                gid: 0,
                links: 1,
                mtime: self.epoch,
                content: if bytes.is_empty() {
                    Content::Empty
                } else {
                    Content::Extra(name.clone())
                },
                xattr: None,
                hardlink: None,
            });
        }
        Ok(())
    }

    fn dir_item(&self, path: String, perm: u16, uid: u32, gid: u32, subdirs: u64) -> Item {
        Item {
            path,
            mode: S_IFDIR | u32::from(perm),
            flags: catalog::FLAG_DIR,
            size: 4096,
            symlink: String::new(),
            uid,
            gid,
            links: 2 + subdirs,
            mtime: self.epoch,
            content: Content::None,
            xattr: None,
            hardlink: None,
        }
    }

    /// `link`: which hardlinked file of `dir` the entry is a name of
    /// ([`crate::store::Tree::hardlinks`]).
    fn entry(&mut self, dir: &str, e: &crate::store::Entry, link: Option<Hardlink>) -> Result<()> {
        check_name(dir, &e.name)?;
        if e.flags.ghost {
            return Ok(());
        }
        let path = format!("{dir}/{}", e.name);
        let xattr = catalog::xattr_blob(&e.xattrs)
            .map_err(|why| Error::Input(format!("cannot publish {path}: {why}")))?;
        let uid = self.owners.uid(&e.owner, &mut self.unknown);
        let gid = self.owners.gid(&e.group, &mut self.unknown);
        let perm = u32::from(e.mode);
        let mtime = self.epoch;
        let base = |mode: u32, flags: u32, size: u64| Item {
            path: path.clone(),
            mode,
            flags,
            size,
            symlink: String::new(),
            uid,
            gid,
            links: 1,
            mtime,
            content: Content::None,
            xattr: xattr.clone(),
            hardlink: None,
        };
        let item = match &e.node {
            Node::File { size, blob } => Item {
                hardlink: link,
                content: match blob {
                    Some(_) if *size == 0 => Content::Empty,
                    Some(b) => Content::Blob(*b, *size),
                    None => Content::None,
                },
                ..base(S_IFREG | perm, catalog::FLAG_FILE, *size)
            },
            Node::Symlink { target } => {
                if target.contains('\0') {
                    return Err(Error::Input(format!(
                        "cannot publish {path}: symlink target contains NUL"
                    )));
                }
                Item {
                    symlink: target.clone(),
                    ..base(
                        S_IFLNK | 0o777,
                        catalog::FLAG_FILE | catalog::FLAG_SYMLINK,
                        target.len() as u64,
                    )
                }
            }
            Node::CharDevice { major, minor } => base(
                S_IFCHR | perm,
                catalog::FLAG_FILE | catalog::FLAG_SPECIAL,
                makedev(*major, *minor),
            ),
            Node::BlockDevice { major, minor } => base(
                S_IFBLK | perm,
                catalog::FLAG_FILE | catalog::FLAG_SPECIAL,
                makedev(*major, *minor),
            ),
            Node::Fifo => base(
                S_IFIFO | perm,
                catalog::FLAG_FILE | catalog::FLAG_SPECIAL,
                0,
            ),
            Node::Socket => base(
                S_IFSOCK | perm,
                catalog::FLAG_FILE | catalog::FLAG_SPECIAL,
                0,
            ),
            Node::Directory { tree } => {
                let t = self.store.get_tree(tree)?;
                let subdirs = t
                    .entries()
                    .iter()
                    .filter(|c| matches!(c.node, Node::Directory { .. }))
                    .count() as u64;
                self.items.push(Item {
                    xattr,
                    ..self.dir_item(path.clone(), e.mode, uid, gid, subdirs)
                });
                let mountpoint = self.nested_wanted.contains(&path);
                if mountpoint {
                    self.nested.push(path.clone());
                }
                let has_marker = t.entries().iter().any(|c| c.name == MARKER);
                let mut marker_done = !mountpoint || has_marker;
                for (c, link) in t.entries().iter().zip(t.hardlinks()) {
                    if !marker_done && c.name.as_str() > MARKER {
                        self.marker(&path);
                        marker_done = true;
                    }
                    self.entry(&path, c, link)?;
                }
                if !marker_done {
                    self.marker(&path);
                }
                return Ok(());
            }
        };
        self.items.push(item);
        Ok(())
    }

    fn marker(&mut self, dir: &str) {
        self.items.push(Item {
            path: format!("{dir}/{MARKER}"),
            mode: S_IFREG | 0o644,
            flags: catalog::FLAG_FILE,
            size: 0,
            symlink: String::new(),
            uid: 0,
            gid: 0,
            links: 1,
            mtime: self.epoch,
            content: Content::Empty,
            xattr: None,
            hardlink: None,
        });
    }
}

/// glibc's `makedev`, as `stat` reports `st_rdev`.
fn makedev(major: u32, minor: u32) -> u64 {
    let (ma, mi) = (u64::from(major), u64::from(minor));
    ((ma & 0xffff_f000) << 32) | ((ma & 0xfff) << 8) | ((mi & 0xffff_ff00) << 12) | (mi & 0xff)
}

/// Owner and group names -> numeric ids, from the tree's own `/etc/passwd`
/// and `/etc/group` (`root` is always 0).
struct Owners {
    users: HashMap<String, u32>,
    groups: HashMap<String, u32>,
}

impl Owners {
    fn from_tree(store: &dyn Store, tree: &Hash) -> Result<Owners> {
        let read = |name: &str| -> Result<HashMap<String, u32>> {
            let mut map = HashMap::new();
            let root = store.get_tree(tree)?;
            let Some(Node::Directory { tree: etc }) = root
                .entries()
                .iter()
                .find(|e| e.name == "etc")
                .map(|e| &e.node)
            else {
                return Ok(map);
            };
            let etc = store.get_tree(etc)?;
            let Some(Node::File { blob: Some(b), .. }) = etc
                .entries()
                .iter()
                .find(|e| e.name == name)
                .map(|e| &e.node)
            else {
                return Ok(map);
            };
            let mut text = String::new();
            store
                .open_blob(b)?
                .read_to_string(&mut text)
                .map_err(|e| Error::Input(format!("/etc/{name} in the tree: {e}")))?;
            for line in text.lines() {
                let f: Vec<&str> = line.split(':').collect();
                if let (Some(n), Some(id)) = (f.first(), f.get(2).and_then(|s| s.parse().ok())) {
                    map.entry(n.to_string()).or_insert(id);
                }
            }
            Ok(map)
        };
        Ok(Owners {
            users: read("passwd")?,
            groups: read("group")?,
        })
    }

    fn uid(&self, name: &str, unknown: &mut BTreeSet<String>) -> u32 {
        Self::id(&self.users, name, unknown)
    }

    fn gid(&self, name: &str, unknown: &mut BTreeSet<String>) -> u32 {
        Self::id(&self.groups, name, unknown)
    }

    fn id(map: &HashMap<String, u32>, name: &str, unknown: &mut BTreeSet<String>) -> u32 {
        if name == "root" {
            return 0;
        }
        map.get(name).copied().unwrap_or_else(|| {
            unknown.insert(name.to_string());
            UNKNOWN_ID
        })
    }
}

/// An open repository directory.
struct Repo {
    dir: PathBuf,
    objects: Objects,
}

/// Holds the repository's publish lock until dropped.
struct Lock(std::fs::File);

impl Drop for Lock {
    fn drop(&mut self) {
        // SAFETY: the descriptor is open for the lifetime of `self.0`.
        unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&self.0), libc::LOCK_UN) };
    }
}

impl Repo {
    fn open(dir: &Path) -> Result<Repo> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        Ok(Repo {
            dir: dir.to_path_buf(),
            objects: Objects::open(dir)?,
        })
    }

    fn open_existing(dir: &Path) -> Result<Repo> {
        if !dir.join(".cvmfspublished").exists() {
            return Err(Error::Repo(format!(
                "{}: no repository here (no .cvmfspublished)",
                dir.display()
            )));
        }
        Repo::open(dir)
    }

    /// Serialises publishers of one repository (across processes).
    fn lock(&self) -> Result<Lock> {
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

    fn manifest(&self) -> Result<Option<Manifest>> {
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
    fn check_unpublished(&self) -> Result<()> {
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
    fn verify(&self, m: &Manifest, keys: &Keys) -> Result<()> {
        use rsa::signature::Verifier;
        let damaged = |what: String| Error::Damaged(format!("{}: {what}", self.dir.display()));
        let path = self.dir.join(".cvmfspublished");
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let (body, hash, sig) = split_signed(&bytes)
            .ok_or_else(|| damaged(".cvmfspublished has no `--` and hash line".into()))?;
        let key = rsa::pkcs1v15::VerifyingKey::<sha1::Sha1>::new(keys.repository.to_public_key());
        if sha1_hex(body) != hash {
            return Err(damaged(format!(
                ".cvmfspublished: its hash line {hash} is not the SHA-1 of its body (edited after signing)"
            )));
        }
        let sig_ok = rsa::pkcs1v15::Signature::try_from(sig)
            .ok()
            .is_some_and(|s| key.verify(hash.as_bytes(), &s).is_ok());
        if !sig_ok {
            return Err(damaged(
                ".cvmfspublished: the signature does not verify with the repository key".into(),
            ));
        }
        let wl_path = self.dir.join(".cvmfswhitelist");
        let wl = std::fs::read(&wl_path).map_err(|e| damaged(format!(".cvmfswhitelist: {e}")))?;
        let (wl_body, wl_hash, wl_sig) = split_signed(&wl)
            .ok_or_else(|| damaged(".cvmfswhitelist has no `--` and hash line".into()))?;
        if sha1_hex(wl_body) != wl_hash {
            return Err(damaged(format!(
                ".cvmfswhitelist: its hash line {wl_hash} is not the SHA-1 of its body"
            )));
        }
        if keys
            .master
            .to_public_key()
            .verify(
                rsa::Pkcs1v15Sign::new_unprefixed(),
                wl_hash.as_bytes(),
                wl_sig,
            )
            .is_err()
        {
            return Err(damaged(
                ".cvmfswhitelist: the signature does not verify with the master key".into(),
            ));
        }
        let wl_text = String::from_utf8_lossy(wl_body);
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

    fn digest(&self, text: &str) -> Result<Digest20> {
        object::from_hex(text).ok_or_else(|| {
            Error::Repo(format!(
                "{}: {text:?} is not a SHA-1 object name",
                self.dir.display()
            ))
        })
    }

    fn history(&self, hash: &str) -> Result<History> {
        let bytes = self.objects.get(&self.digest(hash)?, Kind::History)?;
        History::read(&bytes, &self.scratch("history-read"))
    }

    fn scratch(&self, what: &str) -> PathBuf {
        self.objects
            .txn()
            .join(format!("{what}.{}", std::process::id()))
    }

    /// Every catalog reachable from the root catalog `hash`, by mountpoint.
    fn catalog_tree(&self, hash: &str) -> Result<BTreeMap<String, OldCatalog>> {
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
    fn commit(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_catalog_cannot_hold_are_refused() {
        assert!(check_name("/usr", "bin").is_ok());
        for bad in ["", ".", "..", "a/b", "a\0b", &"x".repeat(256)] {
            let e = check_name("/usr", bad).unwrap_err().to_string();
            assert!(e.contains("cannot publish") && e.contains("/usr"), "{e}");
        }
        let deep = "/d".repeat(2047);
        assert!(check_name(&deep, "abc").is_err());
    }

    #[test]
    fn catalog_of_picks_the_longest_mountpoint() {
        let n = vec!["/usr".to_string(), "/usr/lib64".to_string()];
        assert_eq!(catalog_of(&n, "/usr/lib64/libc.so", false), "/usr/lib64");
        assert_eq!(catalog_of(&n, "/usr/lib64", false), "/usr/lib64");
        assert_eq!(catalog_of(&n, "/usr/lib64", true), "/usr");
        assert_eq!(catalog_of(&n, "/usr/lib", false), "/usr");
        assert_eq!(catalog_of(&n, "/usrx", false), "");
        assert_eq!(catalog_of(&n, "/usr", true), "");
    }

    #[test]
    fn makedev_matches_glibc() {
        assert_eq!(makedev(1, 3), 0x103);
        assert_eq!(makedev(8, 1), 0x801);
        assert_eq!(makedev(4096, 256), (1 << 44) | (1 << 20));
    }
}
