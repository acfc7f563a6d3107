//! Tree objects: canonical, sorted directory listings and their byte
//! encoding (store-layout.md section 2.3). The stored form of a tree *is* its
//! canonical encoding, so verifying a tree is re-hashing a file and decoding
//! is strict: any byte string that decodes re-encodes to itself.

use super::{Error, Hash, Result};
use std::collections::BTreeMap;

/// Magic prefix of every encoded tree; the trailing digit is the format
/// version, so a future change cannot collide with today's hashes.
pub const TREE_MAGIC: &[u8; 16] = b"cvmbuild-tree-1\n";

const MAX_NAME: usize = 255;
const MAX_TARGET: usize = 4095;
const MAX_ACCOUNT: usize = 255;

const KIND_FILE: u8 = 1;
const KIND_DIR: u8 = 2;
const KIND_SYMLINK: u8 = 3;
const KIND_CHAR: u8 = 4;
const KIND_BLOCK: u8 = 5;
const KIND_FIFO: u8 = 6;
const KIND_SOCKET: u8 = 7;

const FLAG_CONFIG: u8 = 0x01;
const FLAG_GHOST: u8 = 0x02;
/// Not an RPM flag: set exactly when extended attributes follow the body.
/// Trees written before attributes existed never have it, so their
/// encodings and hashes are unchanged.
const FLAG_XATTRS: u8 = 0x04;
/// [`Flags::hardlink`]; like `FLAG_XATTRS`, absent from older trees.
const FLAG_HARDLINK: u8 = 0x08;
/// Not an RPM flag: set exactly when [`Entry::mtime`] follows the body
/// (and the attributes). Trees written before mtimes existed never have
/// it, so their encodings and hashes are unchanged.
const FLAG_MTIME: u8 = 0x10;

/// Limits of one entry's extended attributes: what Linux allows
/// (`XATTR_NAME_MAX`, `XATTR_SIZE_MAX`) and a count a one-byte field holds.
const MAX_XATTR_NAME: usize = 255;
const MAX_XATTR_VALUE: usize = 65536;
const MAX_XATTRS: usize = 255;

/// File flags the store keeps because later steps act on them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Flags {
    /// `%config`: a file the administrator may edit.
    pub config: bool,
    /// `%ghost`: owned by the package but not shipped; files carry no blob.
    pub ghost: bool,
    /// One name of a file with several: every regular file of the same
    /// directory with this flag and the same [`HardlinkKey`] is the same
    /// inode. Hardlinks are kept within a directory only (as CernVM-FS
    /// catalogs hold them); [`Tree::new`] clears the flag of an entry with
    /// no partner, so each meaning has one encoding.
    pub hardlink: bool,
}

impl Flags {
    fn bits(self) -> u8 {
        (if self.config { FLAG_CONFIG } else { 0 })
            | (if self.ghost { FLAG_GHOST } else { 0 })
            | (if self.hardlink { FLAG_HARDLINK } else { 0 })
    }
}

/// What the names of one hardlinked file share: the inode's content and
/// attributes (names and `config` differ per name).
type HardlinkKey<'a> = (
    &'a Hash,
    u16,
    &'a str,
    &'a str,
    &'a BTreeMap<String, Vec<u8>>,
    Option<u64>,
);

/// One name of a hardlinked file, as [`Tree::hardlinks`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hardlink {
    /// The file's number among the tree's hardlinked files, from 0 in
    /// order of their first names.
    pub group: u32,
    /// How many names the file has in the tree.
    pub names: u64,
    /// Index in [`Tree::entries`] of the file's first name.
    pub first: usize,
}

impl Entry {
    /// The inode this entry shares with its hardlink partners, if it is a
    /// hardlinked regular file.
    fn hardlink_key(&self) -> Option<HardlinkKey<'_>> {
        match &self.node {
            Node::File {
                blob: Some(blob), ..
            } if self.flags.hardlink => Some((
                blob,
                self.mode,
                self.owner.as_str(),
                self.group.as_str(),
                &self.xattrs,
                self.mtime,
            )),
            _ => None,
        }
    }
}

/// What an entry is, with the data its kind needs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Node {
    /// A regular file. `blob` is `None` exactly when the entry is a ghost;
    /// `size` is then the size the package declares, for information.
    File {
        size: u64,
        blob: Option<Hash>,
    },
    Directory {
        tree: Hash,
    },
    Symlink {
        target: String,
    },
    /// Device nodes, FIFOs and sockets are recorded as data only; nothing in
    /// cvmbuild ever creates them on the build host.
    CharDevice {
        major: u32,
        minor: u32,
    },
    BlockDevice {
        major: u32,
        minor: u32,
    },
    Fifo,
    Socket,
}

/// One named child of a directory.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Entry {
    pub name: String,
    pub node: Node,
    /// Permission bits including setuid, setgid and sticky (`0o7777` mask).
    pub mode: u16,
    pub owner: String,
    pub group: String,
    pub flags: Flags,
    /// Extended attributes by name (e.g. `security.capability` from an
    /// RPM's `%caps`), sorted by name; usually empty.
    pub xattrs: BTreeMap<String, Vec<u8>>,
    /// Modification time in seconds since 1970 as the package header (or
    /// a scriptlet) gave it; `None` for what cvmbuild makes itself, which
    /// takes the output's epoch. Outputs never show a time after their
    /// epoch: see [`Entry::mtime_at`].
    pub mtime: Option<u64>,
}

impl Node {
    /// A regular file holding the stored blob `b`.
    pub fn file(b: &super::BlobRef) -> Node {
        Node::File {
            size: b.size,
            blob: Some(b.hash),
        }
    }
}

impl Entry {
    /// An entry owned by root:root without flags: what cvmbuild itself
    /// creates (directories an image invents, regenerated module indexes),
    /// as opposed to entries taken from package headers.
    pub fn root_owned(name: &str, node: Node, mode: u16) -> Entry {
        Entry {
            name: name.to_string(),
            node,
            mode,
            owner: "root".into(),
            group: "root".into(),
            flags: Flags::default(),
            xattrs: BTreeMap::new(),
            mtime: None,
        }
    }

    /// The time an output whose epoch (`SOURCE_DATE_EPOCH`) is `epoch`
    /// gives this entry: its own, clamped to the epoch, as
    /// reproducible-builds tools clamp (`--clamp-mtime`), so an output
    /// never carries a time later than the release says it was made.
    pub fn mtime_at(&self, epoch: u64) -> u64 {
        self.mtime.map_or(epoch, |t| t.min(epoch))
    }
}

/// A directory: entries sorted by name (byte order), names unique.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Tree {
    entries: Vec<Entry>,
}

/// Checks a path component: non-empty, at most 255 bytes, no `/`, no NUL,
/// and not `.` or `..`, so joining names can never leave a directory.
pub fn validate_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "empty"
    } else if name == "." || name == ".." {
        "is . or .."
    } else if name.contains('/') {
        "contains '/'"
    } else if name.contains('\0') {
        "contains NUL"
    } else if name.len() > MAX_NAME {
        "longer than 255 bytes"
    } else {
        return Ok(());
    };
    Err(Error::InvalidName {
        name: name.to_owned(),
        reason,
    })
}

fn validate_text(what: &str, s: &str, max: usize) -> Result<()> {
    if s.is_empty() || s.contains('\0') || s.len() > max {
        return Err(Error::InvalidTree(format!(
            "{what} {s:?} must be 1-{max} bytes without NUL"
        )));
    }
    Ok(())
}

fn validate_entry(e: &Entry) -> Result<()> {
    validate_name(&e.name)?;
    if e.mode & !0o7777 != 0 {
        return Err(Error::InvalidTree(format!(
            "entry {:?}: mode {:o} has bits outside 0o7777",
            e.name, e.mode
        )));
    }
    validate_text("owner", &e.owner, MAX_ACCOUNT)?;
    validate_text("group", &e.group, MAX_ACCOUNT)?;
    match &e.node {
        Node::File { blob, .. } if blob.is_none() != e.flags.ghost => {
            Err(Error::InvalidTree(format!(
                "entry {:?}: a file has content exactly when it is not a ghost",
                e.name
            )))
        }
        Node::Symlink { target } => validate_text("symlink target", target, MAX_TARGET),
        _ => Ok(()),
    }?;
    if e.flags.hardlink && e.hardlink_key().is_none() {
        return Err(Error::InvalidTree(format!(
            "entry {:?}: only a regular file with content can be hardlinked",
            e.name
        )));
    }
    validate_xattrs(e)
}

fn validate_xattrs(e: &Entry) -> Result<()> {
    if e.xattrs.len() > MAX_XATTRS {
        return Err(Error::InvalidTree(format!(
            "entry {:?}: {} extended attributes, at most {MAX_XATTRS}",
            e.name,
            e.xattrs.len()
        )));
    }
    for (k, v) in &e.xattrs {
        if k.is_empty() || k.contains('\0') || k.len() > MAX_XATTR_NAME {
            return Err(Error::InvalidTree(format!(
                "entry {:?}: extended attribute name {k:?} must be 1-{MAX_XATTR_NAME} bytes without NUL",
                e.name
            )));
        }
        if v.len() > MAX_XATTR_VALUE {
            return Err(Error::InvalidTree(format!(
                "entry {:?}: extended attribute {k} has {} bytes, at most {MAX_XATTR_VALUE}",
                e.name,
                v.len()
            )));
        }
    }
    Ok(())
}

impl Tree {
    /// Builds a tree from entries in any order; the result is sorted, so the
    /// hash does not depend on insertion order. Fails on an invalid entry or
    /// a duplicate name.
    pub fn new(mut entries: Vec<Entry>) -> Result<Tree> {
        entries.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        for e in &entries {
            validate_entry(e)?;
        }
        // A hardlink flag without a partner (say, an entry copied alone
        // into another tree) means a plain file.
        for i in lonely_hardlinks(&entries) {
            entries[i].flags.hardlink = false;
        }
        if let Some(w) = entries.windows(2).find(|w| w[0].name == w[1].name) {
            return Err(Error::InvalidTree(format!(
                "duplicate name {:?}",
                w[0].name
            )));
        }
        Ok(Tree { entries })
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries
            .binary_search_by(|e| e.name.as_bytes().cmp(name.as_bytes()))
            .ok()
            .map(|i| &self.entries[i])
    }

    /// For each entry, in [`Tree::entries`] order: which hardlinked file
    /// it is a name of, if any ([`Flags::hardlink`]).
    pub fn hardlinks(&self) -> Vec<Option<Hardlink>> {
        hardlinks_of(&self.entries)
    }

    pub fn into_entries(self) -> Vec<Entry> {
        self.entries
    }

    /// The canonical encoding (store-layout.md section 2.3).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + self.entries.len() * 96);
        out.extend_from_slice(TREE_MAGIC);
        put_u32(&mut out, self.entries.len() as u32);
        for e in &self.entries {
            put_str(&mut out, &e.name);
            let kind = match e.node {
                Node::File { .. } => KIND_FILE,
                Node::Directory { .. } => KIND_DIR,
                Node::Symlink { .. } => KIND_SYMLINK,
                Node::CharDevice { .. } => KIND_CHAR,
                Node::BlockDevice { .. } => KIND_BLOCK,
                Node::Fifo => KIND_FIFO,
                Node::Socket => KIND_SOCKET,
            };
            out.push(kind);
            out.extend_from_slice(&e.mode.to_le_bytes());
            put_str(&mut out, &e.owner);
            put_str(&mut out, &e.group);
            let xattr_bit = if e.xattrs.is_empty() { 0 } else { FLAG_XATTRS };
            let mtime_bit = if e.mtime.is_some() { FLAG_MTIME } else { 0 };
            out.push(e.flags.bits() | xattr_bit | mtime_bit);
            match &e.node {
                Node::File { size, blob } => {
                    out.extend_from_slice(&size.to_le_bytes());
                    match blob {
                        Some(h) => {
                            out.push(1);
                            out.extend_from_slice(&h.0);
                        }
                        None => out.push(0),
                    }
                }
                Node::Directory { tree } => out.extend_from_slice(&tree.0),
                Node::Symlink { target } => put_str(&mut out, target),
                Node::CharDevice { major, minor } | Node::BlockDevice { major, minor } => {
                    put_u32(&mut out, *major);
                    put_u32(&mut out, *minor);
                }
                Node::Fifo | Node::Socket => {}
            }
            if !e.xattrs.is_empty() {
                put_u32(&mut out, e.xattrs.len() as u32);
                for (k, v) in &e.xattrs {
                    put_str(&mut out, k);
                    put_u32(&mut out, v.len() as u32);
                    out.extend_from_slice(v);
                }
            }
            if let Some(t) = e.mtime {
                out.extend_from_slice(&t.to_le_bytes());
            }
        }
        out
    }

    /// The tree's name: blake3 of [`Tree::encode`].
    pub fn hash(&self) -> Hash {
        Hash::of(&self.encode())
    }

    /// Strictly decodes a canonical encoding: wrong magic, truncation,
    /// trailing bytes, unknown kinds or flags, unsorted or duplicate names
    /// and invalid fields are all errors.
    pub fn decode(bytes: &[u8]) -> Result<Tree> {
        let mut d = Decoder { rest: bytes };
        if d.take(TREE_MAGIC.len())? != TREE_MAGIC {
            return Err(Error::InvalidTree("bad magic".into()));
        }
        let count = d.u32()?;
        let mut entries = Vec::new();
        for _ in 0..count {
            let name = d.string()?;
            let kind = d.u8()?;
            let mode = u16::from_le_bytes(d.array()?);
            let owner = d.string()?;
            let group = d.string()?;
            let bits = d.u8()?;
            if bits & !(FLAG_CONFIG | FLAG_GHOST | FLAG_XATTRS | FLAG_HARDLINK | FLAG_MTIME) != 0 {
                return Err(Error::InvalidTree(format!("unknown flag bits {bits:#x}")));
            }
            let flags = Flags {
                config: bits & FLAG_CONFIG != 0,
                ghost: bits & FLAG_GHOST != 0,
                hardlink: bits & FLAG_HARDLINK != 0,
            };
            let node = match kind {
                KIND_FILE => {
                    let size = u64::from_le_bytes(d.array()?);
                    let blob = match d.u8()? {
                        0 => None,
                        1 => Some(Hash(d.array()?)),
                        b => return Err(Error::InvalidTree(format!("bad blob marker {b}"))),
                    };
                    Node::File { size, blob }
                }
                KIND_DIR => Node::Directory {
                    tree: Hash(d.array()?),
                },
                KIND_SYMLINK => Node::Symlink {
                    target: d.string()?,
                },
                KIND_CHAR => Node::CharDevice {
                    major: d.u32()?,
                    minor: d.u32()?,
                },
                KIND_BLOCK => Node::BlockDevice {
                    major: d.u32()?,
                    minor: d.u32()?,
                },
                KIND_FIFO => Node::Fifo,
                KIND_SOCKET => Node::Socket,
                k => return Err(Error::InvalidTree(format!("unknown kind {k}"))),
            };
            let mut xattrs = BTreeMap::new();
            if bits & FLAG_XATTRS != 0 {
                let n = d.u32()?;
                if n == 0 {
                    return Err(Error::InvalidTree(
                        "extended attributes flagged but none follow".into(),
                    ));
                }
                for _ in 0..n {
                    let k = d.string()?;
                    let len = d.u32()? as usize;
                    let v = d.take(len)?.to_vec();
                    if xattrs
                        .last_key_value()
                        .is_some_and(|(p, _): (&String, _)| p.as_bytes() >= k.as_bytes())
                    {
                        return Err(Error::InvalidTree(format!(
                            "extended attribute names not strictly sorted at {k:?}"
                        )));
                    }
                    xattrs.insert(k, v);
                }
            }
            let mtime = if bits & FLAG_MTIME != 0 {
                Some(u64::from_le_bytes(d.array()?))
            } else {
                None
            };
            let entry = Entry {
                name,
                node,
                mode,
                owner,
                group,
                flags,
                xattrs,
                mtime,
            };
            validate_entry(&entry)?;
            if let Some(prev) = entries.last() {
                let prev: &Entry = prev;
                if prev.name.as_bytes() >= entry.name.as_bytes() {
                    return Err(Error::InvalidTree(format!(
                        "names not strictly sorted at {:?}",
                        entry.name
                    )));
                }
            }
            entries.push(entry);
        }
        if !d.rest.is_empty() {
            return Err(Error::InvalidTree("trailing bytes".into()));
        }
        if let Some(&i) = lonely_hardlinks(&entries).first() {
            return Err(Error::InvalidTree(format!(
                "entry {:?} is hardlinked without a partner",
                entries[i].name
            )));
        }
        Ok(Tree { entries })
    }
}

fn hardlinks_of(entries: &[Entry]) -> Vec<Option<Hardlink>> {
    let mut files: BTreeMap<HardlinkKey, Hardlink> = BTreeMap::new();
    for (i, e) in entries.iter().enumerate() {
        if let Some(k) = e.hardlink_key() {
            let group = files.len() as u32;
            files
                .entry(k)
                .or_insert(Hardlink {
                    group,
                    names: 0,
                    first: i,
                })
                .names += 1;
        }
    }
    entries
        .iter()
        .map(|e| e.hardlink_key().map(|k| files[&k]))
        .collect()
}

/// Indexes of hardlinked entries that no other entry shares an inode with.
fn lonely_hardlinks(entries: &[Entry]) -> Vec<usize> {
    if !entries.iter().any(|e| e.flags.hardlink) {
        return Vec::new();
    }
    hardlinks_of(entries)
        .iter()
        .enumerate()
        .filter(|(_, h)| h.is_some_and(|h| h.names == 1))
        .map(|(i, _)| i)
        .collect()
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u32(out, s.len() as u32);
    out.extend_from_slice(s.as_bytes());
}

struct Decoder<'a> {
    rest: &'a [u8],
}

impl<'a> Decoder<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.rest.len() < n {
            return Err(Error::InvalidTree("truncated".into()));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn string(&mut self) -> Result<String> {
        let len = self.u32()? as usize;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| Error::InvalidTree("string is not UTF-8".into()))
    }
}
