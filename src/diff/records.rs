//! Sides given without a spec: a derivation id recorded in the store, or a
//! tag of a published CernVM-FS repository.
//!
//! Both become the graph of recorded derivations reachable from one
//! derivation, so the cause walk and the file diff work as for specs; only
//! the spec lines are missing. The closure comes from the graph itself: the
//! fetch parameters behind the OS tree's `pkg:NEVRA` inputs, or else the
//! meta RPM's `requires` (which know no arch, size or repository).
//!
//! A tag names a root catalog; the store's `publish` derivation whose
//! registered output published that root catalog is the release. No change
//! to the repository format is needed, and promoted branch tags resolve to
//! the release they point at (promote keeps the root catalog). A tag no
//! derivation in the store published (another machine's repository) gives
//! the closure alone, from the requirements of the meta RPM published under
//! `/.cvmbuild/` in that revision, read through its catalog and objects.
//! A repository given by URL is read the same way through the client, with
//! its whole trust chain (manifest, whitelist, history) verified.

use super::causes::builder_name;
use super::side::{Lookup, Side};
use super::Error;
use crate::build::records;
use crate::eval::{DrvId, Graph, Input};
use crate::lock::LockedPackage;
use crate::store::{FsStore, Store};
use serde_json::Value as Json;
use std::path::{Path, PathBuf};

type Result<T, E = Error> = std::result::Result<T, E>;

/// A derivation id or unique prefix of one recorded in `store`.
pub fn load_drv(arg: &str, store: Option<&Path>) -> Result<Side> {
    let (store, dir) = open(arg, store)?;
    let ids = records::find(&store, arg)?;
    let id = match ids.as_slice() {
        [one] => one.clone(),
        [] => {
            return Err(Error::UnknownDrv {
                arg: arg.into(),
                store: dir,
            })
        }
        many => {
            return Err(Error::AmbiguousDrv {
                arg: arg.into(),
                count: many.len(),
                candidates: many
                    .iter()
                    .map(|i| i.short())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        }
    };
    side(arg, "drv", &store, &id)
}

/// `cvmfs:FQRN@TAG` (repository under the publish directory),
/// `cvmfs:DIR@TAG` (a Stratum-0 directory, when the part before `@` has a
/// `/`) or `cvmfs:http://HOST/…/FQRN@TAG` (any repository, read with the
/// client). `rest` is `arg` without `cvmfs:`.
pub fn load_tag(arg: &str, rest: &str, lookup: &Lookup) -> Result<Side> {
    let Some((repo, tag)) = rest
        .rsplit_once('@')
        .filter(|(r, t)| !r.is_empty() && !t.is_empty())
    else {
        return Err(Error::NoTag { arg: arg.into() });
    };
    if repo.starts_with("http://") || repo.starts_with("https://") {
        return remote(arg, repo, tag, lookup);
    }
    let store = lookup.store.as_deref();
    let repo_dir = if repo.contains('/') {
        PathBuf::from(repo)
    } else {
        let publish = match (std::env::var_os("CVMBUILD_PUBLISH_DIR"), store) {
            (Some(d), _) => PathBuf::from(d),
            (None, Some(s)) => s.join("cvmfs"),
            (None, None) => return Err(Error::NoPublishDir { arg: arg.into() }),
        };
        publish.join(repo)
    };
    let tags = crate::cvmfs::tags(&repo_dir).map_err(|source| Error::Repository {
        arg: arg.into(),
        source,
    })?;
    let Some(t) = tags.iter().find(|t| t.name == tag) else {
        return Err(Error::UnknownTag {
            repo: repo_dir.display().to_string(),
            tag: tag.into(),
            tags: tags
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    };
    let Some(store) = store.filter(|s| s.join("drvs").is_dir()) else {
        return published_only(arg, &repo_dir, t);
    };
    let (store, _) = open(arg, Some(store))?;
    // Every publish derivation whose output published this root catalog;
    // the one published under this very tag first, then by id.
    let mut found: Vec<(bool, String)> = Vec::new();
    for id in store.drv_record_ids()? {
        let Some(out) = store.lookup_output(&id)? else {
            continue;
        };
        if out.meta.get("root-catalog") == Some(&t.hash) {
            found.push((out.meta.get("tag") != Some(&t.name), id));
        }
    }
    found.sort();
    match found.into_iter().next() {
        Some((_, id)) => side(arg, "tag", &store, &DrvId(id)),
        None => published_only(arg, &repo_dir, t),
    }
}

/// A tag known only from the repository: its closure from the published
/// meta RPM's requirements (`NAME = [EPOCH:]VERSION-RELEASE`).
fn published_only(arg: &str, repo_dir: &Path, t: &crate::cvmfs::Tag) -> Result<Side> {
    let files =
        crate::cvmfs::release_files(repo_dir, &t.hash).map_err(|source| Error::Repository {
            arg: arg.into(),
            source,
        })?;
    let meta = files.into_iter().find(|(n, _)| n.ends_with(".rpm"));
    from_meta_rpm(arg, meta, t.branch.clone())
}

/// A tag of a repository on a server (`url` is its base URL, ending in the
/// repository name), read through the client with the keys, proxies and
/// cache of `lookup.remote`.
fn remote(arg: &str, url: &str, tag: &str, lookup: &Lookup) -> Result<Side> {
    let Some(fqrn) = url
        .trim_end_matches('/')
        .rsplit_once('/')
        .map(|(_, n)| n)
        .filter(|n| n.contains('.'))
    else {
        return Err(Error::NoTag { arg: arg.into() });
    };
    let mut cfg = lookup
        .remote
        .clone()
        .ok_or_else(|| Error::NoKey { arg: arg.into() })?;
    cfg.fqrn = fqrn.to_string();
    cfg.servers = vec![url.trim_end_matches('/').to_string()];
    cfg.pin = crate::client::Pin::Tag(tag.to_string());
    let remote_err = |source| Error::Remote {
        arg: arg.into(),
        source,
    };
    let repo = crate::client::open(&cfg).map_err(remote_err)?;
    let branch = repo.tag().map(|t| t.branch.clone()).unwrap_or_default();
    let dir = format!("/{}", crate::cvmfs::CVMBUILD_DIR);
    let file_err = |path: &str| {
        let path = path.to_string();
        move |reason| Error::RemoteFile {
            arg: arg.into(),
            path,
            reason,
        }
    };
    use crate::client::vfs::{FsError, Kind, ReadOnlyFs};
    let entries = match repo.resolve_path(&dir) {
        Ok(d) => repo.readdir(d.ino).map_err(file_err(&dir))?,
        Err(FsError::NotFound) => Vec::new(),
        Err(e) => return Err(file_err(&dir)(e)),
    };
    let Some((name, attr)) = entries
        .into_iter()
        .find(|(n, a)| n.ends_with(b".rpm") && a.kind == Kind::File)
    else {
        return from_meta_rpm(arg, None, branch);
    };
    let name = String::from_utf8_lossy(&name).into_owned();
    let mut bytes = Vec::new();
    repo.copy_to(attr.ino, &mut bytes)
        .map_err(file_err(&format!("{dir}/{name}")))?;
    from_meta_rpm(arg, Some((name, bytes)), branch)
}

/// The closure a published meta RPM (`/.cvmbuild/NAME`, its bytes)
/// requires.
fn from_meta_rpm(arg: &str, meta: Option<(String, Vec<u8>)>, branch: String) -> Result<Side> {
    let dir = crate::cvmfs::CVMBUILD_DIR;
    let not_ours = |reason: String| Error::NotCvmbuild {
        arg: arg.into(),
        reason,
    };
    let Some((name, bytes)) = meta else {
        return Err(not_ours(format!("no meta RPM in /{dir}")));
    };
    // The bytes come from a repository (maybe another machine's, or a
    // server): the header's structure is checked before the rpm crate
    // allocates or indexes by what it says.
    crate::builders::extract::rpmhdr::check(&mut std::io::Cursor::new(&bytes))
        .map_err(|e| not_ours(format!("/{dir}/{name} is not a readable RPM: {e}")))?;
    let meta = rpm::PackageMetadata::parse(&mut bytes.as_slice())
        .map_err(|e| not_ours(format!("/{dir}/{name} is not a readable RPM: {e}")))?;
    let requires = meta
        .get_requires()
        .map_err(|e| not_ours(format!("/{dir}/{name} has no requirements: {e}")))?;
    let packages = requires
        .into_iter()
        .filter(|d| !d.name.starts_with("rpmlib("))
        .filter_map(|d| {
            let (epoch, vr) = match d.version.split_once(':') {
                Some((e, vr)) => (e.parse().ok()?, vr),
                None => (0, d.version.as_str()),
            };
            let (version, release) = vr.rsplit_once('-')?;
            Some(package(&d.name, epoch, version, release))
        })
        .collect();
    Ok(Side {
        label: arg.to_string(),
        branch,
        kind: "tag",
        lock: None,
        packages,
        spec: None,
        recorded: None,
    })
}

/// A closure entry known only by name and version (from requirements).
fn package(name: &str, epoch: u64, version: &str, release: &str) -> LockedPackage {
    LockedPackage {
        name: name.to_string(),
        epoch,
        version: version.to_string(),
        release: release.to_string(),
        arch: String::new(),
        repo: String::new(),
        location: String::new(),
        checksum: String::new(),
        size: 0,
        signer: None,
    }
}

fn open(arg: &str, store: Option<&Path>) -> Result<(FsStore, PathBuf)> {
    let dir = store.ok_or_else(|| Error::NoStore {
        arg: arg.into(),
        dir: None,
    })?;
    // Diff only reads: never create a store where there was none.
    if !dir.join("drvs").is_dir() {
        return Err(Error::NoStore {
            arg: arg.into(),
            dir: Some(dir.to_path_buf()),
        });
    }
    Ok((FsStore::open(dir)?, dir.to_path_buf()))
}

/// The side rooted at recorded derivation `id`.
fn side(arg: &str, kind: &'static str, store: &FsStore, id: &DrvId) -> Result<Side> {
    let mut graph = Graph::default();
    add(store, id, &mut graph)?;
    // Every named output reachable from `id` is a root, so a publish id
    // also compares its OS tree and meta RPM.
    let ids: Vec<DrvId> = graph.topo().into_iter().map(|(i, _)| i.clone()).collect();
    for i in ids.iter().rev() {
        let d = graph.get(i).expect("from this graph");
        let name = match builder_name(d) {
            "assemble" => "os-tree".to_string(),
            "image" => format!(
                "image:{}",
                d.params.get("format").and_then(Json::as_str).unwrap_or("")
            ),
            b if i == id
                || ["meta-rpm", "kernel", "initrd", "rootfs", "publish", "solve"].contains(&b) =>
            {
                b.to_string()
            }
            _ => continue,
        };
        graph.roots.entry(name).or_insert_with(|| i.clone());
    }
    let root = graph.get(id).expect("added above");
    let branch = root
        .params
        .get("branch")
        .or_else(|| {
            let meta = graph.roots.get("meta-rpm")?;
            graph.get(meta)?.params.get("branch")
        })
        .and_then(Json::as_str)
        .unwrap_or("")
        .to_string();
    Ok(Side {
        label: arg.to_string(),
        branch,
        kind,
        lock: None,
        packages: closure(&graph),
        spec: None,
        recorded: Some(graph),
    })
}

/// Adds `id` and, first, its recorded inputs.
fn add(store: &FsStore, id: &DrvId, graph: &mut Graph) -> Result<()> {
    if graph.get(id).is_some() {
        return Ok(());
    }
    let d = records::load(store, &id.0)?.ok_or_else(|| Error::MissingRecord(id.to_string()))?;
    for i in d.input_drvs() {
        add(store, i, graph)?;
    }
    graph.add(d);
    Ok(())
}

/// The pinned closure a recorded graph implies.
fn closure(g: &Graph) -> Vec<LockedPackage> {
    if let Some(tree) = g.roots.get("os-tree").and_then(|i| g.get(i)) {
        return tree
            .inputs
            .iter()
            .filter(|(role, _)| role.starts_with("pkg:"))
            .filter_map(|(_, i)| match i {
                Input::Drv { id } => g.get(id),
                Input::Source { .. } => None,
            })
            .filter_map(|extract| match extract.inputs.get("rpm")? {
                Input::Drv { id } => g.get(id),
                Input::Source { .. } => None,
            })
            .filter_map(|fetch| {
                let p = &fetch.params;
                let s = |k: &str| p.get(k).and_then(Json::as_str).unwrap_or("").to_string();
                let (name, epoch, version, release, arch) = split_nevra(&s("nevra"))?;
                Some(LockedPackage {
                    name,
                    epoch,
                    version,
                    release,
                    arch,
                    repo: s("repo"),
                    location: s("location"),
                    checksum: s("checksum"),
                    size: p.get("size").and_then(Json::as_u64).unwrap_or(0),
                    signer: p.get("signer").and_then(Json::as_str).map(str::to_string),
                })
            })
            .collect();
    }
    let Some(meta) = g.roots.get("meta-rpm").and_then(|i| g.get(i)) else {
        return Vec::new();
    };
    meta.params
        .get("requires")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| {
            // `NAME = EPOCH:VERSION-RELEASE`, as plan.rs writes it.
            let (name, evr) = r.as_str()?.split_once(" = ")?;
            let (epoch, vr) = evr.split_once(':')?;
            let (version, release) = vr.rsplit_once('-')?;
            Some(package(name, epoch.parse().ok()?, version, release))
        })
        .collect()
}

/// `NAME-[EPOCH:]VERSION-RELEASE.ARCH` into its parts.
fn split_nevra(nevra: &str) -> Option<(String, u64, String, String, String)> {
    let (nevr, arch) = nevra.rsplit_once('.')?;
    let (nev, release) = nevr.rsplit_once('-')?;
    let (name, ev) = nev.rsplit_once('-')?;
    let (epoch, version) = match ev.split_once(':') {
        Some((e, v)) => (e.parse().ok()?, v),
        None => (0, ev),
    };
    Some((
        name.into(),
        epoch,
        version.into(),
        release.into(),
        arch.into(),
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn splits_nevras_with_and_without_epoch() {
        assert_eq!(
            super::split_nevra("bash-4.1.2-15.el6_4.x86_64").unwrap(),
            (
                "bash".into(),
                0,
                "4.1.2".into(),
                "15.el6_4".into(),
                "x86_64".into()
            )
        );
        let (name, epoch, version, ..) =
            super::split_nevra("open-ssl-1:1.0.1e-30.el6.x86_64").unwrap();
        assert_eq!(
            (name.as_str(), epoch, version.as_str()),
            ("open-ssl", 1, "1.0.1e")
        );
        assert!(super::split_nevra("nodashes").is_none());
    }
}
