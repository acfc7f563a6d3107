//! Resuming a transaction from a checkpoint, so that a release differing
//! from an earlier one in a late package does not rerun every scriptlet.
//!
//! The root after transaction step `j` (one package: its triggers, `%pre`,
//! files, `%post`, triggers, in [`super::order`]) depends only on what the
//! steps up to `j` were given. [`Chain`] hashes exactly that into one key
//! per step, each key including the one before it. Every
//! [`EVERY`] steps the root is captured as a store tree (the disk's state:
//! contents, numeric owners, modes, times, hardlinks, and which paths are
//! still as placed) and registered under a synthetic output id,
//! `assemble-step-<key>`. A later transaction whose key at that step is the
//! same restores that state and runs only the steps after it; its final
//! import then sees the disk a fresh run would leave, and with the same
//! merged tree as the original entries it gives the same tree.
//!
//! Checkpoints are a cache: one that is missing, unreadable or fails to
//! restore means running from the start. `gc` unregisters them (they are
//! not derivations any root reaches) and deletes their objects.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{io_err, set_mode, Limits, Package, Report, ScriptletError, Snapshot, Stamp};
use crate::store::{set_mtime, Entry, Hash, Node, Output, Root, Store, Tree};

/// Steps between checkpoints. A capture stats every path placed so far and
/// stores what the scriptlets changed, so it costs far less than the
/// sandbox launches of a step or two; a change at step `k` then reruns at
/// most `EVERY - 1` steps before it. Fixed, so that releases of different
/// sizes checkpoint at the same steps.
pub const EVERY: usize = 16;

/// [`EVERY`], or `CVMBUILD_CHECKPOINT_EVERY` when set (0: none taken).
/// Where checkpoints are taken changes how much a rebuild reruns, never
/// what it makes.
pub fn every_from_env() -> usize {
    std::env::var("CVMBUILD_CHECKPOINT_EVERY")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(EVERY)
}

/// Bumped whenever what a checkpoint holds, or how a step runs, changes
/// without the assemble builder's version changing.
const FORMAT: &str = "cvmbuild transaction checkpoint 1";

/// The output id a checkpoint of chain key `key` is registered under.
fn output_id(key: &Hash) -> String {
    format!("assemble-step-{}", key.to_hex())
}

/// The rolling keys of a transaction: `keys[j]` identifies the root after
/// step `j`.
pub(super) struct Chain {
    pub(super) keys: Vec<Hash>,
    /// Steps between checkpoints (0: none).
    pub(super) every: usize,
}

/// One path placed at a step, as the key sees it.
pub(super) struct Placed<'a> {
    pub(super) path: &'a str,
    /// The merged tree's entry (`None`: not in it).
    pub(super) entry: Option<&'a Entry>,
    /// In the set of directories rpm does not make (so not placed).
    pub(super) unmade: bool,
}

impl Chain {
    /// Everything that can influence a step, hashed: the builder and this
    /// format, `SOURCE_DATE_EPOCH`, the three limits, every `%pretrans` (they
    /// run before the first step), the paths placed before them, then per
    /// step the whole package (identity, dependencies, files, every script
    /// and trigger) and the entries placed with it.
    pub(super) fn new(
        every: usize,
        epoch: i64,
        limits: Limits,
        pkgs: &[Package],
        seq: &[usize],
        first: &[Placed],
        steps: &[Vec<Placed>],
    ) -> Chain {
        let mut h = blake3::Hasher::new();
        let a = &crate::builders::ASSEMBLE;
        field(&mut h, FORMAT.as_bytes());
        field(&mut h, format!("{} {}", a.name, a.version).as_bytes());
        field(&mut h, &epoch.to_le_bytes());
        field(&mut h, &limits.time.as_nanos().to_le_bytes());
        field(&mut h, &limits.file_size.to_le_bytes());
        field(&mut h, &limits.min_free.to_le_bytes());
        for &i in seq {
            for s in pkgs[i].scripts.iter().filter(|s| s.kind == "pretrans") {
                field(&mut h, format!("{} {s:?}", pkgs[i].nevra).as_bytes());
            }
        }
        placed(&mut h, first);
        let mut prev = Hash(*h.finalize().as_bytes());
        let mut keys = Vec::with_capacity(seq.len());
        for (&i, paths) in seq.iter().zip(steps) {
            let mut h = blake3::Hasher::new();
            field(&mut h, &prev.0);
            // Debug shows every field (no maps inside), so a field added
            // later is hashed too.
            field(&mut h, format!("{:?}", pkgs[i]).as_bytes());
            placed(&mut h, paths);
            prev = Hash(*h.finalize().as_bytes());
            keys.push(prev);
        }
        Chain { keys, every }
    }

    /// Whether a checkpoint is taken after step `j`: every
    /// [`Chain::every`] steps, but not after the last (only `%posttrans`
    /// would follow).
    pub(super) fn is_checkpoint(&self, j: usize) -> bool {
        self.every > 0 && (j + 1).is_multiple_of(self.every) && j + 1 < self.keys.len()
    }
}

/// Length-prefixed, so that no two sequences of fields hash alike.
fn field(h: &mut blake3::Hasher, bytes: &[u8]) {
    h.update(&(bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

fn placed(h: &mut blake3::Hasher, paths: &[Placed]) {
    field(h, &(paths.len() as u64).to_le_bytes());
    for p in paths {
        field(h, p.path.as_bytes());
        field(h, &[u8::from(p.unmade)]);
        // A directory is placed as a made directory with its entry's
        // metadata; what it will hold is hashed with the steps placing it.
        let shown = p.entry.map(|e| match e.node {
            Node::Directory { .. } => Entry {
                node: Node::Directory {
                    tree: Hash([0; 32]),
                },
                ..e.clone()
            },
            _ => e.clone(),
        });
        field(h, format!("{shown:?}").as_bytes());
    }
}

/// What a checkpoint holds beside its tree.
#[derive(Serialize, Deserialize)]
struct State {
    /// The report of the steps up to the checkpoint, without its log.
    report: Report,
    /// The log, as blobs of JSON lists of lines: one per checkpoint that
    /// added lines, shared with the earlier checkpoints of the same run,
    /// so that a long log is stored once rather than once per checkpoint.
    log: Vec<Hash>,
    /// The root directory's own metadata.
    root: Meta,
    /// Every path below the root, parents before children, in the order
    /// the tree lists them.
    paths: Vec<PathState>,
}

#[derive(Serialize, Deserialize)]
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    nsec: i64,
}

#[derive(Serialize, Deserialize)]
struct PathState {
    path: String,
    mtime: i64,
    nsec: i64,
    /// Still as placed: the final import keeps its original entry.
    untouched: bool,
    /// Another name (earlier in the list) of the same file.
    link: Option<String>,
}

/// How one transaction reads and writes checkpoints.
pub(super) struct Checkpoints<'a> {
    pub(super) store: &'a dyn Store,
    /// The merged tree's entries by absolute path.
    pub(super) entries: &'a HashMap<String, Entry>,
    /// [`Limits::file_size`]: a state holding a file that large is not
    /// kept (the import will refuse it anyway).
    pub(super) limit: u64,
    /// Captured, registered by [`Checkpoints::register`]: registering
    /// flushes the store's file system, so once for all of them.
    pub(super) pending: Vec<(String, Output)>,
    /// Files read from disk by an earlier capture of this transaction, by
    /// path, with their stamp then: unchanged, they are not read again.
    pub(super) read: HashMap<String, (Stamp, Node)>,
    /// The log's blobs so far ([`State::log`]) and how many lines they hold.
    log: Vec<Hash>,
    logged: usize,
}

impl<'a> Checkpoints<'a> {
    pub(super) fn new(
        store: &'a dyn Store,
        entries: &'a HashMap<String, Entry>,
        limit: u64,
    ) -> Self {
        Checkpoints {
            store,
            entries,
            limit,
            pending: Vec::new(),
            read: HashMap::new(),
            log: Vec::new(),
            logged: 0,
        }
    }

    /// Registers the captured checkpoints; returns a note for each that
    /// could not be (the same key registered with another state means a
    /// step is not deterministic; the first one stays).
    pub(super) fn register(&mut self) -> Vec<String> {
        let mut notes = Vec::new();
        let (t, n) = (std::time::Instant::now(), self.pending.len());
        for (id, out) in self.pending.drain(..) {
            if let Err(e) = self.store.register_output(&id, &out) {
                notes.push(format!("checkpoint {id} not registered: {e}"));
            }
        }
        if n > 0 {
            notes.push(format!(
                "{n} checkpoints registered in {:.3} s",
                t.elapsed().as_secs_f64()
            ));
        }
        notes
    }

    /// The latest step whose checkpoint restores into the empty directory
    /// `dir`: its index, with the report so far and the snapshot of the
    /// paths still as placed. A checkpoint that fails to restore is noted
    /// in `log` and the next earlier one tried; `dir` is left empty when
    /// none does.
    pub(super) fn resume(
        &mut self,
        chain: &Chain,
        dir: &Path,
        log: &mut Vec<String>,
    ) -> Result<Option<(usize, Report, Snapshot)>, ScriptletError> {
        for j in (0..chain.keys.len()).rev() {
            if !chain.is_checkpoint(j) {
                continue;
            }
            let id = output_id(&chain.keys[j]);
            let Ok(Some(out)) = self.store.lookup_output(&id) else {
                continue;
            };
            match self.restore(&out, dir) {
                Ok((report, snap)) => return Ok(Some((j, report, snap))),
                Err(why) => {
                    log.push(format!("checkpoint {id} not used: {why}"));
                    fs::remove_dir_all(dir).map_err(io_err(dir))?;
                    fs::create_dir(dir).map_err(io_err(dir))?;
                }
            }
        }
        Ok(None)
    }

    fn restore(&mut self, out: &Output, dir: &Path) -> Result<(Report, Snapshot), String> {
        let Root::Tree { hash } = out.root else {
            return Err("not a tree".into());
        };
        let state = out
            .meta
            .get("state")
            .and_then(|h| Hash::from_hex(h))
            .ok_or("no state")?;
        let state: State = self.read_json(&state)?;
        let mut report = state.report;
        for h in &state.log {
            let lines: Vec<String> = self.read_json(h)?;
            report.log.extend(lines);
        }
        let by_path: HashMap<&str, &PathState> =
            state.paths.iter().map(|p| (p.path.as_str(), p)).collect();
        let mut made = Made::default();
        self.restore_dir(&hash, dir, "", &by_path, &mut made)
            .map_err(|e| e.to_string())?;
        // Only paths of the tree are touched below.
        if !made.order.iter().eq(state.paths.iter().map(|p| &p.path)) {
            return Err("its state does not list its tree's paths".into());
        }
        // Times last, children before parents (making a child changes
        // its directory's time).
        for p in state.paths.iter().rev() {
            set_mtime(&dir.join(&p.path[1..]), p.mtime, p.nsec).map_err(|e| e.to_string())?;
        }
        let r = &state.root;
        std::os::unix::fs::lchown(dir, Some(r.uid), Some(r.gid)).map_err(|e| e.to_string())?;
        set_mode(dir, r.mode).map_err(|e| e.to_string())?;
        set_mtime(dir, r.mtime, r.nsec).map_err(|e| e.to_string())?;
        let mut snap = Snapshot::new();
        for p in state.paths.iter().filter(|p| p.untouched) {
            let path = dir.join(&p.path[1..]);
            let md = fs::symlink_metadata(&path).map_err(|e| e.to_string())?;
            snap.insert(p.path.clone(), Stamp::of(&md));
        }
        self.log = state.log;
        self.logged = report.log.len();
        Ok((report, snap))
    }

    fn read_json<T: serde::de::DeserializeOwned>(&self, blob: &Hash) -> Result<T, String> {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(
            &mut self.store.open_blob(blob).map_err(|e| e.to_string())?,
            &mut bytes,
        )
        .map_err(|e| e.to_string())?;
        serde_json::from_slice(&bytes).map_err(|e| e.to_string())
    }

    /// Makes the entries of `tree` at `rel` below `root`.
    fn restore_dir(
        &self,
        tree: &Hash,
        root: &Path,
        rel: &str,
        state: &HashMap<&str, &PathState>,
        made: &mut Made,
    ) -> Result<(), ScriptletError> {
        for e in self.store.get_tree(tree)?.into_entries() {
            let r = format!("{rel}/{}", e.name);
            let path = root.join(&r[1..]);
            // Parents before children, as the capture lists them.
            made.order.push(r.clone());
            if let Some(first) = state.get(r.as_str()).and_then(|s| s.link.as_deref()) {
                if !made.files.contains(first) {
                    return Err(ScriptletError::Sandbox(format!(
                        "{r}: a checkpoint links it to {first}, not a file made before it"
                    )));
                }
                fs::hard_link(root.join(&first[1..]), &path).map_err(io_err(&path))?;
                continue;
            }
            match &e.node {
                Node::Directory { tree } => {
                    fs::create_dir(&path).map_err(io_err(&path))?;
                    self.restore_dir(tree, root, &r, state, made)?;
                }
                Node::Symlink { target } => {
                    std::os::unix::fs::symlink(target, &path).map_err(io_err(&path))?;
                }
                Node::File { blob: Some(b), .. } => {
                    let mut f = File::create_new(&path).map_err(io_err(&path))?;
                    std::io::copy(&mut self.store.open_blob(b)?, &mut f).map_err(io_err(&path))?;
                }
                _ => {
                    return Err(ScriptletError::Sandbox(format!(
                        "{r}: a checkpoint holds only directories, files and symlinks"
                    )))
                }
            }
            let id = |s: &str| s.parse::<u32>().ok();
            std::os::unix::fs::lchown(&path, id(&e.owner), id(&e.group)).map_err(io_err(&path))?;
            if !matches!(e.node, Node::Symlink { .. }) {
                set_mode(&path, u32::from(e.mode))?;
            }
            if !matches!(e.node, Node::Directory { .. }) {
                made.files.insert(r);
            }
        }
        Ok(())
    }

    /// Captures `dir` after step `j` for [`Checkpoints::register`] under
    /// `chain`'s key; says why not when the state cannot be kept (a
    /// device, FIFO or socket, a file at the size limit, a file hardlinked
    /// to something outside the root, extended attributes).
    pub(super) fn capture(
        &mut self,
        chain: &Chain,
        j: usize,
        dir: &Path,
        snap: &Snapshot,
        report: &Report,
    ) -> Result<Result<String, String>, ScriptletError> {
        let mut cx = Capture {
            store: self.store,
            entries: self.entries,
            limit: self.limit,
            read: &mut self.read,
            snap,
            paths: Vec::new(),
            links: HashMap::new(),
        };
        let tree = match cx.dir(dir, "")? {
            Ok(t) => t,
            Err(why) => return Ok(Err(why)),
        };
        if let Some((first, nlink, seen)) = cx.links.values().find(|(_, n, s)| n != s) {
            return Ok(Err(format!(
                "{first} has {nlink} names, {seen} of them in the root"
            )));
        }
        let md = fs::symlink_metadata(dir).map_err(io_err(dir))?;
        if report.log.len() > self.logged {
            let lines = serde_json::to_vec(&report.log[self.logged..]).expect("plain data");
            self.log
                .push(self.store.put_blob(&mut lines.as_slice())?.hash);
            self.logged = report.log.len();
        }
        let state = State {
            report: Report {
                failed: report.failed.clone(),
                ran: report.ran,
                ..Report::default()
            },
            log: self.log.clone(),
            root: Meta {
                mode: md.mode() & 0o7777,
                uid: md.uid(),
                gid: md.gid(),
                mtime: md.mtime(),
                nsec: md.mtime_nsec(),
            },
            paths: cx.paths,
        };
        let bytes = serde_json::to_vec(&state).expect("plain data");
        let blob = self.store.put_blob(&mut bytes.as_slice())?;
        let id = output_id(&chain.keys[j]);
        let out = Output {
            root: Root::Tree { hash: tree },
            meta: [("state".to_string(), blob.hash.to_hex())].into(),
        };
        self.pending.push((id.clone(), out));
        Ok(Ok(id))
    }
}

/// The paths a restore made, in order, and which of them are not
/// directories (what a later name may link to).
#[derive(Default)]
struct Made {
    order: Vec<String>,
    files: HashSet<String>,
}

struct Capture<'a> {
    store: &'a dyn Store,
    entries: &'a HashMap<String, Entry>,
    limit: u64,
    read: &'a mut HashMap<String, (Stamp, Node)>,
    snap: &'a Snapshot,
    paths: Vec<PathState>,
    /// Files with more than one name, by device and inode: the first
    /// name, the link count and the names seen.
    links: HashMap<(u64, u64), (String, u64, u64)>,
}

impl Capture<'_> {
    fn dir(&mut self, dir: &Path, rel: &str) -> Result<Result<Hash, String>, ScriptletError> {
        let mut names: Vec<_> = fs::read_dir(dir)
            .map_err(io_err(dir))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(io_err(dir))?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        let mut entries = Vec::with_capacity(names.len());
        for os_name in names {
            let Some(name) = os_name.to_str() else {
                return Ok(Err(format!("{rel}/{os_name:?} is not UTF-8")));
            };
            let path = dir.join(name);
            let r = format!("{rel}/{name}");
            let md = fs::symlink_metadata(&path).map_err(io_err(&path))?;
            // The export writes none, so a scriptlet set them; a later one
            // could read them, and a checkpoint does not keep them.
            if has_xattrs(&path)? {
                return Ok(Err(format!("{r} has extended attributes")));
            }
            let untouched = self.snap.get(&r) == Some(&Stamp::of(&md));
            let mut link = None;
            if !md.is_dir() && md.nlink() > 1 {
                let l = self
                    .links
                    .entry((md.dev(), md.ino()))
                    .or_insert_with(|| (r.clone(), md.nlink(), 0));
                l.2 += 1;
                if l.2 > 1 {
                    link = Some(l.0.clone());
                }
            }
            self.paths.push(PathState {
                path: r.clone(),
                mtime: md.mtime(),
                nsec: md.mtime_nsec(),
                untouched,
                link,
            });
            let node = if md.is_dir() {
                match self.dir(&path, &r)? {
                    Ok(tree) => Node::Directory { tree },
                    Err(why) => return Ok(Err(why)),
                }
            } else if md.file_type().is_symlink() {
                let target = fs::read_link(&path).map_err(io_err(&path))?;
                let Some(target) = target.to_str() else {
                    return Ok(Err(format!("{r}: its target is not UTF-8")));
                };
                Node::Symlink {
                    target: target.to_string(),
                }
            } else if md.is_file() {
                if md.len() >= self.limit {
                    return Ok(Err(format!("{r} is at the file size limit")));
                }
                let stamp = Stamp::of(&md);
                // Still as placed: the merged tree's blob holds its bytes.
                match self.entries.get(&r).map(|e| &e.node) {
                    Some(n @ Node::File { blob: Some(_), .. }) if untouched => n.clone(),
                    _ => match self.read.get(&r) {
                        Some((s, n)) if *s == stamp => n.clone(),
                        _ => {
                            let mut f = File::open(&path).map_err(io_err(&path))?;
                            let n = Node::file(&self.store.put_blob(&mut f)?);
                            self.read.insert(r.clone(), (stamp, n.clone()));
                            n
                        }
                    },
                }
            } else {
                return Ok(Err(format!("{r} is a device, FIFO or socket")));
            };
            let mut e = Entry::root_owned(name, node, (md.mode() & 0o7777) as u16);
            e.owner = md.uid().to_string();
            e.group = md.gid().to_string();
            entries.push(e);
        }
        Ok(Ok(self.store.put_tree(&Tree::new(entries)?)?))
    }
}

/// Whether a path (not following a symlink) has extended attributes, but
/// for the SELinux label a host may give every file.
fn has_xattrs(path: &Path) -> Result<bool, ScriptletError> {
    let err = |source| ScriptletError::Io {
        path: path.to_path_buf(),
        source,
    };
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| err(std::io::Error::other(e)))?;
    let mut names = vec![0u8; 4096];
    // SAFETY: `c` is a NUL-terminated path and `names` a buffer of the
    // length passed.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n < 0 {
        return match std::io::Error::last_os_error() {
            // A file system without them has none.
            e if e.raw_os_error() == Some(libc::ENOTSUP) => Ok(false),
            // More names than fit: there are some.
            e if e.raw_os_error() == Some(libc::ERANGE) => Ok(true),
            e => Err(err(e)),
        };
    }
    Ok(names[..n as usize]
        .split(|&b| b == 0)
        .any(|name| !name.is_empty() && name != b"security.selinux"))
}

/// The merged tree's entries by absolute path (`/usr/bin/sh`).
pub(super) fn entries_by_path(
    store: &dyn Store,
    root: &Hash,
) -> Result<HashMap<String, Entry>, ScriptletError> {
    Ok(crate::image::paths::walk(store, root)?
        .into_iter()
        .map(|(path, e)| (format!("/{path}"), e))
        .collect())
}

/// `paths` as the key sees them: with their merged entries, and whether
/// rpm does not make them.
pub(super) fn placed_at<'a>(
    paths: &[&'a str],
    entries: &'a HashMap<String, Entry>,
    unmade: &HashSet<String>,
) -> Vec<Placed<'a>> {
    paths
        .iter()
        .map(|&path| Placed {
            path,
            entry: entries.get(path),
            unmade: unmade.contains(path),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::scriptlets::Script;
    use std::time::Duration;

    fn pkg(name: &str, post: &str) -> Package {
        Package {
            nevra: format!("{name}-1-1.noarch"),
            evr: None,
            deps: Default::default(),
            scripts: vec![Script {
                kind: "post".into(),
                program: vec![],
                body: post.into(),
            }],
            triggers: vec![],
        }
    }

    fn keys(pkgs: &[Package], entry: &Entry) -> Vec<Hash> {
        let limits = Limits {
            time: Duration::from_secs(300),
            file_size: 1 << 30,
            min_free: 0,
        };
        let seq: Vec<usize> = (0..pkgs.len()).collect();
        let steps: Vec<Vec<Placed>> = seq
            .iter()
            .map(|&i| {
                vec![Placed {
                    path: if i == 1 { "/etc/b" } else { "/etc/other" },
                    entry: Some(entry),
                    unmade: false,
                }]
            })
            .collect();
        Chain::new(EVERY, 1, limits, pkgs, &seq, &[], &steps).keys
    }

    #[test]
    fn a_step_changes_its_key_and_every_later_one_only() {
        let file = Entry::root_owned("b", Node::Symlink { target: "x".into() }, 0o644);
        let base = [pkg("a", "echo a"), pkg("b", "echo b"), pkg("c", "echo c")];
        let k = keys(&base, &file);
        let mut changed = base.clone();
        changed[1].scripts[0].body = "echo B".into();
        let c = keys(&changed, &file);
        assert_eq!(k[0], c[0]);
        assert_ne!(k[1], c[1]);
        assert_ne!(k[2], c[2]);
        // The entry placed at a step is part of it, down to its mode.
        let mut other = file.clone();
        other.mode = 0o755;
        let o = keys(&base, &other);
        assert_ne!(k[0], o[0], "the entry step 0 places changed");
        // A late package's %pretrans runs before the first step.
        let mut pre = base.clone();
        pre[2].scripts.push(Script {
            kind: "pretrans".into(),
            program: vec![],
            body: "true".into(),
        });
        assert_ne!(k[0], keys(&pre, &file)[0]);
    }

    #[test]
    fn extended_attributes_on_disk_are_seen() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("f");
        fs::write(&f, "x").unwrap();
        assert!(!has_xattrs(&f).unwrap());
        let c = std::ffi::CString::new(f.as_os_str().as_bytes()).unwrap();
        // SAFETY: a NUL-terminated path, name and a 1-byte value.
        let rc = unsafe {
            libc::lsetxattr(
                c.as_ptr(),
                c"user.cvmbuild".as_ptr(),
                b"v".as_ptr().cast(),
                1,
                0,
            )
        };
        assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
        assert!(has_xattrs(&f).unwrap());
    }

    #[test]
    fn a_directory_is_keyed_without_what_it_holds() {
        let dir = |t: u8| {
            Entry::root_owned(
                "d",
                Node::Directory {
                    tree: Hash([t; 32]),
                },
                0o755,
            )
        };
        let base = [pkg("a", "echo a"), pkg("b", "echo b")];
        assert_eq!(keys(&base, &dir(1)), keys(&base, &dir(2)));
    }
}
