//! From a typed release and its pinned closure to the derivation graph.
//!
//! The graph for one branch:
//!
//! ```text
//! solve ┄pin┄> fetch:P ──> extract:P ──> assemble (os-tree) ──> publish
//!       ┄pin┄> meta-rpm ─────────────────────┴─────────────────┘
//!              extract:kernel ──> kernel ──> initrd ──> image:FMT
//!              assemble ──> rootfs (squashfs of the OS tree)
//!              assemble ──> initrd (only when it lists `binaries`)
//! ```
//!
//! Fetches are fixed-output: identified by the repository, location and
//! checksum of the file, not by the solve, so re-pinning changes only the
//! derivations of the packages whose version changed.

use super::graph::Graph;
use super::spec::{FileInput, Release};
use crate::builders;
use crate::drv::{Builder, Derivation, DrvId};
use crate::lang;
use crate::lock::LockedPackage;
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::path::Path;

/// The solve derivation of a release: its inputs are the repositories'
/// metadata hashes and its parameters everything in the spec that can
/// change the closure. Its id keys the branch's lock entry.
pub fn solve_derivation(rel: &Release, metadata: &[String]) -> Derivation {
    let mut packages: Vec<Json> = rel
        .packages
        .iter()
        .map(|p| json!([p.name, p.constraint]))
        .collect();
    // The shopping list is a set: its order is not meaningful.
    // Cached: the key is a rendering, and a sort calls it n log n times.
    packages.sort_by_cached_key(|v| v.to_string());
    let pins: BTreeMap<&str, &str> = rel
        .pins
        .iter()
        .map(|p| (p.name.as_str(), p.constraint.as_str()))
        .collect();
    let mut exclude = rel.exclude.clone();
    exclude.sort();
    let mut installonly = rel.installonly.clone();
    installonly.sort();
    let repos: Vec<Json> = rel
        .repos
        .iter()
        .map(|r| {
            let mut j = json!({"name": r.name, "url": r.url_as_written, "priority": r.priority,
                   "cost": r.cost, "exclude": r.exclude});
            // Only with keys, so the ids of repositories without stay.
            let signers = package_signers(r);
            if !signers.is_empty() {
                j["gpgkeys"] = json!(signers);
            }
            j
        })
        .collect();
    let mut d = Derivation::new(
        "solve",
        // Solving runs during evaluation, not in the scheduler, so `solve`
        // is no registered builder; its version still enters the id.
        Builder::builtin("solve", 1),
        json!({
            "arch": rel.arch, "multilib": rel.multilib, "packages": packages,
            "pins": pins, "exclude": exclude, "installonly": installonly, "repos": repos,
        }),
    );
    for (r, hash) in rel.repos.iter().zip(metadata) {
        d = d.input_source(format!("repo:{}", r.name), hash, r.url_as_written.clone());
    }
    d
}

/// Fingerprints of the keys a repository's packages must be signed with:
/// its `gpgkey` when `gpgcheck` is on, else none. They are parameters of
/// the solve (so a change of signer is a lock change) and of each fetch
/// from the repository (so a checked download is not the unchecked one).
pub fn package_signers(r: &super::spec::Repo) -> Vec<String> {
    match (&r.keys, r.gpgcheck) {
        (Some(k), true) => k.fingerprints(),
        _ => Vec::new(),
    }
}

/// blake3 of the solve parameters alone (the lock's `spec` field).
pub fn spec_hash(solve: &Derivation) -> String {
    blake3::hash(solve.params.to_string().as_bytes())
        .to_hex()
        .to_string()
}

/// Builds the full graph. `closure` is the pinned package set (from the lock
/// or a fresh solve).
pub fn plan(
    rel: &Release,
    solve: Derivation,
    closure: &[LockedPackage],
    sources: &lang::SourceMap,
    keys_dir: Option<&Path>,
) -> Result<Graph, lang::Error> {
    // Solve, a fetch and an extract per package, and a few outputs.
    let mut g = Graph::with_capacity(2 * closure.len() + 16);
    let solve_id = g.add(solve);
    g.roots.insert("solve".into(), solve_id.clone());

    let mut extracts: BTreeMap<&str, (DrvId, &LockedPackage)> = BTreeMap::new();
    let signers: BTreeMap<&str, Vec<String>> = rel
        .repos
        .iter()
        .map(|r| (r.name.as_str(), package_signers(r)))
        .collect();
    for p in closure {
        let nevra = p.nevra();
        let mut params = json!({"nevra": nevra, "repo": p.repo, "location": p.location,
                   "checksum": p.checksum, "size": p.size});
        if let Some(keys) = signers.get(p.repo.as_str()).filter(|k| !k.is_empty()) {
            params["gpgkeys"] = json!(keys);
            // The locked signer: the fetch refuses a package another of
            // the keys signed (see `gpg::signers`).
            if let Some(s) = &p.signer {
                params["signer"] = json!(s);
            }
        }
        let fetch = g.add(Derivation::new(
            format!("fetch:{nevra}"),
            builders::FETCH.id(),
            params,
        ));
        g.pin(&solve_id, &fetch);
        let extract = g.add(
            Derivation::new(
                format!("extract:{nevra}"),
                builders::EXTRACT.id(),
                json!({"nevra": nevra}),
            )
            .input_drv("rpm", &fetch),
        );
        extracts.insert(p.name.as_str(), (extract, p));
    }

    let requires: Vec<String> = closure
        .iter()
        .map(|p| format!("{} = {}:{}-{}", p.name, p.epoch, p.version, p.release))
        .collect();
    let meta = g.add(Derivation::new(
        format!("meta-rpm:{}-{}", rel.name, rel.version),
        builders::META_RPM.id(),
        json!({"name": rel.name, "version": rel.version, "release": "1", "branch": rel.branch,
               "epoch": rel.epoch, "requires": requires}),
    ));
    g.pin(&solve_id, &meta);
    g.roots.insert("meta-rpm".into(), meta.clone());

    let mut assemble = Derivation::new(
        "assemble",
        builders::ASSEMBLE.id(),
        json!({"prefer": rel.prefer, "epoch": rel.epoch, "scriptlets": rel.scriptlets}),
    );
    // The meta RPM is installed too: the tree's rpm database lists it.
    assemble = assemble.input_drv("meta", &meta);
    for (id, p) in extracts.values() {
        assemble = assemble.input_drv(format!("pkg:{}", p.nevra()), id);
    }
    let os_tree = g.add(assemble);
    g.roots.insert("os-tree".into(), os_tree.clone());

    let in_closure = |name: &str, span: lang::Span, what: &str| {
        extracts.get(name).map(|(id, _)| id.clone()).ok_or_else(|| {
            sources.error(
                span,
                format!("{what} package `{name}` is not in the closure"),
                "add it to `packages`",
            )
        })
    };

    if let Some(k) = &rel.kernel {
        let kpkg = in_closure(&k.package, k.span, "kernel")?;
        let mut modules = k.modules.clone();
        modules.sort();
        modules.dedup();
        let mut d = Derivation::new(
            "kernel",
            builders::KERNEL.id(),
            json!({"modules": modules, "epoch": rel.epoch,
                   "config": k.config.as_ref().map(inline_or_null)}),
        )
        .input_drv("package", &kpkg);
        if let Some(FileInput::File { path, relative }) = &k.config {
            d = d.input_source(
                "config",
                hash_file(path, sources, k.span)?,
                relative.clone(),
            );
        }
        let kernel = g.add(d);
        g.roots.insert("kernel".into(), kernel.clone());

        if let Some(i) = &rel.initrd {
            let mut d = Derivation::new(
                "initrd",
                builders::INITRD.id(),
                json!({"compression": i.compression, "binaries": i.binaries, "epoch": rel.epoch,
                       "init": inline_or_null(&i.init),
                       "files": i.files.iter().map(|(k, v)| (k.clone(), inline_or_null(v))).collect::<BTreeMap<_, _>>()}),
            )
            .input_drv("kernel", &kernel);
            if let Some(b) = i.binaries.iter().find(|b| {
                !b.starts_with('/')
                    || b[1..]
                        .split('/')
                        .any(|p| p.is_empty() || p == "." || p == "..")
            }) {
                return Err(sources.error(
                    i.span,
                    format!("initrd binary `{b}` is not a clean absolute path"),
                    "a path in the OS tree, like `/usr/bin/kmod`",
                ));
            }
            // Only with binaries, so the ids of initrds without them stay.
            if !i.binaries.is_empty() {
                d.params["release"] = json!(format!("{}-{}", rel.name, rel.version));
                d = d.input_drv("os-tree", &os_tree);
            }
            for name in &i.packages {
                d = d.input_drv(format!("pkg:{name}"), &in_closure(name, i.span, "initrd")?);
            }
            if let FileInput::File { path, relative } = &i.init {
                d = d.input_source("init", hash_file(path, sources, i.span)?, relative.clone());
            }
            for (dest, f) in &i.files {
                if let FileInput::File { path, relative } = f {
                    d = d.input_source(
                        format!("file:{dest}"),
                        hash_file(path, sources, i.span)?,
                        relative.clone(),
                    );
                }
            }
            if let Some(b) = &i.boot {
                d = boot_inputs(d, b, &rel.branch, sources, keys_dir)?;
            }
            let initrd = g.add(d);
            g.roots.insert("initrd".into(), initrd.clone());
            if !rel.images.is_empty() {
                // The OS tree as the read-only lower layer the initrd can
                // overlay and switch root into (attached as a second disk).
                let rootfs = g.add(
                    Derivation::new(
                        "rootfs",
                        builders::ROOTFS.id(),
                        json!({"format": "squashfs", "epoch": rel.epoch,
                               "tools": crate::image::tools::versions("squashfs")}),
                    )
                    .input_drv("tree", &os_tree),
                );
                g.roots.insert("rootfs".into(), rootfs);
            }
            for img in &rel.images {
                if !crate::image::disk::FORMATS.contains(&img.format.as_str()) {
                    return Err(sources.error(
                        img.span,
                        format!(
                            "image format `{}` is not supported by this version of cvmbuild",
                            img.format
                        ),
                        format!("one of {}", crate::image::disk::FORMATS.join(", ")),
                    ));
                }
                let size = img
                    .size
                    .as_deref()
                    .map(super::spec::parse_size)
                    .transpose()
                    .ok()
                    .flatten();
                let id = g.add(
                    Derivation::new(
                        format!("image:{}", img.format),
                        builders::IMAGE.id(),
                        json!({"format": img.format, "size": size, "cmdline": k.cmdline,
                               "release": rel.name, "version": rel.version, "branch": rel.branch,
                               "epoch": rel.epoch,
                               "tools": crate::image::tools::versions(&img.format)}),
                    )
                    .input_drv("kernel", &kernel)
                    .input_drv("initrd", &initrd),
                );
                g.roots.insert(format!("image:{}", img.format), id);
            }
        }
    }

    if let Some(c) = &rel.cvmfs {
        let tag = c
            .tag
            .clone()
            .unwrap_or_else(|| format!("{}-{}", rel.name, rel.version));
        let id = g.add(
            Derivation::new(
                format!("publish:{}", c.repository),
                builders::PUBLISH.id(),
                json!({"repository": c.repository, "nested": c.nested, "tag": tag,
                       "branch": rel.branch, "epoch": rel.epoch}),
            )
            .input_drv("tree", &os_tree)
            .input_drv("meta", &meta),
        );
        g.roots.insert("publish".into(), id);
    }
    Ok(g)
}

/// `initrd.boot`: the settings as the `boot` parameter, the master key and
/// the client binary as source inputs, so all of them are in the initrd's
/// id. The client must be a file: a binary has no inline form. Without a
/// `key`, the publish step's master public key is taken (inline, so its
/// bytes are in the id), made first if the repository has no keys yet.
fn boot_inputs(
    mut d: Derivation,
    b: &super::spec::Boot,
    branch: &str,
    sources: &lang::SourceMap,
    keys_dir: Option<&Path>,
) -> Result<Derivation, lang::Error> {
    if b.servers.is_empty() {
        return Err(sources.error(
            b.span,
            "initrd.boot.servers is empty",
            "list at least one server, like \"http://stratum0.example.org/cvmfs/@fqrn@\"",
        ));
    }
    let FileInput::File { path, relative } = &b.client else {
        return Err(sources.error(
            b.span,
            "initrd.boot.client must be a path to the cvmbuild-client binary",
            "e.g. client = ./cvmbuild-client",
        ));
    };
    let key = match &b.key {
        Some(k) => k.clone(),
        None => publish_key(b, sources, keys_dir)?,
    };
    d.params["boot"] = json!({"repository": b.repository, "servers": b.servers,
        "proxy": b.proxy, "tag": b.tag.as_deref().unwrap_or(branch), "path": b.path, "key": inline_or_null(&key)});
    d = d.input_source(
        "boot:client",
        hash_file(path, sources, b.span)?,
        relative.clone(),
    );
    if let FileInput::File { path, relative } = &key {
        d = d.input_source(
            "boot:key",
            hash_file(path, sources, b.span)?,
            relative.clone(),
        );
    }
    Ok(d)
}

/// The master public key of `b.repository` from the keys directory the
/// publish step signs with, as inline PEM.
fn publish_key(
    b: &super::spec::Boot,
    sources: &lang::SourceMap,
    keys_dir: Option<&Path>,
) -> Result<FileInput, lang::Error> {
    let Some(dir) = keys_dir else {
        return Err(sources.error(
            b.span,
            "initrd.boot has no `key` and no CernVM-FS keys directory is known",
            "give key = ./<repository>.pub, or evaluate with a store (its cvmfs-keys) or CVMBUILD_KEYS_DIR",
        ));
    };
    crate::cvmfs::master_public_key(dir, &b.repository)
        .map(FileInput::Inline)
        .map_err(|e| {
            sources.error(
                b.span,
                format!("initrd.boot: the publish step's key for {}: {e}", b.repository),
                "the keys directory holds <repository>.masterkey, .pub, .key and .crt (made by the first publish)",
            )
        })
}

/// Inline file content goes into parameters; file content is an input
/// source (so its hash, not its path, is in the id).
fn inline_or_null(f: &FileInput) -> Json {
    match f {
        FileInput::Inline(s) => Json::String(s.clone()),
        FileInput::File { .. } => Json::Null,
    }
}

fn hash_file(
    path: &std::path::Path,
    sources: &lang::SourceMap,
    span: lang::Span,
) -> Result<String, lang::Error> {
    std::fs::read(path)
        .map(|b| blake3::hash(&b).to_hex().to_string())
        .map_err(|e| {
            sources.error(
                span,
                format!("cannot read {}: {e}", path.display()),
                "this input",
            )
        })
}
