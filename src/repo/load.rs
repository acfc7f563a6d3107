//! Loading repositories into one [`Pool`]: fetch repomd.xml, verify and
//! parse primary (or take it from the binary cache), merge, index; and, on
//! demand, file lists for paths primary does not list.

use super::cache;
use super::decode::{decompress, Hasher, Tap, DECOMPRESSED_MAX};
use super::error::RepoError;
use super::fetch::{Location, METADATA_MAX, REPOMD_MAX};
use super::filelists::scan_filelists;
use super::model::{Dep, NameId, Package, PackageId, Pool, RepoId, RepoInfo, Rich, SimpleDep};
use super::primary::parse_primary;
use super::repomd::{DataFile, Digest, RepoMd};
use super::xml::{line_col, XmlError};
use rayon::prelude::*;
use std::collections::{HashMap, HashSet};
use std::io::BufRead;
use std::path::Path;

const REPOMD: &str = "repodata/repomd.xml";

/// A repository to load, as the spec names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoSource {
    pub name: String,
    /// Absolute path, `file://` or `http(s)://` URL of the directory that
    /// contains `repodata/`.
    pub url: String,
    /// yum priority: lower wins.
    pub priority: i64,
    /// yum cost: among equal versions, cheaper wins.
    pub cost: i64,
}

/// blake3 (hex) of the repository's `repomd.xml`, without parsing anything.
/// This identifies the metadata: repomd checksums every other file, so the
/// same hash means the same packages.
pub fn metadata_hash(source: &RepoSource) -> Result<String, RepoError> {
    let loc = Location::parse(&source.name, &source.url)?;
    let bytes = loc.read(&source.name, REPOMD, REPOMD_MAX)?;
    Ok(blake3::hash(&bytes).to_hex().to_string())
}

/// Loads and indexes every repository into one pool, in the order given
/// (repository `i` of `sources` is `RepoId(i)`). `cache` is the directory
/// of the binary metadata cache (`None`: always parse).
///
/// Repositories are fetched and parsed in parallel; the result does not
/// depend on timing.
pub fn load(sources: &[RepoSource], cache: Option<&Path>) -> Result<Pool, RepoError> {
    let results: Vec<Result<(Pool, String), RepoError>> =
        sources.par_iter().map(|s| load_one(s, cache)).collect();
    // The first failing repository in spec order, whatever finished first.
    let parts: Vec<(Pool, String)> = results.into_iter().collect::<Result<_, _>>()?;
    let mut pool = Pool::default();
    for (source, (part, hash)) in sources.iter().zip(parts) {
        let repo = pool.add_repo(RepoInfo {
            name: source.name.clone(),
            base: source.url.clone(),
            priority: source.priority,
            cost: source.cost,
            metadata_hash: hash,
        });
        merge(&mut pool, part, repo);
    }
    pool.index();
    Ok(pool)
}

/// One repository's packages in a pool of their own, and its metadata hash.
fn load_one(source: &RepoSource, cache_dir: Option<&Path>) -> Result<(Pool, String), RepoError> {
    let loc = Location::parse(&source.name, &source.url)?;
    let repomd = loc.read(&source.name, REPOMD, REPOMD_MAX)?;
    let hash = blake3::hash(&repomd).to_hex().to_string();
    if let Some(dir) = cache_dir {
        if let Some(pool) = cache::read(dir, &hash) {
            return Ok((pool, hash));
        }
    }
    let md = parse_repomd(source, &loc, &repomd)?;
    let primary = md.get("primary").ok_or_else(|| RepoError::Metadata {
        repo: source.name.clone(),
        file: loc.display(REPOMD),
        reason: "repomd.xml lists no `primary` metadata".to_string(),
    })?;
    let mut pool = Pool::default();
    read_verified(&source.name, &loc, primary, |input| {
        parse_primary(input, &mut pool, RepoId(0))
    })?;
    if let Some(dir) = cache_dir {
        cache::write(dir, &hash, &pool)?;
    }
    Ok((pool, hash))
}

fn parse_repomd(source: &RepoSource, loc: &Location, bytes: &[u8]) -> Result<RepoMd, RepoError> {
    RepoMd::parse(bytes).map_err(|e| {
        let (line, column) = line_col(bytes, e.offset);
        xml_error(&source.name, loc.display(REPOMD), line, column, e)
    })
}

fn xml_error(repo: &str, file: String, line: u64, column: u64, e: XmlError) -> RepoError {
    if e.syntax {
        RepoError::Xml {
            repo: repo.to_string(),
            file,
            line,
            column,
            reason: e.reason,
        }
    } else {
        RepoError::Metadata {
            repo: repo.to_string(),
            file,
            reason: format!("line {line}, column {column}: {}", e.reason),
        }
    }
}

fn hasher(repo: &str, file: &str, d: &Digest) -> Result<Hasher, RepoError> {
    Hasher::new(&d.kind).ok_or_else(|| RepoError::Metadata {
        repo: repo.to_string(),
        file: file.to_string(),
        reason: format!("unknown checksum type `{}` in repomd.xml", d.kind),
    })
}

/// Fetches a metadata file, verifies its `checksum`, streams its
/// decompressed content to `parse` while computing the `open-checksum`,
/// and verifies that too. Errors are attributed in this order: transfer,
/// checksum, decompression, XML, open-checksum.
fn read_verified<T>(
    repo: &str,
    loc: &Location,
    data: &DataFile,
    parse: impl FnOnce(&mut Tap<Box<dyn BufRead + '_>>) -> Result<T, XmlError>,
) -> Result<T, RepoError> {
    let file = loc.display(&data.href);
    // The href comes from repomd.xml: a refusal names that file.
    let limit = data.size.unwrap_or(METADATA_MAX).min(METADATA_MAX);
    let bytes = loc.read(repo, &data.href, limit).map_err(|e| match e {
        RepoError::Outside { .. } => RepoError::Metadata {
            repo: repo.to_string(),
            file: loc.display(REPOMD),
            reason: format!("<location href> of `{}` metadata: {e}", data.kind),
        },
        e => e,
    })?;
    let checksum_error = |which, d: &Digest, actual: String| RepoError::Checksum {
        repo: repo.to_string(),
        file: file.clone(),
        which,
        expected: format!("{}:{}", d.kind, d.hex),
        actual: format!("{}:{actual}", d.kind),
    };
    if let Some(d) = &data.checksum {
        let mut h = hasher(repo, &file, d)?;
        h.update(&bytes);
        let actual = h.finish_hex();
        if actual != d.hex {
            return Err(checksum_error("checksum", d, actual));
        }
    }
    let decompress_error = |reason: &str| RepoError::Decompress {
        repo: repo.to_string(),
        file: file.clone(),
        reason: reason.to_string(),
    };
    let open_hasher = match &data.open_checksum {
        Some(d) => Some(hasher(repo, &file, d)?),
        None => None,
    };
    let open_limit = data
        .open_size
        .unwrap_or(DECOMPRESSED_MAX)
        .min(DECOMPRESSED_MAX);
    let stream = decompress(&bytes, open_limit).map_err(|r| decompress_error(&r))?;
    let mut tap = Tap::new(stream, open_hasher);
    let parsed = parse(&mut tap);
    if let Some(reason) = tap.failure() {
        return Err(decompress_error(reason));
    }
    let value = parsed.map_err(|e| {
        let (line, column) = match decompress(&bytes, open_limit) {
            Ok(s) => line_col(s, e.offset),
            Err(_) => (0, 0),
        };
        xml_error(repo, file.clone(), line, column, e)
    })?;
    let digest = tap.finish().map_err(|e| decompress_error(&e.to_string()))?;
    if let (Some(d), Some(actual)) = (&data.open_checksum, digest) {
        if actual != d.hex {
            return Err(checksum_error("open-checksum", d, actual));
        }
    }
    Ok(value)
}

/// Moves one repository's packages into `pool` as repository `repo`,
/// translating its names into the pool's interner.
fn merge(pool: &mut Pool, mut part: Pool, repo: RepoId) {
    if pool.packages.is_empty() && pool.names.is_empty() {
        // The first repository keeps its own name ids.
        // The packages move as one vector: pushing them one by one
        // re-grew (and copied) the pool's vector a dozen times.
        pool.names = std::mem::take(&mut part.names);
        pool.packages = std::mem::take(&mut part.packages);
        for p in &mut pool.packages {
            p.repo = repo;
        }
        return;
    }
    pool.packages.reserve(part.packages.len());
    let table: Vec<NameId> = (0..part.names.len() as u32)
        .map(|i| pool.intern(part.names.resolve(NameId(i))))
        .collect();
    for mut p in part.packages {
        remap_package(&mut p, &table);
        p.repo = repo;
        pool.add_package(p);
    }
}

fn remap_package(p: &mut Package, t: &[NameId]) {
    let m = |id: &mut NameId| *id = t[id.0 as usize];
    m(&mut p.name);
    m(&mut p.arch);
    p.files.iter_mut().for_each(m);
    for d in &mut p.provides {
        m(&mut d.name);
    }
    for d in p
        .requires
        .iter_mut()
        .chain(&mut p.conflicts)
        .chain(&mut p.obsoletes)
    {
        match d {
            Dep::Simple(s) => m(&mut s.name),
            Dep::Rich(r) => remap_rich(r, t),
        }
    }
}

fn remap_rich(r: &mut Rich, t: &[NameId]) {
    match r {
        Rich::Dep(SimpleDep { name, .. }) => *name = t[name.0 as usize],
        Rich::And(v) | Rich::Or(v) | Rich::With(v) => v.iter_mut().for_each(|x| remap_rich(x, t)),
        Rich::If(a, b, e) | Rich::Unless(a, b, e) => {
            remap_rich(a, t);
            remap_rich(b, t);
            if let Some(e) = e {
                remap_rich(e, t);
            }
        }
        Rich::Without(a, b) => {
            remap_rich(a, t);
            remap_rich(b, t);
        }
    }
}

/// Adds to the pool every file among `paths` that a package owns according
/// to its repository's `filelists`, then re-indexes the pool, so
/// `whatprovides` finds packages by those paths.
///
/// Use it when a dependency names a file path that no package provides by
/// primary alone. Only the requested paths are added (the full lists would
/// multiply the pool's size). Repositories without filelists contribute
/// nothing. Fails with [`RepoError::Changed`] if a repository's repomd.xml
/// is no longer the one the pool was loaded from. Returns how many
/// (package, path) pairs were added.
pub fn load_filelists(pool: &mut Pool, paths: &[&str]) -> Result<usize, RepoError> {
    let wanted: HashSet<&str> = paths.iter().copied().collect();
    if wanted.is_empty() {
        return Ok(0);
    }
    let mut added = 0;
    for (i, info) in pool.repos.clone().into_iter().enumerate() {
        let repo = RepoId(i as u16);
        let loc = Location::parse(&info.name, &info.base)?;
        let bytes = loc.read(&info.name, REPOMD, REPOMD_MAX)?;
        let hash = blake3::hash(&bytes).to_hex().to_string();
        if hash != info.metadata_hash {
            return Err(RepoError::Changed {
                repo: info.name.clone(),
                expected: info.metadata_hash.clone(),
                actual: hash,
            });
        }
        let source = RepoSource {
            name: info.name.clone(),
            url: info.base.clone(),
            priority: info.priority,
            cost: info.cost,
        };
        let md = parse_repomd(&source, &loc, &bytes)?;
        let Some(data) = md.get("filelists") else {
            continue;
        };
        // Packages of this repository by pkgid (their checksum).
        let mut by_id: HashMap<&str, Vec<PackageId>> = HashMap::new();
        for id in pool.ids() {
            let p = pool.package(id);
            if p.repo == repo {
                by_id.entry(&p.checksum.hex).or_default().push(id);
            }
        }
        let mut hits: Vec<(PackageId, String)> = Vec::new();
        read_verified(&info.name, &loc, data, |input| {
            scan_filelists(input, &wanted, |owner, path| {
                let matching = by_id.get(owner.pkgid.as_str()).into_iter().flatten();
                for &id in matching {
                    let p = pool.package(id);
                    if pool.name(p.name) == owner.name
                        && (owner.arch.is_empty() || pool.name(p.arch) == owner.arch)
                    {
                        hits.push((id, path.to_string()));
                    }
                }
            })
        })?;
        for (id, path) in hits {
            let f = pool.intern(&path);
            let files = &mut pool.packages[id.0 as usize].files;
            if !files.contains(&f) {
                files.push(f);
                added += 1;
            }
        }
    }
    // Most solves find no path in the lists; re-indexing then would redo
    // the load's most expensive step for nothing.
    if added > 0 {
        pool.index();
    }
    Ok(added)
}

/// File paths that some package requires (directly or inside a rich
/// dependency) but no package provides by what is loaded so far, sorted.
/// These are what [`load_filelists`] may resolve.
pub fn unprovided_file_requires(pool: &Pool) -> Vec<String> {
    fn walk(r: &Rich, out: &mut Vec<NameId>) {
        match r {
            Rich::Dep(d) => out.push(d.name),
            Rich::And(v) | Rich::Or(v) | Rich::With(v) => v.iter().for_each(|x| walk(x, out)),
            Rich::If(a, b, e) | Rich::Unless(a, b, e) => {
                walk(a, out);
                walk(b, out);
                if let Some(e) = e {
                    walk(e, out);
                }
            }
            Rich::Without(a, b) => {
                walk(a, out);
                walk(b, out);
            }
        }
    }
    // Distinct required names, by marking: sorting the few hundred
    // thousand requires of a large universe cost more than the rest.
    let mut required = vec![false; pool.names.len()];
    let mut rich = Vec::new();
    for p in &pool.packages {
        for d in &p.requires {
            match d {
                Dep::Simple(s) => required[s.name.0 as usize] = true,
                Dep::Rich(r) => walk(r, &mut rich),
            }
        }
    }
    for n in rich {
        required[n.0 as usize] = true;
    }
    let mut out: Vec<String> = (0..required.len() as u32)
        .map(NameId)
        .filter(|n| required[n.0 as usize])
        .filter(|&n| pool.name(n).starts_with('/'))
        .filter(|&n| {
            pool.whatprovides(&SimpleDep {
                name: n,
                range: None,
            })
            .is_empty()
        })
        .map(|n| pool.name(n).to_string())
        .collect();
    out.sort();
    out
}
