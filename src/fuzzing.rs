//! Properties checked on arbitrary bytes, one function per reader of
//! outside input (issue #14, "Fuzzing").
//!
//! Each function takes the raw bytes a fuzzer produced, feeds them to one
//! reader (or, for the archive writers, decodes them into members, writes an
//! archive and reads it back with an independent reader) and panics when a
//! property fails. The cargo-fuzz targets in `fuzz/` and the stable
//! mutation loop in the test suite both call these, so a crash found by
//! either is reproduced by the other from the same bytes.
//!
//! The properties go beyond "does not panic": parsers are deterministic,
//! what a writer writes is read back unchanged, version comparison is a
//! total order, and what a reader accepts renders and re-reads to the same
//! value.

use crate::image::cpio;
use crate::lock::LockFile;
use crate::repo::model::{Dep, Pool, RepoInfo};
use crate::repo::{evr, parse_rich, rpmvercmp, Evr};
use crate::store::{self, MemStore, Node, Store, Tree};
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashSet};
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A property check: panics when `data` breaks it.
pub type Check = fn(&[u8]);

/// Every target by name, in the order `fuzz/` and the test suite list them.
pub const TARGETS: &[(&str, Check)] = &[
    ("lang", lang),
    ("repomd", repomd),
    ("primary", primary),
    ("filelists", filelists),
    ("rich", rich),
    ("evr", evr),
    ("rpm", rpm),
    ("cpio", cpio_roundtrip),
    ("tar", tar_roundtrip),
    ("manifest", manifest),
    ("whitelist", whitelist),
    ("catalog", catalog),
    ("lock", lock),
];

/// A private scratch directory for the whole process (readers that need a
/// file get one here; the directory is empty otherwise, so a spec's
/// relative imports find nothing).
fn scratch() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("create a scratch directory"))
        .path()
}

/// A file in [`scratch`] unique to this thread, so parallel test threads
/// never share one.
fn scratch_file(name: &str) -> PathBuf {
    let id = format!("{:?}", std::thread::current().id());
    let id: String = id.chars().filter(char::is_ascii_digit).collect();
    scratch().join(format!("{name}-{id}"))
}

/// The `.cvm` lexer, parser and evaluator: loading never panics, and
/// loading the same text twice gives the same branches.
pub fn lang(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = scratch().join("main.cvm");
    let first = crate::lang::load_str(&path, text);
    let second = crate::lang::load_str(&path, text);
    match (first, second) {
        (Ok(a), Ok(b)) => {
            let names = |s: &crate::lang::Spec| -> Vec<String> {
                s.branches.iter().map(|b| b.name.clone()).collect()
            };
            assert_eq!(names(&a), names(&b), "branch names differ between loads");
            for (x, y) in a.branches.iter().zip(&b.branches) {
                assert_eq!(
                    x.value, y.value,
                    "branch `{}` differs between loads",
                    x.name
                );
            }
        }
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "errors differ"),
        (a, b) => panic!(
            "one load failed, the other did not: {:?} / {:?}",
            a.err(),
            b.err()
        ),
    }
}

/// `repomd.xml`: parsing never panics and [`crate::repo`] finds every
/// listed kind.
pub fn repomd(data: &[u8]) {
    if let Ok(md) = crate::repo::repomd::RepoMd::parse(data) {
        for d in &md.data {
            let found = md.get(&d.kind).expect("a listed kind is found");
            assert_eq!(found.kind, d.kind);
        }
        assert_eq!(Ok(&md), crate::repo::repomd::RepoMd::parse(data).as_ref());
    }
}

fn test_pool() -> (Pool, crate::repo::RepoId) {
    let mut pool = Pool::default();
    let repo = pool.add_repo(RepoInfo {
        name: "fuzz".into(),
        base: "/nonexistent".into(),
        priority: 99,
        cost: 1000,
        metadata_hash: String::new(),
    });
    (pool, repo)
}

/// `primary.xml`: parsing never panics; every package it adds can be
/// rendered, indexed, and is found as a provider of each of its own
/// provides.
pub fn primary(data: &[u8]) {
    let (mut pool, repo) = test_pool();
    let Ok(added) = crate::repo::primary::parse_primary(Cursor::new(data), &mut pool, repo) else {
        return;
    };
    assert_eq!(
        added,
        pool.packages.len(),
        "count returned != packages added"
    );
    pool.index();
    for id in pool.ids().collect::<Vec<_>>() {
        let p = pool.package(id).clone();
        let _ = pool.nevra(id).to_string();
        for d in p.requires.iter().chain(&p.conflicts).chain(&p.obsoletes) {
            let _ = pool.dep_to_string(d);
        }
        for prov in &p.provides {
            assert!(
                pool.whatprovides(prov).contains(&id),
                "{} does not provide its own `{}`",
                pool.nevra(id),
                pool.simple_to_string(prov)
            );
        }
    }
}

/// `filelists.xml`: scanning never panics and reports only wanted paths.
pub fn filelists(data: &[u8]) {
    let wanted: HashSet<&str> = ["/bin/sh", "/usr/bin/python3", "/etc/passwd"].into();
    let _ = crate::repo::filelists::scan_filelists(Cursor::new(data), &wanted, |_, path| {
        assert!(wanted.contains(path), "unwanted path {path:?} reported");
    });
}

/// Rich dependencies: parsing never panics, and an accepted expression
/// renders (as rpm prints it) to text that parses to the same expression.
pub fn rich(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut pool = Pool::default();
    let Ok(r) = parse_rich(text, &mut pool.names) else {
        return;
    };
    let rendered = pool.dep_to_string(&Dep::Rich(Box::new(r.clone())));
    // A lone `(dep)` renders without parentheses; rpm needs them back.
    let rendered = if rendered.starts_with('(') {
        rendered
    } else {
        format!("({rendered})")
    };
    let again = parse_rich(&rendered, &mut pool.names)
        .unwrap_or_else(|e| panic!("{text:?} renders as {rendered:?}, which fails: {e}"));
    assert_eq!(
        again, r,
        "{text:?} renders as {rendered:?}, which parses differently"
    );
}

/// Version comparison: `rpmvercmp` is reflexive, antisymmetric and
/// transitive; an EVR that parses re-parses from its display to an equal
/// one, and ranges contain the version they are built on.
pub fn evr(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\n');
    let a = parts.next().unwrap_or("");
    let b = parts.next().unwrap_or("");
    let c = parts.next().unwrap_or("");
    for s in [a, b, c] {
        assert_eq!(rpmvercmp(s, s), Ordering::Equal, "{s:?} != itself");
    }
    let ab = rpmvercmp(a, b);
    assert_eq!(
        ab,
        rpmvercmp(b, a).reverse(),
        "{a:?} vs {b:?} not antisymmetric"
    );
    let bc = rpmvercmp(b, c);
    let ac = rpmvercmp(a, c);
    if ab != Ordering::Greater && bc != Ordering::Greater {
        assert_ne!(
            ac,
            Ordering::Greater,
            "{a:?} <= {b:?} <= {c:?} but {a:?} > {c:?}"
        );
    }
    if ab != Ordering::Less && bc != Ordering::Less {
        assert_ne!(
            ac,
            Ordering::Less,
            "{a:?} >= {b:?} >= {c:?} but {a:?} < {c:?}"
        );
    }
    let parsed: Vec<Evr> = [a, b].iter().filter_map(|s| Evr::parse(s).ok()).collect();
    for e in &parsed {
        let shown = e.to_string();
        let back = Evr::parse(&shown)
            .unwrap_or_else(|err| panic!("{e:?} displays as {shown:?}, which fails: {err}"));
        assert_eq!(
            back.cmp(e),
            Ordering::Equal,
            "{shown:?} re-parses differently"
        );
        for op in [evr::Op::Eq, evr::Op::Le, evr::Op::Ge] {
            let r = evr::Range { op, evr: e.clone() };
            assert!(r.contains(e), "{r} does not contain {shown}");
        }
    }
    if let [x, y] = parsed.as_slice() {
        assert_eq!(x.cmp(y), y.cmp(x).reverse(), "{x} vs {y} not antisymmetric");
    }
}

/// The RPM header and payload reader: extraction never panics, and an RPM
/// that extracts does so to the same tree twice. The signature reader
/// (which sees every download of a `gpgcheck` repository first) never
/// panics either, and what it calls unsigned, the signer claim `eval`
/// reads from the signature header alone calls unsigned too.
pub fn rpm(data: &[u8]) {
    let path = scratch_file("input.rpm");
    std::fs::write(&path, data).expect("write the input RPM");
    let keys = crate::gpg::Keyring::empty();
    let mut f = std::fs::File::open(&path).expect("open the input RPM");
    let verdict = crate::gpg::rpm::verify(&keys, &mut f);
    let claim = crate::gpg::rpm::claimed_signer(&keys, &mut f);
    if let Err(crate::gpg::SigError::Unsigned { .. }) = verdict {
        assert!(
            matches!(claim, Err(crate::gpg::SigError::Unsigned { .. })),
            "verify says unsigned, the claim says {claim:?}"
        );
    }
    let store = MemStore::new();
    let first = crate::builders::extract::extract(&store, &path);
    if let Ok(x) = first {
        let again = crate::builders::extract::extract(&store, &path).expect("extracts twice");
        assert_eq!(x.tree, again.tree, "extraction is not deterministic");
        store
            .get_tree(&x.tree)
            .expect("the extracted tree is stored");
    }
}

/// A little reader of fuzz bytes, so targets can build structured input
/// (archive members) from them.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    /// A length-prefixed chunk (length is one byte).
    fn chunk(&mut self) -> Option<Vec<u8>> {
        let n = usize::from(self.byte()?).min(self.0.len());
        let (c, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(c.to_vec())
    }

    fn string(&mut self) -> Option<String> {
        Some(String::from_utf8_lossy(&self.chunk()?).into_owned())
    }
}

/// The cpio writer: an archive of members decoded from the bytes (paths
/// made of valid store names) is read back by an independent `newc`
/// reader to exactly those members (or refused, when a member has the
/// trailer's name).
pub fn cpio_roundtrip(data: &[u8]) {
    let mut input = Bytes(data);
    let mut members = cpio::Members::new();
    while let (Some(kind), Some(mode), Some(path)) = (input.byte(), input.byte(), input.string()) {
        let valid = !path.is_empty() && path.split('/').all(|c| store::validate_name(c).is_ok());
        if !valid {
            continue;
        }
        let kind = match kind % 4 {
            0 => cpio::Kind::Directory,
            1 => cpio::Kind::File(input.chunk().unwrap_or_default()),
            2 => cpio::Kind::Symlink(input.string().unwrap_or_default()),
            _ => cpio::Kind::CharDevice {
                major: u32::from(input.byte().unwrap_or(0)),
                minor: u32::from(input.byte().unwrap_or(0)),
            },
        };
        let mode = (u32::from(mode) * 0o21) & 0o7777;
        members.insert(path, cpio::Member { mode, kind });
    }
    let mut out = Vec::new();
    let written = cpio::write(&mut out, &members, 1_400_000_000);
    if members.contains_key("TRAILER!!!") {
        assert!(
            written.is_err(),
            "a member named TRAILER!!! would end the archive early"
        );
        return;
    }
    let n = written.expect("writing to memory");
    assert_eq!(n as usize, out.len(), "reported size");
    let back = read_newc(&out).unwrap_or_else(|e| panic!("our archive does not read back: {e}"));
    assert_eq!(back, members, "archive does not read back to its members");
}

/// Reads a `newc` archive (the kernel's rules: stop at `TRAILER!!!`,
/// names end at their first NUL) into members, checking every header field
/// the writer promises.
fn read_newc(mut a: &[u8]) -> Result<cpio::Members, String> {
    fn take<'a>(a: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
        if a.len() < n {
            return Err(format!("truncated: {n} bytes wanted, {} left", a.len()));
        }
        let (x, rest) = a.split_at(n);
        *a = rest;
        Ok(x)
    }
    let total = a.len();
    let mut members = cpio::Members::new();
    loop {
        let h = take(&mut a, 110)?;
        if &h[..6] != b"070701" {
            return Err(format!("bad magic at {}", total - a.len() - 110));
        }
        let field = |i: usize| {
            let s = std::str::from_utf8(&h[6 + 8 * i..14 + 8 * i]).map_err(|e| e.to_string())?;
            u32::from_str_radix(s, 16).map_err(|e| e.to_string())
        };
        let (mode, size, rmaj, rmin, namesize) =
            (field(1)?, field(6)?, field(9)?, field(10)?, field(11)?);
        let name = take(&mut a, namesize as usize)?;
        let name = name.split(|b| *b == 0).next().unwrap_or_default();
        let name = String::from_utf8(name.to_vec()).map_err(|e| e.to_string())?;
        let pad = (4 - (total - a.len()) % 4) % 4;
        take(&mut a, pad)?;
        let body = take(&mut a, size as usize)?.to_vec();
        let pad = (4 - (total - a.len()) % 4) % 4;
        take(&mut a, pad)?;
        if name == "TRAILER!!!" {
            if !a.is_empty() {
                return Err(format!("{} bytes after the trailer", a.len()));
            }
            return Ok(members);
        }
        let kind = match mode & 0o170000 {
            0o040000 => cpio::Kind::Directory,
            0o100000 => cpio::Kind::File(body),
            0o120000 => cpio::Kind::Symlink(String::from_utf8(body).map_err(|e| e.to_string())?),
            0o020000 => cpio::Kind::CharDevice {
                major: rmaj,
                minor: rmin,
            },
            t => return Err(format!("{name}: unexpected type {t:o}")),
        };
        let m = cpio::Member {
            mode: mode & 0o7777,
            kind,
        };
        if members.insert(name.clone(), m).is_some() {
            return Err(format!("{name}: twice in the archive"));
        }
    }
}

/// One member of a tar round trip: what the tar crate must read back.
#[derive(Debug, PartialEq, Eq)]
enum TarMember {
    Dir(u32),
    File(u32, Vec<u8>),
    Link(String),
}

/// The tar exporter: a two-level tree decoded from the bytes is exported
/// and read back by the `tar` crate to the same paths, modes, contents and
/// link targets.
pub fn tar_roundtrip(data: &[u8]) {
    let store = MemStore::new();
    let mut input = Bytes(data);
    let mut expected = BTreeMap::new();
    let root = tar_dir(&store, &mut input, "", 0, &mut expected);
    let dest = scratch_file("out.tar");
    store::export_tar(&store, &root, &dest, 1_400_000_000, &Default::default())
        .expect("exporting a valid tree");
    let mut got = BTreeMap::new();
    let mut archive = tar::Archive::new(std::fs::File::open(&dest).expect("open the tarball"));
    for e in archive.entries().expect("tar entries") {
        let mut e = e.expect("a tar entry");
        let path = e.path().expect("entry path").to_string_lossy().into_owned();
        let path = path
            .trim_end_matches('/')
            .trim_start_matches("./")
            .to_string();
        let mode = e.header().mode().expect("mode");
        let m = match e.header().entry_type() {
            tar::EntryType::Directory => TarMember::Dir(mode),
            tar::EntryType::Regular => {
                let mut body = Vec::new();
                e.read_to_end(&mut body).expect("entry body");
                TarMember::File(mode, body)
            }
            tar::EntryType::Symlink => {
                let target = e.link_name().expect("link name").expect("a target");
                TarMember::Link(target.to_string_lossy().into_owned())
            }
            t => panic!("{path}: unexpected entry type {t:?}"),
        };
        if path.is_empty() || path == "." {
            continue;
        }
        assert!(
            got.insert(path.clone(), m).is_none(),
            "{path} twice in the tarball"
        );
    }
    let _ = std::fs::remove_file(&dest);
    assert_eq!(got, expected, "tarball does not read back to its tree");
}

fn tar_dir(
    store: &MemStore,
    input: &mut Bytes,
    prefix: &str,
    depth: usize,
    expected: &mut BTreeMap<String, TarMember>,
) -> store::Hash {
    let mut entries = Vec::new();
    let mut names = HashSet::new();
    while let (Some(kind), Some(mode), Some(name)) = (input.byte(), input.byte(), input.string()) {
        if kind == 0xff || store::validate_name(&name).is_err() || !names.insert(name.clone()) {
            break;
        }
        let mode = (u16::from(mode) * 0o21) & 0o7777;
        let path = format!("{prefix}{name}");
        let (node, member) = match kind % 3 {
            0 if depth < 2 => {
                let tree = tar_dir(store, input, &format!("{path}/"), depth + 1, expected);
                (Node::Directory { tree }, TarMember::Dir(u32::from(mode)))
            }
            1 => {
                let body = input.chunk().unwrap_or_default();
                let b = store.put_blob(&mut body.as_slice()).expect("store a blob");
                (Node::file(&b), TarMember::File(u32::from(mode), body))
            }
            _ => {
                let target = input.string().unwrap_or_default();
                if target.is_empty() || target.contains('\0') {
                    continue;
                }
                (
                    Node::Symlink {
                        target: target.clone(),
                    },
                    TarMember::Link(target),
                )
            }
        };
        entries.push(store::Entry::root_owned(&name, node, mode));
        expected.insert(path, member);
    }
    let tree = Tree::new(entries).expect("names were checked");
    store.put_tree(&tree).expect("store a tree")
}

/// The CernVM-FS manifest reader: parsing never panics, and a manifest it
/// accepts, written again by the publisher, parses to the same fields.
pub fn manifest(data: &[u8]) {
    use crate::cvmfs::manifest::Manifest;
    let what = Path::new(".cvmfspublished");
    let Ok(m) = Manifest::parse(data, what) else {
        return;
    };
    let again = Manifest::parse(&m.signed(keys()), what).expect("our own manifest parses");
    assert_eq!(again, m, "manifest does not survive a write");
}

/// The whitelist reader of the client: checking never panics, whether
/// the bytes are a whole file (signature and all) or a body this function
/// signs with the master key, so the checks behind the signature (expiry,
/// name, fingerprints) see every input too; and the publisher's own
/// whitelist verifies.
pub fn whitelist(data: &[u8]) {
    use crate::client::trust::verify_whitelist;
    use sha1::{Digest, Sha1};
    const FQRN: &str = "fuzz.cern.ch";
    const NOW: u64 = 1_700_000_000;
    let k = keys();
    let public = [k.master.to_public_key()];
    let _ = verify_whitelist(data, &public, FQRN, &k.fingerprint, NOW, "whitelist");
    if !data.windows(4).any(|w| w == b"\n--\n") && !data.starts_with(b"--\n") {
        let hash = hex::encode(Sha1::digest(data));
        let sig = k
            .master
            .sign(rsa::Pkcs1v15Sign::new_unprefixed(), hash.as_bytes())
            .expect("signing");
        let mut file = data.to_vec();
        if !file.ends_with(b"\n") && !file.is_empty() {
            return; // the separator must start a line
        }
        file.extend_from_slice(format!("--\n{hash}\n").as_bytes());
        file.extend_from_slice(&sig);
        let _ = verify_whitelist(&file, &public, FQRN, &k.fingerprint, NOW, "whitelist");
    }
    static OWN: std::sync::Once = std::sync::Once::new();
    OWN.call_once(|| {
        let own = crate::cvmfs::manifest::whitelist(FQRN, k, NOW, 30).expect("our whitelist");
        verify_whitelist(&own, &public, FQRN, &k.fingerprint, NOW, "whitelist")
            .expect("the publisher's own whitelist verifies");
    });
}

/// One repository key set per process: RSA key generation is slow.
fn keys() -> &'static crate::cvmfs::keys::Keys {
    static KEYS: OnceLock<crate::cvmfs::keys::Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = scratch().join("keys");
        std::fs::create_dir_all(&dir).expect("key directory");
        crate::cvmfs::keys::load(&dir, "fuzz.cern.ch", true).expect("generate keys")
    })
}

/// The CernVM-FS catalog reader (an SQLite file from the repository):
/// reading never panics and gives the same answer twice.
pub fn catalog(data: &[u8]) {
    use crate::cvmfs::catalog;
    let scratch = scratch_file("catalog.db");
    let first = catalog::read(data, &scratch).map(|e| (e.content, e.nested.len()));
    let second = catalog::read(data, &scratch).map(|e| (e.content, e.nested.len()));
    assert_eq!(
        first.is_ok(),
        second.is_ok(),
        "catalog read is not deterministic"
    );
    if let (Ok(a), Ok(b)) = (first, second) {
        assert_eq!(a, b, "catalog read is not deterministic");
        let _ = catalog::files_in(data, &scratch, "");
    }
}

/// The lock file: reading never panics; a lock that reads renders to text
/// that reads back to the same lock, and rendering is idempotent.
pub fn lock(data: &[u8]) {
    let path = scratch_file("cvmbuild.lock");
    std::fs::write(&path, data).expect("write the lock");
    let Ok(first) = LockFile::read(&path) else {
        return;
    };
    let text = first.render();
    std::fs::write(&path, &text).expect("write the lock");
    let again =
        LockFile::read(&path).unwrap_or_else(|e| panic!("rendered lock fails: {e}\n{text}"));
    let mut sorted = first.clone();
    for b in sorted.branch.values_mut() {
        b.package.sort();
    }
    assert_eq!(again, sorted, "lock does not survive render + read");
    assert_eq!(again.render(), text, "rendering is not idempotent");
}
