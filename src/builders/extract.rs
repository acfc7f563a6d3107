//! The extract builder: one RPM file -> one store tree plus a manifest.
//!
//! Nothing is ever written to the host file system: file contents become
//! blobs, directories become trees, and everything an RPM can say about a
//! path (modes including setuid, owners, devices) is recorded as data. The
//! package is checked before any content is stored (header digest, payload
//! digest, path sanity) and every file's bytes are checked against the
//! header's digest and size as they stream into the store.
//! store-layout.md section 2.7 is the normative description.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use rpm::{FileFlags, FileType, IndexTag, PackageMetadata, PackageReader};
use serde::{Deserialize, Serialize};
use sha2::digest::DynDigest;
use sha2::Digest;

use crate::store::{self, Entry, Flags, Hash, Node, Output, Root, Store, Tree};

pub(crate) mod rpmhdr;

/// Owner, group and mode given to directories that paths imply but the
/// package does not list, the same default `rpm` and `cpio` use.
pub const IMPLIED_DIR_MODE: u16 = 0o755;
pub const IMPLIED_DIR_OWNER: &str = "root";

/// The result of extracting one package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extracted {
    /// The package root as a store tree (the root directory's own
    /// attributes are not part of a tree; see store-layout.md).
    pub tree: Hash,
    pub manifest: Manifest,
}

/// What a later step needs to know about a package besides its files.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// `name-[epoch:]version-release.arch`.
    pub nevra: String,
    /// Every path the header lists, in header order.
    pub files: Vec<ManifestFile>,
    /// Scriptlets present in the package, recorded (never run) so a later
    /// step can report "scriptlets not run".
    pub scriptlets: Vec<Scriptlet>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// Absolute path as the header spells it.
    pub path: String,
    pub config: bool,
    pub ghost: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scriptlet {
    /// `pre`, `post`, `preun`, `postun`, `pretrans`, `posttrans`,
    /// `preuntrans`, `postuntrans`, `verify`, `trigger`, `filetrigger` or
    /// `transfiletrigger`.
    pub kind: String,
    /// Interpreter and arguments (`-p`), if the header names one.
    pub program: Vec<String>,
    /// The script text; empty for `-p <program>` without a body.
    pub body: String,
}

impl Extracted {
    /// Builds the [`Output`] to register: the tree as root, the manifest
    /// stored as a JSON blob named in `meta["manifest"]` (so the index stays
    /// small and the manifest is content-addressed), and `meta["nevra"]`.
    pub fn to_output(&self, store: &dyn Store) -> store::Result<Output> {
        let json = serde_json::to_vec(&self.manifest).expect("a manifest always serialises");
        let blob = store.put_blob(&mut json.as_slice())?;
        let meta = BTreeMap::from([
            ("manifest".to_owned(), blob.hash.to_hex()),
            ("nevra".to_owned(), self.manifest.nevra.clone()),
        ]);
        Ok(Output {
            root: Root::Tree { hash: self.tree },
            meta,
        })
    }
}

/// Why a package could not be extracted. Always names the RPM file, and the
/// package once its header has been read.
#[derive(Debug, thiserror::Error)]
#[error("{}{}: {kind}", rpm.display(), package.as_ref().map(|p| format!(" ({p})")).unwrap_or_default())]
pub struct ExtractError {
    pub rpm: PathBuf,
    pub package: Option<String>,
    /// Boxed to keep `Result<_, ExtractError>` small on the happy path.
    pub kind: Box<ExtractErrorKind>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExtractErrorKind {
    #[error("cannot read: {0}")]
    Read(#[source] io::Error),
    #[error("not a valid RPM (corrupt or truncated?): {0}")]
    Rpm(#[source] rpm::Error),
    /// Found by our pre-validation of the headers' structure (see
    /// `rpmhdr`), before the `rpm` crate reads them.
    #[error("malformed RPM: {0}")]
    Structure(#[source] rpmhdr::HeaderError),
    #[error("header digest mismatch: {0}")]
    HeaderDigest(String),
    #[error("payload digest mismatch (corrupt or truncated payload): header says {expected}, payload hashes to {actual}")]
    PayloadDigest { expected: String, actual: String },
    #[error("source package: only binary RPMs can be extracted")]
    SourcePackage,
    #[error("unsupported payload compression {0:?} (supported: gzip, xz, zstd, bzip2)")]
    UnsupportedCompression(String),
    #[error("unsupported file digest algorithm {0}")]
    UnsupportedDigest(u32),
    #[error("{path}: content digest mismatch: header says {expected}, content hashes to {actual}")]
    FileDigest {
        path: String,
        expected: String,
        actual: String,
    },
    #[error("{path}: header says {expected} bytes, payload has {actual}")]
    FileSize {
        path: String,
        expected: u64,
        actual: u64,
    },
    #[error("{path}: regular file has no digest in the header")]
    NoDigest { path: String },
    #[error("{path}: no content in the payload (truncated payload?)")]
    MissingContent { path: String },
    #[error("{path:?}: refused path: {reason}")]
    BadPath { path: String, reason: String },
    #[error("{path}: listed more than once")]
    Duplicate { path: String },
    #[error("{path}: goes through {parent}, which the package makes a {what}, not a directory")]
    NotADirectory {
        path: String,
        parent: String,
        what: &'static str,
    },
    #[error("{path}: {reason}")]
    BadEntry { path: String, reason: String },
    #[error("payload: {0}")]
    Payload(#[source] rpm::Error),
    #[error("store: {0}")]
    Store(#[source] store::Error),
}

/// One header file entry, validated, waiting for its content.
struct Planned {
    /// Path components below `/`.
    components: Vec<String>,
    path: String,
    kind: FileType,
    mode: u16,
    owner: String,
    group: String,
    flags: Flags,
    size: u64,
    digest: Option<String>,
    link_target: String,
    rdev: (u32, u32),
    /// For members of a hardlink set (two or more regular files sharing the
    /// header's device and inode tags): the index of the set's first member,
    /// which identifies the set.
    link_group: Option<usize>,
    blob: Option<Hash>,
    /// `security.capability` from the header's `%caps`, if any.
    xattrs: BTreeMap<String, Vec<u8>>,
    /// The header's `FILEMTIMES`: the time rpm gives the file.
    mtime: u32,
}

/// Extracts the RPM at `rpm_path` into `store` and returns its tree and
/// manifest. Registers nothing: the caller registers the output (see
/// [`Extracted::to_output`]) once this returned successfully. On error, blobs
/// already stored stay as unreferenced objects; no tree names them.
pub fn extract(store: &dyn Store, rpm_path: &Path) -> Result<Extracted, ExtractError> {
    let mut package = None;
    extract_inner(store, rpm_path, &mut package).map_err(|kind| ExtractError {
        rpm: rpm_path.to_path_buf(),
        package,
        kind: Box::new(kind),
    })
}

type Kind = ExtractErrorKind;

fn extract_inner(
    store: &dyn Store,
    rpm_path: &Path,
    package: &mut Option<String>,
) -> Result<Extracted, Kind> {
    // Pass 1: header, header digest, payload digest, and the plan. Nothing
    // is stored until all of it checks out.
    let mut file = File::open(rpm_path).map_err(Kind::Read)?;
    rpmhdr::check(&mut file).map_err(Kind::Structure)?;
    io::Seek::rewind(&mut file).map_err(Kind::Read)?;
    let mut input = BufReader::new(file);
    let metadata = PackageMetadata::parse(&mut input).map_err(Kind::Rpm)?;
    let nevra = metadata.get_nevra().map_err(Kind::Rpm)?.to_string();
    *package = Some(nevra.clone());
    if metadata.is_source_package() {
        return Err(Kind::SourcePackage);
    }
    metadata
        .check_digests()
        .map_err(Kind::Rpm)?
        .result()
        .map_err(|e| Kind::HeaderDigest(e.to_string()))?;
    check_compression(&metadata)?;
    check_payload_digest(&metadata, &mut input)?;
    drop(input);

    let mut plan = plan_entries(&metadata)?;
    let algo = metadata
        .header
        .get_entry_data_as_u32(IndexTag::RPMTAG_FILEDIGESTALGO)
        .unwrap_or(1); // absent means MD5, as in rpm itself
    new_hasher(algo)?;
    let index: HashMap<String, usize> = plan
        .iter()
        .enumerate()
        .map(|(i, p)| (p.path.clone(), i))
        .collect();

    // Pass 2: stream every file's content into the store, checking it.
    let mut reader = PackageReader::open(rpm_path).map_err(Kind::Rpm)?;
    while let Some(mut file) = reader.next_file().map_err(Kind::Payload)? {
        let raw = format!("{}{}", file.metadata.dirname(), file.metadata.basename());
        let Some(&i) = index.get(&raw) else {
            return Err(Kind::BadEntry {
                path: raw,
                reason: "payload entry not in header".into(),
            });
        };
        let p = &mut plan[i];
        if p.kind != FileType::Regular || p.flags.ghost || !file.has_payload() {
            continue;
        }
        let Some(expected) = p.digest.clone() else {
            return Err(Kind::NoDigest {
                path: p.path.clone(),
            });
        };
        let mut checked = CheckingReader {
            inner: &mut file,
            hasher: new_hasher(algo)?,
            count: 0,
        };
        let blob = store.put_blob(&mut checked).map_err(|e| match e {
            store::Error::Read(io) => Kind::Payload(rpm::Error::Io(io)),
            other => Kind::Store(other),
        })?;
        let actual = hex::encode(checked.hasher.finalize());
        if checked.count != p.size {
            return Err(Kind::FileSize {
                path: p.path.clone(),
                expected: p.size,
                actual: checked.count,
            });
        }
        if !actual.eq_ignore_ascii_case(&expected) {
            return Err(Kind::FileDigest {
                path: p.path.clone(),
                expected,
                actual,
            });
        }
        p.blob = Some(blob.hash);
        file.finish()
            .map_err(|e| Kind::Payload(rpm::Error::Io(e)))?;
    }
    share_hardlink_content(&mut plan)?;

    let tree = build_tree(store, &plan)?;
    Ok(Extracted {
        tree,
        manifest: Manifest {
            nevra,
            files: plan
                .iter()
                .map(|p| ManifestFile {
                    path: p.path.clone(),
                    config: p.flags.config,
                    ghost: p.flags.ghost,
                })
                .collect(),
            scriptlets: scriptlets(&metadata),
        },
    })
}

fn check_compression(metadata: &PackageMetadata) -> Result<(), Kind> {
    let name = match metadata
        .header
        .get_entry_data_as_string(IndexTag::RPMTAG_PAYLOADCOMPRESSOR)
    {
        Ok(s) => s.to_owned(),
        Err(rpm::Error::TagNotFound(_)) => "gzip".to_owned(), // rpm's default
        Err(e) => return Err(Kind::Rpm(e)),
    };
    match name.as_str() {
        "gzip" | "xz" | "zstd" | "bzip2" => Ok(()),
        _ => Err(Kind::UnsupportedCompression(name)),
    }
}

/// Hashes the (compressed) payload as it is on disk and compares it with the
/// header's SHA-256 payload digest, catching any flipped byte or truncation
/// before a single blob is stored. Packages older than rpm 4.14 carry no
/// payload digest; for them the per-file digests are the check.
fn check_payload_digest(metadata: &PackageMetadata, payload: &mut impl Read) -> Result<(), Kind> {
    let algo = metadata
        .header
        .get_entry_data_as_u32(IndexTag::RPMTAG_PAYLOADSHA256ALGO)
        .unwrap_or(8);
    let expected = match metadata
        .header
        .get_entry_data_as_string(IndexTag::RPMTAG_PAYLOADSHA256)
    {
        Ok(s) if algo == 8 => s.to_ascii_lowercase(),
        _ => return Ok(()),
    };
    let mut hasher = sha2::Sha256::new();
    io::copy(payload, &mut hasher).map_err(Kind::Read)?;
    let actual = hex::encode(hasher.finalize());
    if actual != expected {
        return Err(Kind::PayloadDigest { expected, actual });
    }
    Ok(())
}

fn new_hasher(algo: u32) -> Result<Box<dyn DynDigest>, Kind> {
    Ok(match algo {
        1 => Box::new(md5::Md5::new()),
        2 => Box::new(sha1::Sha1::new()),
        8 => Box::new(sha2::Sha256::new()),
        9 => Box::new(sha2::Sha384::new()),
        10 => Box::new(sha2::Sha512::new()),
        11 => Box::new(sha2::Sha224::new()),
        12 => Box::new(sha3::Sha3_256::new()),
        14 => Box::new(sha3::Sha3_512::new()),
        other => return Err(Kind::UnsupportedDigest(other)),
    })
}

/// Counts and digests the bytes of one payload file as they pass.
struct CheckingReader<'a, R> {
    inner: &'a mut R,
    hasher: Box<dyn DynDigest>,
    count: u64,
}

impl<R: Read> Read for CheckingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Splits a header path into validated components; `..`, `.`, empty
/// components (`//`), relative paths and NUL are refused.
fn split_path(path: &str) -> Result<Vec<String>, Kind> {
    let bad = |reason: String| Kind::BadPath {
        path: path.to_owned(),
        reason,
    };
    let rest = path
        .strip_prefix('/')
        .ok_or_else(|| bad("not absolute".into()))?;
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    rest.split('/')
        .map(|c| {
            store::validate_name(c)
                .map(|()| c.to_owned())
                .map_err(|e| bad(e.to_string()))
        })
        .collect()
}

fn plan_entries(metadata: &PackageMetadata) -> Result<Vec<Planned>, Kind> {
    let entries = metadata.get_file_entries().map_err(Kind::Rpm)?;
    let inodes = metadata
        .header
        .get_entry_data_as_u32_array(IndexTag::RPMTAG_FILEINODES)
        .unwrap_or_default();
    let devices = metadata
        .header
        .get_entry_data_as_u32_array(IndexTag::RPMTAG_FILEDEVICES)
        .unwrap_or_default();

    let mut plan = Vec::with_capacity(entries.len());
    let mut seen: HashMap<Vec<String>, usize> = HashMap::new();
    for e in &entries {
        let path = format!("{}{}", e.dirname(), e.basename());
        let components = split_path(&path)?;
        if seen.insert(components.clone(), plan.len()).is_some() {
            return Err(Kind::Duplicate { path });
        }
        let flags = Flags {
            config: e.flags().contains(FileFlags::CONFIG),
            ghost: e.flags().contains(FileFlags::GHOST),
            hardlink: false, // set from the link sets found below
        };
        let kind = e.file_type();
        if !matches!(
            kind,
            FileType::Regular
                | FileType::Dir
                | FileType::SymbolicLink
                | FileType::CharacterDevice
                | FileType::BlockDevice
                | FileType::Fifo
                | FileType::Socket
        ) {
            return Err(Kind::BadEntry {
                path,
                reason: format!("unknown file type in mode {:o}", u16::from(e.mode())),
            });
        }
        let xattrs = match e.caps().map(super::filecaps::vfs_cap_data) {
            None | Some(Ok(None)) => BTreeMap::new(),
            Some(Ok(Some(_))) if kind != FileType::Regular => {
                return Err(Kind::BadEntry {
                    path,
                    reason: "file capabilities on a file that is not a regular file".into(),
                })
            }
            Some(Ok(Some(v))) => BTreeMap::from([(super::filecaps::XATTR.to_owned(), v)]),
            Some(Err(reason)) => return Err(Kind::BadEntry { path, reason }),
        };
        plan.push(Planned {
            xattrs,
            components,
            kind,
            mode: e.permissions() & 0o7777,
            owner: e.user().to_owned(),
            group: e.group().to_owned(),
            flags,
            size: e.size() as u64,
            digest: e.digest().map(|d| d.as_hex().to_owned()),
            link_target: e.linkto().unwrap_or("").to_owned(),
            rdev: (e.rdev_major().into(), e.rdev_minor().into()),
            link_group: None,
            blob: None,
            mtime: e.modified_at().0,
            path,
        });
    }

    // Every proper prefix of a path that the package lists must be a
    // directory: a path through a symlink or a file is refused, since
    // installing it would write outside where the path says.
    for p in &plan {
        for depth in 1..p.components.len() {
            if let Some(&j) = seen.get(&p.components[..depth]) {
                let what = match plan[j].kind {
                    FileType::Dir => continue,
                    FileType::SymbolicLink => "symlink",
                    _ => "non-directory",
                };
                return Err(Kind::NotADirectory {
                    path: p.path.clone(),
                    parent: plan[j].path.clone(),
                    what,
                });
            }
        }
    }

    // Hardlink sets: regular, non-ghost files sharing (device, inode).
    let mut groups: HashMap<(u32, u32), Vec<usize>> = HashMap::new();
    for (i, p) in plan.iter().enumerate() {
        if p.kind == FileType::Regular && !p.flags.ghost {
            if let (Some(&dev), Some(&ino)) = (devices.get(i), inodes.get(i)) {
                groups.entry((dev, ino)).or_default().push(i);
            }
        }
    }
    for members in groups.into_values().filter(|m| m.len() > 1) {
        let leader = members[0];
        for &m in &members {
            plan[m].link_group = Some(leader);
            // Names in one directory stay one inode; Tree::new drops the
            // flag where a directory holds only one name of the set.
            plan[m].flags.hardlink = true;
        }
    }
    Ok(plan)
}

/// Gives every member of a hardlink set the blob of the member that carried
/// the bytes, after checking the members agree on size and digest.
fn share_hardlink_content(plan: &mut [Planned]) -> Result<(), Kind> {
    let mut carriers: HashMap<usize, usize> = HashMap::new();
    for (i, p) in plan.iter().enumerate() {
        if let (Some(g), Some(_)) = (p.link_group, p.blob) {
            carriers.insert(g, i);
        }
    }
    for i in 0..plan.len() {
        let p = &plan[i];
        if p.kind != FileType::Regular || p.flags.ghost || p.blob.is_some() {
            continue;
        }
        let Some(&c) = p.link_group.and_then(|g| carriers.get(&g)) else {
            return Err(Kind::MissingContent {
                path: p.path.clone(),
            });
        };
        let carrier = &plan[c];
        if carrier.size != p.size || carrier.digest != p.digest {
            return Err(Kind::BadEntry {
                path: p.path.clone(),
                reason: format!("hardlinked to {} but size or digest differ", carrier.path),
            });
        }
        plan[i].blob = carrier.blob;
    }
    Ok(())
}

/// A directory under construction: its own attributes (absent for
/// directories only implied by deeper paths) and its children.
#[derive(Default)]
struct DirBuild {
    attrs: Option<usize>,
    dirs: BTreeMap<String, DirBuild>,
    leaves: Vec<usize>,
}

fn build_tree(store: &dyn Store, plan: &[Planned]) -> Result<Hash, Kind> {
    let mut root = DirBuild::default();
    for (i, p) in plan.iter().enumerate() {
        let Some((last, parents)) = p.components.split_last() else {
            continue; // "/" itself: recorded in the manifest only
        };
        let mut dir = &mut root;
        for c in parents {
            dir = dir.dirs.entry(c.clone()).or_default();
        }
        if p.kind == FileType::Dir {
            dir.dirs.entry(last.clone()).or_default().attrs = Some(i);
        } else {
            dir.leaves.push(i);
        }
    }
    put_dir(store, plan, &root, "")
}

fn put_dir(store: &dyn Store, plan: &[Planned], dir: &DirBuild, at: &str) -> Result<Hash, Kind> {
    let mut entries = Vec::with_capacity(dir.dirs.len() + dir.leaves.len());
    for (name, sub) in &dir.dirs {
        let sub_path = format!("{at}/{name}");
        let tree = put_dir(store, plan, sub, &sub_path)?;
        let (mode, owner, group, flags) = match sub.attrs {
            Some(i) => {
                let p = &plan[i];
                (p.mode, p.owner.clone(), p.group.clone(), p.flags)
            }
            None => (
                IMPLIED_DIR_MODE,
                IMPLIED_DIR_OWNER.to_owned(),
                IMPLIED_DIR_OWNER.to_owned(),
                Flags::default(),
            ),
        };
        entries.push(Entry {
            name: name.clone(),
            node: Node::Directory { tree },
            mode,
            owner,
            group,
            flags,
            xattrs: BTreeMap::new(),
            mtime: None,
        });
    }
    for &i in &dir.leaves {
        let p = &plan[i];
        let node = match p.kind {
            FileType::Regular => Node::File {
                size: p.size,
                blob: p.blob,
            },
            FileType::SymbolicLink => Node::Symlink {
                target: p.link_target.clone(),
            },
            FileType::CharacterDevice => Node::CharDevice {
                major: p.rdev.0,
                minor: p.rdev.1,
            },
            FileType::BlockDevice => Node::BlockDevice {
                major: p.rdev.0,
                minor: p.rdev.1,
            },
            FileType::Fifo => Node::Fifo,
            FileType::Socket => Node::Socket,
            _ => {
                return Err(Kind::BadEntry {
                    path: p.path.clone(),
                    reason: "unexpected file type".into(),
                })
            }
        };
        entries.push(Entry {
            name: p.components.last().cloned().unwrap_or_default(),
            node,
            mode: p.mode,
            owner: p.owner.clone(),
            group: p.group.clone(),
            flags: p.flags,
            xattrs: p.xattrs.clone(),
            // Directories take the output's epoch: rpm gives them the
            // header's time too, but every file installed into one
            // changes it again, so no installed system keeps it.
            mtime: Some(p.mtime.into()),
        });
    }
    let tree = Tree::new(entries).map_err(|e| Kind::BadEntry {
        path: if at.is_empty() { "/".into() } else { at.into() },
        reason: e.to_string(),
    })?;
    store.put_tree(&tree).map_err(Kind::Store)
}

/// The scriptlet tags rpm defines, with the names `rpm --scripts` uses.
const SCRIPTLET_TAGS: [(&str, IndexTag, IndexTag); 9] = [
    ("pre", IndexTag::RPMTAG_PREIN, IndexTag::RPMTAG_PREINPROG),
    ("post", IndexTag::RPMTAG_POSTIN, IndexTag::RPMTAG_POSTINPROG),
    ("preun", IndexTag::RPMTAG_PREUN, IndexTag::RPMTAG_PREUNPROG),
    (
        "postun",
        IndexTag::RPMTAG_POSTUN,
        IndexTag::RPMTAG_POSTUNPROG,
    ),
    (
        "pretrans",
        IndexTag::RPMTAG_PRETRANS,
        IndexTag::RPMTAG_PRETRANSPROG,
    ),
    (
        "posttrans",
        IndexTag::RPMTAG_POSTTRANS,
        IndexTag::RPMTAG_POSTTRANSPROG,
    ),
    (
        "preuntrans",
        IndexTag::RPMTAG_PREUNTRANS,
        IndexTag::RPMTAG_PREUNTRANSPROG,
    ),
    (
        "postuntrans",
        IndexTag::RPMTAG_POSTUNTRANS,
        IndexTag::RPMTAG_POSTUNTRANSPROG,
    ),
    (
        "verify",
        IndexTag::RPMTAG_VERIFYSCRIPT,
        IndexTag::RPMTAG_VERIFYSCRIPTPROG,
    ),
];

const TRIGGER_TAGS: [(&str, IndexTag, IndexTag); 3] = [
    (
        "trigger",
        IndexTag::RPMTAG_TRIGGERSCRIPTS,
        IndexTag::RPMTAG_TRIGGERSCRIPTPROG,
    ),
    (
        "filetrigger",
        IndexTag::RPMTAG_FILETRIGGERSCRIPTS,
        IndexTag::RPMTAG_FILETRIGGERSCRIPTPROG,
    ),
    (
        "transfiletrigger",
        IndexTag::RPMTAG_TRANSFILETRIGGERSCRIPTS,
        IndexTag::RPMTAG_TRANSFILETRIGGERSCRIPTPROG,
    ),
];

/// Reads scriptlets straight from the header tags, because a `-p
/// /sbin/ldconfig` scriptlet has a program tag but no script tag.
fn scriptlets(metadata: &PackageMetadata) -> Vec<Scriptlet> {
    let h = &metadata.header;
    let strings = |tag| -> Vec<String> {
        h.get_entry_data_as_string_array(tag)
            .or_else(|_| h.get_entry_data_as_string(tag).map(|s| vec![s]))
            .map(|v| v.into_iter().map(str::to_owned).collect())
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for (kind, script_tag, prog_tag) in SCRIPTLET_TAGS {
        let body = h
            .get_entry_data_as_string(script_tag)
            .ok()
            .map(str::to_owned);
        let program = strings(prog_tag);
        if body.is_some() || !program.is_empty() {
            out.push(Scriptlet {
                kind: kind.to_owned(),
                program,
                body: body.unwrap_or_default(),
            });
        }
    }
    for (kind, scripts_tag, progs_tag) in TRIGGER_TAGS {
        let progs = strings(progs_tag);
        for (i, body) in strings(scripts_tag).into_iter().enumerate() {
            out.push(Scriptlet {
                kind: kind.to_owned(),
                program: progs.get(i).cloned().into_iter().collect(),
                body,
            });
        }
    }
    out
}

/// The `extract` builder: the `rpm` input's payload as a store tree, with
/// its manifest (files, owners, scriptlets) as a blob.
pub fn build(cx: &super::BuildCx) -> Result<Output, super::Error> {
    let file = cx.input_blob_file("rpm")?;
    let path = file.path();
    let repo = cx.inputs["rpm"]
        .meta
        .get("repo")
        .map_or("?", String::as_str);
    let x = extract(cx.store, path)
        .map_err(|e| format!("{} from repository `{repo}`: {e}", cx.drv.name))?;
    cx.log(format!(
        "{}: {} paths, {} scriptlets recorded (not run)",
        x.manifest.nevra,
        x.manifest.files.len(),
        x.manifest.scriptlets.len()
    ));
    // The headers as the file has them, for the rpm database `assemble`
    // writes (extract has validated their structure above).
    let what = x.manifest.nevra.clone();
    let headers =
        crate::rpmdb::RpmHeaders::read(&mut File::open(path)?, &what).map_err(|e| e.to_string())?;
    let blob = cx.store.put_blob(&mut headers.encode().as_slice())?;
    let mut out = x.to_output(cx.store)?;
    out.meta.insert("headers".to_owned(), blob.hash.to_hex());
    Ok(out)
}
