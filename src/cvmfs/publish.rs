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
use super::keys::{self};
use super::manifest::Manifest;
use super::object::{self, Digest20, Kind, Objects};
use super::repo::Repo;
use super::walk::{Content, Walk};
use super::{chunk, Error, Result};
use crate::store::{Hash, Store};
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
pub(super) const MARKER: &str = ".cvmfscatalog";

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

    let owners = crate::store::Owners::from_tree(store, tree)?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
