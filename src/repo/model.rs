//! The package universe the solver works on: interned names, packages with
//! their dependencies, and the "what provides" index.
//!
//! Names, provides and file paths are interned into [`NameId`]s so that the
//! solver compares integers, and so the whole pool serialises compactly into
//! the binary metadata cache.

use super::evr::{Evr, Range};
use super::label::Label;
use hashbrown::{DefaultHashBuilder, HashTable};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::hash::BuildHasher;

/// An interned string: a package name, a capability or a file path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NameId(pub u32);

/// Index of a package in [`Pool::packages`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PackageId(pub u32);

/// Index of a repository in [`Pool::repos`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RepoId(pub u16);

/// String interner. Ids are dense and assigned in first-seen order.
///
/// The strings live back to back in one buffer and the lookup table holds
/// only ids (hashing the buffer's slices), so a universe of 100,000+ names
/// costs three allocations rather than two per name. That matters on the
/// warm path: loading the metadata cache rebuilds the table, so that an
/// interner read from it interns new strings without duplicating old ones.
/// Serialises as the buffer and the end offsets.
#[derive(Default, Clone, Serialize, Deserialize)]
#[serde(from = "InternerParts", into = "InternerParts")]
pub struct Interner {
    buf: String,
    /// `ends[i]`: where string `i` ends in `buf` (it starts where `i - 1`
    /// ends).
    ends: Vec<u32>,
    table: HashTable<NameId>,
    hasher: DefaultHashBuilder,
}

/// What the metadata cache stores of an [`Interner`].
#[derive(Serialize, Deserialize)]
struct InternerParts {
    buf: String,
    #[serde(deserialize_with = "reserved")]
    ends: Vec<u32>,
}

/// Most elements a decoded sequence reserves room for up front (more still
/// decode, growing as usual): a quarter million packages, beyond any
/// distribution, and what a corrupt length can make us reserve in vain.
const RESERVE_MAX: usize = 1 << 18;

/// Decodes a long sequence into a vector reserved to its stated length
/// (up to [`RESERVE_MAX`]). serde reserves at most 1 MiB, so the 16 MB of
/// a large universe's packages grew by doubling, moved at every step: a
/// tenth of a warm `eval`.
fn reserved<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Seq<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Seq<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a sequence")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(RESERVE_MAX));
            while let Some(x) = seq.next_element()? {
                v.push(x);
            }
            Ok(v)
        }
    }
    d.deserialize_seq(Seq(std::marker::PhantomData))
}

impl From<InternerParts> for Interner {
    fn from(parts: InternerParts) -> Self {
        let mut i = Interner {
            buf: parts.buf,
            ends: parts.ends,
            table: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
        };
        // A cache entry passed its hash check, but a reader never trusts
        // offsets it did not write: out-of-order or out-of-range ends, or
        // a cut inside a character, make an empty interner (and the pool
        // then finds no name) rather than a panic.
        let mut start = 0usize;
        let sound = i.ends.iter().all(|&e| {
            let ok = (e as usize) >= start && i.buf.is_char_boundary(e as usize);
            start = e as usize;
            ok
        }) && start <= i.buf.len();
        if !sound {
            return Interner::default();
        }
        i.table.reserve(i.ends.len(), |_| 0);
        for id in 0..i.ends.len() as u32 {
            let h = i.hasher.hash_one(i.resolve(NameId(id)));
            let Interner {
                table,
                buf,
                ends,
                hasher,
            } = &mut i;
            table.insert_unique(h, NameId(id), |&n| hasher.hash_one(slice(buf, ends, n)));
        }
        i
    }
}

impl From<Interner> for InternerParts {
    fn from(i: Interner) -> Self {
        InternerParts {
            buf: i.buf,
            ends: i.ends,
        }
    }
}

/// String `id` of an interner's buffer.
fn slice<'a>(buf: &'a str, ends: &[u32], id: NameId) -> &'a str {
    let i = id.0 as usize;
    let start = if i == 0 { 0 } else { ends[i - 1] as usize };
    &buf[start..ends[i] as usize]
}

impl fmt::Debug for Interner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries((0..self.len() as u32).map(|i| self.resolve(NameId(i))))
            .finish()
    }
}

impl Interner {
    pub fn intern(&mut self, s: &str) -> NameId {
        if let Some(id) = self.get(s) {
            return id;
        }
        let id = NameId(self.ends.len() as u32);
        self.buf.push_str(s);
        self.ends.push(self.buf.len() as u32);
        let h = self.hasher.hash_one(s);
        let Interner {
            table,
            buf,
            ends,
            hasher,
        } = self;
        table.insert_unique(h, id, |&n| hasher.hash_one(slice(buf, ends, n)));
        id
    }

    /// Looks a string up without interning it.
    pub fn get(&self, s: &str) -> Option<NameId> {
        let h = self.hasher.hash_one(s);
        self.table
            .find(h, |&n| slice(&self.buf, &self.ends, n) == s)
            .copied()
    }

    pub fn resolve(&self, id: NameId) -> &str {
        slice(&self.buf, &self.ends, id)
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Total length of the interned strings.
    pub fn bytes(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

/// A capability with an optional version range: `name`, `name >= 1.0`.
///
/// The range is boxed: nine in ten dependencies have none, and inline it
/// made every one 72 bytes instead of 16. A universe's few hundred thousand
/// dependencies are most of the memory a warm `eval` fills, and touching
/// fresh memory was a third of its time. (Serialised as before: serde sees
/// through the box.)
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SimpleDep {
    pub name: NameId,
    pub range: Option<Box<Range>>,
}

/// A dependency as it appears in `Requires`, `Conflicts`, `Obsoletes`:
/// either a plain capability or an rpm 4.13+ boolean ("rich") expression.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Dep {
    Simple(SimpleDep),
    Rich(Box<Rich>),
}

/// A boolean dependency, as rpm defines them (`rpmrichParse`).
///
/// `If(a, b, else)` means `(a if b else c)`: when `b` is installed `a` must
/// be, otherwise `c` must be (if given). `Unless(a, b, else)` is the
/// negated condition. `With` requires one package satisfying every operand;
/// `Without(a, b)` one package satisfying `a` but not `b`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Rich {
    Dep(SimpleDep),
    And(Vec<Rich>),
    Or(Vec<Rich>),
    If(Box<Rich>, Box<Rich>, Option<Box<Rich>>),
    Unless(Box<Rich>, Box<Rich>, Option<Box<Rich>>),
    With(Vec<Rich>),
    Without(Box<Rich>, Box<Rich>),
}

/// Which digest a repository lists for a package file.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Checksum {
    /// `sha256`, `sha1`, `sha512`, `md5`... as repodata spells it (short:
    /// inline, no allocation per package).
    pub kind: Label,
    pub hex: Box<str>,
}

/// One binary package from a repository's primary metadata.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Package {
    pub name: NameId,
    pub evr: Evr,
    pub arch: NameId,
    pub repo: RepoId,
    pub provides: Vec<SimpleDep>,
    pub requires: Vec<Dep>,
    pub conflicts: Vec<Dep>,
    pub obsoletes: Vec<Dep>,
    /// File paths the metadata lists: primary's subset, plus the paths
    /// asked for with `repo::load_filelists`; each is an unversioned
    /// provide.
    pub files: Vec<NameId>,
    /// `location href`, relative to the repository base URL; an absolute
    /// URL (`xml:base` joined with `href`) when the repository sets
    /// `xml:base` to put packages elsewhere.
    pub location: Box<str>,
    pub checksum: Checksum,
    /// Size of the `.rpm` file.
    pub size_package: u64,
    /// Sum of installed file sizes.
    pub size_installed: u64,
}

/// A repository as the pool knows it: where it is, how much it is preferred,
/// and the hash that identifies its metadata (the solve derivation's input).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoInfo {
    pub name: String,
    /// Base URL or absolute path; package `location`s are relative to it.
    pub base: String,
    /// yum priority: lower wins; packages from a worse-priority repository
    /// are hidden when a better one has the same name.
    pub priority: i64,
    /// yum cost: among equal versions, the cheaper repository is preferred.
    pub cost: i64,
    /// blake3 (hex) of the repository's `repomd.xml`.
    pub metadata_hash: String,
}

/// Which capability of a package an index entry stands for.
#[derive(Clone, Copy, Debug)]
enum Provide {
    /// Its own name, at its own label (`= evr`).
    Label,
    /// `provides[k]`.
    Listed(u32),
    /// A file path it lists: unversioned.
    File,
}

/// The package universe: every package of every enabled repository.
#[derive(Default, Clone, Debug, Serialize, Deserialize)]
pub struct Pool {
    pub names: Interner,
    pub repos: Vec<RepoInfo>,
    #[serde(deserialize_with = "reserved")]
    pub packages: Vec<Package>,
    /// Packages providing each name, as one flat list cut by `NameId`
    /// (ids are dense, so no hashing, and one allocation instead of one
    /// per name: a warm `eval` is mostly the cache load and this index).
    #[serde(skip)]
    provides: Csr<(PackageId, Provide)>,
    #[serde(skip)]
    by_name: Csr<PackageId>,
}

/// Lists indexed by `NameId`, stored back to back: list `i` is
/// `items[starts[i]..starts[i + 1]]`.
#[derive(Clone, Debug)]
struct Csr<T> {
    starts: Vec<u32>,
    items: Vec<T>,
}

impl<T> Default for Csr<T> {
    fn default() -> Self {
        Csr {
            starts: vec![0],
            items: Vec::new(),
        }
    }
}

impl<T: Copy> Csr<T> {
    /// Two passes of `visit` (which calls `put(key, item)` for every
    /// entry, the same entries in the same order both times): count per
    /// key, then place each item, keeping the order of the visit within a
    /// list.
    fn build(keys: usize, visit: impl Fn(&mut dyn FnMut(NameId, T))) -> Self {
        let mut starts = vec![0u32; keys + 1];
        let mut first = None;
        visit(&mut |k, v| {
            starts[k.0 as usize + 1] += 1;
            first.get_or_insert(v);
        });
        for i in 0..keys {
            starts[i + 1] += starts[i];
        }
        let mut next = starts.clone();
        // Every slot is overwritten below; the first item only fills the
        // vector.
        let mut items = first.map_or_else(Vec::new, |v| vec![v; starts[keys] as usize]);
        visit(&mut |k, v| {
            let at = &mut next[k.0 as usize];
            items[*at as usize] = v;
            *at += 1;
        });
        Csr { starts, items }
    }

    fn get(&self, key: NameId) -> &[T] {
        let i = key.0 as usize;
        match (self.starts.get(i), self.starts.get(i + 1)) {
            (Some(&a), Some(&b)) => &self.items[a as usize..b as usize],
            _ => &[],
        }
    }
}

impl Pool {
    pub fn intern(&mut self, s: &str) -> NameId {
        self.names.intern(s)
    }

    pub fn name(&self, id: NameId) -> &str {
        self.names.resolve(id)
    }

    pub fn package(&self, id: PackageId) -> &Package {
        &self.packages[id.0 as usize]
    }

    pub fn add_repo(&mut self, info: RepoInfo) -> RepoId {
        self.repos.push(info);
        RepoId(self.repos.len() as u16 - 1)
    }

    pub fn add_package(&mut self, p: Package) -> PackageId {
        self.packages.push(p);
        PackageId(self.packages.len() as u32 - 1)
    }

    pub fn ids(&self) -> impl Iterator<Item = PackageId> {
        (0..self.packages.len() as u32).map(PackageId)
    }

    /// Builds the lookup indexes. Call after the last `add_package` and after
    /// deserialising; queries on an unindexed pool find nothing.
    pub fn index(&mut self) {
        let n = self.names.len();
        let packages = &self.packages;
        // Packages are visited in id order, so every list comes out sorted.
        self.by_name = Csr::build(n, |put| {
            for (i, p) in packages.iter().enumerate() {
                put(p.name, PackageId(i as u32));
            }
        });
        self.provides = Csr::build(n, |put| {
            for (i, p) in packages.iter().enumerate() {
                let id = PackageId(i as u32);
                // Every package provides its own name at its own label.
                put(p.name, (id, Provide::Label));
                for (k, d) in p.provides.iter().enumerate() {
                    put(d.name, (id, Provide::Listed(k as u32)));
                }
                for &f in &p.files {
                    put(f, (id, Provide::File));
                }
            }
        });
    }

    /// Packages called `name`, in pool order.
    pub fn named(&self, name: NameId) -> &[PackageId] {
        self.by_name.get(name)
    }

    /// Packages whose provides (including their own name and listed files)
    /// satisfy `dep`, sorted and without duplicates. An unversioned provide
    /// satisfies any range, as in rpm.
    pub fn whatprovides(&self, dep: &SimpleDep) -> Vec<PackageId> {
        let cands = self.provides.get(dep.name);
        let mut out: Vec<PackageId> = cands
            .iter()
            .filter(|&&(id, have)| {
                let Some(want) = &dep.range else {
                    return true;
                };
                let p = self.package(id);
                match have {
                    Provide::Label => want.contains(&p.evr),
                    Provide::Listed(k) => p.provides[k as usize]
                        .range
                        .as_ref()
                        .is_none_or(|have| want.overlaps(have)),
                    Provide::File => true,
                }
            })
            .map(|(id, _)| *id)
            .collect();
        out.dedup();
        out
    }

    /// `name-[epoch:]version-release.arch`, for messages and lock files.
    pub fn nevra(&self, id: PackageId) -> Nevra<'_> {
        Nevra { pool: self, id }
    }

    /// Renders a dependency the way rpm prints it.
    pub fn dep_to_string(&self, dep: &Dep) -> String {
        match dep {
            Dep::Simple(d) => self.simple_to_string(d),
            Dep::Rich(r) => self.rich_to_string(r),
        }
    }

    pub fn simple_to_string(&self, d: &SimpleDep) -> String {
        match &d.range {
            None => self.name(d.name).to_string(),
            Some(r) => format!("{} {}", self.name(d.name), r),
        }
    }

    fn rich_to_string(&self, r: &Rich) -> String {
        let join = |v: &[Rich], op: &str| {
            let parts: Vec<String> = v.iter().map(|x| self.rich_to_string(x)).collect();
            format!("({})", parts.join(&format!(" {op} ")))
        };
        let cond = |a: &Rich, kw: &str, b: &Rich, e: &Option<Box<Rich>>| {
            let mut s = format!(
                "({} {kw} {}",
                self.rich_to_string(a),
                self.rich_to_string(b)
            );
            if let Some(e) = e {
                s += &format!(" else {}", self.rich_to_string(e));
            }
            s + ")"
        };
        match r {
            Rich::Dep(d) => self.simple_to_string(d),
            Rich::And(v) => join(v, "and"),
            Rich::Or(v) => join(v, "or"),
            Rich::With(v) => join(v, "with"),
            Rich::Without(a, b) => format!(
                "({} without {})",
                self.rich_to_string(a),
                self.rich_to_string(b)
            ),
            Rich::If(a, b, e) => cond(a, "if", b, e),
            Rich::Unless(a, b, e) => cond(a, "unless", b, e),
        }
    }
}

/// Display adapter for a package's full label.
pub struct Nevra<'a> {
    pool: &'a Pool,
    id: PackageId,
}

impl fmt::Display for Nevra<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.pool.package(self.id);
        write!(
            f,
            "{}-{}.{}",
            self.pool.name(p.name),
            p.evr,
            self.pool.name(p.arch)
        )
    }
}

/// Whether a package of `arch` can be installed on a `target` system.
/// `noarch` always can; with `multilib`, 32-bit x86 packages can on x86_64.
pub fn arch_compatible(target: &str, arch: &str, multilib: bool) -> bool {
    if arch == target || arch == "noarch" {
        return true;
    }
    match target {
        "x86_64" => multilib && matches!(arch, "i386" | "i486" | "i586" | "i686" | "athlon"),
        "i686" => matches!(arch, "i386" | "i486" | "i586"),
        "i586" => matches!(arch, "i386" | "i486"),
        "aarch64" => false,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interner_survives_serialisation_without_duplicating_names() {
        let mut i = Interner::default();
        let a = i.intern("initscripts");
        let back: Interner = serde_json::from_str(&serde_json::to_string(&i).unwrap()).unwrap();
        let mut back = back;
        assert_eq!(back.get("initscripts"), Some(a));
        assert_eq!(back.intern("initscripts"), a);
        assert_eq!(back.len(), 1);
    }
}
