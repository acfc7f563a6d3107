//! A reproducible tarball of a stored tree (the CLI's `realize --tar`).
//!
//! The same tree always gives the same bytes: entries in tree order (each
//! directory, then its children by byte order of their names, like GNU
//! tar's `--sort=name`), times clamped to one epoch, numeric owners resolved by a fixed
//! rule, GNU headers with no host-dependent field. A tar is data, so unlike
//! a directory export it carries setuid bits, device nodes and FIFOs as they
//! are; only what tar cannot express is left out and reported.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;

use super::{Error, Hash, Node, Result, Store};

/// Maps owner and group names to numeric ids.
///
/// Rule: `root` is 0; any other name gets its id from the tree's own
/// `/etc/passwd` (owners) or `/etc/group` (groups), because that is the
/// database the installed system will use; a name found in neither gets 0,
/// as `rpm` does for users that do not exist ("using root"), and is
/// reported. The names are written too, so a tool extracting by name (GNU
/// tar without `--numeric-owner`) can still map them on the target.
#[derive(Clone, Debug, Default)]
pub struct Owners {
    users: BTreeMap<String, u64>,
    groups: BTreeMap<String, u64>,
}

impl Owners {
    /// Reads `etc/passwd` and `etc/group` from the tree `root`, if present.
    pub fn from_tree(store: &dyn Store, root: &Hash) -> Result<Owners> {
        let read = |file: &str| -> Result<String> {
            let top = store.get_tree(root)?;
            let Some(Node::Directory { tree }) = top.get("etc").map(|e| &e.node) else {
                return Ok(String::new());
            };
            let etc = store.get_tree(tree)?;
            let Some(Node::File {
                blob: Some(blob), ..
            }) = etc.get(file).map(|e| &e.node)
            else {
                return Ok(String::new());
            };
            let mut text = String::new();
            store
                .open_blob(blob)?
                .read_to_string(&mut text)
                .map_err(Error::Read)?;
            Ok(text)
        };
        Ok(Owners {
            users: parse_db(&read("passwd")?, 2),
            groups: parse_db(&read("group")?, 2),
        })
    }

    /// The numeric id of user `name`, or `None` if the tree does not know it.
    pub fn uid(&self, name: &str) -> Option<u64> {
        if name == "root" {
            return Some(0);
        }
        self.users.get(name).copied()
    }

    /// The numeric id of group `name`, or `None` if the tree does not know it.
    pub fn gid(&self, name: &str) -> Option<u64> {
        if name == "root" {
            return Some(0);
        }
        self.groups.get(name).copied()
    }
}

/// `name:x:ID:...` lines: field `idx` is the numeric id. The first line
/// of a name wins, as `getpwnam` and `getgrnam` read them.
fn parse_db(text: &str, idx: usize) -> BTreeMap<String, u64> {
    let mut ids = BTreeMap::new();
    for l in text.lines() {
        let fields: Vec<&str> = l.split(':').collect();
        if let (Some(name), Some(id)) =
            (fields.first(), fields.get(idx).and_then(|f| f.parse().ok()))
        {
            ids.entry(name.to_string()).or_insert(id);
        }
    }
    ids
}

/// What [`export_tar`] wrote and left out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TarReport {
    pub entries: u64,
    pub bytes: u64,
    /// `(path, reason)` of entries not in the archive (ghosts, sockets).
    pub skipped: Vec<(String, &'static str)>,
    /// Owner or group names that were mapped to 0 for lack of an entry in
    /// the tree's `/etc/passwd` or `/etc/group`, with one path using each.
    pub unknown_names: BTreeMap<String, String>,
}

/// Writes the tree `root` as a tar archive to `dest`, atomically: the
/// archive is built under a temporary name next to `dest`, fsynced and
/// renamed, so `dest` is either absent, the old file, or complete.
///
/// Every entry's time is its own clamped to `mtime` (the epoch; see
/// [`super::Entry::mtime_at`]), as `tar --clamp-mtime --mtime=@EPOCH`.
///
/// Hardlinked names of one file in a directory ([`Flags::hardlink`]) are
/// archived as the first name plus hard link entries; other files with
/// equal contents each carry their bytes.
///
/// [`Flags::hardlink`]: super::Flags::hardlink
pub fn export_tar(
    store: &dyn Store,
    root: &Hash,
    dest: &Path,
    mtime: u64,
    owners: &Owners,
) -> Result<TarReport> {
    let file_name = dest
        .file_name()
        .ok_or_else(|| Error::Export {
            path: dest.to_path_buf(),
            reason: "not a file name".into(),
        })?
        .to_string_lossy();
    let tmp = dest.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| {
        let f = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let mut b = tar::Builder::new(BufWriter::new(f));
        let mut report = TarReport::default();
        let cx = Cx {
            store,
            mtime,
            owners,
        };
        cx.dir(&mut b, root, "", &mut report)
            .map_err(|e| e.at(&tmp))?;
        let f = b
            .into_inner()
            .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
            .map_err(|e| Error::io(&tmp, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
        report.bytes = f.metadata().map_err(|e| Error::io(&tmp, e))?.len();
        fs::rename(&tmp, dest).map_err(|e| Error::io(dest, e))?;
        Ok(report)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// A store error, or an I/O error writing the archive (attributed to the
/// archive's path by the caller).
enum TarError {
    Store(Error),
    Write(io::Error),
}

impl TarError {
    fn at(self, path: &Path) -> Error {
        match self {
            TarError::Store(e) => e,
            TarError::Write(e) => Error::io(path, e),
        }
    }
}

impl From<Error> for TarError {
    fn from(e: Error) -> Self {
        TarError::Store(e)
    }
}

impl From<io::Error> for TarError {
    fn from(e: io::Error) -> Self {
        TarError::Write(e)
    }
}

struct Cx<'a> {
    store: &'a dyn Store,
    mtime: u64,
    owners: &'a Owners,
}

impl Cx<'_> {
    fn dir<W: Write>(
        &self,
        b: &mut tar::Builder<W>,
        hash: &Hash,
        rel: &str,
        report: &mut TarReport,
    ) -> Result<(), TarError> {
        let tree = self.store.get_tree(hash)?;
        let links = tree.hardlinks();
        for (i, e) in tree.entries().iter().enumerate() {
            let path = format!("{rel}{}", e.name);
            let mut h = tar::Header::new_gnu();
            h.set_mode(e.mode.into());
            h.set_mtime(e.mtime_at(self.mtime));
            let uid = self.owners.uid(&e.owner).unwrap_or_else(|| {
                report
                    .unknown_names
                    .entry(format!("user {}", e.owner))
                    .or_insert_with(|| path.clone());
                0
            });
            let gid = self.owners.gid(&e.group).unwrap_or_else(|| {
                report
                    .unknown_names
                    .entry(format!("group {}", e.group))
                    .or_insert_with(|| path.clone());
                0
            });
            h.set_uid(uid);
            h.set_gid(gid);
            // GNU headers hold names of up to 32 bytes; longer ones are
            // left out and the numeric id alone is used.
            let _ = h.set_username(&e.owner);
            let _ = h.set_groupname(&e.group);
            h.set_size(0);
            match &e.node {
                Node::File { blob: None, .. } => {
                    report.skipped.push((path, "ghost file: no content"));
                    continue;
                }
                Node::Socket => {
                    report.skipped.push((path, "socket: tar cannot hold one"));
                    continue;
                }
                _ => {}
            }
            if !e.xattrs.is_empty() {
                // GNU tar's and star's PAX records (`tar --xattrs`).
                let keys: Vec<String> = e
                    .xattrs
                    .keys()
                    .map(|k| format!("SCHILY.xattr.{k}"))
                    .collect();
                b.append_pax_extensions(
                    keys.iter()
                        .map(String::as_str)
                        .zip(e.xattrs.values().map(Vec::as_slice)),
                )?;
            }
            match &e.node {
                // Skipped above.
                Node::File { blob: None, .. } | Node::Socket => {}
                Node::File {
                    size,
                    blob: Some(blob),
                } => match links[i] {
                    // A later name of a file archived above.
                    Some(l) if l.first != i => {
                        h.set_entry_type(tar::EntryType::Link);
                        let first = format!("{rel}{}", tree.entries()[l.first].name);
                        b.append_link(&mut h, &path, first)?;
                    }
                    _ => {
                        h.set_entry_type(tar::EntryType::Regular);
                        h.set_size(*size);
                        b.append_data(&mut h, &path, self.store.open_blob(blob)?)?;
                    }
                },
                Node::Directory { tree } => {
                    h.set_entry_type(tar::EntryType::Directory);
                    let dir = format!("{path}/");
                    b.append_data(&mut h, &dir, io::empty())?;
                    report.entries += 1;
                    self.dir(b, tree, &dir, report)?;
                    continue;
                }
                Node::Symlink { target } => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    link_name(b, &mut h, target)?;
                    b.append_data(&mut h, &path, io::empty())?;
                }
                Node::CharDevice { major, minor } | Node::BlockDevice { major, minor } => {
                    h.set_entry_type(if matches!(e.node, Node::CharDevice { .. }) {
                        tar::EntryType::Char
                    } else {
                        tar::EntryType::Block
                    });
                    h.set_device_major(*major)?;
                    h.set_device_minor(*minor)?;
                    b.append_data(&mut h, &path, io::empty())?;
                }
                Node::Fifo => {
                    h.set_entry_type(tar::EntryType::Fifo);
                    b.append_data(&mut h, &path, io::empty())?;
                }
            }
            report.entries += 1;
        }
        Ok(())
    }
}

/// Sets a symlink's target byte for byte as the tree has it. The tar
/// crate's `append_link` normalises short targets as paths (`a//b` and
/// `a/./b` become `a/b`, a trailing `/` goes), which changes what some
/// links mean; targets too long for the header go in a GNU long-link
/// entry before it, as GNU tar writes them.
fn link_name<W: Write>(
    b: &mut tar::Builder<W>,
    h: &mut tar::Header,
    target: &str,
) -> io::Result<()> {
    if target.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("symlink target {target:?} contains a NUL byte"),
        ));
    }
    if h.set_link_name_literal(target).is_ok() {
        return Ok(());
    }
    let mut long = tar::Header::new_gnu();
    long.set_path("././@LongLink")?;
    long.set_entry_type(tar::EntryType::GNULongLink);
    long.set_mode(0o644);
    long.set_size(target.len() as u64 + 1);
    long.set_cksum();
    b.append(&long, target.as_bytes().chain(&[0][..]))?;
    // Readers take the long entry; the header keeps a truncated copy.
    h.set_link_name_literal(&target.as_bytes()[..100])
}
