//! The package universe the solver works on: interned names, packages with
//! their dependencies, and the "what provides" index.
//!
//! Names, provides and file paths are interned into [`NameId`]s so that the
//! solver compares integers, and so the whole pool serialises compactly into
//! the binary metadata cache.

use super::evr::{Evr, Range};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;

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
/// Serialises as the plain list of strings; deserialising rebuilds the
/// lookup map, so an interner read from the metadata cache interns new
/// strings without duplicating old ones.
#[derive(Default, Clone, Debug, Serialize, Deserialize)]
#[serde(from = "Vec<Box<str>>", into = "Vec<Box<str>>")]
pub struct Interner {
    names: Vec<Box<str>>,
    map: HashMap<Box<str>, NameId>,
}

impl From<Vec<Box<str>>> for Interner {
    fn from(names: Vec<Box<str>>) -> Self {
        let map = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), NameId(i as u32)))
            .collect();
        Interner { names, map }
    }
}

impl From<Interner> for Vec<Box<str>> {
    fn from(i: Interner) -> Self {
        i.names
    }
}

impl Interner {
    pub fn intern(&mut self, s: &str) -> NameId {
        if let Some(&id) = self.map.get(s) {
            return id;
        }
        let id = NameId(self.names.len() as u32);
        self.names.push(s.into());
        self.map.insert(s.into(), id);
        id
    }

    /// Looks a string up without interning it.
    pub fn get(&self, s: &str) -> Option<NameId> {
        self.map.get(s).copied()
    }

    pub fn resolve(&self, id: NameId) -> &str {
        &self.names[id.0 as usize]
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// A capability with an optional version range: `name`, `name >= 1.0`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SimpleDep {
    pub name: NameId,
    pub range: Option<Range>,
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
    /// `sha256`, `sha1`, `sha512`, `md5`... as repodata spells it.
    pub kind: Box<str>,
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

/// The package universe: every package of every enabled repository.
#[derive(Default, Clone, Debug, Serialize, Deserialize)]
pub struct Pool {
    pub names: Interner,
    pub repos: Vec<RepoInfo>,
    pub packages: Vec<Package>,
    /// Indexed by `NameId`: ids are dense, so a vector spares the hashing
    /// of a map on every one of the ~130,000 provides a large repository
    /// indexes at each load (a warm `eval` is mostly this and the cache).
    #[serde(skip)]
    provides: Vec<Vec<(PackageId, Option<Range>)>>,
    #[serde(skip)]
    by_name: Vec<Vec<PackageId>>,
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
        self.provides = vec![Vec::new(); n];
        self.by_name = vec![Vec::new(); n];
        // Packages are visited in id order, so every list comes out sorted.
        for (i, p) in self.packages.iter().enumerate() {
            let id = PackageId(i as u32);
            self.by_name[p.name.0 as usize].push(id);
            // Every package provides its own name at its own label.
            self.provides[p.name.0 as usize].push((
                id,
                Some(Range {
                    op: super::evr::Op::Eq,
                    evr: p.evr.clone(),
                }),
            ));
            for d in &p.provides {
                self.provides[d.name.0 as usize].push((id, d.range.clone()));
            }
            for &f in &p.files {
                self.provides[f.0 as usize].push((id, None));
            }
        }
    }

    /// Packages called `name`, in pool order.
    pub fn named(&self, name: NameId) -> &[PackageId] {
        self.by_name.get(name.0 as usize).map_or(&[], Vec::as_slice)
    }

    /// Packages whose provides (including their own name and listed files)
    /// satisfy `dep`, sorted and without duplicates. An unversioned provide
    /// satisfies any range, as in rpm.
    pub fn whatprovides(&self, dep: &SimpleDep) -> Vec<PackageId> {
        let Some(cands) = self.provides.get(dep.name.0 as usize) else {
            return Vec::new();
        };
        let mut out: Vec<PackageId> = cands
            .iter()
            .filter(|(_, have)| match (&dep.range, have) {
                (None, _) | (_, None) => true,
                (Some(want), Some(have)) => want.overlaps(have),
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
