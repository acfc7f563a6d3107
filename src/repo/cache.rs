//! Binary cache of parsed repositories, like libsolv's `.solv` files.
//!
//! A repository's parsed packages are stored under the blake3 of its
//! `repomd.xml`: repomd names every other metadata file by checksum, so an
//! unchanged repomd means unchanged packages, and a load can skip fetching
//! and parsing primary entirely. Entries are written only after every
//! checksum was verified, and atomically (temporary file + rename), so a
//! reader sees a whole entry or none; they are not fsynced, because a
//! crash can at worst leave an entry that fails its hash (below), which
//! costs one parse.
//!
//! File layout: magic, format number, blake3 of the payload, payload. A
//! truncated or corrupt entry fails the payload hash and is treated as
//! absent; so is one this build cannot decode (see [`decode`]).
//!
//! The payload is laid out for a warm `eval`, which reads it whole: a
//! table of counts, then fixed-size records and flat arrays that are
//! sliced out of the one read buffer by position (no per-field tags or
//! varints to walk, no serde visitor per package), and the strings of
//! every package in one heap that is checked as UTF-8 once:
//!
//! ```text
//! counts        9 x u32: names, name bytes, labels, packages, provides, deps, files, heap bytes, tail bytes
//! name ends     names x u32           (the interner's offsets)
//! name bytes    UTF-8                 (the interner's buffer)
//! labels        labels x LABEL        (each distinct epoch:version-release once)
//! packages      packages x PACKAGE    (fixed-size records, below)
//! provides      provides x DEP        (every package's, back to back)
//! deps          deps x DEP            (requires, conflicts, obsoletes)
//! files         files x u32           (name ids)
//! heap          UTF-8                 (versions, releases, locations, checksums)
//! tail          postcard of (repositories, boolean dependencies)
//! ```
//!
//! Integers are little-endian; a string is (offset, length) into the heap,
//! a list is (first, count) into its array, a label an index into the
//! labels (a universe has a few hundred thousand versioned dependencies
//! but only some thousands of distinct labels, so each is checked and
//! built once and then copied). Boolean (rich) dependencies are rare and
//! nested, so they live in the tail and a DEP record names one by index.
//! Every offset, count, index and name id is bounds-checked when read: a
//! payload that passed its hash but was written by a faulty build decodes
//! to `None`, never to a panic or an out-of-range id.

use super::error::RepoError;
use super::evr::{Evr, Op, Range};
use super::label::Label;
use super::model::{
    Checksum, Dep, Interner, NameId, Package, Pool, RepoId, RepoInfo, Rich, SimpleDep,
};
use hashbrown::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"CVMREPO\0";
/// Bump whenever the payload layout (or what `Pool`/`Package` hold)
/// changes, so entries written by an older build are ignored rather than
/// misread. 2 was postcard of the whole pool.
const FORMAT: u32 = 3;
const HEADER: usize = MAGIC.len() + 4 + 32;

/// Bytes of a label ([`Evr`]): epoch u64, version string, release string
/// (length [`NONE`] for no release).
const LABEL: usize = 8 + 8 + 8;
/// Bytes of a dependency: name id (or, for a rich one, its index in the
/// tail), operator ([`OP_NONE`], [`OP_RICH`] or 1..=5) and three bytes of
/// padding, label index (unused without an operator).
const DEP: usize = 4 + 4 + 4;
/// Bytes of a package: name, arch, repository (u16) and padding, label
/// index, five lists, location, checksum kind and hex, two sizes.
const PACKAGE: usize = 4 + 4 + 4 + 4 + 5 * 8 + 3 * 8 + 2 * 8;
const COUNTS: usize = 9 * 4;
/// String length that stands for "absent" (an unversioned range's label
/// is never written, a label without release is).
const NONE: u32 = u32::MAX;
const OP_NONE: u8 = 0;
const OP_RICH: u8 = 0xff;

fn entry_path(dir: &Path, metadata_hash: &str) -> PathBuf {
    dir.join(format!("{metadata_hash}.v{FORMAT}.pool"))
}

/// The cached packages of the repository whose repomd.xml hashes to
/// `metadata_hash`, if a valid entry exists. Its interner can look names
/// up (its table is rebuilt, so more can be merged into it); the pool is
/// not indexed.
pub fn read(dir: &Path, metadata_hash: &str) -> Option<Pool> {
    let data = std::fs::read(entry_path(dir, metadata_hash)).ok()?;
    if data.len() < HEADER || &data[..8] != MAGIC || data[8..12] != FORMAT.to_le_bytes() {
        return None;
    }
    let payload = &data[HEADER..];
    if blake3::hash(payload).as_bytes() != &data[12..HEADER] {
        return None;
    }
    let pool = decode(payload)?;
    // The modification time records the last use, for [`prune`]; failing
    // to set it only makes the entry look older.
    if let Ok(f) = std::fs::File::options()
        .append(true)
        .open(entry_path(dir, metadata_hash))
    {
        let _ = f.set_modified(std::time::SystemTime::now());
    }
    Some(pool)
}

fn op_code(op: Op) -> u8 {
    match op {
        Op::Lt => 1,
        Op::Le => 2,
        Op::Eq => 3,
        Op::Ge => 4,
        Op::Gt => 5,
    }
}

fn op_of(code: u8) -> Option<Op> {
    Some(match code {
        1 => Op::Lt,
        2 => Op::Le,
        3 => Op::Eq,
        4 => Op::Ge,
        5 => Op::Gt,
        _ => return None,
    })
}

/// Builds the payload: the arrays grow side by side and are joined at the
/// end.
#[derive(Default)]
struct Writer<'p> {
    labels: Vec<u8>,
    label_ids: HashMap<&'p Evr, u32>,
    packages: Vec<u8>,
    provides: Vec<u8>,
    deps: Vec<u8>,
    files: Vec<u8>,
    heap: Vec<u8>,
    rich: Vec<Rich>,
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// A count or offset as stored; payloads are bounded far below 4 GiB by
/// what repository metadata may decompress to.
fn u32_of(n: usize) -> u32 {
    u32::try_from(n).expect("cache payloads stay below 4 GiB")
}

impl<'p> Writer<'p> {
    fn string(&mut self, out: Select, s: Option<&str>) {
        let (off, len) = match s {
            Some(s) => {
                let off = u32_of(self.heap.len());
                self.heap.extend_from_slice(s.as_bytes());
                (off, u32_of(s.len()))
            }
            None => (0, NONE),
        };
        let out = self.select(out);
        put_u32(out, off);
        put_u32(out, len);
    }

    fn select(&mut self, s: Select) -> &mut Vec<u8> {
        match s {
            Select::Labels => &mut self.labels,
            Select::Packages => &mut self.packages,
            Select::Provides => &mut self.provides,
            Select::Deps => &mut self.deps,
        }
    }

    /// The index of `evr` in the labels, adding it on first use.
    fn label(&mut self, evr: &'p Evr) -> u32 {
        if let Some(&i) = self.label_ids.get(evr) {
            return i;
        }
        let i = u32_of(self.label_ids.len());
        self.label_ids.insert(evr, i);
        self.labels.extend_from_slice(&evr.epoch.to_le_bytes());
        self.string(Select::Labels, Some(&evr.version));
        self.string(Select::Labels, evr.release.as_deref());
        i
    }

    fn simple(&mut self, out: Select, name: u32, op: u8, evr: Option<&'p Evr>) {
        let label = evr.map_or(0, |e| self.label(e));
        let o = self.select(out);
        put_u32(o, name);
        o.extend_from_slice(&[op, 0, 0, 0]);
        put_u32(o, label);
    }

    fn dep(&mut self, out: Select, d: &'p Dep) {
        match d {
            Dep::Simple(s) => self.simple_dep(out, s),
            Dep::Rich(r) => {
                let index = u32_of(self.rich.len());
                self.rich.push((**r).clone());
                self.simple(out, index, OP_RICH, None);
            }
        }
    }

    fn simple_dep(&mut self, out: Select, s: &'p SimpleDep) {
        match &s.range {
            None => self.simple(out, s.name.0, OP_NONE, None),
            Some(r) => self.simple(out, s.name.0, op_code(r.op), Some(&r.evr)),
        }
    }

    /// Appends `p`: its record, and its lists to the shared arrays (each
    /// list starts where the array ends now; requires, conflicts and
    /// obsoletes follow each other in `deps`).
    fn package(&mut self, p: &'p Package) {
        let requires = u32_of(self.deps.len() / DEP);
        let conflicts = requires + u32_of(p.requires.len());
        let obsoletes = conflicts + u32_of(p.conflicts.len());
        let lists = [
            (u32_of(self.provides.len() / DEP), p.provides.len()),
            (requires, p.requires.len()),
            (conflicts, p.conflicts.len()),
            (obsoletes, p.obsoletes.len()),
            (u32_of(self.files.len() / 4), p.files.len()),
        ];
        let label = self.label(&p.evr);
        let o = &mut self.packages;
        put_u32(o, p.name.0);
        put_u32(o, p.arch.0);
        o.extend_from_slice(&p.repo.0.to_le_bytes());
        o.extend_from_slice(&[0, 0]);
        put_u32(o, label);
        for (first, len) in lists {
            put_u32(o, first);
            put_u32(o, u32_of(len));
        }
        for d in &p.provides {
            self.simple_dep(Select::Provides, d);
        }
        for d in p.requires.iter().chain(&p.conflicts).chain(&p.obsoletes) {
            self.dep(Select::Deps, d);
        }
        for f in &p.files {
            put_u32(&mut self.files, f.0);
        }
        self.string(Select::Packages, Some(&p.location));
        self.string(Select::Packages, Some(&p.checksum.kind));
        self.string(Select::Packages, Some(&p.checksum.hex));
        let o = &mut self.packages;
        o.extend_from_slice(&p.size_package.to_le_bytes());
        o.extend_from_slice(&p.size_installed.to_le_bytes());
    }
}

/// Which array a record goes to.
#[derive(Clone, Copy)]
enum Select {
    Labels,
    Packages,
    Provides,
    Deps,
}

/// The payload of `pool` (see the module docs).
fn encode(pool: &Pool) -> Result<Vec<u8>, String> {
    let mut w = Writer::default();
    for p in &pool.packages {
        w.package(p);
    }
    let tail = postcard::to_stdvec(&(&pool.repos, &w.rich)).map_err(|e| e.to_string())?;
    let (names, ends) = pool.names.parts();
    let counts = [
        ends.len(),
        names.len(),
        w.label_ids.len(),
        pool.packages.len(),
        w.provides.len() / DEP,
        w.deps.len() / DEP,
        w.files.len() / 4,
        w.heap.len(),
        tail.len(),
    ];
    let total = COUNTS
        + ends.len() * 4
        + names.len()
        + w.labels.len()
        + w.packages.len()
        + w.provides.len()
        + w.deps.len()
        + w.files.len()
        + w.heap.len()
        + tail.len();
    let mut out = Vec::with_capacity(total);
    for c in counts {
        put_u32(&mut out, u32_of(c));
    }
    for &e in ends {
        put_u32(&mut out, e);
    }
    out.extend_from_slice(names.as_bytes());
    for part in [
        &w.labels,
        &w.packages,
        &w.provides,
        &w.deps,
        &w.files,
        &w.heap,
        &tail,
    ] {
        out.extend_from_slice(part);
    }
    Ok(out)
}

/// Reads little-endian fields of one record; the record's length was
/// checked when it was sliced out, so the fixed offsets below are in it.
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// The checked parts of a payload that records refer to.
struct Sections<'a> {
    names: usize,
    labels: Vec<Evr>,
    heap: &'a str,
}

impl<'a> Sections<'a> {
    fn string(&self, b: &[u8], at: usize) -> Option<Option<&'a str>> {
        let (off, len) = (u32_at(b, at), u32_at(b, at + 4));
        if len == NONE {
            return Some(None);
        }
        let end = (off as usize).checked_add(len as usize)?;
        self.heap.get(off as usize..end).map(Some)
    }

    fn label(&self, b: &[u8], at: usize) -> Option<Evr> {
        self.labels.get(u32_at(b, at) as usize).cloned()
    }

    fn name(&self, id: u32) -> Option<NameId> {
        ((id as usize) < self.names).then_some(NameId(id))
    }

    /// DEP record `i` of `array`: a simple dependency, or the index of a
    /// rich one in the tail.
    fn dep(&self, array: &[u8], i: usize) -> Option<Result<SimpleDep, usize>> {
        let b = array.get(i * DEP..(i + 1) * DEP)?;
        let (id, op) = (u32_at(b, 0), b[4]);
        if op == OP_RICH {
            return Some(Err(id as usize));
        }
        let range = match op {
            OP_NONE => None,
            op => Some(Range {
                op: op_of(op)?,
                evr: self.label(b, 8)?,
            }),
        };
        Some(Ok(SimpleDep {
            name: self.name(id)?,
            range,
        }))
    }
}

/// Splits `n` bytes off the front of `rest`.
fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if n > rest.len() {
        return None;
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Some(head)
}

/// Whether every name a rich dependency mentions is below `names`.
fn rich_names_ok(r: &Rich, names: usize) -> bool {
    let ok = |r: &Rich| rich_names_ok(r, names);
    match r {
        Rich::Dep(d) => (d.name.0 as usize) < names,
        Rich::And(v) | Rich::Or(v) | Rich::With(v) => v.iter().all(ok),
        Rich::If(a, b, e) | Rich::Unless(a, b, e) => ok(a) && ok(b) && e.as_deref().is_none_or(ok),
        Rich::Without(a, b) => ok(a) && ok(b),
    }
}

/// `(first, count)` at `at` of a record, as a range of an array of `len`
/// items.
fn list(b: &[u8], at: usize, len: usize) -> Option<std::ops::Range<usize>> {
    let (first, n) = (u32_at(b, at) as usize, u32_at(b, at + 4) as usize);
    let end = first.checked_add(n)?;
    (end <= len).then_some(first..end)
}

/// The pool a payload describes, or `None` if any part of it is out of
/// bounds, not UTF-8, or names something that does not exist.
fn decode(payload: &[u8]) -> Option<Pool> {
    let mut rest = payload;
    let counts = take(&mut rest, COUNTS)?;
    let c: Vec<usize> = (0..9).map(|i| u32_at(counts, i * 4) as usize).collect();
    let [nnames, name_bytes, nlabels, npackages, nprovides, ndeps, nfiles, heap_bytes, tail_bytes] =
        c[..]
    else {
        return None;
    };
    let sized = |n: usize, size: usize| n.checked_mul(size);
    let ends = take(&mut rest, sized(nnames, 4)?)?;
    let names = take(&mut rest, name_bytes)?;
    let labels = take(&mut rest, sized(nlabels, LABEL)?)?;
    let packages = take(&mut rest, sized(npackages, PACKAGE)?)?;
    let provides = take(&mut rest, sized(nprovides, DEP)?)?;
    let deps = take(&mut rest, sized(ndeps, DEP)?)?;
    let files = take(&mut rest, sized(nfiles, 4)?)?;
    let heap = std::str::from_utf8(take(&mut rest, heap_bytes)?).ok()?;
    let tail = take(&mut rest, tail_bytes)?;
    if !rest.is_empty() {
        return None;
    }
    let ends: Vec<u32> = ends.chunks_exact(4).map(|b| u32_at(b, 0)).collect();
    let names = Interner::from_parts(std::str::from_utf8(names).ok()?.to_string(), ends)?;
    let (repos, rich): (Vec<RepoInfo>, Vec<Rich>) = postcard::from_bytes(tail).ok()?;
    if !rich.iter().all(|r| rich_names_ok(r, nnames)) {
        return None;
    }
    let mut s = Sections {
        names: nnames,
        labels: Vec::with_capacity(nlabels),
        heap,
    };
    for b in labels.chunks_exact(LABEL) {
        let evr = Evr {
            epoch: u64_at(b, 0),
            version: Label::from(s.string(b, 8)??),
            release: s.string(b, 16)?.map(Label::from),
        };
        s.labels.push(evr);
    }
    // Lists are filled by pushing into vectors of their exact size
    // (collecting into `Option<Vec<_>>` loses the length and regrows).
    let deps_of = |r: std::ops::Range<usize>| -> Option<Vec<Dep>> {
        let mut v = Vec::with_capacity(r.len());
        for i in r {
            v.push(match s.dep(deps, i)? {
                Ok(d) => Dep::Simple(d),
                Err(k) => Dep::Rich(Box::new(rich.get(k)?.clone())),
            });
        }
        Some(v)
    };
    let mut out = Vec::with_capacity(npackages);
    for b in packages.chunks_exact(PACKAGE) {
        let at = 16;
        let r = list(b, at, nprovides)?;
        let mut provides_of = Vec::with_capacity(r.len());
        for i in r {
            provides_of.push(s.dep(provides, i)?.ok()?);
        }
        let r = list(b, at + 32, nfiles)?;
        let mut files_of = Vec::with_capacity(r.len());
        for i in r {
            files_of.push(s.name(u32_at(files, i * 4))?);
        }
        let strings = at + 40;
        out.push(Package {
            name: s.name(u32_at(b, 0))?,
            arch: s.name(u32_at(b, 4))?,
            repo: RepoId(u16::from_le_bytes([b[8], b[9]])),
            evr: s.label(b, 12)?,
            provides: provides_of,
            requires: deps_of(list(b, at + 8, ndeps)?)?,
            conflicts: deps_of(list(b, at + 16, ndeps)?)?,
            obsoletes: deps_of(list(b, at + 24, ndeps)?)?,
            files: files_of,
            location: s.string(b, strings)??.into(),
            checksum: Checksum {
                kind: Label::from(s.string(b, strings + 8)??),
                hex: s.string(b, strings + 16)??.into(),
            },
            size_package: u64_at(b, strings + 24),
            size_installed: u64_at(b, strings + 32),
        });
    }
    let mut pool = Pool::default();
    pool.names = names;
    pool.repos = repos;
    pool.packages = out;
    Some(pool)
}

/// What [`prune`] removed (or would remove).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub entries: u64,
    pub bytes: u64,
}

/// Removes entries not used for `keep` (by modification time, which
/// [`read`] refreshes), entries of other cache formats (unreadable to this
/// build anyway), and temporary files of interrupted writes older than an
/// hour. A missing cache directory is an empty one. With `dry_run`, only
/// counts.
pub fn prune(dir: &Path, keep: std::time::Duration, dry_run: bool) -> std::io::Result<Pruned> {
    let mut out = Pruned::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    let now = std::time::SystemTime::now();
    let current = format!(".v{FORMAT}.pool");
    for e in entries {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let meta = e.metadata()?;
        let age = now.duration_since(meta.modified()?).unwrap_or_default();
        let stale = if name.starts_with('.') && name.ends_with(".tmp") {
            age > std::time::Duration::from_secs(3600)
        } else if name.ends_with(".pool") {
            !name.ends_with(&current) || age > keep
        } else {
            false // not ours
        };
        if stale && meta.is_file() {
            if !dry_run {
                std::fs::remove_file(e.path())?;
            }
            out.entries += 1;
            out.bytes += meta.len();
        }
    }
    Ok(out)
}

/// Stores `pool` (one repository's packages) under `metadata_hash`.
pub fn write(dir: &Path, metadata_hash: &str, pool: &Pool) -> Result<(), RepoError> {
    let path = entry_path(dir, metadata_hash);
    let fail = |reason: String| RepoError::Cache {
        path: path.clone(),
        reason,
    };
    let payload = encode(pool).map_err(|e| fail(format!("cannot encode: {e}")))?;
    std::fs::create_dir_all(dir).map_err(|e| fail(format!("cannot create directory: {e}")))?;
    // Unique per process and thread, so concurrent loads never share a
    // temporary file; the rename makes the last complete writer win.
    let tmp = dir.join(format!(
        ".{metadata_hash}.{}.{:?}.tmp",
        std::process::id(),
        std::thread::current().id()
    ));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(MAGIC)?;
        f.write_all(&FORMAT.to_le_bytes())?;
        f.write_all(blake3::hash(&payload).as_bytes())?;
        f.write_all(&payload)?;
        // No fsync: a crash may leave a renamed entry with lost or partial
        // content, but [`read`] checks the payload hash and treats it as
        // absent, so the entry is only ever lost, never misread; a flush
        // would cost a cold `eval` tens of milliseconds for nothing.
        drop(f);
        std::fs::rename(&tmp, &path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        fail(e.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(pool: &mut Pool, name: &str, range: Option<(Op, &str)>) -> SimpleDep {
        SimpleDep {
            name: pool.intern(name),
            range: range.map(|(op, evr)| Range {
                op,
                evr: Evr::parse(evr).unwrap(),
            }),
        }
    }

    /// Two packages using every part of the layout: labels with and
    /// without release or epoch, one longer than fits inline, every
    /// operator, a rich dependency, files, a repository.
    fn sample() -> Pool {
        let mut pool = Pool::default();
        pool.repos.push(RepoInfo {
            name: "os".into(),
            base: "/srv/os".into(),
            priority: 10,
            cost: 1000,
            metadata_hash: "ab".repeat(32),
        });
        let long = "1.2.3.4.5.6.7.8.9.10.11.12.13-4.el9_3.1";
        let mut packages = Vec::new();
        for (i, (name, evr)) in [("bash", "1:5.1-2"), ("glibc", long)]
            .into_iter()
            .enumerate()
        {
            let (n, arch) = (pool.intern(name), pool.intern("x86_64"));
            let rich = Rich::If(
                Box::new(Rich::Dep(dep(&mut pool, "systemd", None))),
                Box::new(Rich::Or(vec![
                    Rich::Dep(dep(&mut pool, "udev", Some((Op::Ge, "2")))),
                    Rich::Dep(dep(&mut pool, "eudev", None)),
                ])),
                None,
            );
            let ops = [Op::Lt, Op::Le, Op::Eq, Op::Ge, Op::Gt];
            packages.push(Package {
                name: n,
                evr: Evr::parse(evr).unwrap(),
                arch,
                repo: RepoId(0),
                provides: vec![
                    dep(&mut pool, &format!("lib{name}.so.6()(64bit)"), None),
                    dep(&mut pool, "sh", Some((ops[i], "0:1.0"))),
                ],
                requires: vec![
                    Dep::Simple(dep(&mut pool, "libc", Some((ops[i + 2], long)))),
                    Dep::Rich(Box::new(rich)),
                ],
                conflicts: vec![Dep::Simple(dep(&mut pool, "csh", Some((Op::Gt, "2-1"))))],
                obsoletes: if i == 0 {
                    vec![Dep::Simple(dep(&mut pool, "sh-old", Some((ops[4], "9"))))]
                } else {
                    Vec::new()
                },
                files: vec![
                    pool.intern(&format!("/usr/bin/{name}")),
                    pool.intern("/bin/sh"),
                ],
                location: format!("Packages/{name}-{i}.rpm").into(),
                checksum: Checksum {
                    kind: "sha256".into(),
                    hex: "cd".repeat(32).into(),
                },
                size_package: 1 << 40,
                size_installed: 7 + i as u64,
            });
        }
        pool.packages = packages;
        pool
    }

    fn same(a: &Pool, b: &Pool) {
        assert_eq!(a.packages, b.packages);
        assert_eq!(a.repos, b.repos);
        assert_eq!(a.names.len(), b.names.len());
        for i in 0..a.names.len() as u32 {
            let name = a.names.resolve(NameId(i));
            assert_eq!(b.names.resolve(NameId(i)), name);
            assert_eq!(b.names.get(name), Some(NameId(i)));
        }
    }

    #[test]
    fn every_part_of_a_pool_survives_the_layout() {
        let pool = sample();
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "h", &pool).unwrap();
        let back = read(dir.path(), "h").unwrap();
        same(&pool, &back);
        // The long label went to the heap, not inline, and came back.
        assert_eq!(
            &*back.packages[1].evr.version,
            "1.2.3.4.5.6.7.8.9.10.11.12.13"
        );
        assert!(matches!(back.packages[0].requires[1], Dep::Rich(_)));
        // The same pool gives the same bytes (entries are deterministic).
        assert_eq!(encode(&pool).unwrap(), encode(&back).unwrap());
    }

    /// Whatever the bytes, decoding answers `None` or a pool whose ids
    /// are all in range; it never panics. Every cut, every byte changed
    /// to a few values, and seeded random 32-bit overwrites of a real
    /// payload (the hash is bypassed: this is the decoder's own defence).
    #[test]
    fn hostile_payloads_decode_to_none_or_a_sound_pool_never_a_panic() {
        let good = encode(&sample()).unwrap();
        let sound = |p: &Pool| {
            let n = p.names.len() as u32;
            let ok = |id: NameId| id.0 < n;
            p.packages.iter().all(|q| {
                ok(q.name)
                    && ok(q.arch)
                    && q.files.iter().all(|&f| ok(f))
                    && q.provides.iter().all(|d| ok(d.name))
                    && q.requires
                        .iter()
                        .chain(&q.conflicts)
                        .chain(&q.obsoletes)
                        .all(|d| match d {
                            Dep::Simple(d) => ok(d.name),
                            Dep::Rich(r) => rich_names_ok(r, n as usize),
                        })
            })
        };
        for cut in 0..good.len() {
            assert!(decode(&good[..cut]).is_none(), "cut at {cut}");
        }
        let mut longer = good.clone();
        longer.push(0);
        assert!(decode(&longer).is_none(), "trailing byte");
        let mut decoded = 0;
        for at in 0..good.len() {
            for v in [0x00, 0x01, 0x7f, 0x80, 0xff, good[at] ^ 0x20] {
                let mut bad = good.clone();
                bad[at] = v;
                if let Some(p) = decode(&bad) {
                    assert!(sound(&p), "byte {at} = {v:#x}");
                    decoded += 1;
                }
            }
        }
        // Most single-byte changes land in strings or sizes and still
        // decode: the check above did run on real pools.
        assert!(decoded > good.len(), "{decoded}");
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut bad = good.clone();
            let at = (x as usize) % (bad.len() - 3);
            let v = [u32::MAX, u32::MAX - 1, 1 << 31, (x >> 32) as u32][(x >> 40) as usize % 4];
            bad[at..at + 4].copy_from_slice(&v.to_le_bytes());
            if let Some(p) = decode(&bad) {
                assert!(sound(&p), "u32 {v:#x} at {at}");
            }
        }
    }

    #[test]
    fn roundtrip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let mut pool = Pool::default();
        pool.intern("bash");
        write(dir.path(), "abc", &pool).unwrap();
        let back = read(dir.path(), "abc").unwrap();
        assert_eq!(back.names.resolve(crate::repo::NameId(0)), "bash");
        assert_eq!(back.names.get("bash"), Some(crate::repo::NameId(0)));
        assert!(read(dir.path(), "other").is_none());
        // Flip one payload byte: the entry is ignored, not misread.
        let p = entry_path(dir.path(), "abc");
        let mut data = std::fs::read(&p).unwrap();
        let last = data.len() - 1;
        data[last] ^= 1;
        std::fs::write(&p, &data).unwrap();
        assert!(read(dir.path(), "abc").is_none());
        // No temporary files are left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn prune_removes_unused_old_and_foreign_format_entries() {
        use std::time::{Duration, SystemTime};
        let dir = tempfile::tempdir().unwrap();
        let pool = Pool::default();
        for h in ["used", "unused", "fresh"] {
            write(dir.path(), h, &pool).unwrap();
        }
        let age = |name: &str, days: u64| {
            let f = std::fs::File::options()
                .append(true)
                .open(dir.path().join(name))
                .unwrap();
            f.set_modified(SystemTime::now() - Duration::from_secs(days * 86400))
                .unwrap();
        };
        age(&format!("used.v{FORMAT}.pool"), 40);
        age(&format!("unused.v{FORMAT}.pool"), 40);
        std::fs::write(dir.path().join("old.v0.pool"), b"x").unwrap();
        // The postcard layout before this one: unreadable now, pruned.
        std::fs::write(dir.path().join("old.v2.pool"), b"x").unwrap();
        std::fs::write(dir.path().join(".x.1.ThreadId(1).tmp"), b"x").unwrap();
        age(".x.1.ThreadId(1).tmp", 1);
        std::fs::write(dir.path().join("README"), b"not ours").unwrap();
        // Reading refreshes the last use.
        assert!(read(dir.path(), "used").is_some());

        let keep = Duration::from_secs(30 * 86400);
        let dry = prune(dir.path(), keep, true).unwrap();
        assert_eq!(dry.entries, 4);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 7);
        let done = prune(dir.path(), keep, false).unwrap();
        assert_eq!(done, dry);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "README",
                &format!("fresh.v{FORMAT}.pool"),
                &format!("used.v{FORMAT}.pool")
            ]
        );
        assert!(read(dir.path(), "fresh").is_some());
        assert_eq!(
            prune(&dir.path().join("none"), keep, false).unwrap(),
            Pruned::default()
        );
    }
}
